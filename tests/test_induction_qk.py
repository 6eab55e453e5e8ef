"""Notebook 14's induction_qk_circuit check: correct variants pass, the stub is not done, each mistake is named."""

from __future__ import annotations

import math

import pytest
import torch
from transformer_lens import FactoredMatrix

import C1P1_tests as tests
from c1p1 import parts
from tests.check_helpers import fails, not_done


def circuit(body):
    """A learner's function from body(W_E, layer-0 attention, layer-1 attention, prev_head, induction_head)."""

    def induction_qk_circuit(model, prev_head, induction_head):
        return body(model.embed.W_E, model.blocks[0].attn, model.blocks[1].attn, prev_head, induction_head)

    return induction_qk_circuit


def ov(a0, p):
    return a0.W_V[p] @ a0.W_O[p]  # (d_model, d_model)


CORRECT = {
    "solution": parts.induction_qk_circuit,
    "inner d_model": circuit(lambda E, a0, a1, p, i: FactoredMatrix(E, a1.W_Q[i] @ (E @ ov(a0, p) @ a1.W_K[i]).T)),
    "FactoredMatrix chain": circuit(lambda E, a0, a1, p, i: FactoredMatrix(E @ a1.W_Q[i], a1.W_K[i].T)
                                    @ FactoredMatrix(a0.W_O[p].T, a0.W_V[p].T @ E.T)),
    "W_QK first": circuit(lambda E, a0, a1, p, i: FactoredMatrix(E @ a1.W_Q[i] @ a1.W_K[i].T, ov(a0, p).T @ E.T)),
    "keys as FactoredMatrix": circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        E @ a1.W_Q[i], (FactoredMatrix(E @ a0.W_V[p], a0.W_O[p]) @ a1.W_K[i]).AB.T)),
}


def _q(E, a1, i):
    return E @ a1.W_Q[i]  # (d_vocab, d_head)


MISTAKES = {
    "direct circuit": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(_q(E, a1, i), (E @ a1.W_K[i]).T)),
                       ["key's own token", "OV circuit"]),
    "Q-composition": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(E @ ov(a0, p) @ a1.W_Q[i], (E @ a1.W_K[i]).T)),
                      ["Q-composition", "key side"]),
    "direct path added": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a1, i), (E @ ov(a0, p) @ a1.W_K[i] + E @ a1.W_K[i]).T)), ["direct path is added"]),
    "sides swapped": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(E @ ov(a0, p) @ a1.W_K[i], _q(E, a1, i).T)),
                      ["swapped"]),
    "OV transposed": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(_q(E, a1, i), (E @ ov(a0, p).T @ a1.W_K[i]).T)),
                      ["transposed", "W_V"]),
    "induction head's own OV": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a1, i), (E @ ov(a1, i) @ a1.W_K[i]).T)), ["layer 0"]),
    "heads swapped": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(_q(E, a1, p), (E @ ov(a0, i) @ a1.W_K[p]).T)),
                      ["indices are swapped"]),
    "W_Q on the key side": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a1, i), (E @ ov(a0, p) @ a1.W_Q[i]).T)), ["W_Q is used on the key side"]),
    "scaled": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a1, i) / math.sqrt(a1.W_Q.shape[-1]), (E @ ov(a0, p) @ a1.W_K[i]).T)), ["sqrt(d_head)"]),
    "dense tensor": (circuit(lambda E, a0, a1, p, i: _q(E, a1, i) @ (E @ ov(a0, p) @ a1.W_K[i]).T), ["dense"]),
    "key side not transposed": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(_q(E, a1, i), E @ ov(a0, p) @ a1.W_K[i])),
                                ["do not meet"]),
    "wide factors": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a1, i) @ (E @ ov(a0, p) @ a1.W_K[i]).T, torch.eye(E.shape[0], device=E.device))), ["inner dimension"]),
}


def _wu(model):
    return model.unembed.W_U.T  # (d_vocab, d_model)


def with_model(body):
    """A learner's function from body(model, layer-0 attention, layer-1 attention, prev_head, induction_head)."""

    def induction_qk_circuit(model, prev_head, induction_head):
        return body(model, model.blocks[0].attn, model.blocks[1].attn, prev_head, induction_head)

    return induction_qk_circuit


MISTAKES.update({
    "W_Q for W_V": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a1, i), (E @ a0.W_Q[p] @ a0.W_O[p] @ a1.W_K[i]).T)), ["starts with its W_Q", "W_V"]),
    "W_U on the key side": (with_model(lambda m, a0, a1, p, i: FactoredMatrix(
        _q(m.embed.W_E, a1, i), (_wu(m) @ ov(a0, p) @ a1.W_K[i]).T)), ["key side starts from W_U.T"]),
    "W_U on the query side": (with_model(lambda m, a0, a1, p, i: FactoredMatrix(
        _wu(m) @ a1.W_Q[i], (m.embed.W_E @ ov(a0, p) @ a1.W_K[i]).T)), ["query side starts from W_U.T"]),
    "OV from layer 1": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a1, i), (E @ ov(a1, p) @ a1.W_K[i]).T)), ["come from layer 1"]),
    "QK from layer 0": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a0, i), (E @ ov(a0, p) @ a0.W_K[i]).T)), ["come from layer 0"]),
    "biases included": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        E @ a1.W_Q[i] + a1.b_Q[i], (((E @ a0.W_V[p] + a0.b_V[p]) @ a0.W_O[p] + a0.b_O) @ a1.W_K[i] + a1.b_K[i]).T)),
        ["biases are included"]),
    "W_V without W_O": (circuit(lambda E, a0, a1, p, i: FactoredMatrix(
        _q(E, a1, i), (E @ a0.W_V[p] @ a1.W_K[i]).T)), ["W_V alone"]),
})


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name):
    tests.test_induction_qk_circuit(CORRECT[name])


@pytest.mark.parametrize("name", MISTAKES)
def test_mistakes_are_named(name):
    fn, words = MISTAKES[name]
    fails(tests.test_induction_qk_circuit, fn, *words)


def test_stub_is_not_done():
    def induction_qk_circuit(model, prev_head, induction_head):
        # YOUR CODE HERE
        raise NotImplementedError()

    not_done(tests.test_induction_qk_circuit, induction_qk_circuit)


def test_bad_input_gets_one_message():
    fails(tests.test_induction_qk_circuit, "induction_qk_circuit", "function")
    fails(tests.test_induction_qk_circuit, circuit(lambda E, a0, a1, p, i: None), "NoneType", "return")


def test_the_trained_model_reads_the_previous_token():
    """On the trained induction model the circuit's diagonal wins in most rows (the notebook's claim)."""
    from c1p1.induction import eval_tokens, induction_model

    model = induction_model(verbose=False)
    with torch.no_grad():
        model(eval_tokens(next(model.parameters()).device))
        prev = int(parts.prev_token_score(model.blocks[0].attn.pattern).argmax())
        dense = parts.induction_qk_circuit(model, prev, 0).AB  # (d_vocab, d_vocab)
    hits = (dense.argmax(-1) == torch.arange(dense.shape[0], device=dense.device)).float().mean().item()
    assert hits > 0.9, f"the diagonal wins in only {hits:.0%} of rows"
