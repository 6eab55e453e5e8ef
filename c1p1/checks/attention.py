"""test_causal_mask (notebook 04) and test_attention (notebook 05)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, CheckFailed, Mistake
from c1p1.config import Config

SCORE_DIMS = ("batch", "n_heads", "query_pos", "key_pos")
DIMS = ("batch", "posn", "d_model")
# A masked score is "masked" for the diagnosis when it is at most this (softmax gives it weight 0).
VERY_NEGATIVE = -1e4

# ----------------------------------------------------------------------------------- causal mask

MASK_TEST = "test_causal_mask"


class _MaskHost(nn.Module):
    """A stand-in for `self` when the method's own class cannot be built: cfg and IGNORE, as in notebook 04."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("IGNORE", torch.tensor(float("-inf"), dtype=torch.float32), persistent=False)


def _positional(fn: Callable) -> int | None:
    """How many positional arguments `fn` needs (None when its signature cannot be read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def _owner_class(fn: Callable) -> type[nn.Module] | None:
    """The nn.Module class an unbound method was written in, when its qualname leads to it."""
    parts = getattr(fn, "__qualname__", "").split(".")
    if len(parts) < 2 or "<locals>" in parts:
        return None
    obj: object = getattr(fn, "__globals__", {}).get(parts[0])
    for attr in parts[1:-1]:
        obj = getattr(obj, attr, None)
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return obj
    return None


def _mask_function(thing: object, device: torch.device) -> tuple[Callable[[Tensor], Tensor], str]:
    """Turn what the learner passed into a function of the scores alone, and name it for messages."""
    if isinstance(thing, type) and issubclass(thing, nn.Module) and hasattr(thing, "apply_causal_mask"):
        host = core.build(thing, MASK_TEST, Config()).to(device)
        return host.apply_causal_mask, f"{thing.__name__}.apply_causal_mask"
    if isinstance(thing, nn.Module) and hasattr(thing, "apply_causal_mask"):
        return thing.apply_causal_mask, f"{type(thing).__name__}.apply_causal_mask"
    fn = core.expect_function(thing, "Attention.apply_causal_mask", MASK_TEST)
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", "your function"))
    needed = _positional(fn)
    if inspect.ismethod(fn) or needed is None or needed <= 1:
        return fn, name
    if needed > 2:
        core.fail(
            f"{MASK_TEST}: {name} takes {needed} arguments, but the check calls it with the scores only "
            "(and `self` for a method). Keep `def apply_causal_mask(self, attn_scores)`."
        )
    owner = _owner_class(fn)
    host = core.build(owner, MASK_TEST, Config()) if owner is not None else _MaskHost(Config())
    try:
        host = host.to(device)
    except Exception as exc:  # noqa: BLE001
        core.learner_raised(MASK_TEST, f"moving {type(host).__name__} to {device}", exc)
    return (lambda scores: fn(host, scores)), name


@dataclass
class MaskCase:
    label: str
    scores: Tensor  # (batch, n_heads, query_pos, key_pos), before masking
    kept: Tensor  # the expected values where key_pos <= query_pos (the rest is masked)
    pattern: Tensor  # the softmax of the correctly masked scores


def _future(scores: Tensor, diagonal: int = 1) -> Tensor:
    q, k = scores.shape[-2:]
    return torch.ones(q, k, dtype=torch.bool, device=scores.device).triu(diagonal)  # (query_pos, key_pos)


def _case(label: str, scores: Tensor, masked: Tensor | None = None, pattern: Tensor | None = None) -> MaskCase:
    masked = oracle.causal_mask(scores) if masked is None else masked  # (batch, n_heads, query_pos, key_pos)
    pattern = masked.softmax(dim=-1) if pattern is None else pattern  # (batch, n_heads, query_pos, key_pos)
    return MaskCase(label, scores, masked, pattern)


def mask_cases() -> list[MaskCase]:
    ref = core.reference()
    device = ref.device
    out = [
        _case("random scores, 2 prompts x 3 heads x 5 positions", core.random_input((2, 3, 5, 5), 401, device)),
        _case("a single position (nothing to mask)", core.random_input((2, 2, 1, 1), 402, device)),
    ]
    for which, block, text in (("sentence", 0, "the reference sentence"), ("batch", 5, "a batch of two prompts")):
        acts = ref.activations(which)
        q = acts[f"blocks.{block}.attn.hook_q"]  # (batch, posn, n_heads, d_head)
        k = acts[f"blocks.{block}.attn.hook_k"]  # (batch, posn, n_heads, d_head)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(ref.cfg.d_head)  # (batch, n_heads, q, k)
        out.append(
            _case(
                f"blocks.{block}.attn's scores on {text} ({core.weights_label(ref)})",
                scores,
                acts[f"blocks.{block}.attn.hook_attn_scores"],
                acts[f"blocks.{block}.attn.hook_pattern"],
            )
        )
    out.append(_case("random scores spread over +-9, 64 positions", core.random_input((1, 4, 64, 64), 403, device, 3.0)))
    return out


def _diagnose_mask(out: Tensor, scores: Tensor) -> str:
    """The most likely mistake, from which entries were masked and what the kept ones hold."""
    future = _future(scores).expand_as(scores)  # (batch, n_heads, query_pos, key_pos)
    masked = out <= VERY_NEGATIVE  # (batch, n_heads, query_pos, key_pos)
    same = torch.isclose(out, scores, atol=core.ATOL, rtol=core.RTOL)  # (batch, n_heads, query_pos, key_pos)
    if torch.equal(masked, _future(scores, 0).expand_as(scores)):
        return (
            "the diagonal is masked too, so no token may attend to itself and the first token has nothing to "
            "attend to at all. Mask only the keys strictly after the query: torch.triu(..., diagonal=1)."
        )
    if torch.equal(masked, ~_future(scores, 0).expand_as(scores)) or torch.equal(masked, ~future):
        return (
            "the wrong triangle is masked: you hid the past and kept the future. The masked entries are those "
            "with key_pos > query_pos, the upper triangle: torch.triu(..., diagonal=1), not torch.tril."
        )
    if torch.equal(masked, future):
        return (
            "the right entries are masked, but the kept scores changed. apply_causal_mask should replace the "
            "future scores and return every other score exactly as it came in (no scaling, no shift)."
        )
    if not masked.any():
        kept_same = bool(same[~future].all())
        if bool(same.all()):
            return (
                "nothing is masked: the scores come back unchanged. masked_fill and torch.where return a new "
                "tensor; return that result (it is not applied to attn_scores in place)."
            )
        fut = out[future]
        if kept_same and fut.numel() and bool((fut == 0).all()):
            return (
                "the future scores are set to 0 instead of -inf. A score of 0 still gets weight exp(0) after the "
                "softmax; use self.IGNORE (-inf) so the softmax gives those keys exactly 0."
            )
        if kept_same and fut.numel() and bool((fut == fut[0]).all()):
            return (
                f"the future scores are set to {float(fut[0]):g}, which is not negative enough: the softmax still "
                "gives those keys some weight. Use self.IGNORE (-inf), or a very large negative number such as -1e5."
            )
        if bool(same[future].all()) and bool((out[~future] == 0).all()):
            return "the past scores are set to 0 and the future ones kept: the mask is the wrong triangle."
    return ""


def _mask_fallback() -> str:
    return (
        "1) mask exactly the keys after the query (key_pos > query_pos): torch.triu(ones, diagonal=1); "
        "2) fill them with self.IGNORE (-inf), not 0; 3) return every other score unchanged; "
        "4) build the mask from attn_scores.shape[-2:], not from a fixed size."
    )


def _compare_mask(case: MaskCase, out: Tensor, what: str) -> None:
    __tracebackhide__ = True
    if tuple(out.shape) != tuple(case.scores.shape):
        core.fail(
            f"{MASK_TEST}: {what} returned shape {core.named_shape(out.shape, SCORE_DIMS)} for scores of shape "
            f"{core.named_shape(case.scores.shape, SCORE_DIMS)}; it should return the masked scores, same shape.\n"
            "Likely cause: returning the mask itself, or a mask that does not broadcast over batch and heads."
        )
    if out.device != case.scores.device:
        core.fail(
            f"{MASK_TEST}: {what} returned a tensor on {out.device}, but the scores are on {case.scores.device}.\n"
            "Likely cause: the mask was made without device=attn_scores.device."
        )
    if out.dtype != case.scores.dtype:
        core.fail(f"{MASK_TEST}: {what} returned dtype {out.dtype}; the scores are {case.scores.dtype}. Keep their dtype.")
    nan = torch.isnan(out)  # (batch, n_heads, query_pos, key_pos)
    if nan.any():
        idx = [int(i) for i in nan.nonzero()[0]]
        core.fail(
            f"{MASK_TEST} FAILED on {case.label}: {int(nan.sum())} masked scores are NaN "
            f"(the first at {core.where(idx, SCORE_DIMS)}).\n"
            "Likely cause: multiplying by -inf (0 * -inf is NaN), e.g. scores + mask * float('-inf'). "
            "Replace the future scores instead: attn_scores.masked_fill(mask, self.IGNORE) or torch.where."
        )
    if (out == float("inf")).any():
        core.fail(
            f"{MASK_TEST} FAILED on {case.label}: some masked scores are +inf.\n"
            "Likely cause: the sign of IGNORE: the future must be -inf, so that the softmax gives it weight 0."
        )
    pattern = out.softmax(dim=-1)  # (batch, n_heads, query_pos, key_pos)
    future = _future(case.scores).expand_as(out)  # (batch, n_heads, query_pos, key_pos)
    if torch.isnan(pattern).any():
        cause = _diagnose_mask(out, case.scores) or (
            "some query has every key masked, so its softmax is NaN. A token must always see itself: "
            "mask only key_pos > query_pos (torch.triu(..., diagonal=1))."
        )
        core.fail(
            f"{MASK_TEST} FAILED on {case.label}: after the softmax some rows are NaN, because every key in "
            f"them is masked.\nLikely cause: {cause}"
        )
    for got, want, name in (
        (pattern, case.pattern, "attention pattern (the softmax of your masked scores)"),
        (out.masked_fill(future, 0.0), case.kept.masked_fill(future, 0.0), "kept (unmasked) score"),
    ):
        mismatch = core.compare(got, want)
        if mismatch is None:
            continue
        first = (
            f"{MASK_TEST} FAILED on {case.label}: {100 * mismatch.fraction:.1f}% of {name} values match the "
            f"reference (max abs error {mismatch.max_error:.3g} at {core.where(mismatch.index, SCORE_DIMS)})."
        )
        cause = _diagnose_mask(out, case.scores)
        if cause:
            core.fail(first + "\nLikely cause: " + cause)
        core.fail(first + "\nLikely causes, most likely first: " + _mask_fallback())


def test_causal_mask(apply_causal_mask) -> None:
    """Check apply_causal_mask (a function of the scores, or the method Attention.apply_causal_mask).

    Every score with key_pos > query_pos must be masked so that the softmax gives it exactly 0 (-inf,
    or any very negative number), and every other score must come back unchanged.
    """
    __tracebackhide__ = True
    ref = core.reference()
    fn, name = _mask_function(apply_causal_mask, ref.device)
    cases = mask_cases()
    for case in cases:
        try:
            out = core.call(fn, (case.scores,), MASK_TEST, name)
        except CheckFailed as exc:
            if "in place" in str(exc):
                core.fail(
                    str(exc) + "\nFor the mask: masked_fill_ (with the underscore) fills attn_scores itself; "
                    "masked_fill (without it) returns a new tensor and leaves the caller's scores alone."
                )
            raise
        _compare_mask(case, out, name)
    core.passed(
        MASK_TEST,
        f"{len(cases)} cases give the reference's pattern after the softmax, with the kept scores unchanged: "
        + "; ".join(c.label for c in cases)
        + ".",
    )


# ------------------------------------------------------------------------------------- attention

ATTN_TEST = "test_attention"


def attn_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    h, m, d = cfg.n_heads, cfg.d_model, cfg.d_head
    return {
        "W_Q": (h, m, d),
        "W_K": (h, m, d),
        "W_V": (h, m, d),
        "W_O": (h, d, m),
        "b_Q": (h, d),
        "b_K": (h, d),
        "b_V": (h, d),
        "b_O": (m,),
    }


def attn_mistakes(x: Tensor, p: dict[str, Tensor]) -> Callable[[], list[Mistake]]:
    """What each plausible attention mistake gives on this input."""
    n_heads, d_model, d_head = p["W_Q"].shape
    root = math.sqrt(d_head)

    def run(**flags: object) -> Tensor:
        return oracle.attention(x, p, **flags)

    def without(name: str) -> Tensor:
        # (b_K needs no entry: it adds the same number to a whole row of scores, which the softmax ignores.)
        return oracle.attention(x, {**p, name: torch.zeros_like(p[name])})

    return lambda: [
        Mistake(
            f"the attention scores are not scaled. Divide them by sqrt(d_head) = {root:g} before masking "
            "(self.cfg.d_head ** 0.5).",
            lambda: run(scale="none"),
        ),
        Mistake(
            f"the scores are divided by sqrt(d_model) = {math.sqrt(d_model):.4g}. The scale uses one head's "
            f"width: sqrt(d_head) = {root:g}.",
            lambda: run(scale="d_model"),
        ),
        Mistake(
            f"the scores are divided by d_head = {d_head}, without the square root. Divide by "
            f"sqrt(d_head) = {root:g}.",
            lambda: run(scale="no_sqrt"),
        ),
        Mistake(
            "the softmax is over the wrong dimension (query positions). Each query's weights over the keys "
            "must sum to 1: softmax(dim=-1), over key_pos.",
            lambda: run(softmax_dim=-2),
        ),
        Mistake(
            "the softmax is over the wrong dimension (heads). Take it over key_pos: softmax(dim=-1).",
            lambda: run(softmax_dim=1),
        ),
        Mistake(
            "the mask is applied after the softmax, so each row no longer sums to 1. Mask the scores with "
            "-inf (self.apply_causal_mask) first, then take the softmax.",
            lambda: run(mask_after_softmax=True),
        ),
        Mistake(
            "there is no causal mask: every position also reads the positions after it. Call "
            "self.apply_causal_mask on the scaled scores before the softmax.",
            lambda: run(no_mask=True),
        ),
        Mistake(
            "the biases are never added. Add b_Q, b_K and b_V to q, k and v, and b_O to the output.",
            lambda: run(no_bias=True),
        ),
        Mistake(
            "the bias b_V is never added: v = x @ W_V + b_V, per head.",
            lambda: run(no_value_bias=True),
        ),
        Mistake(
            "the bias b_O is never added: after summing the heads' outputs, add b_O once.",
            lambda: run(no_output_bias=True),
        ),
        Mistake("the bias b_Q is never added: q = x @ W_Q + b_Q, per head.", lambda: without("b_Q")),
        Mistake(
            f"b_O is added once per head ({n_heads} times). Sum the heads' outputs first, then add b_O once.",
            lambda: run() + (n_heads - 1) * p["b_O"],
        ),
        Mistake(
            f"the heads are averaged instead of summed. Each head writes its own output into the residual "
            f"stream: sum over heads (averaging divides the result by n_heads = {n_heads}).",
            lambda: run(mean_heads=True),
        ),
        Mistake(
            "queries and keys are swapped, so the pattern is transposed. The score at [query_pos, key_pos] is "
            "q[query_pos] . k[key_pos]: the query (the destination) indexes the rows, the key (the source) the "
            "columns, and the softmax runs over the keys.",
            lambda: run(swap_qk=True),
        ),
    ]


def _attn_fallback(cfg: Config, pattern_note: str) -> str:
    root = math.sqrt(cfg.d_head)
    if pattern_note == "right":
        return (
            "your self.pattern matches the reference, so the scores, scale, mask and softmax are right and the "
            "mistake is after the softmax: 1) z[q, h] = sum over key_pos of pattern[h, q, k] * v[k, h]; "
            "2) multiply z by W_O per head and sum over heads; 3) add b_V to v and b_O (once) to the output."
        )
    start = "your self.pattern also differs from the reference, so look first at the pattern: " if pattern_note else ""
    return start + (
        f"1) scale the scores by 1/sqrt(d_head) = 1/{root:g} before masking; 2) mask with "
        "self.apply_causal_mask before the softmax; 3) softmax over key_pos (dim=-1); 4) add every bias "
        "(b_Q, b_K, b_V, b_O); 5) sum over heads after W_O."
    )


ATTN_SHAPE_HINTS = (
    (
        lambda got, want: len(got) == 4 and got[0] == want[0] and got[-1] == want[-1],
        "there is a heads dimension left: multiply z by W_O and sum over heads (the einsum's output should be "
        "'batch posn d_model').",
    ),
    (
        lambda got, want: len(got) == 4 and got[0] == want[0],
        "this looks like z or the pattern: the output is z multiplied by W_O, summed over heads, plus b_O.",
    ),
)


@dataclass
class AttnCase:
    case: Case
    pattern: Tensor  # (batch, n_heads, query_pos, key_pos)


def attn_cases() -> list[AttnCase]:
    ref = core.reference()
    cfg = ref.cfg
    label = core.weights_label(ref)
    out = []
    for which, block, text in (("sentence", 0, "the reference sentence"), ("batch", 7, "a batch of two prompts")):
        acts = ref.activations(which)
        p = ref.params_for(f"blocks.{block}.attn")
        x = acts[f"blocks.{block}.ln1.hook_out"]  # (batch, posn, d_model)
        case = Case(
            f"{text}, blocks.{block}.attn with {label}",
            cfg,
            p,
            (x,),
            acts[f"blocks.{block}.attn.hook_out"],
            DIMS,
            attn_mistakes(x, p),
        )
        out.append(AttnCase(case, acts[f"blocks.{block}.attn.hook_pattern"]))
    small = core.SMALL
    p = core.random_params(attn_shapes(small), seed=501, device=ref.device)
    x = core.random_input((2, 11, small.d_model), seed=502, device=ref.device)  # (2, 11, d_model)
    pattern, expected = oracle.attention_parts(x, p)
    case = Case(
        f"random weights and biases, {small.n_heads} heads of d_head={small.d_head}, d_model={small.d_model}",
        small,
        p,
        (x,),
        expected,
        DIMS,
        attn_mistakes(x, p),
    )
    out.append(AttnCase(case, pattern))
    return out


def _stored_pattern(module: nn.Module, shape: tuple[int, ...]) -> Tensor | None:
    pattern = getattr(module, "pattern", None)
    if isinstance(pattern, Tensor) and tuple(pattern.shape) == shape:
        return pattern.detach()
    return None


def _run_attention(cls: type[nn.Module], item: AttnCase) -> None:
    __tracebackhide__ = True
    case = item.case
    module = core.build(cls, ATTN_TEST, case.cfg)
    device = case.expected.device
    try:
        module = module.to(device)
    except Exception as exc:  # noqa: BLE001
        core.learner_raised(ATTN_TEST, f"moving {cls.__name__} to {device}", exc)
    core.load_strict(module, case.params, ATTN_TEST)
    module.eval()
    hint = ""
    if case.cfg != Config():
        hint = (
            f"This case builds your class with a smaller Config ({case.cfg}). "
            "Use the cfg fields (cfg.d_model, cfg.n_heads, cfg.d_head, ...) instead of GPT-2 small's numbers."
        )
    what = f"{cls.__name__}.forward"
    out = core.call(module.forward, case.inputs, ATTN_TEST, what, hint)
    if tuple(out.shape) == tuple(case.expected.shape) and torch.isnan(out).any():
        core.fail(
            f"{ATTN_TEST} FAILED on {case.label}: the output contains {int(torch.isnan(out).sum())} NaN values.\n"
            "Likely causes, most likely first: 1) the softmax is missing, so the -inf of the mask reaches the "
            "values (use the softmax of the masked scores as the pattern); 2) the softmax is over the wrong dimension "
            "(heads or batch): a masked entry is -inf in every head, and a softmax over only -inf is NaN; take it "
            "over key_pos, dim=-1; 3) the mask covers the diagonal, so the first position has no key to attend to; "
            "4) the mask multiplies by -inf (0 * -inf is NaN)."
        )
    core.vet_output(out, case.expected, case.dims, ATTN_TEST, "the output", ATTN_SHAPE_HINTS)
    mine = _stored_pattern(module, tuple(item.pattern.shape))
    pattern_mismatch = None if mine is None else core.compare(mine, item.pattern)
    mismatch = core.compare(out, case.expected)
    if mismatch is not None:
        note = "" if mine is None else ("right" if pattern_mismatch is None else "wrong")
        case.fallback = _attn_fallback(case.cfg, note)
        core.explain(ATTN_TEST, "the output", case, out, mismatch)
    if pattern_mismatch is not None:
        core.fail(
            f"{ATTN_TEST} FAILED on {case.label}: the output matches, but only "
            f"{100 * pattern_mismatch.fraction:.1f}% of self.pattern matches the reference's attention pattern "
            f"(max abs error {pattern_mismatch.max_error:.3g} at {core.where(pattern_mismatch.index, SCORE_DIMS)}).\n"
            "Likely cause: self.pattern should hold the probabilities the output used: the softmax of the scaled, "
            "masked scores, shape (batch, n_heads, query_pos, key_pos)."
        )


def test_attention(Attention) -> None:
    """Check an Attention class against GPT-2's blocks.0.attn and blocks.7.attn, and against random weights."""
    __tracebackhide__ = True
    cls = core.expect_module_class(Attention, "Attention", ATTN_TEST)
    items = attn_cases()
    for item in items:
        _run_attention(cls, item)
    core.passed(ATTN_TEST, core.summary([item.case for item in items]))
