"""Judging an output: its shape, dtype, device and values, and, when they are off, the likely cause.

Every value is compared with the expected one (atol 1e-4, rtol 1e-3). When some are off, the
learner's output is compared with what each known mistake (a `Mistake`) gives on the same input,
and the message names the one it matches; when none does, the case's ranked fallback causes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import torch
from torch import Tensor

from c1p1.checks.learner import fail
from c1p1.config import Config

ATOL = 1e-4
RTOL = 1e-3
# A learner's output "matches a known mistake" when it is this close to what that mistake gives.
MISTAKE_ATOL = 2e-3
MISTAKE_RTOL = 2e-2

# (applies(got_shape, expected_shape), likely cause): the first that applies explains a wrong shape.
ShapeHints = Sequence[tuple[Callable[[tuple, tuple], bool], str]]


@dataclass
class Mistake:
    """A plausible mistake: what it gives on a case's input, and the advice it earns."""

    cause: str
    output: Callable[[], Tensor]


@dataclass
class Case:
    """One comparison: build with ``cfg``, load ``params``, run on ``inputs``, expect ``expected``.

    A check that needs more per case (an expected attention pattern, a constructor's arguments)
    subclasses it with fields that have defaults.
    """

    label: str
    cfg: Config
    params: dict[str, Tensor] | None
    inputs: tuple
    expected: Tensor
    dims: tuple[str, ...]
    mistakes: Callable[[], list[Mistake]] = field(default=lambda: [])
    fallback: str = ""  # the most likely causes, ranked, when no known mistake matches
    first_position: int = 0  # the position of row 0 along "posn", for inputs that start later (a cache's offset)


_PLACES = {
    "batch": "batch",
    "posn": "position",
    "query_pos": "query position",
    "key_pos": "key position",
    "n_heads": "head",
    "head_index": "head",
    "d_model": "feature",
    "d_head": "feature",
    "d_mlp": "neuron",
    "d_vocab": "token id",
    "seq": "position",
}


def where(index: Sequence[int], dims: Sequence[str], first_position: int = 0) -> str:
    """Where an index lies, by the names of the dims; with ``first_position``, a "posn" index is a row and a position."""
    return ", ".join(f"row {i} (position {i + first_position})" if d == "posn" and first_position
                     else f"{_PLACES.get(d, d)} {i}" for d, i in zip(dims, index, strict=False))


def named_shape(shape: Sequence[int], dims: Sequence[str]) -> str:
    if len(shape) != len(dims):
        return "(" + ", ".join(str(s) for s in shape) + ")"
    return "(" + ", ".join(f"{d}={s}" for d, s in zip(dims, shape, strict=True)) + ")"


def vet_output(out: Tensor, expected: Tensor, dims: Sequence[str], test: str, what: str,
               shape_hints: ShapeHints = ()) -> None:
    """Shape, dtype, device and finiteness, each with its own message."""
    __tracebackhide__ = True
    if tuple(out.shape) != tuple(expected.shape):
        msg = (
            f"{test}: {what} has shape {named_shape(out.shape, dims)} "
            f"but should have shape {named_shape(expected.shape, dims)}."
        )
        for applies, hint in shape_hints:
            if applies(tuple(out.shape), tuple(expected.shape)):
                msg += "\nLikely cause: " + hint
                break
        fail(msg)
    if out.device != expected.device:
        fail(
            f"{test}: {what} is on {out.device} but the reference is on {expected.device}.\n"
            "Likely cause: a tensor created inside forward without device=...; create it on the input's device "
            "(e.g. `torch.arange(n, device=x.device)`) or register it as a buffer."
        )
    if out.dtype != expected.dtype:
        fail(
            f"{test}: {what} has dtype {out.dtype} but should be {expected.dtype}.\n"
            "Likely cause: a cast (e.g. .double() or .half()) that is never undone; cast back with .to(x.dtype)."
        )
    bad = ~torch.isfinite(out)
    if bad.any():
        idx = [int(i) for i in bad.nonzero()[0]]
        count = int(bad.sum())
        fail(
            f"{test}: {what} contains {count} NaN or inf values (the first at {where(idx, dims)}).\n"
            "Likely cause: a division by zero, a log of 0, or a softmax over a row that is entirely -inf."
        )


@dataclass
class Mismatch:
    fraction: float
    max_error: float
    index: tuple[int, ...]


def compare(out: Tensor, expected: Tensor) -> Mismatch | None:
    close = torch.isclose(out, expected, atol=ATOL, rtol=RTOL)  # same shape as out
    if bool(close.all()):
        return None
    error = (out - expected).abs()  # same shape as out
    flat = int(error.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), error.shape))
    return Mismatch(float(close.float().mean()), float(error.max()), index)


def matches(out: Tensor, candidate: Tensor) -> bool:
    return candidate.shape == out.shape and bool(
        torch.isclose(out, candidate.to(out.dtype), atol=MISTAKE_ATOL, rtol=MISTAKE_RTOL).all()
    )


def explain(test: str, what: str, case: Case, out: Tensor, mismatch: Mismatch) -> NoReturn:
    """Fail with how much of ``out`` is off and where, and the known mistake it matches (or the ranked causes)."""
    __tracebackhide__ = True
    first = (
        f"{test} FAILED on {case.label}: {100 * mismatch.fraction:.1f}% of {what} values match the reference "
        f"(max abs error {mismatch.max_error:.3g} at {where(mismatch.index, case.dims, case.first_position)})."
    )
    best, best_distance = None, float("inf")
    for mistake in case.mistakes():
        try:
            candidate = mistake.output()
        except Exception:  # a mistake that cannot run on this input is just not it
            continue
        if not matches(out, candidate):
            continue
        distance = float((out - candidate.to(out.dtype)).abs().max())
        # It must explain the output far better than the correct answer does, and better than the others.
        if distance < 0.2 * mismatch.max_error and distance < best_distance:
            best, best_distance = mistake, distance
    if best is not None:
        fail(first + "\nLikely cause: " + best.cause)
    if case.fallback:
        fail(first + "\nLikely causes, most likely first: " + case.fallback)
    fail(first)


def judge(test: str, case: Case, out: Tensor, what: str = "the output", values: str = "",
          shape_hints: ShapeHints = ()) -> None:
    """The whole verdict on one output: vet it, compare it, and explain a mismatch."""
    __tracebackhide__ = True
    vet_output(out, case.expected, case.dims, test, what, shape_hints)
    mismatch = compare(out, case.expected)
    if mismatch is not None:
        explain(test, values or what, case, out, mismatch)


def summary(cases: Sequence[Case]) -> str:
    return f"{len(cases)} cases match within atol {ATOL:g}, rtol {RTOL:g}: " + "; ".join(c.label for c in cases) + "."
