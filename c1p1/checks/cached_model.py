"""Notebook 13, the KV cache: test_cached_transformer and test_generate_with_cache.

Both compare with the full forward pass (`c1p1.checks.oracle.model`): the cached model's logits, fed in
chunks, at the same positions; the cached generation's tokens against notebook 12's loop without a cache.
The check's own cache and cached computation come from `c1p1.checks.kv_cache`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake, build_for_loading
from c1p1.checks.divergence import explain_divergence
from c1p1.checks.kv_cache import SMALL, Cache, cached_logits, chunked
from c1p1.checks.oracle import model_shapes
from c1p1.config import Config

LOGIT_DIMS = ("batch", "posn", "d_vocab")


def stub_owner(exc: BaseException, model: nn.Module) -> str:
    """Which part raised a NotImplementedError ("CachedAttention.forward"); "" when it is the model itself."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    owner = tb.tb_frame.f_locals.get("self")
    name = tb.tb_frame.f_code.co_name
    if owner is model:
        return ""
    return f"{type(owner).__name__}.{name}" if owner is not None else name


# ----------------------------------------------------------------------------- test_cached_transformer

MODEL_FALLBACK = (
    "1) the residual stream starts as self.embed(tokens) + self.pos_embed(tokens, offset); "
    "2) block i runs with cache.layers[i]: for block, layer_cache in zip(self.blocks, cache.layers); "
    "3) return (self.unembed(self.ln_final(residual)), cache); "
    "4) if you wrote CachedAttention or CachedPosEmbed yourself, run their checks first."
)


def _run_model(test: str, model: nn.Module, tokens: Tensor, cache, label: str):
    """Call model(tokens, cache) (or model(tokens) when cache is None); return (logits, cache)."""
    __tracebackhide__ = True
    versions = core.parameter_versions(model)
    try:
        with torch.no_grad():
            out = model(tokens.clone()) if cache is None else model(tokens.clone(), cache)
    except Exception as exc:  # noqa: BLE001
        core.parameters_untouched(model, versions, test, "CachedTransformer.forward")
        owner = stub_owner(exc, model) if isinstance(exc, NotImplementedError) else ""
        if owner:  # a part of this notebook that the model uses is still a stub
            core.not_done(test, f"{owner} (which your CachedTransformer uses)")
        core.learner_raised(test, f"CachedTransformer.forward ({label})", exc)
    core.parameters_untouched(model, versions, test, "CachedTransformer.forward")
    if not (isinstance(out, tuple | list) and len(out) == 2 and isinstance(out[0], Tensor)):
        core.fail(f"{test}: CachedTransformer.forward returned {core.describe(out)}; it should return a tuple "
                  "(logits, cache).\nLikely cause: end with `return logits, cache`.")
    return out


def model_case(label: str, cfg: Config, p: dict[str, Tensor], tokens: Tensor, sizes: Sequence[int], expected: Tensor):
    chunks = chunked(tokens, sizes)
    mistakes = lambda: [  # noqa: E731
        Mistake("the positions are not offset: every call gives its tokens positions 0, 1, ... Pass the number of "
                "cached positions to self.pos_embed(tokens, offset).", lambda: cached_logits(chunks, p, cfg, offset=False)),
        Mistake("the positions start one too far, at offset + 1: the first new token sits at position offset = "
                "cache.n_positions exactly (positions count from 0): self.pos_embed(tokens, cache.n_positions).",
                lambda: cached_logits(chunks, p, cfg, shift=1)),
        Mistake("one cache is used by every block: block i must read and extend cache.layers[i] only "
                "(zip(self.blocks, cache.layers)).", lambda: cached_logits(chunks, p, cfg, shared=True)),
        Mistake("the new query is masked from the cached keys (CachedAttention's mask is not offset by past): run "
                "test_cached_attention.", lambda: cached_logits(chunks, p, cfg, mask="unshifted")),
        Mistake("the cache is ignored: every call runs its tokens as a new prompt (positions from 0, an empty cache "
                "in every block), so a new token never sees the tokens before it. Give block i cache.layers[i] of the "
                "cache passed in, and offset the positions by cache.n_positions.",
                lambda: cached_logits(chunks, p, cfg, fresh=True)),
        Mistake("ln_final is left out: the unembedding reads the raw residual stream. Return "
                "self.unembed(self.ln_final(residual)).", lambda: cached_logits(chunks, p, cfg, ln_final=False)),
    ]
    return Case(label, cfg, p, tuple(chunks), expected, LOGIT_DIMS, mistakes, MODEL_FALLBACK)


