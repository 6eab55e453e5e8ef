"""test_top_token_pairs: the largest entries of a factored matrix, found a few rows at a time, never the whole product.

The learner writes ``top_token_pairs(circuit, k, chunk_rows)``: ``circuit`` is a TransformerLens
``FactoredMatrix`` standing for ``A @ B`` (for a head's full QK or OV circuit, 50257 x 50257, 10 GB in
float32), and the answer is the ``(row, column)`` pairs of its ``k`` largest entries, largest first, as
an integer tensor of shape ``(k, 2)``. The check compares with the dense product on small random factors
(exact: the pairs of random floats have no ties), with a number of rows that ``chunk_rows`` does not
divide and a rectangular case, so that a row index not offset by its chunk, a chunk left out or an index
decoded with the wrong width each changes the answer. It also watches every tensor the learner's code
makes: one as large as the whole product (or as four chunks of it) means the product was built whole.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from c1p1.checks import core
from c1p1.config import Config

TEST = "test_top_token_pairs"
DIMS = ("pair", "row and column")


def top_pairs(scores: Tensor, k: int, row_offset: int = 0) -> tuple[Tensor, Tensor]:
    """The k largest entries of a dense block of rows: their values (k,) and (row, column) pairs (k, 2)."""
    values, flat = scores.flatten().topk(k)  # (k,), (k,)
    rows = flat // scores.shape[1] + row_offset  # (k,)
    cols = flat % scores.shape[1]  # (k,)
    return values, torch.stack([rows, cols], dim=-1)  # (k,), (k, 2)


def expected_pairs(A: Tensor, B: Tensor, k: int) -> Tensor:
    return top_pairs(A @ B, k)[1]  # (k, 2)


def mistakes(A: Tensor, B: Tensor, k: int, chunk_rows: int) -> Callable[[], list[core.Mistake]]:
    dense = A @ B  # (rows, cols): small, so the mistakes can use it whole
    n_rows, n_cols = dense.shape

    def chunked(local_rows: bool = False, only: str = "") -> Tensor:
        values, pairs = [], []
        starts = list(range(0, n_rows, chunk_rows))
        if only == "first":
            starts = starts[:1]
        elif only == "last":
            starts = starts[-1:]
        for start in starts:
            block = dense[start : start + chunk_rows]  # (chunk, cols)
            v, p = top_pairs(block, min(k, block.numel()), 0 if local_rows else start)
            values.append(v)
            pairs.append(p)
        values, pairs = torch.cat(values), torch.cat(pairs)  # (candidates,), (candidates, 2)
        return pairs[values.topk(k).indices]  # (k, 2)

    def decoded_with(width: int) -> Tensor:
        flat = dense.flatten().topk(k).indices  # (k,)
        return torch.stack([flat // width, flat % width], dim=-1)  # (k, 2)

    right = expected_pairs(A, B, k)  # (k, 2)
    return lambda: [
        core.Mistake("each pair is (column, row): the first number is the row of the circuit (for a full circuit, the "
                     "query or attended token), the second its column.", lambda: right.flip(-1)),
        core.Mistake("these are the k smallest (most negative) entries: topk returns the largest by default; do not "
                     "negate the scores or pass largest=False.", lambda: top_pairs(-dense, k)[1]),
        core.Mistake("the entries are ranked by their absolute value. The question is which pairs score highest, so "
                     "rank the signed values.", lambda: top_pairs(dense.abs(), k)[1]),
        core.Mistake("the row numbers are counted from the start of each chunk. Add the chunk's first row (its "
                     "offset in the whole matrix) to the rows you decode inside it.",
                     lambda: chunked(local_rows=True)),
        core.Mistake("these are the first chunk's best pairs: either the loop stops after the first chunk, or the "
                     "candidates of all chunks are joined but not ranked together. Visit every chunk, up to the last "
                     "(shorter) one, then take the top k of all candidates by value.", lambda: chunked(only="first")),
        core.Mistake("only the last chunk's candidates are kept: each pass of the loop overwrites the previous "
                     "ones. Collect the candidates of every chunk, then pick the top k of all of them.",
                     lambda: chunked(only="last")),
        core.Mistake(f"a flat index was decoded with the wrong width: row = index // n_cols and column = index % "
                     f"n_cols, where n_cols is the number of columns ({n_cols} here), not the number of rows.",
                     lambda: decoded_with(n_rows)),
        core.Mistake("the pairs are in ascending order: return them largest first.", lambda: right.flip(0)),
    ]


SHAPE_HINTS = (
    (lambda out, exp: len(out) == 2 and out[0] == exp[1] and out[1] == exp[0],
     "the output is transposed: one row per pair, (k, 2), each row (row, column)."),
    (lambda out, exp: len(out) == 2 and out[1] == 2 and out[0] > exp[0],
     "more than k pairs: the candidates of every chunk are returned. Keep only the k largest of all of them."),
    (lambda out, exp: len(out) == 1 and out[0] == exp[0],
     "one number per pair: return the (row, column) of each, not its flat index or its value."),
)


class _Largest(TorchFunctionMode):
    """Records the largest tensor any torch function returns while the learner's code runs."""

    def __init__(self):
        super().__init__()
        self.numel, self.shape = 0, ()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, Tensor) and t.numel() > self.numel:
                self.numel, self.shape = t.numel(), tuple(t.shape)
        return out


