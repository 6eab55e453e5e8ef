"""test_apply_temperature, test_apply_frequency_penalty, test_top_k_logits, test_top_p_logits (notebook 12).

Each check is a list of `Case`s on small random logits, each with the `Mistake`s it can name. Removed
tokens have the logit -inf, so two outputs agree when they remove the same tokens and their other
logits match. Every case runs on the CPU first; once all pass, the first one runs again on the course
device, to see that the output stays on its input's device. The samplers' checks are in sampling_draws.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from c1p1.checks import core
from c1p1.checks.core import Case, Mistake
from c1p1.checks.learner import PREFLIGHT

DIMS = ("batch", "d_vocab")
NEG_INF = float("-inf")
CPU = PREFLIGHT  # the host, where statistical draws and expected values are computed


DEVICE_TENSOR_HINT = ("It passed on the CPU, so the likely cause is a tensor created on the CPU: create new tensors "
                      "on the input's device (torch.zeros_like(logits), or device=logits.device).")


def course_device() -> torch.device:
    from c1p1.reference import pick_device

    return pick_device()


def random_logits(shape: tuple[int, int], seed: int, scale: float = 2.0) -> Tensor:
    return core.random_input(shape, seed, CPU, scale)  # (batch, d_vocab)


# ---------------------------------------------------------------------------------- comparing logits


def same_logits(out: Tensor, expected: Tensor, atol: float = core.ATOL, rtol: float = core.RTOL) -> bool:
    """The same tokens removed (-inf) and the kept logits close."""
    if out.shape != expected.shape:
        return False
    kept, kept_expected = torch.isfinite(out), torch.isfinite(expected)  # (batch, d_vocab) each
    if not torch.equal(kept, kept_expected):
        return False
    return bool(torch.isclose(out[kept], expected[kept].to(out.dtype), atol=atol, rtol=rtol).all())


def describe_mismatch(out: Tensor, expected: Tensor) -> str:
    kept, kept_expected = torch.isfinite(out), torch.isfinite(expected)  # (batch, d_vocab) each
    if not torch.equal(kept, kept_expected):
        row = int((kept != kept_expected).any(-1).nonzero()[0])
        extra = (kept[row] & ~kept_expected[row]).nonzero().flatten().tolist()
        missing = (~kept[row] & kept_expected[row]).nonzero().flatten().tolist()
        text = f"in row {row} your output keeps {int(kept[row].sum())} tokens where it should keep {int(kept_expected[row].sum())}"
        if extra:
            text += f"; token ids {extra[:4]} should be -inf"
        if missing:
            text += f"; token ids {missing[:4]} should be kept"
        return text
    close = torch.isclose(out[kept], expected[kept], atol=core.ATOL, rtol=core.RTOL)  # (n_kept,)
    error = torch.where(kept, (out - expected).abs(), torch.zeros_like(out))  # (batch, d_vocab)
    index = [int(i) for i in torch.unravel_index(error.argmax(), error.shape)]
    return (
        f"{100 * float(close.float().mean()):.1f}% of the kept logits match the reference "
        f"(max abs error {float(error.max()):.3g} at {core.where(index, DIMS)})"
    )


def vet_logits(out: Tensor, expected: Tensor, test: str, what: str, shape_hints=()) -> None:
    """Shape, device and dtype as core.vet_output; -inf is allowed (a removed token), NaN and +inf are not."""
    __tracebackhide__ = True
    if tuple(out.shape) != tuple(expected.shape):
        msg = f"{test}: {what} has shape {core.named_shape(out.shape, DIMS)} but should have shape {core.named_shape(expected.shape, DIMS)}."
        for applies, hint in shape_hints:
            if applies(tuple(out.shape), tuple(expected.shape)):
                msg += "\nLikely cause: " + hint
                break
        core.fail(msg)
    if out.device != expected.device:
        core.fail(
            f"{test}: {what} is on {out.device} but the logits were on {expected.device}.\n"
            "Likely cause: a tensor created without device=...; create it on the logits' device "
            "(torch.zeros_like(logits), or device=logits.device)."
        )
    if out.dtype != expected.dtype:
        core.fail(f"{test}: {what} has dtype {out.dtype} but should be {expected.dtype}, the logits' dtype.\n"
                  "Likely cause: a cast, or counts added as integers; keep the logits' dtype (torch.zeros_like(logits)).")
    bad = torch.isnan(out) | (out == float("inf"))  # (batch, d_vocab)
    if bad.any():
        idx = [int(i) for i in bad.nonzero()[0]]
        core.fail(
            f"{test}: {what} contains {int(bad.sum())} NaN or +inf values (the first at {core.where(idx, DIMS)}).\n"
            "Likely cause: a division by zero or a softmax of a row that is all -inf. A removed token is -inf, never NaN."
        )


def explain(test: str, case: Case, out: Tensor) -> None:
    __tracebackhide__ = True
    first = f"{test} FAILED on {case.label}: {describe_mismatch(out, case.expected)}."
    for mistake in case.mistakes():
        try:
            candidate = mistake.output()
        except Exception:  # noqa: BLE001, S112 - a mistake that cannot run on this input is just not it
            continue
        if same_logits(out, candidate, core.MISTAKE_ATOL, core.MISTAKE_RTOL):
            core.fail(first + "\nLikely cause: " + mistake.cause)
    core.fail(first + ("\nLikely causes, most likely first: " + case.fallback if case.fallback else ""))


def run_logit_cases(
    test: str, fn: Callable, cases: Sequence[Case], what: str, shape_hints=(), hints: Sequence[str] = ()
) -> None:
    """Every case on the CPU, then the first one on the course device."""
    __tracebackhide__ = True
    for i, case in enumerate(cases):
        out = core.call(fn, case.inputs, test, what, hints[i] if i < len(hints) else "")
        vet_logits(out, case.expected, test, f"the output on {case.label}", shape_hints)
        if not same_logits(out, case.expected):
            explain(test, case, out)
    device = course_device()
    if device != CPU:
        case = cases[0]
        inputs = tuple(x.to(device) if isinstance(x, Tensor) else x for x in case.inputs)
        out = core.call(fn, inputs, test, f"{what} on {device}", DEVICE_TENSOR_HINT)
        expected = case.expected.to(device)
        vet_logits(out, expected, test, f"the output on {device}", shape_hints)
        if not same_logits(out, expected):
            core.fail(f"{test} FAILED on {case.label} on {device}: {describe_mismatch(out, expected)}, "
                      "although it passed on the CPU.\nLikely cause: part of the work happens on another device.")


def summary(cases: Sequence[Case]) -> str:
    return (f"{len(cases)} cases match (the same tokens removed, the rest within atol {core.ATOL:g}): "
            + "; ".join(c.label for c in cases) + ".")


# ------------------------------------------------------------------------------------- temperature


def temperature_cases() -> list[Case]:
    out = []
    for shape, temperature, seed in (((3, 11), 0.7, 1201), ((2, 37), 2.0, 1202)):
        logits = random_logits(shape, seed)  # (batch, d_vocab)
        out.append(Case(
            f"random logits {shape}, temperature {temperature}", None, None, (logits, temperature),
            logits / temperature, DIMS,
            lambda lg=logits, t=temperature: [
                Mistake("the logits are multiplied by the temperature; divide them: logits / temperature "
                        "(a temperature below 1 must sharpen the distribution).", lambda: lg * t),
                Mistake("you returned probabilities (a softmax); return the scaled logits: the softmax comes later, "
                        "in sample_next_token.", lambda: (lg / t).softmax(-1)),
                Mistake("you returned log probabilities (log_softmax); return the logits divided by the temperature, "
                        "nothing more.", lambda: (lg / t).log_softmax(-1)),
            ],
            "1) divide, do not multiply: logits / temperature; 2) return logits, not probabilities.",
        ))
    return out


def test_apply_temperature(apply_temperature) -> None:
    """Check apply_temperature: logits / temperature on random logits, and an error for temperature 0."""
    __tracebackhide__ = True
    test = "test_apply_temperature"
    fn = core.expect_function(apply_temperature, "apply_temperature", test)
    cases = temperature_cases()
    run_logit_cases(test, fn, cases, "apply_temperature")
    logits = random_logits((2, 5), 1203)  # (2, 5)
    for temperature in (0.0, -0.5):
        try:
            with torch.no_grad():
                fn(logits.clone(), temperature)
        except NotImplementedError:
            core.not_done(test, "apply_temperature")
        except Exception:  # noqa: BLE001, S112 - any error is the right answer for temperature <= 0
            continue
        if temperature == 0.0:
            core.fail(f"{test} FAILED: apply_temperature(logits, 0.0) returned a result instead of raising an error.\n"
                      "Likely cause: no guard for temperature 0 (dividing by 0 gives inf and NaN). Raise a ValueError "
                      "when temperature <= 0: greedy decoding takes the argmax in sample_next_token instead.")
        core.fail(f"{test} FAILED: apply_temperature(logits, -0.5) returned a result instead of raising an error.\n"
                  "Likely cause: the guard tests temperature == 0 only. A negative temperature flips the logits, so "
                  "the least likely token becomes the most likely: raise a ValueError when temperature <= 0.")
    core.passed(test, summary(cases) + " Temperatures 0 and -0.5 raise an error.")


# ------------------------------------------------------------------------------- frequency penalty


def counts(ids: Tensor, d_vocab: int) -> Tensor:
    return torch.nn.functional.one_hot(ids, d_vocab).sum(dim=1).to(torch.get_default_dtype())  # (batch, d_vocab)


def penalty_cases() -> list[Case]:
    out = []
    for (batch, seq, d_vocab), penalty, seed in (((3, 12, 9), 0.5, 1211), ((2, 30, 23), 1.3, 1212)):
        logits = random_logits((batch, d_vocab), seed)  # (batch, d_vocab)
        ids = core.random_tokens((batch, seq), d_vocab, seed + 50, CPU)  # (batch, seq)
        c = counts(ids, d_vocab)  # (batch, d_vocab)
        out.append(Case(
            f"random logits ({batch}, {d_vocab}) after {seq} tokens, freq_penalty {penalty}", None, None,
            (ids, logits, penalty), logits - penalty * c, DIMS,
            lambda lg=logits, c=c, p=penalty: [
                Mistake("each distinct token is penalised once, however often it occurs (a presence penalty). Count "
                        "every occurrence: a token seen 3 times loses 3 * freq_penalty.", lambda: lg - p * (c > 0)),
                Mistake("the penalty is added; subtract it (logits - freq_penalty * counts), so that repeated tokens "
                        "become less likely.", lambda: lg + p * c),
                Mistake("the counts are pooled over the whole batch; count each row's own tokens (a row's history "
                        "says nothing about another row's).", lambda: lg - p * c.sum(0, keepdim=True)),
                Mistake("the logits are multiplied by the penalty instead of having it subtracted per occurrence.",
                        lambda: lg * p),
            ],
            "1) count each token's occurrences per row, with scatter_add or bincount(minlength=d_vocab); "
            "2) subtract freq_penalty * counts from the logits.",
        ))
    return out


def test_apply_frequency_penalty(apply_frequency_penalty) -> None:
    """Check apply_frequency_penalty on random tokens and logits."""
    __tracebackhide__ = True
    test = "test_apply_frequency_penalty"
    fn = core.expect_function(apply_frequency_penalty, "apply_frequency_penalty", test)
    cases = penalty_cases()
    run_logit_cases(test, fn, cases, "apply_frequency_penalty")
    core.passed(test, summary(cases))


# ------------------------------------------------------------------------------------------- top-k


def keep_top_k(logits: Tensor, scores: Tensor, k: int) -> Tensor:
    """logits with -inf wherever `scores` is not among the k largest of its row."""
    k = max(0, min(k, logits.shape[-1]))
    keep = torch.zeros_like(logits, dtype=torch.bool)  # (batch, d_vocab)
    if k:
        keep.scatter_(-1, scores.sort(dim=-1, descending=True).indices[:, :k], True)
    return logits.masked_fill(~keep, NEG_INF)  # (batch, d_vocab)


TOP_K_SHAPE_HINTS = (
    (lambda got, want: len(got) == 2 and got[0] == want[0] and got[1] < want[1],
     "you returned only the k values (topk's output); return the whole row, with -inf in place of the removed "
     "logits, so that token ids keep their positions."),
)


def top_k_cases() -> list[Case]:
    out = []
    for shape, k, seed in (((3, 13), 4, 1221), ((2, 9), 1, 1222), ((2, 7), 10, 1223)):
        logits = random_logits(shape, seed)  # (batch, d_vocab)
        out.append(Case(
            f"random logits {shape}, k = {k}", None, None, (logits, k), keep_top_k(logits, logits, k), DIMS,
            lambda lg=logits, k=k: [
                Mistake("you keep k + 1 tokens: keep exactly k (the k-th largest value is the last one kept; "
                        "compare with `<`, not `<=`, or index topk's values at k - 1).", lambda: keep_top_k(lg, lg, k + 1)),
                Mistake("you keep k - 1 tokens: keep exactly k (the k-th largest value itself stays; index topk's "
                        "values at k - 1 and remove only what is below it).", lambda: keep_top_k(lg, lg, k - 1)),
                Mistake("the softmax is taken over the batch dimension (dim=0), which ranks each token against the "
                        "other rows. Rank within each row: no softmax is needed at all, the logits' order is the "
                        "probabilities' order.", lambda: keep_top_k(lg, lg.softmax(0), k)),
                Mistake("the smallest k are kept (topk with largest=False, or an ascending sort); keep the largest.",
                        lambda: keep_top_k(lg, -lg, k)),
                Mistake("the result is in sorted order: the kept values are at the front of each row instead of at "
                        "their token ids. Put each value back at its own id (scatter with topk's indices, or a mask "
                        "on the original logits).", lambda: keep_top_k(lg, lg, k).sort(-1, descending=True).values),
                Mistake("you returned probabilities; return the logits with -inf for the removed tokens.",
                        lambda: keep_top_k(lg, lg, k).softmax(-1)),
            ],
            "1) keep exactly the k largest logits of each row, along the last dimension; 2) put -inf everywhere "
            "else, each value staying at its own token id.",
        ))
    return out


def test_top_k_logits(top_k_logits) -> None:
    """Check top_k_logits on random logits, with k = 4, k = 1 and k larger than the vocabulary."""
    __tracebackhide__ = True
    test = "test_top_k_logits"
    fn = core.expect_function(top_k_logits, "top_k_logits", test)
    cases = top_k_cases()
    big_k = ("", "", "With k = 10 and only 7 tokens, keep every token: cap k with min(k, logits.shape[-1]).")
    run_logit_cases(test, fn, cases, "top_k_logits", TOP_K_SHAPE_HINTS, big_k)
    core.passed(test, summary(cases))


# ------------------------------------------------------------------------------------------- top-p


def keep_top_p(
    logits: Tensor, top_p: float, min_keep: int = 1, *, scores: Tensor | None = None,
    crossing: bool = True, unsorted_back: str = "scatter", softmax_dim: int = -1, descending: bool = True,
) -> Tensor:
    """Nucleus filtering, with switches for the catalogued mistakes (the defaults are the correct computation)."""
    scores = logits if scores is None else scores
    values, ids = scores.sort(dim=-1, descending=descending)  # (batch, d_vocab) each
    probs = values.softmax(softmax_dim) if softmax_dim is not None else values  # (batch, d_vocab)
    cumulative = probs.cumsum(-1)  # (batch, d_vocab)
    remove = (cumulative - probs >= top_p) if crossing else (cumulative >= top_p)  # (batch, d_vocab), sorted order
    remove[:, :min_keep] = False
    if unsorted_back == "sorted":
        return logits.sort(-1, descending=True).values.masked_fill(remove, NEG_INF)
    if unsorted_back == "none":  # the sorted-order mask put on the logits as they are
        return logits.masked_fill(remove, NEG_INF)
    if unsorted_back == "gather":
        return logits.masked_fill(remove.gather(-1, ids), NEG_INF)
    return logits.masked_fill(remove.scatter(-1, ids, remove), NEG_INF)  # (batch, d_vocab)


def top_p_mistakes(lg: Tensor, p: float, keep: int) -> list[Mistake]:
    return [
        Mistake("the token that crosses the threshold is dropped. Keep it: a token stays when the probability of "
                "the tokens before it is below top_p (compare cumsum - probs with top_p, not cumsum).",
                lambda: keep_top_p(lg, p, keep, crossing=False)),
        Mistake("a row keeps no token at all when its top token alone has more than top_p. The most likely token "
                "must always stay: the crossing token is kept, and the first min_tokens_to_keep sorted tokens too.",
                lambda: keep_top_p(lg, p, 0, crossing=False)),
        Mistake("the cumulative sum is taken over the sorted logits, not the probabilities: softmax the sorted "
                "logits first (top_p is a probability).", lambda: keep_top_p(lg, p, keep, softmax_dim=None)),
        Mistake("the result is in sorted order. Map the decision back to each token's own id: "
                "mask.scatter(-1, sorted_ids, sorted_mask), then masked_fill the original logits.",
                lambda: keep_top_p(lg, p, keep, unsorted_back="sorted")),
        Mistake("the sorted mask is mapped back with gather(-1, sorted_ids), which applies the permutation the wrong "
                "way round. Use scatter(-1, sorted_ids, sorted_mask), or gather with sorted_ids.argsort(-1).",
                lambda: keep_top_p(lg, p, keep, unsorted_back="gather")),
        Mistake("the mask, computed in sorted order, is applied to the logits in their original order: it removes "
                "the wrong tokens. Map it back to each token's own id first: remove.scatter(-1, sorted_ids, remove), "
                "then masked_fill the original logits.", lambda: keep_top_p(lg, p, keep, unsorted_back="none")),
        Mistake("the logits are sorted in ascending order, so the cumulative sum starts from the least likely token: "
                "sort with descending=True, so that the nucleus is the most likely tokens.",
                lambda: keep_top_p(lg, p, keep, descending=False)),
        Mistake("the softmax is over the batch dimension (dim=0); take it over the vocabulary (dim=-1), within each row.",
                lambda: keep_top_p(lg, p, keep, softmax_dim=0)),
        Mistake("min_tokens_to_keep is ignored: the first min_tokens_to_keep tokens in sorted order must always stay.",
                lambda: keep_top_p(lg, p, 1)),
    ]


def sharpened(logits: Tensor, rows: Sequence[int], factor: float = 4.0, lowered: Sequence[int] = ()) -> Tensor:
    """logits with some rows made confident (their top token alone has more than top_p), others shifted down.

    A softmax ignores a shift, so a correct top-p does too; a cumulative sum of raw logits does not.
    """
    out = logits.clone()  # (batch, d_vocab)
    out[list(rows)] = out[list(rows)] * factor
    out[list(lowered)] = out[list(lowered)] - 5.0
    return out


def top_p_cases() -> list[Case]:
    specs = (
        ("random logits (3, 10), top_p 0.5, rows 0 and 2 confident, row 1 lowered by 5", sharpened(random_logits((3, 10), 1232), (0, 2), lowered=(1,)), 0.5, 1),
        ("random logits (4, 12), top_p 0.7", random_logits((4, 12), 1231, 1.5), 0.7, 1),
        ("random logits (3, 10), top_p 0.75, min_tokens_to_keep 3", sharpened(random_logits((3, 10), 1233), (1,)), 0.75, 3),
        ("random logits (2, 100), top_p 0.95", random_logits((2, 100), 1240, 1.5), 0.95, 1),
    )
    fallback = ("1) sort each row in decreasing order and softmax the sorted logits over the last dimension; "
                "2) remove a token when the mass before it (cumsum - probs) is at least top_p; "
                "3) always keep the first min_tokens_to_keep; 4) scatter the decision back to the original ids.")
    return [
        Case(label, None, None, (lg, p, keep) if keep != 1 else (lg, p), keep_top_p(lg, p, keep), DIMS,
             lambda lg=lg, p=p, keep=keep: top_p_mistakes(lg, p, keep), fallback)
        for label, lg, p, keep in specs
    ]


def top_p_margin(case: Case) -> float:
    """How far every cumulative sum of the case is from top_p (a case on a knife edge would test rounding)."""
    logits, top_p = case.inputs[0], case.inputs[1]
    cumulative = logits.sort(-1, descending=True).values.softmax(-1).cumsum(-1)  # (batch, d_vocab)
    return float((cumulative - top_p).abs().min())


def test_top_p_logits(top_p_logits) -> None:
    """Check top_p_logits on random logits: ordinary rows, confident rows and min_tokens_to_keep."""
    __tracebackhide__ = True
    test = "test_top_p_logits"
    fn = core.expect_function(top_p_logits, "top_p_logits", test)
    cases = top_p_cases()
    run_logit_cases(test, fn, cases, "top_p_logits", TOP_K_SHAPE_HINTS)
    core.passed(test, summary(cases))
