"""Notebook 14's checks (correct variants pass, mistakes are named) and the trained induction model's circuit."""

from __future__ import annotations

import copy
import math

import einops
import pytest
import torch
from torch import nn
from transformer_lens import FactoredMatrix

import C1P1_tests as tests
from c1p1 import parts
from tests.check_helpers import fails

# ------------------------------------------------------------------------------- prev_token_score


def prev_loop(pattern):
    batch, n_heads, posn, _ = pattern.shape
    total = torch.zeros(n_heads, device=pattern.device)
    for i in range(1, posn):
        total = total + pattern[:, :, i, i - 1].sum(0)
    return total / (batch * (posn - 1))


def prev_shifted_eye(pattern):
    posn = pattern.shape[-1]
    mask = torch.eye(posn, device=pattern.device).roll(-1, dims=1)[..., :]  # row i has a 1 at column i - 1
    mask[0] = 0
    return (pattern * mask).sum((-1, -2)).mean(0) / (posn - 1)


PREV_CORRECT = {
    "solution": parts.prev_token_score,
    "loop": prev_loop,
    "shifted identity mask": prev_shifted_eye,
    "einops reduce": lambda p: einops.reduce(p.diagonal(-1, -2, -1), "b h n -> h", "mean"),
}

PREV_MISTAKES = {
    "own token": (lambda p: p.diagonal(0, -2, -1).mean((0, -1)), ["offset 0"]),
    "axes swapped": (lambda p: p.diagonal(1, -2, -1).mean((0, -1)), ["swapped"]),
    "counts position 0": (lambda p: p.diagonal(-1, -2, -1).sum(-1).mean(0) / p.shape[-1], ["position 0"]),
    "sum over positions": (lambda p: p.diagonal(-1, -2, -1).sum(-1).mean(0), ["summed"]),
    "kept batch": (lambda p: p.diagonal(-1, -2, -1).mean(-1), ["batch"]),
    "averaged over heads": (lambda p: p.diagonal(-1, -2, -1).mean((1, 2)), ["heads"]),
    "hard-coded 8 heads' worth": (lambda p: p.diagonal(-1, -2, -1).mean((0, -1)) * 1.1, ["FAILED"]),
}


@pytest.mark.parametrize("name", PREV_CORRECT)
def test_prev_token_score_correct_variants_pass(name):
    tests.test_prev_token_score(PREV_CORRECT[name])


@pytest.mark.parametrize("name", PREV_MISTAKES)
def test_prev_token_score_mistakes_are_named(name):
    fn, words = PREV_MISTAKES[name]
    fails(tests.test_prev_token_score, fn, *words)


# -------------------------------------------------------------------------------- induction_score


def induction_loop(pattern, seq_len):
    total = 0
    posn = pattern.shape[-1]
    for q in range(seq_len, posn):
        total = total + pattern[:, :, q, q - seq_len + 1].mean(0)
    return total / (posn - seq_len)


INDUCTION_CORRECT = {
    "solution": parts.induction_score,
    "loop": induction_loop,
    "slice then diagonal": lambda p, n: p[:, :, n:, 1:].diagonal(0, -2, -1).mean((0, -1)),
}

