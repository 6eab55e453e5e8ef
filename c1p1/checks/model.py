"""test_unembed (notebook 08), test_demo_transformer and test_get_log_probs (notebook 09)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake
from c1p1.config import Config

LOGIT_DIMS = ("batch", "posn", "d_vocab")
LOG_PROB_DIMS = ("batch", "posn")

# ------------------------------------------------------------------------------------- building fast

_aten = torch.ops.aten
_RANDOM_FILLS = (_aten.normal_, _aten.uniform_)
_RANDOM_FACTORIES = (_aten.randn, _aten.rand)


class _SkipRandomInit(TorchDispatchMode):
    """While building a module whose every parameter is loaded next, skip drawing random initial values.

    GPT-2 small has 163M parameter values; drawing them takes seconds and the check overwrites all of
    them with load_strict straight away. Every other operation (zeros, ones, a causal-mask buffer)
    runs as written.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in _RANDOM_FILLS:
            return args[0]
        if packet in _RANDOM_FACTORIES and args:
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            return torch.empty(args[0], dtype=dtype, device=kwargs.get("device"))
        return func(*args, **kwargs)


def build_for_loading(cls: type[nn.Module], test: str, cfg: Config, device: torch.device) -> nn.Module:
    """The learner's module, built without random initial values (they are all overwritten) and moved to device."""
    __tracebackhide__ = True
    with _SkipRandomInit():
        module = core.build(cls, test, cfg)
    try:
        return module.to(device)
    except Exception as exc:  # noqa: BLE001
        core.learner_raised(test, f"moving {cls.__name__} to {device}", exc)


def small_hint(cfg: Config) -> str:
    if cfg == Config():
        return ""
    return (
        f"This case builds your class with a smaller Config ({cfg}). "
        "Use the cfg fields (cfg.d_model, cfg.n_layers, ...) instead of GPT-2 small's numbers."
    )


def run_module_cases(
    test: str,
    cls: type[nn.Module],
    cases: Sequence[Case],
    what: str,
    values: str,
    shape_hints=(),
    before_load: Callable[[nn.Module, Case], None] | None = None,
    load_hint: str = "",
) -> None:
    """Like core.run_cases, but cases that share a Config and a parameter dict share one built module."""
    __tracebackhide__ = True
    built: dict[tuple[int, str], nn.Module] = {}
    for case in cases:
        key = (id(case.params), repr(case.cfg))
        if key not in built:
            module = build_for_loading(cls, test, case.cfg, case.expected.device)
            if before_load is not None:
                before_load(module, case)
            if case.params is not None:
                core.load_strict(module, case.params, test, load_hint, assign=True)  # no copy: it is thrown away
            module.eval()
            built[key] = module
        out = core.call(built[key], case.inputs, test, f"{cls.__name__}.forward", small_hint(case.cfg))
        core.vet_output(out, case.expected, case.dims, test, what, shape_hints)
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(test, values, case, out, mismatch)


# ------------------------------------------------------------------------------------------ Unembed

UNEMBED_FALLBACK = (
    "1) the logits are normalized_resid_final @ W_U + b_U, with W_U of shape (d_model, d_vocab); "
    "2) return the raw logits: no softmax, no LayerNorm (the input is already ln_final's output); "
    "3) add b_U once, after the matrix product."
)

UNEMBED_SHAPE_HINTS = (
    (
        lambda got, want: len(got) == 3 and got[:2] == want[:2] and got[-1] != want[-1],
        "the last dimension should be d_vocab, one logit per token in the vocabulary: multiply by W_U "
        "(d_model -> d_vocab).",
    ),
)


def unembed_mistakes(x: Tensor, p: dict[str, Tensor], eps: float):
    """What each plausible unembedding mistake gives on this input."""
    ones = torch.ones(x.shape[-1], device=x.device)  # (d_model,)
    plain_ln = {"w": ones, "b": torch.zeros_like(ones)}
    return lambda: [
        Mistake(
            "b_U is never added: the logits are normalized_resid_final @ W_U + b_U. (GPT-2's own b_U is all "
            "zeros, so only the case with random parameters can show this.)",
            lambda: oracle.unembed(x, p, no_bias=True),
        ),
        Mistake(
            "you returned log probabilities (a log_softmax of the logits). The unembedding returns the raw "
            "logits; the softmax comes later, in the loss.",
            lambda: oracle.unembed(x, p).log_softmax(-1),
        ),
        Mistake(
            "you returned probabilities (a softmax of the logits). The unembedding returns the raw logits.",
            lambda: oracle.unembed(x, p).softmax(-1),
        ),
        Mistake(
            "the input is normalised again. It is already ln_final's output: multiply it by W_U and add b_U, "
            "with no LayerNorm inside Unembed.",
            lambda: oracle.unembed(oracle.layer_norm(x, plain_ln, eps), p),
        ),
    ]


