"""Notebook 13, the KV cache: test_kv_cache, test_cached_attention and test_cached_pos_embed.

The checks carry their own cache (`Entry`, `Cache`: the interface of the course's ``LayerCache`` and
``KVCache``) and their own cached computation (`attend`, `cached_logits`), with keyword flags for the
known mistakes, in the style of `c1p1.checks.oracle`. Every incremental result is compared with the
full forward pass at the same positions. The model and generation checks are in `c1p1.checks.cached_model`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake, build_for_loading
from c1p1.config import Config

SMALL = core.SMALL  # d_model 96, 4 heads of 24, 3 layers, n_ctx 64, d_vocab 503
OUT_DIMS = ("batch", "posn", "d_model")
LOGIT_DIMS = ("batch", "posn", "d_vocab")

# ------------------------------------------------------------------------------------------ the oracle


class Entry:
    """The check's own layer cache: k and v of shape (batch, posn, n_heads, d_head), like LayerCache."""

    def __init__(self, copies: int = 1):
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.copies = copies  # 2 stores every chunk twice (a mistake)

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[1]

    def append(self, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor]:
        for _ in range(self.copies):
            self.k = k_new if self.k is None else torch.cat([self.k, k_new], dim=1)  # (batch, posn, n_heads, d_head)
            self.v = v_new if self.v is None else torch.cat([self.v, v_new], dim=1)  # (batch, posn, n_heads, d_head)
        return self.k, self.v


class Cache:
    """The check's own KVCache: .layers (one Entry per layer, or one shared by all) and .n_positions."""

    def __init__(self, n_layers: int, shared: bool = False, copies: int = 1):
        self.layers = [Entry(copies)] * n_layers if shared else [Entry(copies) for _ in range(n_layers)]

    @property
    def n_positions(self) -> int:
        return len(self.layers[0])


def project(x: Tensor, p: dict[str, Tensor], name: str) -> Tensor:
    return torch.einsum("bsm,hmd->bshd", x, p[f"W_{name}"]) + p[f"b_{name}"]  # (batch, new, n_heads, d_head)


def attend(x: Tensor, p: dict[str, Tensor], entry: Entry, *, mask: str = "offset", unread: bool = False,
           old_only: str = "", scale: bool = True) -> Tensor:
    """x: the new positions (batch, new, d_model) -> (batch, new, d_model), appending their k, v to entry.

    mask: "offset" (correct: new query i sees keys 0 .. past + i), "unshifted" (notebook 04's square mask
    on the rectangle), "none", "own_hidden" (diagonal=past: each query's own key hidden too), "one_ahead"
    (diagonal=past + 2: the key just after each query shows). unread=True attends over the new keys only
    (the cache is never read). old_only="empty" attends over the keys cached before this call only (none for
    the prompt), "prompt_new" likewise but over the new keys when the cache was empty. scale=False: no 1/sqrt(d_head).
    """
    past = len(entry)
    q, k_new, v_new = (project(x, p, n) for n in "QKV")  # each (batch, new, n_heads, d_head)
    k, v = entry.append(k_new, v_new)  # each (batch, posn, n_heads, d_head)
    if unread:
        k, v, past = k_new, v_new, 0
    if old_only and (past > 0 or old_only == "empty"):  # the keys before this call only; nothing to mask
        k, v, mask = k[:, :past], v[:, :past], "none"
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / (math.sqrt(q.shape[-1]) if scale else 1.0)  # (batch, n_heads, new, posn)
    new, total = scores.shape[-2:]
    ones = torch.ones(new, total, dtype=torch.bool, device=x.device)  # (new, posn)
    diagonal = {"offset": past + 1, "unshifted": 1, "own_hidden": past, "one_ahead": past + 2}
    if mask != "none":
        scores = scores.masked_fill(ones.triu(diagonal[mask]), float("-inf"))
    z = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)  # (batch, new, n_heads, d_head)
    return torch.einsum("bqhd,hdm->bqm", z, p["W_O"]) + p["b_O"]  # (batch, new, d_model)