INDUCTION_MISTAKES = {
    "same token (offset -seq_len)": (lambda p, n: p.diagonal(-n, -2, -1).mean((0, -1)), ["first occurrence"]),
    "token before": (lambda p, n: p.diagonal(-n - 1, -2, -1).mean((0, -1)), ["before the first occurrence"]),
    "includes query seq_len - 1": (lambda p, n: p.diagonal(1 - n, -2, -1).mean((0, -1)), ["seq_len - 1"]),
    "sign of the offset": (lambda p, n: p.diagonal(n - 1, -2, -1).mean((0, -1)), ["wrong sign"]),
    "previous-token stripe": (lambda p, n: p.diagonal(-1, -2, -1).mean((0, -1)), ["previous-token stripe"]),
    "sum": (lambda p, n: p.diagonal(1 - n, -2, -1)[..., 1:].sum(-1).mean(0), ["summed"]),
    "hard-coded seq_len 5": (lambda p, n: p.diagonal(-4, -2, -1)[..., 1:].mean((0, -1)), ["seq_len=7"]),
    "kept positions": (lambda p, n: p.diagonal(1 - n, -2, -1)[..., 1:].mean(0), ["position axis"]),
    "second repeat only": (lambda p, n: p[:, :, n : 2 * n, 1 : n + 1].diagonal(0, -2, -1).mean((0, -1)),
                           ["only the queries seq_len .. 2 * seq_len - 1", "every query q >= seq_len", "posn=11"]),
    "last seq_len queries": (lambda p, n: p.diagonal(1 - n, -2, -1)[..., -n:].mean((0, -1)),
                             ["only the last seq_len queries", "every query q >= seq_len"]),
    "last query dropped": (lambda p, n: p.diagonal(1 - n, -2, -1)[..., 1:-1].mean((0, -1)),
                           ["the last query", "was dropped", "up to and including the last position"]),
}


@pytest.mark.parametrize("name", INDUCTION_CORRECT)
def test_induction_score_correct_variants_pass(name):
    tests.test_induction_score(INDUCTION_CORRECT[name])


@pytest.mark.parametrize("name", INDUCTION_MISTAKES)
def test_induction_score_mistakes_are_named(name):
    fn, words = INDUCTION_MISTAKES[name]
    fails(tests.test_induction_score, fn, *words)


# ---------------------------------------------------------------------------------- full circuits


def ov_via_w_ov(model, layer, head):
    a = model.blocks[layer].attn
    return FactoredMatrix(model.embed.W_E, a.W_V[head] @ a.W_O[head] @ model.unembed.W_U)  # inner d_model


def ov_chained(model, layer, head):
    a = model.blocks[layer].attn
    return FactoredMatrix(model.embed.W_E, a.W_V[head]) @ a.W_O[head] @ model.unembed.W_U


def ov_two_factored(model, layer, head):
    a = model.blocks[layer].attn
    return FactoredMatrix(model.embed.W_E, a.W_V[head]) @ FactoredMatrix(a.W_O[head], model.unembed.W_U)


OV_CORRECT = {"solution": parts.full_ov_circuit, "FactoredMatrix @ chain": ov_chained,
              "FactoredMatrix @ FactoredMatrix": ov_two_factored}


def ov_with(body):
    def full_ov_circuit(model, layer, head):
        a = model.blocks[layer].attn
        return body(model, a, layer, head)

    return full_ov_circuit


OV_MISTAKES = {
    "transposed": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.embed.W_E @ a.W_V[h], a.W_O[h] @ m.unembed.W_U).T),
                   ["swapped"]),
    "wrong layer": (ov_with(lambda m, a, layer, h: parts.full_ov_circuit(m, 1 - layer, h % m.heads_per_layer[1 - layer])),
                    ["wrong layer"]),
    "QK instead": (ov_with(lambda m, a, layer, h: parts.full_qk_circuit(m, layer, h)), ["QK circuit"]),
    "dense": (ov_with(lambda m, a, layer, h: m.embed.W_E @ a.W_V[h] @ a.W_O[h] @ m.unembed.W_U), ["dense", "FactoredMatrix"]),
    "materialised": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.embed.W_E @ a.W_V[h] @ a.W_O[h] @ m.unembed.W_U,
                                                               torch.eye(m.cfg.d_vocab))), ["inner dimension"]),
    "no W_U": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.embed.W_E @ a.W_V[h], a.W_O[h])), ["W_U"]),
    "W_pos": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.pos_embed.W_pos @ a.W_V[h], a.W_O[h] @ m.unembed.W_U)),
              ["W_pos"]),
    "factors that do not meet": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.embed.W_E @ a.W_V[h], a.W_O @ m.unembed.W_U)),
                                 ["index one head"]),
    "W_E.T for W_U": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.embed.W_E @ a.W_V[h], a.W_O[h] @ m.embed.W_E.T)),
                      ["ends in W_E.T where W_U belongs", "model.unembed.W_U"]),
    "inner d_model": (ov_via_w_ov, ["inner dimension is 24 (d_model)", "the rule is d_head = 8", "W_E @ W_V[head]"]),
    "W_Q for W_V": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.embed.W_E @ a.W_Q[h], a.W_O[h] @ m.unembed.W_U)),
                    ["you used W_Q where W_V belongs"]),
    "W_K for W_V": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.embed.W_E @ a.W_K[h], a.W_O[h] @ m.unembed.W_U)),
                    ["you used W_K where W_V belongs"]),
    "b_V included": (ov_with(lambda m, a, layer, h: FactoredMatrix(m.embed.W_E @ a.W_V[h] + a.b_V[h],
                                                                  a.W_O[h] @ m.unembed.W_U)), ["biases are included"]),
    "b_V and b_O included": (ov_with(lambda m, a, layer, h: FactoredMatrix(
        m.embed.W_E @ a.W_V[h] + a.b_V[h], a.W_O[h] @ m.unembed.W_U + a.b_O @ m.unembed.W_U)), ["biases are included"]),
}