def unembed_cases() -> list[Case]:
    ref = core.reference()
    cfg = ref.cfg
    eps = cfg.layer_norm_eps
    label = core.weights_label(ref)
    p = ref.params_for("unembed")
    out = []
    for which, text in core.REFERENCE_RUNS:
        acts = ref.activations(which)
        x = acts["ln_final.hook_out"].clone()  # (batch, posn, d_model): an in-place edit spares the cache
        out.append(Case(f"{text}, unembed with {label}", cfg, p, (x,), acts["unembed.hook_out"], LOGIT_DIMS,
                        unembed_mistakes(x, p, eps), UNEMBED_FALLBACK))
    small = core.SMALL
    ps = core.random_params({"W_U": (small.d_model, small.d_vocab), "b_U": (small.d_vocab,)}, seed=801,
                            device=ref.device)
    xs = core.random_input((2, 7, small.d_model), seed=802, device=ref.device)  # (2, 7, d_model)
    out.append(Case("random W_U, b_U and input (d_model=96, d_vocab=503)", small, ps, (xs,), oracle.unembed(xs, ps),
                    LOGIT_DIMS, unembed_mistakes(xs, ps, eps), UNEMBED_FALLBACK))
    return out


def test_unembed(Unembed) -> None:
    """Check an Unembed class against GPT-2's unembedding, and against random W_U and b_U."""
    __tracebackhide__ = True
    test = "test_unembed"
    cls = core.expect_module_class(Unembed, "Unembed", test)
    cases = unembed_cases()
    run_module_cases(test, cls, cases, "the output", "the logit", UNEMBED_SHAPE_HINTS)
    core.passed(test, core.summary(cases))


# --------------------------------------------------------------------------------- DemoTransformer

MODEL_FALLBACK = (
    "1) the residual stream starts as embed(tokens) + pos_embed(tokens); "
    "2) every block in self.blocks runs once, in order: residual = block(residual); "
    "3) the logits are unembed(ln_final(residual)); "
    "4) if you wrote the submodules yourself, check each one with its own test first."
)

MODEL_SHAPE_HINTS = (
    (
        lambda got, want: len(got) == 3 and got[:2] == want[:2] and got[-1] != want[-1],
        "the last dimension should be d_vocab: you returned the residual stream. Finish with "
        "self.unembed(self.ln_final(residual)).",
    ),
)