KEPT = ("the cache was kept from the previous prompt: with cache=None, forward must start a new, empty "
        "KVCache(self.cfg), never one stored on the model, in a module-level variable or in a default argument.")


def _every_layer_holds(cache, n: int) -> bool:
    """Whether every layer of the cache holds n positions (not so when one layer's cache serves every block)."""
    try:
        return all(len(layer) == n for layer in cache.layers)
    except Exception:  # noqa: BLE001 - a cache of the learner's own layout: no verdict from it
        return False


def test_cached_transformer(CachedTransformer) -> None:
    """Check CachedTransformer: logits fed chunk by chunk equal the full forward's; fresh caches; n_ctx refused."""
    __tracebackhide__ = True
    test = "test_cached_transformer"
    cls = core.expect_module_class(CachedTransformer, "CachedTransformer", test)
    ref = core.reference()
    small_p = core.random_params(model_shapes(SMALL), seed=1330, device=ref.device)
    tokens = core.random_tokens((2, 12), SMALL.d_vocab, 1331, ref.device)  # (2, 12)
    full = oracle.model(tokens, small_p, SMALL)  # (2, 12, d_vocab)
    acts = ref.activations("sentence")
    cases = [
        model_case("random weights, 3 layers, batch 2: a 12-token prompt at once", SMALL, small_p, tokens, (12,), full),
        model_case("the same, fed as 5 + 1 + 1 + 3 + 2 tokens", SMALL, small_p, tokens, (5, 1, 1, 3, 2), full),
        model_case(f"{core.weights_label(ref)}, the reference sentence fed as 20 + 1 + 1 + 13 tokens", ref.cfg,
                   ref.params(), acts["tokens"], (20, 1, 1, 13), acts["logits"]),
    ]
    models: dict[int, nn.Module] = {}
    for case in cases:
        if id(case.params) not in models:
            model = build_for_loading(cls, test, case.cfg, ref.device)
            core.load_strict(model, case.params, test, assign=True)
            models[id(case.params)] = model.eval()
        model, cache, outs, held = models[id(case.params)], Cache(case.cfg.n_layers), [], []
        for i, chunk in enumerate(case.inputs):
            fresh = i == 0 and len(case.inputs) == 1  # a prompt at once, with cache=None: the model makes its cache
            logits, returned = _run_model(test, model, chunk, None if fresh else cache, case.label)
            cache = returned if fresh else cache
            kept = getattr(returned, "n_positions", None)
            if fresh and isinstance(kept, int) and kept > chunk.shape[1] and _every_layer_holds(returned, kept):
                core.fail(f"{test} on {case.label}: called with cache=None, the model returned a cache of {kept} "
                          f"positions for a {chunk.shape[1]}-token prompt: it went on from a cache kept from an "
                          f"earlier call.\nLikely cause: {KEPT}")
            held.append((returned is cache, getattr(returned, "n_positions", None)))
            outs.append(logits)
        out = torch.cat(outs, dim=1)  # (batch, posn, d_vocab)
        if out.shape == case.expected.shape and out.device == case.expected.device and (
                not bool(torch.isfinite(out).all()) or core.compare(out, case.expected) is not None):
            # the learner's own submodules first: the first one that differs given the reference's input
            explain_divergence(test, case, out, model, torch.cat(list(case.inputs), dim=1), cached=True)
        core.vet_output(out, case.expected, case.dims, test, "the logits")
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(test, "the logit", case, out, mismatch)
        for i, (same, positions) in enumerate(held):
            fed = sum(c.shape[1] for c in case.inputs[: i + 1])
            if not same or positions != fed:
                cause = ("the cache is ignored: the blocks never wrote to the cache returned. Give block i "
                         "cache.layers[i] of the cache passed in (or of the one new KVCache(self.cfg) made when cache "
                         "is None), and return that cache." if positions == 0 else
                         "return the cache you were given, extended by the blocks (or a new KVCache(cfg) when cache is "
                         "None), and give block i only cache.layers[i].")
                core.fail(f"{test} on {case.label}: after call {i + 1} the returned cache holds {positions} positions, "
                          f"not the {fed} fed so far.\nLikely cause: {cause}")
    _fresh_and_limit(test, models[id(small_p)], small_p, tokens)
    core.passed(test, f"{len(cases)} cases match the full forward's logits within atol {core.ATOL:g}, rtol "
                      f"{core.RTOL:g}: " + "; ".join(c.label for c in cases) + "; a new prompt starts from an empty "
                      f"cache; more than n_ctx = {SMALL.n_ctx} positions raises.")