def cached_logits(chunks: Sequence[Tensor], p: dict[str, Tensor], cfg: Config, cache: Cache | None = None, *,
                  offset: bool = True, ln_final: bool = True, fresh: bool = False, shift: int = 0,
                  **attn_mistake) -> Tensor:
    """GPT-2 fed chunk after chunk through one cache: the logits of every chunk, (batch, posn, d_vocab).

    Mistakes: offset=False (positions from 0 in every call), ln_final=False (the unembedding reads the raw
    residual), fresh=True (every call starts from an empty cache: the cache is ignored), shift=1 (positions start at
    offset + 1), and the flags of `attend`.
    """
    if fresh:
        return torch.cat([cached_logits([c], p, cfg, offset=offset, ln_final=ln_final, **attn_mistake)
                          for c in chunks], dim=1)  # (batch, posn, d_vocab)
    cache = Cache(cfg.n_layers, **{k: attn_mistake.pop(k) for k in ("shared", "copies") if k in attn_mistake}) \
        if cache is None else cache
    eps, sub, out = cfg.layer_norm_eps, oracle.sub, []
    for tokens in chunks:
        start = (cache.n_positions if offset else 0) + shift
        resid = oracle.embed(tokens, sub(p, "embed")) + oracle.pos_embed(tokens, sub(p, "pos_embed"), offset=start)
        for i in range(cfg.n_layers):
            b = sub(p, f"blocks.{i}")
            resid = resid + attend(oracle.layer_norm(resid, sub(b, "ln1"), eps), sub(b, "attn"), cache.layers[i],
                                   **attn_mistake)  # (batch, new, d_model)
            resid = resid + oracle.mlp(oracle.layer_norm(resid, sub(b, "ln2"), eps), sub(b, "mlp"))
        final = oracle.layer_norm(resid, sub(p, "ln_final"), eps) if ln_final else resid  # (batch, new, d_model)
        out.append(oracle.unembed(final, sub(p, "unembed")))
    return torch.cat(out, dim=1)  # (batch, posn, d_vocab)