def qk_with(body):
    def full_qk_circuit(model, layer, head):
        a = model.blocks[layer].attn
        return body(model.embed.W_E, a, head)

    return full_qk_circuit


QK_CORRECT = {
    "solution": parts.full_qk_circuit,
    "W_K transposed first": qk_with(lambda E, a, h: FactoredMatrix(E @ a.W_Q[h], a.W_K[h].T @ E.T)),
}

QK_MISTAKES = {
    "W_K not transposed": (qk_with(lambda E, a, h: FactoredMatrix(E @ a.W_Q[h], E @ a.W_K[h])), ["not transposed"]),
    "swapped sides": (qk_with(lambda E, a, h: FactoredMatrix(E @ a.W_K[h], (E @ a.W_Q[h]).T)), ["swapped"]),
    "scaled": (qk_with(lambda E, a, h: FactoredMatrix(E @ a.W_Q[h] / math.sqrt(a.W_Q.shape[-1]), (E @ a.W_K[h]).T)),
               ["sqrt(d_head)"]),
    "W_Q twice": (qk_with(lambda E, a, h: FactoredMatrix(E @ a.W_Q[h], (E @ a.W_Q[h]).T)), ["W_Q is used on both"]),
    "wrong head": (qk_with(lambda E, a, h: FactoredMatrix(E @ a.W_Q[(h + 1) % a.W_Q.shape[0]],
                                                          (E @ a.W_K[(h + 1) % a.W_Q.shape[0]]).T)), ["wrong head"]),
    "inner d_model": (qk_with(lambda E, a, h: FactoredMatrix(E, a.W_Q[h] @ a.W_K[h].T @ E.T)),
                      ["inner dimension is 24 (d_model)", "the rule is d_head = 8", "W_E @ W_Q[head]"]),
    "W_U on the key side": (lambda m, layer, h: FactoredMatrix(m.embed.W_E @ m.blocks[layer].attn.W_Q[h],
                                                               m.blocks[layer].attn.W_K[h].T @ m.unembed.W_U),
                            ["W_U is on the key side where W_E belongs"]),
    "b_Q and b_K included": (qk_with(lambda E, a, h: FactoredMatrix(E @ a.W_Q[h] + a.b_Q[h], (E @ a.W_K[h] + a.b_K[h]).T)),
                             ["biases b_Q and b_K are included"]),
}


@pytest.mark.parametrize("name", OV_CORRECT)
def test_full_ov_circuit_correct_variants_pass(name):
    tests.test_full_ov_circuit(OV_CORRECT[name])


@pytest.mark.parametrize("name", OV_MISTAKES)
def test_full_ov_circuit_mistakes_are_named(name):
    fn, words = OV_MISTAKES[name]
    fails(tests.test_full_ov_circuit, fn, *words)


@pytest.mark.parametrize("name", QK_CORRECT)
def test_full_qk_circuit_correct_variants_pass(name):
    tests.test_full_qk_circuit(QK_CORRECT[name])