def _fresh_and_limit(test: str, model: nn.Module, p: dict[str, Tensor], first: Tensor) -> None:
    __tracebackhide__ = True
    ref = core.reference()
    second = core.random_tokens((2, 6), SMALL.d_vocab, 1332, ref.device)  # (2, 6)
    logits, _ = _run_model(test, model, second, None, "a second prompt with cache=None")
    expected = oracle.model(second, p, SMALL)  # (2, 6, d_vocab)
    if logits.shape != expected.shape or core.compare(logits, expected) is not None:
        kept = cached_logits([first, second], p, SMALL)[:, first.shape[1] :]  # the second prompt after the first
        cause = (KEPT if logits.shape == kept.shape
                 and core.matches(logits, kept) else MODEL_FALLBACK)
        core.fail(f"{test}: a second prompt run with cache=None does not give the full forward's logits.\n"
                  f"Likely cause: {cause}")
    cache = Cache(SMALL.n_layers)
    full = core.random_tokens((1, SMALL.n_ctx), SMALL.d_vocab, 1333, ref.device)  # (1, n_ctx)
    _run_model(test, model, full, cache, f"{SMALL.n_ctx} positions: exactly n_ctx")
    try:
        with torch.no_grad():
            out = model(full[:, :1].clone(), cache)
    except NotImplementedError:
        core.not_done(test, "CachedTransformer.forward")
    except (ValueError, IndexError, AssertionError):  # a clear refusal; the course's forward raises ValueError
        return
    except Exception as exc:  # noqa: BLE001
        if "n_ctx" in str(exc):
            return
        core.fail(f"{test}: with n_ctx = {SMALL.n_ctx} positions cached, one more token raised {type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}\nLikely cause: the n_ctx test at the top of forward "
                  "was removed, so the error comes from deep inside; keep it, so the learner reads why (a ValueError "
                  "naming n_ctx).")
    shape = tuple(out[0].shape) if isinstance(out, tuple | list) and isinstance(out[0], Tensor) else None
    core.fail(f"{test}: with n_ctx = {SMALL.n_ctx} positions cached, one more token returned logits of shape {shape} "
              "instead of raising an error.\nLikely cause: the n_ctx test at the top of forward was removed: W_pos has "
              "no row past n_ctx - 1, so the slice comes back short or empty without any error.")


# ---------------------------------------------------------------------------- test_generate_with_cache


class CountingModel(nn.Module):
    """A cached GPT-2 (the check's oracle) that records how many tokens each call fed it."""

    def __init__(self, p: dict[str, Tensor], cfg: Config):
        super().__init__()
        self.p, self.cfg, self.calls, self.first_past, self.uncached = p, cfg, [], 0, 0

    def forward(self, tokens: Tensor, cache: Cache | None = None) -> tuple[Tensor, Cache]:
        self.uncached += cache is None
        cache = Cache(self.cfg.n_layers) if cache is None else cache
        if not self.calls:
            self.first_past = cache.n_positions  # more than 0: a cache brought over from an earlier call
        self.calls.append(tokens.shape[1])
        if tokens.dtype.is_floating_point or int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.d_vocab:
            # checked before any lookup, so that a bad id can never reach a GPU's embedding as a device-side assert
            raise ValueError(f"the model was fed token ids outside 0 .. {self.cfg.d_vocab - 1} (or not integers): "
                             "feed it the sampled ids, sample_next_token's output, unchanged")
        if cache.n_positions + tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"{cache.n_positions} cached + {tokens.shape[1]} new positions is more than n_ctx")
        return cached_logits([tokens], self.p, self.cfg, cache), cache


def naive_generate(p: dict[str, Tensor], cfg: Config, ids: Tensor, n_new: int, variant: str = "", **sampling) -> Tensor:
    """Notebook 09's loop with notebook 12's sampling: the whole sequence through the model at every step.

    variant, a catalogued mistake: "penalty_prompt" (sample_next_token sees only the prompt), "first_position"
    (the first token comes from logits[:, 0] of the prompt), "refed" (the prompt's last token is fed twice).
    """
    from c1p1.parts import sample_next_token

    prompt = ids
    fed = torch.cat([ids, ids[:, -1:]], dim=1) if variant == "refed" else ids  # (batch, posn): what the model saw
    for step in range(n_new):
        logits = oracle.model(fed, p, cfg)[:, 0 if variant == "first_position" and step == 0 else -1]  # (batch, d_vocab)
        new = sample_next_token(prompt if variant == "penalty_prompt" else ids, logits, **sampling)[:, None]  # (batch, 1)
        ids, fed = torch.cat([ids, new], dim=1), torch.cat([fed, new], dim=1)  # (batch, posn + 1)
    return ids