MODEL_LOAD_HINT = (
    "DemoTransformer's submodules must be called embed, pos_embed, blocks (an nn.ModuleList), ln_final and "
    "unembed, so that its parameters get GPT-2's names (blocks.0.attn.W_Q, ...)."
)

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def model_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter of GPT-2 under TransformerLens names, for a given Config."""
    m, h, d, v = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_vocab
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (v, m), "pos_embed.W_pos": (cfg.n_ctx, m)}
    for i in range(cfg.n_layers):
        b = f"blocks.{i}"
        shapes.update({f"{b}.ln{k}.{leaf}": (m,) for k in (1, 2) for leaf in ("w", "b")})
        shapes.update({f"{b}.attn.W_{n}": (h, m, d) for n in "QKV"})
        shapes.update({f"{b}.attn.b_{n}": (h, d) for n in "QKV"})
        shapes.update({f"{b}.attn.W_O": (h, d, m), f"{b}.attn.b_O": (m,)})
        shapes.update({f"{b}.mlp.W_in": (m, cfg.d_mlp), f"{b}.mlp.b_in": (cfg.d_mlp,)})
        shapes.update({f"{b}.mlp.W_out": (cfg.d_mlp, m), f"{b}.mlp.b_out": (m,)})
    shapes.update({"ln_final.w": (m,), "ln_final.b": (m,), "unembed.W_U": (m, v), "unembed.b_U": (v,)})
    return shapes


def check_block_count(module: nn.Module, case: Case) -> None:
    """A wrong number of blocks gives mismatched parameter names; say so in plain words first."""
    __tracebackhide__ = True
    found = {int(m.group(1)) for name, _ in module.named_parameters() if (m := _BLOCK.match(name))}
    wanted = case.cfg.n_layers
    if found and found != set(range(wanted)):
        fail_text = (
            f"test_demo_transformer: your DemoTransformer has {len(found)} blocks "
            f"(blocks.{min(found)} .. blocks.{max(found)}), but this Config has n_layers = {wanted}."
        )
        if case.cfg != Config():
            fail_text += " (This case builds a smaller model on purpose, to catch a hard-coded 12.)"
        core.fail(
            fail_text + "\nLikely cause: the number of blocks is wrong. Build exactly cfg.n_layers of them: "
            "self.blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers)]), "
            "with cfg.n_layers rather than a hard-coded 12."
        )


def _model_variant(tokens: Tensor, p: dict[str, Tensor], cfg: Config, *, double_residual=False, no_token=False):
    """A forward pass with one structural mistake that oracle.model has no flag for."""
    eps = cfg.layer_norm_eps
    resid = oracle.pos_embed(tokens, oracle.sub(p, "pos_embed"))  # (batch, posn, d_model)
    if not no_token:
        resid = resid + oracle.embed(tokens, oracle.sub(p, "embed"))  # (batch, posn, d_model)
    for i in range(cfg.n_layers):
        out = oracle.block(resid, oracle.sub(p, f"blocks.{i}"), eps)  # (batch, posn, d_model)
        resid = resid + out if double_residual else out  # (batch, posn, d_model)
    resid = oracle.layer_norm(resid, oracle.sub(p, "ln_final"), eps)  # (batch, posn, d_model)
    return oracle.unembed(resid, oracle.sub(p, "unembed"))  # (batch, posn, d_vocab)


def model_mistakes(tokens: Tensor, p: dict[str, Tensor], cfg: Config):
    """What each plausible whole-model mistake gives on these tokens (run only when the output is off)."""
    fewer = max(cfg.n_layers - 1, 0)
    return lambda: [
        Mistake(
            "ln_final is skipped: the unembedding must read the normalised stream, "
            "self.unembed(self.ln_final(residual)), not the raw residual stream.",
            lambda: oracle.model(tokens, p, cfg, skip_ln_final=True),
        ),
        Mistake(
            "the positional embedding is missing: the residual stream starts as "
            "self.embed(tokens) + self.pos_embed(tokens).",
            lambda: oracle.model(tokens, p, cfg, no_pos=True),
        ),
        Mistake(
            "the token embedding is missing: the residual stream starts as "
            "self.embed(tokens) + self.pos_embed(tokens).",
            lambda: _model_variant(tokens, p, cfg, no_token=True),
        ),
        Mistake(
            f"only {fewer} of the {cfg.n_layers} blocks run (the number of blocks used is wrong). "
            "Loop over every block in self.blocks, whose length is cfg.n_layers.",
            lambda: oracle.model(tokens, p, cfg, n_layers=fewer),
        ),
        Mistake(
            "the residual stream is added twice: each block already returns resid_post, which includes its "
            "input, so write residual = block(residual), not residual = residual + block(residual).",
            lambda: _model_variant(tokens, p, cfg, double_residual=True),
        ),
        Mistake(
            "you returned log probabilities. DemoTransformer returns the raw logits; the log_softmax "
            "belongs in get_log_probs.",
            lambda: oracle.model(tokens, p, cfg).log_softmax(-1),
        ),
    ]


def demo_transformer_cases() -> list[Case]:
    ref = core.reference()
    cfg = ref.cfg
    label = core.weights_label(ref)
    params = ref.params()
    out = []
    for which, text in core.REFERENCE_RUNS:
        acts = ref.activations(which)
        tokens = acts["tokens"]  # (batch, posn)
        out.append(Case(f"{text}, the whole model with {label}", cfg, params, (tokens.clone(),), acts["logits"],
                        LOGIT_DIMS, model_mistakes(tokens, params, cfg), MODEL_FALLBACK))
    small = core.SMALL
    ps = core.random_params(model_shapes(small), seed=901, device=ref.device)
    tokens = core.random_tokens((2, 9), small.d_vocab, seed=902, device=ref.device)  # (2, 9)
    out.append(Case("random parameters, 3 layers (d_model=96, d_vocab=503)", small, ps, (tokens,),
                    oracle.model(tokens, ps, small), LOGIT_DIMS, model_mistakes(tokens, ps, small), MODEL_FALLBACK))
    return out


def test_demo_transformer(DemoTransformer) -> None:
    """Check a DemoTransformer: tokens to logits with GPT-2's parameters, and with random ones in 3 layers."""
    __tracebackhide__ = True
    test = "test_demo_transformer"
    cls = core.expect_module_class(DemoTransformer, "DemoTransformer", test)
    cases = demo_transformer_cases()
    run_module_cases(test, cls, cases, "the output", "the logit", MODEL_SHAPE_HINTS, check_block_count, MODEL_LOAD_HINT)
    core.passed(test, core.summary(cases))


# ---------------------------------------------------------------------------------- get_log_probs

LOG_PROBS_FALLBACK = (
    "1) turn the logits into log probabilities with logits.log_softmax(dim=-1); "
    "2) the logits at position i predict token i + 1: pair log_probs[:, :-1] with tokens[:, 1:]; "
    "3) pick the true token's entry with gather(dim=-1, index=tokens[:, 1:].unsqueeze(-1)) and squeeze the "
    "last dimension."
)

