"""test_top_token_pairs: correct variants pass; the stub is not done; each named mistake is caught; the whole product is refused."""

from __future__ import annotations

import pytest
import torch

import C1P1_tests as tests
from c1p1.parts import top_token_pairs
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions


def sliced_factored_matrix(circuit, k, chunk_rows):
    n_cols = circuit.shape[1]
    values, pairs = [], []
    for start in range(0, circuit.shape[0], chunk_rows):
        scores = circuit[start : start + chunk_rows].AB  # (chunk, n_cols): FactoredMatrix slicing
        v, flat = scores.flatten().topk(min(k, scores.numel()))
        rows, cols = torch.unravel_index(flat, scores.shape)
        values.append(v)
        pairs.append(torch.stack([rows + start, cols], dim=-1))
    values, pairs = torch.cat(values), torch.cat(pairs)
    assert n_cols == circuit.shape[1]
    return pairs[values.argsort(descending=True)[:k]]


def running_top_k(circuit, k, chunk_rows):
    best_values = torch.empty(0, device=circuit.A.device)
    best_pairs = torch.empty(0, 2, dtype=torch.long, device=circuit.A.device)
    for start in range(0, circuit.shape[0], chunk_rows):
        scores = circuit.A[start : start + chunk_rows] @ circuit.B  # (chunk, n_cols)
        rows = torch.arange(start, start + scores.shape[0], device=scores.device)[:, None].expand_as(scores)
        cols = torch.arange(scores.shape[1], device=scores.device)[None, :].expand_as(scores)
        values = torch.cat([best_values, scores.flatten()])
        pairs = torch.cat([best_pairs, torch.stack([rows.flatten(), cols.flatten()], dim=-1)])
        keep = values.topk(k).indices
        best_values, best_pairs = values[keep], pairs[keep]
    return best_pairs


def row_by_row(circuit, k, chunk_rows):
    candidates = []
    for row in range(circuit.shape[0]):
        scores = circuit.A[row] @ circuit.B  # (n_cols,)
        values, cols = scores.topk(k)
        candidates += [(v, row, c) for v, c in zip(values.tolist(), cols.tolist(), strict=True)]
    candidates.sort(reverse=True)
    return torch.tensor([(r, c) for _, r, c in candidates[:k]], device=circuit.A.device)


CORRECT = {
    "solution notebook": lambda: definitions("solutions/05_attention.ipynb")["top_token_pairs"],
    "canonical part": lambda: top_token_pairs,
    "FactoredMatrix slicing and unravel_index": lambda: sliced_factored_matrix,
    "a running top k": lambda: running_top_k,
    "one row at a time": lambda: row_by_row,
}


def chunked(local_rows=False, only="", final_sort=True, width=None, negate=False, absolute=False, flip=False,
            ascending=False):
    def fn(circuit, k, chunk_rows):
        n_cols = circuit.shape[1]
        values, pairs = [], []
        starts = list(range(0, circuit.shape[0], chunk_rows))
        starts = starts[:1] if only == "first" else starts
        for start in starts:
            scores = circuit.A[start : start + chunk_rows] @ circuit.B  # (chunk, n_cols)
            scores = -scores if negate else scores.abs() if absolute else scores
            v, flat = scores.flatten().topk(min(k, scores.numel()))
            w = width or n_cols
            rows = flat // w + (0 if local_rows or width else start)
            if width:  # the flat index of the whole matrix, decoded with the wrong width
                rows, flat = (flat + start * n_cols) // w, flat + start * n_cols
            pair = torch.stack([rows, flat % w], dim=-1)
            if only == "last":
                values, pairs = [v], [pair]
            else:
                values.append(v)
                pairs.append(pair)
        values, pairs = torch.cat(values), torch.cat(pairs)
        out = pairs[values.topk(k).indices] if final_sort else pairs[:k]
        out = out.flip(-1) if flip else out
        return out.flip(0) if ascending else out

    return fn


def whole_product(circuit, k, chunk_rows):
    scores = circuit.AB  # (n_rows, n_cols): the matrix the exercise must not build
    rows, cols = torch.unravel_index(scores.flatten().topk(k).indices, scores.shape)
    return torch.stack([rows, cols], dim=-1)


MISTAKES = {
    "(column, row)": (chunked(flip=True), ["(column, row)"]),
    "smallest": (chunked(negate=True), ["smallest"]),
    "absolute value": (chunked(absolute=True), ["absolute value"]),
    "rows counted within the chunk": (chunked(local_rows=True), ["start of each chunk"]),
    "first chunk only": (chunked(only="first"), ["first chunk's best pairs"]),
    "last chunk only": (chunked(only="last"), ["last chunk"]),
    "candidates not ranked together": (chunked(final_sort=False), ["not ranked together"]),
    "decoded with the number of rows": (chunked(width=300), ["wrong width"]),
    "ascending": (chunked(ascending=True), ["ascending"]),
    "the whole product": (whole_product, ["whole product", "chunk_rows"]),
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name, reference):
    tests.test_top_token_pairs(CORRECT[name]())


@pytest.mark.parametrize("name", MISTAKES)
def test_each_mistake_is_named(name, reference):
    fn, keywords = MISTAKES[name]
    fails(tests.test_top_token_pairs, fn, *keywords)


def test_the_stub_is_not_done(reference):
    not_done(tests.test_top_token_pairs, definitions("notebooks/05_attention.ipynb")["top_token_pairs"])


def test_bad_output_gets_one_clear_message(reference):
    fails(tests.test_top_token_pairs, lambda c, k, n: top_token_pairs(c, k, n).T, "transposed")
    fails(tests.test_top_token_pairs, lambda c, k, n: top_token_pairs(c, k, n).float(), "integer")
    fails(tests.test_top_token_pairs, lambda c, k, n: top_token_pairs(c, k, n)[:, 0] * c.shape[1], "one number per pair")
    fails(tests.test_top_token_pairs, lambda c, k, n: (top_token_pairs(c, k, n), None), "tuple")
    fails(tests.test_top_token_pairs, "top_token_pairs", "function")


def test_factors_written_in_place_are_named(reference):
    def in_place(circuit, k, chunk_rows):
        circuit.A.mul_(1.0)
        return top_token_pairs(circuit, k, chunk_rows)

    fails(tests.test_top_token_pairs, in_place, "in place")


@pytest.mark.parametrize("name", ["(column, row)", "rows counted within the chunk", "ascending"])
def test_a_wrong_pair_is_named_as_row_and_column_not_as_an_error_in_value(name, reference):
    message = fails(tests.test_top_token_pairs, MISTAKES[name][0], "pairs are right and in place", "the first wrong "
                    "one is pair", "yours (row", "expected (row")
    assert "max abs error" not in message and "values match" not in message


def test_right_pairs_in_another_order_are_said_to_be(reference):
    def shuffled(circuit, k, chunk_rows):
        pairs = top_token_pairs(circuit, k, chunk_rows)  # (k, 2)
        return pairs[[1, 0, *range(2, k)]]  # the two best swapped

    fails(tests.test_top_token_pairs, shuffled, "the right pairs in another order", "largest first")