GENERATE_MISTAKES = {
    "penalty_prompt": "sample_next_token sees only the prompt, so the frequency penalty never counts the new tokens: "
                      "pass it the whole sequence so far, input_ids with every sampled column appended.",
    "first_position": "the first new token is sampled from logits[:, 0], the prompt's first position; the last "
                      "position predicts the next token: logits[:, -1].",
    "refed": "the prompt's last token is fed twice: the prefill model(input_ids) already holds it, so the first step "
             "must sample from the prefill's logits[:, -1], and only the sampled tokens are fed after that.",
}


def _generate(test: str, fn: Callable, model: CountingModel, ids: Tensor, n_new: int, label: str, **sampling) -> Tensor:
    __tracebackhide__ = True
    model.calls, model.first_past, model.uncached = [], 0, 0
    try:
        out = fn(model, ids.clone(), n_new, **sampling)
    except Exception as exc:  # noqa: BLE001
        if not isinstance(exc, NotImplementedError):
            _kept(test, model, label)
            if len(model.calls) > 1 and model.calls[1] > 1 and model.uncached < len(model.calls):
                _refed(test, model.calls, label)
        core.learner_raised(test, f"generate_with_cache ({label})", exc)
    _kept(test, model, label)
    want = (ids.shape[0], ids.shape[1] + n_new)
    if not isinstance(out, Tensor):
        core.fail(f"{test}: generate_with_cache returned {core.describe(out)}; it should return the token ids, a "
                  f"tensor of shape {want}.")
    if tuple(out.shape) != want:
        cause = ("return the prompt followed by the new tokens." if out.shape[-1] == n_new else
                 f"the loop should add exactly max_new_tokens = {n_new} tokens to each row.")
        core.fail(f"{test} ({label}): the output has shape {tuple(out.shape)}, not (batch, prompt + new) = {want}.\n"
                  f"Likely cause: {cause}")
    return out


def _kept(test: str, model: CountingModel, label: str) -> None:
    __tracebackhide__ = True
    if model.first_past:
        core.fail(f"{test} ({label}): the first call of this run gave the model a cache that already held "
                  f"{model.first_past} positions from an earlier call: the cache was kept across two prompts.\nLikely "
                  "cause: make the cache inside generate_with_cache (call model(input_ids) with no cache), never a "
                  "global, an attribute of the model or a default argument.")


def _refed(test: str, calls: list[int], label: str) -> None:
    __tracebackhide__ = True
    core.fail(f"{test} ({label}): after the prompt, the calls fed the model {calls[1:6]}... tokens: the whole sequence "
              "again at every step.\nLikely cause: after the first call, feed only the newest token, "
              "model(next_ids.unsqueeze(1), cache); the cache already holds everything before it.")


def _passes(test: str, calls: list[int], prompt: int, n_new: int, label: str) -> None:
    """The rule: max_new_tokens forward passes, the whole prompt in the first, then one new token in each."""
    __tracebackhide__ = True
    want = [prompt] + [1] * (n_new - 1)
    if calls == want:
        return
    head = (f"{test} ({label}): the model ran {len(calls)} forward passes, fed {calls[:4]}"
            f"{'...' if len(calls) > 4 else ''} tokens; the rule is max_new_tokens = {n_new} passes: the {prompt}-token "
            "prompt in one, then each new token but the last in one of its own.")
    if calls[:1] == [prompt] and calls[1:] == [1] * n_new:
        cause = ("the last sampled token was fed to the model too. It is returned, never fed: its logits are never "
                 "used, and with prompt + max_new_tokens = n_ctx that pass would need position n_ctx, which W_pos "
                 "does not have. Skip the forward pass after the last sample.")
    elif calls and calls[0] < prompt and sum(calls[: prompt]) >= prompt:
        cause = ("the prompt was fed in pieces (one token per call). Prefill it in one forward pass, "
                 "logits, cache = model(input_ids): the cache takes the whole prompt at once, far faster.")
    else:
        cause = ("prefill with logits, cache = model(input_ids), then loop: sample, append, and (except after the "
                 "last sample) logits, cache = model(next_ids.unsqueeze(1), cache).")
    core.fail(head + "\nLikely cause: " + cause)