LOG_PROBS_SHAPE_HINTS = (
    (
        lambda got, want: len(got) == 2 and got[0] == want[0] and got[1] == want[1] + 1,
        "you returned one value per position, but the last position has no next token to predict: a sequence "
        "of posn tokens gives posn - 1 predictions. Pair log_probs[:, :-1] with tokens[:, 1:].",
    ),
    (
        lambda got, want: len(got) == 3 and got[:2] == want and got[-1] == 1,
        "gather keeps a last dimension of size 1: remove it with .squeeze(-1).",
    ),
    (
        lambda got, want: len(got) == 3 and got[:2] == want,
        "you returned the whole distribution over the vocabulary. Keep only the entry of the true next token, "
        "with gather(dim=-1, ...) or indexing.",
    ),
    (
        lambda got, want: len(got) == 1 and got[0] == want[0] * want[1],
        "the result is flattened: keep the shape (batch, posn - 1).",
    ),
)


def log_probs_mistakes(logits: Tensor, tokens: Tensor):
    """What each plausible get_log_probs mistake gives on these logits."""

    def from_position_one() -> Tensor:
        lp = logits.log_softmax(-1)  # (batch, posn, d_vocab)
        return lp[:, 1:].gather(-1, tokens[:, 1:, None])[..., 0]  # (batch, posn - 1)

    def raw_logits() -> Tensor:
        return logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # (batch, posn - 1)

    def over_positions() -> Tensor:
        lp = logits.log_softmax(1)  # (batch, posn, d_vocab)
        return lp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # (batch, posn - 1)

    return lambda: [
        Mistake(
            "the alignment is off by one: you paired each position's prediction with its own token. The logits "
            "at position i predict token i + 1, so pair log_probs[:, :-1] with tokens[:, 1:].",
            lambda: oracle.log_probs(logits, tokens, shift=0),
        ),
        Mistake(
            "the alignment is off by one: you took the predictions of positions 1, 2, ..., which predict tokens "
            "2, 3, .... The predictions for tokens[:, 1:] are log_probs[:, :-1] (position 0 predicts token 1).",
            from_position_one,
        ),
        Mistake(
            "you returned probabilities, not log probabilities: use log_softmax(dim=-1) rather than softmax.",
            lambda: oracle.log_probs(logits, tokens, probs=True),
        ),
        Mistake(
            "you picked out raw logits. Turn them into log probabilities first with logits.log_softmax(dim=-1).",
            raw_logits,
        ),
        Mistake(
            "the sign is flipped: return the log probability itself (a negative number). The loss, its "
            "negative mean, comes afterwards.",
            lambda: -oracle.log_probs(logits, tokens),
        ),
        Mistake(
            "log_softmax is taken over the wrong dimension. Normalise over the vocabulary: log_softmax(dim=-1).",
            over_positions,
        ),
    ]


def get_log_probs_cases() -> list[Case]:
    ref = core.reference()
    label = core.weights_label(ref)
    out = []
    for which, text in core.REFERENCE_RUNS:
        acts = ref.activations(which)
        logits, tokens = acts["logits"].clone(), acts["tokens"].clone()  # (batch, posn, d_vocab), (batch, posn)
        out.append(Case(f"{text}, logits of {label}", ref.cfg, None, (logits, tokens),
                        oracle.log_probs(logits, tokens), LOG_PROB_DIMS, log_probs_mistakes(logits, tokens),
                        LOG_PROBS_FALLBACK))
    small = core.SMALL
    logits = core.random_input((3, 11, small.d_vocab), seed=903, device=ref.device, scale=3.0)  # (3, 11, d_vocab)
    tokens = core.random_tokens((3, 11), small.d_vocab, seed=904, device=ref.device)  # (3, 11)
    out.append(Case("random logits and tokens (d_vocab=503)", small, None, (logits, tokens),
                    oracle.log_probs(logits, tokens), LOG_PROB_DIMS, log_probs_mistakes(logits, tokens),
                    LOG_PROBS_FALLBACK))
    return out


def test_get_log_probs(get_log_probs) -> None:
    """Check get_log_probs: the log probability of each true next token, on GPT-2's logits and random ones."""
    __tracebackhide__ = True
    test = "test_get_log_probs"
    fn = core.expect_function(get_log_probs, "get_log_probs", test)
    cases = get_log_probs_cases()
    for case in cases:
        out = core.call(fn, case.inputs, test, "get_log_probs")
        core.vet_output(out, case.expected, case.dims, test, "the output", LOG_PROBS_SHAPE_HINTS)
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(test, "the log-probability", case, out, mismatch)
    core.passed(test, core.summary(cases))