@pytest.mark.parametrize("name", QK_MISTAKES)
def test_full_qk_circuit_mistakes_are_named(name):
    fn, words = QK_MISTAKES[name]
    fails(tests.test_full_qk_circuit, fn, *words)


def test_circuit_that_edits_the_model_is_named():
    def full_ov_circuit(model, layer, head):
        model.blocks[layer].attn.W_V.mul_(1.0 + 1e-3)  # an in-place edit of the weights
        return parts.full_ov_circuit(model, layer, head)

    fails(tests.test_full_ov_circuit, full_ov_circuit, "changed the model", "in-place")


# ------------------------------------------------------------------------------ composition_score


def fro(m):
    return (m**2).sum().sqrt()


COMPOSITION_CORRECT = {
    "solution": parts.composition_score,
    "by hand": lambda A, B: fro(A @ B) / (fro(A) * fro(B)),
    "Tensor.norm": lambda A, B: (A @ B).norm() / (A.norm() * B.norm()),
    "FactoredMatrix": lambda A, B: FactoredMatrix(A, B).norm() / (A.norm() * B.norm()),
}

COMPOSITION_MISTAKES = {
    "no normalisation": (lambda A, B: fro(A @ B), ["not normalised"]),
    "squared norms": (lambda A, B: fro(A @ B) / (fro(A) ** 2 * fro(B) ** 2), ["squared"]),
    "sum of norms": (lambda A, B: fro(A @ B) / (fro(A) + fro(B)), ["adds the norms"]),
    "spectral numerator": (lambda A, B: torch.linalg.matrix_norm(A @ B, ord=2) / (fro(A) * fro(B)), ["spectral"]),
    "one norm": (lambda A, B: fro(A @ B) / fro(A), ["only one norm"]),
    "wrong order": (lambda A, B: fro(B @ A) / (fro(A) * fro(B)) if A.shape[0] == B.shape[1] else fro(A @ B)
                    / (fro(A) * fro(B)), ["wrong order"]),
    "per-row norm": (lambda A, B: (A @ B).norm(dim=-1) / (A.norm() * B.norm()), ["one number"]),
    "shape (1,)": (lambda A, B: (fro(A @ B) / (fro(A) * fro(B))).reshape(1), ["shape (1,)", "0-dim tensor"]),
    "keepdim": (lambda A, B: torch.linalg.matrix_norm(A @ B, keepdim=True) / (fro(A) * fro(B)),
                ["shape (1, 1)", "keepdim=True"]),
}


@pytest.mark.parametrize("name", COMPOSITION_CORRECT)
def test_composition_score_correct_variants_pass(name):
    tests.test_composition_score(COMPOSITION_CORRECT[name])


@pytest.mark.parametrize("name", COMPOSITION_MISTAKES)
def test_composition_score_mistakes_are_named(name):
    fn, words = COMPOSITION_MISTAKES[name]
    fails(tests.test_composition_score, fn, *words)


# ------------------------------------------------------------------------------------ ablate_head


def ablate_with(edit, copy_first=True):
    def ablate_head(model, layer, head):
        ablated = copy.deepcopy(model) if copy_first else model
        with torch.no_grad():
            edit(ablated.blocks[layer].attn, head, ablated, layer)
        return ablated

    return ablate_head


def _zero_value(attn, head, *_):
    attn.W_V[head] = 0
    attn.b_V[head] = 0


class _WithoutHead(nn.Module):
    """A wrapper that runs the attention layer and subtracts one head's output, computed from its pattern."""

    def __init__(self, attn, head):
        super().__init__()
        self.attn, self.head = attn, head

    def forward(self, x):
        out = self.attn(x)  # (batch, posn, d_model)
        v = x @ self.attn.W_V[self.head] + self.attn.b_V[self.head]  # (batch, posn, d_head)
        z = self.attn.pattern[:, self.head] @ v  # (batch, posn, d_head)
        return out - z @ self.attn.W_O[self.head]  # (batch, posn, d_model)


def ablate_by_wrapping(model, layer, head):
    ablated = copy.deepcopy(model)
    ablated.blocks[layer].attn = _WithoutHead(ablated.blocks[layer].attn, head)
    return ablated