def chunked(x: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [x[:, s : s + n] for s, n in zip(starts, sizes, strict=True)]


def sizes_text(sizes: Sequence[int]) -> str:
    return " + ".join(str(n) for n in sizes)


# --------------------------------------------------------------------------------------- test_kv_cache


def test_kv_cache(KVCache) -> None:
    """Check a KVCache class: one LayerCache per layer, each appending along the position dimension."""
    __tracebackhide__ = True
    test, cfg = "test_kv_cache", SMALL
    if not isinstance(KVCache, type):
        core.fail(f"{test}: you passed {core.describe(KVCache)}, but the check wants the class KVCache.\n"
                  f"Call it as tests.{test}(KVCache).")
    try:
        cache = KVCache(cfg)
    except Exception as exc:  # noqa: BLE001
        core.learner_raised(test, "KVCache.__init__", exc)
    layers = getattr(cache, "layers", None)
    if not isinstance(layers, list | tuple | nn.ModuleList) or len(layers) != cfg.n_layers:
        core.fail(f"{test}: KVCache(cfg) should have a list cache.layers of cfg.n_layers = {cfg.n_layers} LayerCache "
                  f"objects; it has {type(layers).__name__ if layers is not None else 'no attribute layers'}"
                  f"{f' of length {len(layers)}' if isinstance(layers, list | tuple) else ''}.\n"
                  "Likely cause: build self.layers = [LayerCache() for _ in range(cfg.n_layers)], with cfg.n_layers "
                  "rather than a fixed number.")
    if len({id(layer) for layer in layers}) < len(layers):
        core.fail(f"{test}: cache.layers[0] and cache.layers[1] are the same LayerCache object: one cache shared by "
                  "all layers, so every layer would write its keys into it.\nLikely cause: [LayerCache()] * n "
                  "repeats one object n times. Make a new one per layer: [LayerCache() for _ in range(cfg.n_layers)].")
    device = core.reference().device
    b, h, d = 2, cfg.n_heads, cfg.d_head
    sizes, total = (4, 1, 2), 0
    held: list[list[Tensor]] = [[] for _ in layers]  # per layer, the keys appended so far
    for step, new in enumerate(sizes):
        for i, layer in enumerate(layers):
            k_new = core.random_input((b, new, h, d), seed=1300 + 10 * step + i, device=device)  # (b, new, h, d)
            v_new = core.random_input((b, new, h, d), seed=1350 + 10 * step + i, device=device)  # (b, new, h, d)
            try:
                returned = layer.append(k_new.clone(), v_new.clone())
            except Exception as exc:  # noqa: BLE001
                hint = ("Likely cause: the keys are joined along the wrong dimension. Positions are dimension 1 of "
                        "(batch, posn, n_heads, d_head): torch.cat([self.k, k_new], dim=1).") if "must match" in str(exc) else ""
                core.learner_raised(test, "LayerCache.append", exc, hint)
            held[i].append((k_new, v_new))
            _check_layer(test, layer, returned, held[i], i, step, sizes)
        total += new
        for i, layer in enumerate(layers):
            if len(layer) != total:
                core.fail(f"{test}: after appending {sizes_text(sizes[: step + 1])} positions to every layer, "
                          f"len(cache.layers[{i}]) is {len(layer)}, not {total}.\nLikely cause: the layers share "
                          "their storage (a class attribute, or one list reused), so each append lands in every layer.")
    if cache.n_positions != total:
        core.fail(f"{test}: cache.n_positions is {cache.n_positions} after {total} positions were appended.")
    core.passed(test, f"{cfg.n_layers} separate layer caches; appending {sizes_text(sizes)} positions (batch {b}) "
                      "gives every layer the right keys and values, in order.")


def _check_layer(test: str, layer, returned, pieces: list, i: int, step: int, sizes: Sequence[int]) -> None:
    __tracebackhide__ = True
    k_all = torch.cat([k for k, _ in pieces], dim=1)  # (batch, posn, n_heads, d_head)
    v_all = torch.cat([v for _, v in pieces], dim=1)  # (batch, posn, n_heads, d_head)
    where = f"after appending {sizes_text(sizes[: step + 1])} positions to layer {i}"
    dims = ("batch", "posn", "n_heads", "d_head")
    if not (isinstance(returned, tuple | list) and len(returned) == 2 and all(isinstance(t, Tensor) for t in returned)):
        core.fail(f"{test}: LayerCache.append returned {core.describe(returned)}; it should return a tuple (k, v) of "
                  "all the keys and values cached so far.\nLikely cause: a missing `return self.k, self.v`.")
    for name, got, want, stored in (("k", returned[0], k_all, layer.k), ("v", returned[1], v_all, layer.v)):
        if not isinstance(stored, Tensor) or stored.shape != want.shape:
            shape = tuple(stored.shape) if isinstance(stored, Tensor) else None
            cause = _shape_cause(shape, want.shape)
            core.fail(f"{test}: {where}, layer.{name} has shape {core.named_shape(shape or (), dims)}; it should be "
                      f"{core.named_shape(want.shape, dims)}.\nLikely cause: {cause}")
        if got.shape != want.shape:
            core.fail(f"{test}: {where}, append returned {name} of shape {core.named_shape(got.shape, dims)}, not "
                      f"{core.named_shape(want.shape, dims)}.\nLikely cause: append should return all the keys and "
                      "values cached so far (self.k, self.v), not only the new ones.")
        for tensor, what in ((stored, f"layer.{name}"), (got, f"the {name} append returned")):
            if torch.allclose(tensor, want):
                continue
            other = v_all if name == "k" else k_all
            newest_first = torch.cat([p[0 if name == "k" else 1] for p in reversed(pieces)], dim=1)
            if torch.allclose(tensor, other):
                cause = "keys and values are swapped: store k_new in self.k and v_new in self.v."
            elif torch.allclose(tensor, newest_first):
                cause = "the new positions are put before the cached ones: torch.cat([self.k, k_new], dim=1), old first."
            else:
                cause = "append should put the new positions after the cached ones along dimension 1 and keep them."
            core.fail(f"{test}: {where}, {what} does not hold the keys and values appended, in order.\n"
                      f"Likely cause: {cause}")


def _shape_cause(shape: tuple | None, want: tuple) -> str:
    if shape is None:
        return "nothing was stored: the first append should keep k_new and v_new (self.k, self.v = k_new, v_new)."
    if len(shape) == 4 and shape[1] == 2 * want[1] and shape[0] == want[0]:
        return "each chunk is stored twice (appended twice): store it once, then return self.k, self.v."
    if len(shape) == 4 and shape[1] != want[1]:
        return "the chunks are concatenated along the wrong dimension: positions are dimension 1, torch.cat(..., dim=1)."
    return "keep the layout (batch, posn, n_heads, d_head) and concatenate along dimension 1."


# -------------------------------------------------------------------------------- test_cached_attention

ATTENTION_FALLBACK = (
    "1) read past = len(cache) before appending, and score the new queries against every key the cache returns; "
    "2) mask key j for new query i when j > past + i (torch.triu(ones(new, past + new), diagonal=past + 1)); "
    "3) the rest is notebook 05's attention: scale by sqrt(d_head), softmax over keys, mix the values, project with W_O."
)


def attention_mistakes(x: Tensor, p: dict[str, Tensor], sizes: Sequence[int]) -> Callable[[], list[Mistake]]:
    def run(**flags) -> Tensor:
        entry = Entry(flags.pop("copies", 1))
        return torch.cat([attend(c, p, entry, **flags) for c in chunked(x, sizes)], dim=1)  # (batch, posn, d_model)

    return lambda: [
        Mistake("the new query is masked from the cached keys: notebook 04's mask assumes query i sits at position i, "
                "but new query i sits at past + i. Use torch.triu(ones(new, past + new), diagonal=past + 1).",
                lambda: run(mask="unshifted")),
        Mistake("the mask hides nothing, so each new position of the prompt sees the ones after it: either there is "
                "no causal mask, or past was read after cache.append (len(cache) then already counts the new "
                "positions). Read past = len(cache) before appending and mask key j for new query i when j > past + i.",
                lambda: run(mask="none")),
        Mistake("the mask is off by one: each new query also sees the key just after it. Mask key j for new query i "
                "when j > past + i: torch.triu(ones(new, past + new), diagonal=past + 1), not past + 2.",
                lambda: run(mask="one_ahead")),
        Mistake("the cache is never read: the new queries score only the new keys. Score them against all the keys "
                "cache.append returns.", lambda: run(unread=True)),
        Mistake("the keys and values are appended twice, so the cached positions count double in the softmax. "
                "Call cache.append once per forward.", lambda: run(copies=2)),
        *[Mistake("the new queries attend to the old cache only: the new positions' own keys and values are missing. "
                  "Score them against everything cache.append(k_new, v_new) returns, old keys and new.",
                  lambda how=how: run(old_only=how)) for how in ("prompt_new", "empty")],
        Mistake("the scores are not divided by sqrt(d_head): scores = q @ k / math.sqrt(d_head), as in notebook 05.",
                lambda: run(scale=False)),
    ]


def attention_cases() -> list[tuple[Case, Sequence[int], Tensor, Tensor]]:
    """(case, chunk sizes, true keys, true values): GPT-2's layer 0 on the sentence, random weights in 4 heads."""
    ref = core.reference()
    acts = ref.activations("sentence")
    p = ref.params_for("blocks.0.attn")
    x = acts["blocks.0.ln1.hook_out"].clone()  # (1, 35, 768)
    sizes = (20, 1, 1, 13)
    gpt2 = Case(f"GPT-2's layer-0 attention with {core.weights_label(ref)}, the reference sentence fed as "
                f"{sizes_text(sizes)} positions", ref.cfg, p, (x,), acts["blocks.0.hook_attn_out"], OUT_DIMS,
                attention_mistakes(x, p, sizes), ATTENTION_FALLBACK)
    cfg, m, h, d = SMALL, SMALL.d_model, SMALL.n_heads, SMALL.d_head
    shapes = {**{f"W_{n}": (h, m, d) for n in "QKV"}, **{f"b_{n}": (h, d) for n in "QKV"}, "W_O": (h, d, m), "b_O": (m,)}
    ps = core.random_params(shapes, seed=1310, device=ref.device)
    xs = core.random_input((2, 10, m), seed=1311, device=ref.device)  # (2, 10, d_model)
    small_sizes = (5, 1, 3, 1)
    rand = Case(f"random weights (4 heads of 24), a batch of 2 fed as {sizes_text(small_sizes)} positions", cfg, ps,
                (xs,), oracle.attention(xs, ps), OUT_DIMS, attention_mistakes(xs, ps, small_sizes), ATTENTION_FALLBACK)
    return [(gpt2, sizes, acts["blocks.0.attn.hook_k"], acts["blocks.0.attn.hook_v"]),
            (rand, small_sizes, project(xs, ps, "K"), project(xs, ps, "V"))]


def test_cached_attention(CachedAttention) -> None:
    """Check CachedAttention: fed in chunks through one cache, it matches attention over the whole sequence."""
    __tracebackhide__ = True
    test = "test_cached_attention"
    cls = core.expect_module_class(CachedAttention, "CachedAttention", test)
    cases = attention_cases()
    for case, sizes, k_true, v_true in cases:
        module = build_for_loading(cls, test, case.cfg, case.expected.device)
        core.load_strict(module, case.params, test)
        module.eval()
        (x,) = case.inputs
        entry, outs = Entry(), []
        for chunk in chunked(x, sizes):
            out = core.call(module, (chunk, entry), test, "CachedAttention.forward")
            if out.shape != (chunk.shape[0], chunk.shape[1], case.cfg.d_model):
                core.fail(f"{test} on {case.label}: for {chunk.shape[1]} new positions the output has shape "
                          f"{core.named_shape(out.shape, OUT_DIMS)}, not {core.named_shape(chunk.shape, OUT_DIMS)}.\n"
                          "Likely cause: return one row per new position (the queries are the new positions only).")
            outs.append(out)
        _check_entry(test, case, entry, x, k_true, v_true)
        out = torch.cat(outs, dim=1)  # (batch, posn, d_model)
        _own_key_hidden(test, case, out, sizes)
        core.vet_output(out, case.expected, case.dims, test, "the output")
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(test, "the output", case, out, mismatch)
    core.passed(test, f"{len(cases)} cases match the whole-sequence attention within atol {core.ATOL:g}, rtol "
                      f"{core.RTOL:g}, and the cache holds the true keys and values: "
                      + "; ".join(c.label for c, *_ in cases) + ".")


def _own_key_hidden(test: str, case: Case, out: Tensor, sizes: Sequence[int]) -> None:
    """NaN where the mask also hides each query's own key (diagonal=past): the prompt's first row is all -inf."""
    __tracebackhide__ = True
    if bool(torch.isfinite(out).all()):
        return
    (x,) = case.inputs
    entry = Entry()
    own = torch.cat([attend(c, case.params, entry, mask="own_hidden") for c in chunked(x, sizes)], dim=1)
    same_nan = torch.equal(torch.isfinite(own), torch.isfinite(out))  # (batch, posn, d_model)
    if same_nan and core.matches(torch.nan_to_num(out), torch.nan_to_num(own)):
        row = int((~torch.isfinite(out)).nonzero()[0][1])
        core.fail(f"{test} on {case.label}: the output is NaN at position {row}, the first of the prompt.\n"
                  "Likely cause: the mask is off by one and hides each query's own key too (diagonal=past instead of "
                  "past + 1), so the prompt's first query sees no key and its softmax runs over a row of -inf. "
                  "Mask key j for new query i only when j > past + i.")


def _check_entry(test: str, case: Case, entry: Entry, x: Tensor, k_true: Tensor, v_true: Tensor) -> None:
    __tracebackhide__ = True
    stored, posn = entry.k, x.shape[1]
    tensors = [t for t in vars(entry).values() if isinstance(t, Tensor)]
    if stored is None or stored.dim() == 3 or any(t.shape == x.shape for t in tensors):
        if any(t.shape == x.shape and torch.allclose(t, x) for t in tensors):
            core.fail(f"{test} on {case.label}: the cache holds the normalised residual (the attention's input, "
                      f"{x.shape[-1]} wide), not keys and values.\nLikely cause: append k and v, each (batch, new, "
                      "n_heads, d_head), so that earlier positions' keys and values are never computed again.")
        core.fail(f"{test} on {case.label}: after {posn} positions the cache holds no keys.\nLikely cause: store the "
                  "new keys and values with `k, v = cache.append(k_new, v_new)` (cache is this layer's LayerCache).")
    if len(entry) == 2 * posn:
        core.fail(f"{test} on {case.label}: after {posn} positions the cache holds {len(entry)}: the keys and values "
                  "are appended twice.\nLikely cause: cache.append is called twice per forward (or once more after a "
                  "torch.cat of your own); call it once and use what it returns.")
    if isinstance(stored, Tensor) and stored.dim() == 4 and stored.shape[:2] == x.shape[:2] \
            and stored[0, 0].numel() == x.shape[-1] and torch.allclose(stored.flatten(2), x):
        core.fail(f"{test} on {case.label}: the cache holds the normalised residual (the attention's input) split "
                  "into heads, not keys and values.\nLikely cause: you cached the residual, not the keys/values: "
                  "append k_new and v_new (x projected with W_K, W_V plus their biases), each (batch, new, n_heads, "
                  "d_head), so that earlier positions' keys and values are never computed again.")
    for name, got, want in (("keys", entry.k, k_true), ("values", entry.v, v_true)):
        if got is None or got.shape != want.shape or not torch.allclose(got, want, atol=core.ATOL, rtol=core.RTOL):
            shape = tuple(got.shape) if isinstance(got, Tensor) else None
            core.fail(f"{test} on {case.label}: the cached {name} (shape {shape}) are not the layer's {name} of shape "
                      f"{tuple(want.shape)} (batch, posn, n_heads, d_head).\nLikely cause: append the {name} of the new "
                      "positions once per call, in the layout (batch, new, n_heads, d_head) (transpose if your heads "
                      "come before the positions).")


# ------------------------------------------------------------------------------- test_cached_pos_embed


def pos_embed_cases() -> list[Case]:
    ref = core.reference()
    p = ref.params_for("pos_embed")
    out = []
    label = core.weights_label(ref)
    for shape, offset, seed in (((1, 1), 20, 1320), ((2, 5), 7, 1321), ((1, 35), 0, 1322), ((1, 3), 1021, 1323)):
        tokens = core.random_tokens(shape, ref.cfg.d_vocab, seed, ref.device)  # shape
        new = f"{shape[1]} new token{'s' if shape[1] > 1 else ''}"
        out.append(_pos_case(f"{label}, {new} (batch {shape[0]}) after {offset} cached", ref.cfg, p,
                             tokens, offset))
    ps = core.random_params({"W_pos": (SMALL.n_ctx, SMALL.d_model)}, seed=1324, device=ref.device)
    tokens = core.random_tokens((2, 4), SMALL.d_vocab, 1325, ref.device)  # (2, 4)
    out.append(_pos_case("random W_pos (n_ctx=64, d_model=96), 4 new tokens after 60 cached", SMALL, ps, tokens, 60))
    return out


def _pos_case(label: str, cfg: Config, p: dict[str, Tensor], tokens: Tensor, offset: int) -> Case:
    def mistakes() -> list[Mistake]:
        wrong = [Mistake("the positions are not offset: the new tokens get rows 0 .. new - 1 of W_pos, as if they "
                         "started the text. Take rows offset .. offset + new - 1.",
                         lambda: oracle.pos_embed(tokens, p))]
        for shift in (-1, 1):
            if offset + shift >= 0:
                wrong.append(Mistake(f"the rows start at offset {'+' if shift > 0 else '-'} 1: the first new token sits "
                                     "at position offset exactly (positions count from 0).",
                                     lambda s=shift: oracle.pos_embed(tokens, p, offset=offset + s)))
        return wrong

    return Case(label, cfg, p, (tokens, offset), oracle.pos_embed(tokens, p, offset=offset), OUT_DIMS, mistakes,
                "return self.W_pos[offset : offset + new] repeated over the batch.")


def test_cached_pos_embed(CachedPosEmbed) -> None:
    """Check CachedPosEmbed: rows offset .. offset + new - 1 of W_pos, for GPT-2's W_pos and a random one."""
    __tracebackhide__ = True
    test = "test_cached_pos_embed"
    cls = core.expect_module_class(CachedPosEmbed, "CachedPosEmbed", test)
    hints = ((lambda got, want: len(got) == 3 and got[1] < want[1],
              "fewer rows than new tokens: the slice runs past the end of W_pos or stops early; take "
              "W_pos[offset : offset + new]."),)
    cases = pos_embed_cases()
    core.run_cases(test, cls, cases, "the output", hints)
    core.passed(test, core.summary(cases))
