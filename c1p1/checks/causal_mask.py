"""test_causal_mask (notebook 04): apply_causal_mask hides every key after its query, and nothing else.

Every score with key_pos > query_pos must be masked so that the softmax gives it exactly 0 (-inf, or
any very negative number), and every other score must come back unchanged. The verdict compares the
softmax of what the learner returns with the reference's pattern, and the kept scores with the input.
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from c1p1.checks import core, oracle
from c1p1.checks.core import IN_PLACE, Advice, Case
from c1p1.config import Config

SCORE_DIMS = ("batch", "n_heads", "query_pos", "key_pos")
# A masked score is "masked" for the diagnosis when it is at most this (softmax gives it weight 0).
VERY_NEGATIVE = -1e4

MASK_TEST = "test_causal_mask"
ADVICE = Advice(
    in_place=IN_PLACE + "\nFor the mask: masked_fill_ (with the underscore) fills attn_scores itself; "
    "masked_fill (without it) returns a new tensor and leaves the caller's scores alone."
)


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
    """Turn what the learner passed into a function of the scores alone, and name it for messages.

    A method comes back bound to a module (the learner's own class, or a stand-in with cfg and
    IGNORE), so the engine sees the module it belongs to and can copy it to the CPU first on a GPU.
    """
    if isinstance(thing, type) and issubclass(thing, nn.Module) and hasattr(thing, "apply_causal_mask"):
        host = core.move(core.build(thing, MASK_TEST, Config()), device, MASK_TEST)
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
    return types.MethodType(fn, core.move(host, device, MASK_TEST)), name


@dataclass
class MaskCase(Case):
    """inputs: the scores before masking; expected: the masked scores (only the kept ones are compared)."""

    pattern: Tensor | None = None  # the softmax of the correctly masked scores

    @property
    def scores(self) -> Tensor:
        return self.inputs[0]  # (batch, n_heads, query_pos, key_pos)

    @property
    def kept(self) -> Tensor:
        return self.expected  # (batch, n_heads, query_pos, key_pos)


def _future(scores: Tensor, diagonal: int = 1) -> Tensor:
    q, k = scores.shape[-2:]
    return torch.ones(q, k, dtype=torch.bool, device=scores.device).triu(diagonal)  # (query_pos, key_pos)


def _case(label: str, scores: Tensor, masked: Tensor | None = None, pattern: Tensor | None = None) -> MaskCase:
    masked = oracle.causal_mask(scores) if masked is None else masked  # (batch, n_heads, query_pos, key_pos)
    pattern = masked.softmax(dim=-1) if pattern is None else pattern  # (batch, n_heads, query_pos, key_pos)
    return MaskCase(label, Config(), None, (scores,), masked, SCORE_DIMS, pattern=pattern)


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
    """The verdict on one case: the shape, device and dtype of the scores, then NaN, +inf, pattern and kept scores."""
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
    core.run_cases(MASK_TEST, fn, cases, name=name, advice=ADVICE,
                   verify=lambda case, out, module: _compare_mask(case, out, name))
    core.passed(
        MASK_TEST,
        f"{len(cases)} cases give the reference's pattern after the softmax, with the kept scores unchanged: "
        + "; ".join(c.label for c in cases)
        + ".",
    )