ABLATE_CORRECT = {
    "solution": parts.ablate_head,
    "W_O multiplied by a mask": ablate_with(lambda a, h, *_: a.W_O.mul_((torch.arange(a.W_O.shape[0]) != h)
                                                                       .float()[:, None, None].to(a.W_O.device))),
}

ABLATE_MISTAKES = {
    "W_V only": (ablate_with(lambda a, h, *_: a.W_V[h].zero_()), ["b_V"]),
    "b_O too": (ablate_with(lambda a, h, *_: (a.W_O[h].zero_(), a.b_O.zero_())), ["b_O"]),
    "whole layer": (ablate_with(lambda a, h, *_: (a.W_O.zero_(), a.b_O.zero_())), ["whole layer"]),
    "wrong axis": (ablate_with(lambda a, h, *_: a.W_O[:, h].zero_()), ["wrong axis"]),
    "W_Q instead": (ablate_with(lambda a, h, *_: (a.W_Q[h].zero_(), a.b_Q[h].zero_())), ["W_Q"]),
    "wrong layer": (ablate_with(lambda a, h, m, layer: m.blocks[1 - layer].attn.W_O[h % m.heads_per_layer[1 - layer]]
                                .zero_()), ["wrong layer"]),
    "in place": (ablate_with(lambda a, h, *_: a.W_O[h].zero_(), copy_first=False), ["changed the model", "deepcopy"]),
    "no return": (lambda model, layer, head: None, ["returned None"]),
    "W_V and b_V zeroed": (ablate_with(_zero_value), ["changed blocks.0.attn.W_V, blocks.0.attn.b_V and left W_O[head] "
                                                      "as it was", "only W_O[head] changes"]),
    "W_Q only": (ablate_with(lambda a, h, *_: a.W_Q[h].zero_()), ["zeroing W_Q does not remove a head"]),
    "a wrapper that subtracts the head": (ablate_by_wrapping, ["does not have the model's parameters", "wrapped",
                                                               "only blocks[layer].attn.W_O[head] is zero"]),
    "W_O[head] and b_Q": (ablate_with(lambda a, h, *_: (a.W_O[h].zero_(), a.b_Q[h].mul_(1.5))),
                          ["changed blocks.0.attn.b_Q", "b_O included"]),
}


@pytest.mark.parametrize("name", ABLATE_CORRECT)
def test_ablate_head_correct_variants_pass(name):
    tests.test_ablate_head(ABLATE_CORRECT[name])


@pytest.mark.parametrize("name", ABLATE_MISTAKES)
def test_ablate_head_mistakes_are_named(name):
    fn, words = ABLATE_MISTAKES[name]
    fails(tests.test_ablate_head, fn, *words)


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("check", ["prev_token_score", "induction_score", "full_ov_circuit", "full_qk_circuit",
                                   "composition_score", "ablate_head"])
def test_a_class_instead_of_the_function_gets_one_clear_message(check):
    message = fails(getattr(tests, f"test_{check}"), parts.AttnOnlyTransformer, "wants the function")
    assert check in message


# ------------------------------------------------------------------------------- the trained model


@pytest.fixture(scope="module")
def trained():
    """The course's induction model, its evaluation batch, and each layer's pattern on it."""
    from c1p1.induction import SEQ_LEN, eval_tokens, induction_model

    model = induction_model(verbose=False)
    tokens = eval_tokens(next(model.parameters()).device)  # (64, 48)
    with torch.no_grad():
        model(tokens)
    patterns = [block.attn.pattern for block in model.blocks]
    prev = int(parts.prev_token_score(patterns[0]).argmax())
    ind = int(parts.induction_score(patterns[1], SEQ_LEN).argmax())
    return model, tokens, patterns, prev, ind, SEQ_LEN


