"""test_attention (notebook 05): Attention against GPT-2's blocks.0.attn and blocks.7.attn, and random weights.

Besides the output, the check compares the learner's ``self.pattern`` (when they store one) with the
reference's attention pattern, and uses it to say whether the mistake is before or after the softmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake
from c1p1.config import Config

SCORE_DIMS = ("batch", "n_heads", "query_pos", "key_pos")
DIMS = ("batch", "posn", "d_model")
FIELDS = "cfg.d_model, cfg.n_heads, cfg.d_head, ..."

ATTN_TEST = "test_attention"


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
class AttnCase(Case):
    pattern: Tensor | None = None  # (batch, n_heads, query_pos, key_pos)


def attn_cases() -> list[AttnCase]:
    ref = core.reference()
    cfg = ref.cfg
    label = core.weights_label(ref)
    out = []
    for which, block, text in (("sentence", 0, "the reference sentence"), ("batch", 7, "a batch of two prompts")):
        acts = ref.activations(which)
        p = ref.params_for(f"blocks.{block}.attn")
        x = acts[f"blocks.{block}.ln1.hook_out"]  # (batch, posn, d_model)
        out.append(AttnCase(
            f"{text}, blocks.{block}.attn with {label}",
            cfg,
            p,
            (x,),
            acts[f"blocks.{block}.attn.hook_out"],
            DIMS,
            attn_mistakes(x, p),
            pattern=acts[f"blocks.{block}.attn.hook_pattern"],
        ))
    small = core.SMALL
    p = core.random_params(oracle.attention_shapes(small), seed=501, device=ref.device)
    x = core.random_input((2, 11, small.d_model), seed=502, device=ref.device)  # (2, 11, d_model)
    pattern, expected = oracle.attention_parts(x, p)
    out.append(AttnCase(
        f"random weights and biases, {small.n_heads} heads of d_head={small.d_head}, d_model={small.d_model}",
        small,
        p,
        (x,),
        expected,
        DIMS,
        attn_mistakes(x, p),
        pattern=pattern,
    ))
    return out


def _stored_pattern(module: nn.Module, shape: tuple[int, ...]) -> Tensor | None:
    pattern = getattr(module, "pattern", None)
    if isinstance(pattern, Tensor) and tuple(pattern.shape) == shape:
        return pattern.detach()
    return None


def _verify(case: AttnCase, out: Tensor, module: nn.Module) -> None:
    """The output (NaN first, with its own causes), then self.pattern, which also ranks the causes."""
    __tracebackhide__ = True
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
    mine = _stored_pattern(module, tuple(case.pattern.shape))
    pattern_mismatch = None if mine is None else core.compare(mine, case.pattern)
    mismatch = core.compare(out, case.expected)
    if mismatch is not None:
        note = "" if mine is None else ("right" if pattern_mismatch is None else "wrong")
        case.fallback = _attn_fallback(case.cfg, note)
        core.explain(ATTN_TEST, "the output", case, out, mismatch)
    if mine is None:
        stored = getattr(module, "pattern", None)
        what = (f"self.pattern has shape {tuple(stored.shape)}, not (batch, n_heads, query_pos, key_pos) = "
                f"{tuple(case.pattern.shape)}" if isinstance(stored, Tensor) else "there is no self.pattern"
                if stored is None else f"self.pattern is {core.describe(stored)}, not a tensor")
        core.fail(
            f"{ATTN_TEST} FAILED on {case.label}: the output matches, but {what}.\n"
            "Likely cause: forward should also keep the attention probabilities it used, self.pattern = pattern "
            "(the softmax of the scaled, masked scores, one per head); the notebook looks at it next. "
            "F.scaled_dot_product_attention keeps its pattern to itself: write the softmax yourself."
        )
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
    cases = attn_cases()
    core.run_cases(ATTN_TEST, cls, cases, fields=FIELDS, verify=_verify)
    core.passed(ATTN_TEST, core.summary(cases))