def _cases():
    from transformer_lens import FactoredMatrix

    from c1p1.reference import pick_device

    device = pick_device()  # random factors only: the check needs no reference
    cfg = Config()
    for (n_rows, inner, n_cols), k, chunk_rows, seed in (((503, 24, 503), 12, 64, 51), ((300, 8, 257), 7, 64, 52)):
        A = core.random_input((n_rows, inner), seed, device)  # (rows, inner)
        B = core.random_input((inner, n_cols), seed + 100, device)  # (inner, cols)
        label = f"random factors {n_rows}x{inner} @ {inner}x{n_cols}, k={k}, chunk_rows={chunk_rows}"
        yield core.Case(label, cfg, None, (FactoredMatrix(A, B), k, chunk_rows), expected_pairs(A, B, k), DIMS,
                        mistakes(A, B, k, chunk_rows),
                        "a row index not offset by its chunk; a chunk left out of the search; the candidates not "
                        "ranked together at the end; a flat index decoded with the wrong width.")


def test_top_token_pairs(top_token_pairs) -> None:
    """Check top_token_pairs: the (row, column) of the k largest entries of A @ B, largest first, chunk by chunk."""
    __tracebackhide__ = True
    fn = core.expect_function(top_token_pairs, "top_token_pairs", TEST)
    cases = []
    for case in _cases():
        cases.append(case)
        circuit, k, chunk_rows = case.inputs
        versions = (circuit.A._version, circuit.B._version)
        watch = _Largest()
        with watch:
            out = core.call(fn, case.inputs, TEST, "top_token_pairs")
        if (circuit.A._version, circuit.B._version) != versions:
            core.fail(f"{TEST}: top_token_pairs changed the circuit's factors in place on {case.label}.\n"
                      "Likely cause: an in-place operation (`*=`, `.add_()`) on circuit.A or circuit.B or a slice of "
                      "them; make new tensors instead.")
        n_rows, n_cols = circuit.shape
        limit = min(n_rows * n_cols, 4 * chunk_rows * n_cols)  # the whole product, or four chunks' worth of it
        if watch.numel >= limit:
            core.fail(f"{TEST}: on {case.label}, your code made a tensor of shape {watch.shape} "
                      f"({watch.numel:,} entries): as large as the whole {n_rows} x {n_cols} product, or as four "
                      f"chunks of it (4 x chunk_rows x n_cols = {4 * chunk_rows * n_cols:,}).\n"
                      "Likely cause: the whole product was built (circuit.AB, or A @ B of all rows). For GPT-2 that is "
                      "50257 x 50257, 10 GB: compute the scores of at most chunk_rows rows at a time, "
                      "circuit.A[start:start + chunk_rows] @ circuit.B.")
        if out.is_floating_point():
            core.fail(f"{TEST}: top_token_pairs returned {out.dtype} values; it should return integer (row, column) "
                      "indices.\nLikely cause: the scores themselves were returned, or the indices were stacked with "
                      "float values. Return the indices from topk (torch.long).")
        core.vet_output(out, case.expected, case.dims, TEST, "the pairs", SHAPE_HINTS)
        _explain_pairs(case, out)
    core.passed(TEST, core.summary(cases))


def _explain_pairs(case: core.Case, out: Tensor) -> None:
    """Name the first wrong pair as (row, column), yours and expected, and the known mistake the pairs match."""
    __tracebackhide__ = True
    want = case.expected  # (k, 2)
    right = (out == want).all(-1)  # (k,): the pairs in their right place
    if bool(right.all()):
        return
    i = int((~right).nonzero()[0])
    as_set = {tuple(r) for r in out.tolist()} == {tuple(r) for r in want.tolist()}
    first = (f"{TEST} FAILED on {case.label}: {int(right.sum())} of the k={len(want)} pairs are right and in place; "
             f"the first wrong one is pair {i}: yours (row {out[i, 0]}, column {out[i, 1]}), expected (row "
             f"{want[i, 0]}, column {want[i, 1]})" + (", though yours are the right pairs in another order." if as_set
                                                       else "."))
    for mistake in case.mistakes():
        candidate = mistake.output()  # (k, 2)
        if candidate.shape == out.shape and torch.equal(candidate.to(out.dtype), out):
            core.fail(first + "\nLikely cause: " + mistake.cause)
    core.fail(first + "\nLikely causes, most likely first: " + ("the pairs are not sorted by value, largest first "
                                                                  "(topk of all the candidates sorts them)." if as_set
                                                                  else case.fallback))