def test_trained_model_learned_the_repeated_half(trained):
    model, tokens, _, _, _, seq_len = trained
    first, repeated = parts.loss_by_half(model, tokens, seq_len)
    assert first > math.log(64) - 0.2, "the first half is random: nothing to learn there"
    assert repeated < 0.5, f"the repeated half's loss is {repeated:.3f}; it should be far below ln 64 = 4.16"
    _, _, halves = zip(*model.history, strict=True)
    assert halves[0] > math.log(64) - 0.3 and halves[-1] < 0.5, "the history should show the drop"


def test_trained_model_has_a_previous_token_head_and_an_induction_head(trained):
    _, _, patterns, prev, ind, seq_len = trained
    assert parts.prev_token_score(patterns[0])[prev] >= 0.9
    assert parts.induction_score(patterns[1], seq_len)[ind] >= 0.9


def test_k_composition_of_the_circuit_pair_is_the_largest(trained):
    model, _, _, prev, ind, _ = trained
    a0, a1 = model.blocks[0].attn, model.blocks[1].attn
    with torch.no_grad():
        scores = torch.tensor([[float(parts.composition_score(a0.W_V[i] @ a0.W_O[i], (a1.W_Q[j] @ a1.W_K[j].T).T))
                                for j in range(a1.W_Q.shape[0])] for i in range(a0.W_Q.shape[0])])
    assert divmod(int(scores.argmax()), scores.shape[1]) == (prev, ind), scores


def test_the_induction_head_copies(trained):
    model, _, _, _, ind, _ = trained
    with torch.no_grad():
        ov = parts.full_ov_circuit(model, 1, ind).AB  # (d_vocab, d_vocab)
    copies = (ov.argmax(-1) == torch.arange(ov.shape[0], device=ov.device)).float().mean().item()
    assert copies >= 0.9


def test_ablating_the_induction_head_costs_a_nat_and_an_unrelated_head_barely_matters(trained):
    model, tokens, patterns, prev, ind, seq_len = trained
    base = parts.loss_by_half(model, tokens, seq_len)[1]
    without_ind = parts.loss_by_half(parts.ablate_head(model, 1, ind), tokens, seq_len)[1]
    assert without_ind - base >= 1.0
    # An unrelated head: of the layer-0 heads outside the circuit, the one the model misses least.
    others = {h: parts.loss_by_half(parts.ablate_head(model, 0, h), tokens, seq_len)[1]
              for h in range(model.heads_per_layer[0]) if h != prev}
    unrelated = min(others, key=others.get)
    assert abs(others[unrelated] - base) < 0.1, (unrelated, others, base)


# ------------------------------------------------------------------------------- the data


def test_repeated_tokens_never_repeat_a_token_within_a_half():
    tokens = parts.repeated_tokens(64, 24, 64, seed=3)  # (64, 48)
    first, second = tokens[:, :24], tokens[:, 24:]
    assert torch.equal(first, second)
    assert all(len(set(row.tolist())) == 24 for row in first), "each token of the repeat needs one earlier occurrence"
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 64
    assert torch.equal(tokens, parts.repeated_tokens(64, 24, 64, seed=3)), "seeded: the same batch every time"
    with pytest.raises(ValueError, match="different tokens"):
        parts.repeated_tokens(1, 65, 64, seed=0)


def test_periodic_tokens_repeat_their_block():
    tokens = parts.periodic_tokens(16, 48, 64, 6, 24, torch.Generator().manual_seed(0))  # (16, 48)
    periods = [next(p for p in range(6, 25) if torch.equal(row[p:], row[:-p])) for row in tokens]
    assert all(6 <= p <= 24 for p in periods) and len(set(periods)) > 1, periods


def test_ablation_messages_say_what_changed():
    """A W_V + b_V (or W_Q) ablation leaves W_O alone: the message must not say W_O was changed as well."""
    for edit in (_zero_value, lambda a, h, *_: (a.W_Q[h].zero_(), a.b_Q[h].zero_())):
        message = fails(tests.test_ablate_head, ablate_with(edit))
        assert "as well as W_O" not in message
    wq_message = fails(tests.test_ablate_head, ablate_with(lambda a, h, *_: (a.W_Q[h].zero_(), a.W_V[h].mul_(2))),
                       "left W_O[head] as it was")
    assert "as well as" not in wq_message