def test_generate_with_cache(generate_with_cache) -> None:
    """Check generate_with_cache against notebook 12's loop without a cache: greedy, sampled, and a second prompt;
    max_new_tokens forward passes (the prompt at once, then each new token but the last)."""
    __tracebackhide__ = True
    test = "test_generate_with_cache"
    fn = core.expect_function(generate_with_cache, "generate_with_cache", test)
    ref, cfg = core.reference(), SMALL
    p = core.random_params(model_shapes(cfg), seed=1340, device=ref.device)
    model = CountingModel(p, cfg)
    runs = [
        ("50 greedy steps, batch 2", core.random_tokens((2, 8), cfg.d_vocab, 1341, ref.device), 50,
         dict(temperature=0.0)),
        ("12 sampled steps, temperature 0.9, top_k 20, freq_penalty 0.5, seeded", core.random_tokens(
            (2, 5), cfg.d_vocab, 1342, ref.device), 12, dict(temperature=0.9, top_k=20, freq_penalty=0.5)),
        ("a second prompt, 8 greedy steps", core.random_tokens((1, 6), cfg.d_vocab, 1343, ref.device), 8,
         dict(temperature=0.0)),
    ]
    for label, ids, n_new, sampling in runs:
        seeded = "top_k" in sampling
        out = _generate(test, fn, model, ids, n_new, label, **sampling,
                        **({"generator": torch.Generator().manual_seed(0)} if seeded else {}))
        want = naive_generate(p, cfg, ids, n_new, **sampling,
                              **({"generator": torch.Generator().manual_seed(0)} if seeded else {}))
        fed = sum(model.calls)
        if fed > ids.shape[1] + n_new:
            if len(model.calls) > 1 and model.calls[1] > 1 and model.uncached < len(model.calls):
                _refed(test, model.calls, label)
            core.fail(f"{test} ({label}): the model was fed {fed} positions for a {ids.shape[1]}-token prompt and "
                      f"{n_new} new tokens; with the cache it needs {ids.shape[1] + n_new - 1}.\nLikely cause: each step "
                      "runs the whole sequence without the cache. Prefill once, then feed one token per step with the cache.")
        if not torch.equal(out.to(core.PREFLIGHT), want.to(core.PREFLIGHT)):
            first = int((out.to(core.PREFLIGHT) != want.to(core.PREFLIGHT)).any(0).nonzero()[0])
            cause = ("sample from logits[:, -1] (the last position), append the sampled column, and pass the whole "
                     "sequence so far as input_ids to sample_next_token with **sampling.")
            for variant, advice in GENERATE_MISTAKES.items():
                if variant == "refed" and ids.shape[1] + n_new + 1 > cfg.n_ctx:
                    continue
                wrong = naive_generate(p, cfg, ids, n_new, variant, **sampling,
                                       **({"generator": torch.Generator().manual_seed(0)} if seeded else {}))
                if torch.equal(out.to(core.PREFLIGHT), wrong.to(core.PREFLIGHT)):
                    cause = advice
                    break
            core.fail(f"{test} ({label}): the tokens differ from notebook 12's generate without a cache, first at "
                      f"position {first} (the prompt has {ids.shape[1]}).\nLikely cause: {cause}")
        _passes(test, model.calls, ids.shape[1], n_new, label)
    too_long = core.random_tokens((1, 10), cfg.d_vocab, 1344, ref.device)  # (1, 10)
    model.calls = []
    try:
        fn(model, too_long, cfg.n_ctx, temperature=0.0)
    except NotImplementedError:
        core.not_done(test, "generate_with_cache")
    except Exception:  # noqa: BLE001, S110 - a clear refusal is what is wanted
        pass
    else:
        core.fail(f"{test}: 10 + {cfg.n_ctx} positions with n_ctx = {cfg.n_ctx} returned instead of raising.\nLikely "
                  "cause: the n_ctx test at the top was removed; a cache cannot be cropped, so refuse the request.")
    core.passed(test, "the same tokens as notebook 12's generate without a cache, in max_new_tokens forward passes "
                      "(the prompt at once, then each new token but the last): "
                      + "; ".join(r[0] for r in runs) + f"; a request past n_ctx = {cfg.n_ctx} raises.")
