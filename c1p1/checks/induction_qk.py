"""test_induction_qk_circuit (notebook 14): the induction head's QK circuit read through the previous-token head.

The learner writes ``induction_qk_circuit(model, prev_head, induction_head)``: a TransformerLens
``FactoredMatrix`` of shape ``(d_vocab, d_vocab)`` whose entry ``(a, b)`` is the score that head
``1.induction_head`` gives, from a query holding token ``a``, to a key position whose *previous* token was ``b``,
along the path where head ``0.prev_head`` copied ``b`` into that position (K-composition):

    W_E W_Q^{1.i} (W_E W_V^{0.p} W_O^{0.p} W_K^{1.i})^T

with positions, biases, the direct path and the 1/sqrt(d_head) scale left out. The check compares with that
product, exactly, on a small two-layer attention-only model with random weights (three heads in layer 0, two in
layer 1, so that a swapped or wrong head index changes the answer), for two pairs of heads. Any factorisation
passes whose inner dimension is at most d_model; a dense tensor does not. Every mistake below is a product the
learner could plausibly write instead, named with its cause.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from c1p1.checks import core
from c1p1.checks.core import Case, Mistake
from c1p1.checks.induction import SMALL_CFG, call_on_model, random_model

TEST = "test_induction_qk_circuit"
DIMS = ("query token", "key's previous token")


def composed(model: nn.Module, prev_head: int, induction_head: int, *, query_path: bool = False,
             key_matrix: str = "W_K", query_matrix: str = "W_Q", ov_layer: int = 0, ov_head: int | None = None,
             ov_transposed: bool = False, direct: bool = False, ov_read: str = "W_V", qk_layer: int = 1,
             query_embed: str = "W_E", key_embed: str = "W_E", biases: bool = False) -> Tensor:
    """The dense (d_vocab, d_vocab) circuit, or one of its plausible mistakes (each keyword one of them)."""
    a0 = model.blocks[ov_layer].attn
    a1 = model.blocks[qk_layer].attn
    W_E = model.embed.W_E  # (d_vocab, d_model)
    embeds = {"W_E": W_E, "W_U": model.unembed.W_U.T}  # W_U.T: (d_vocab, d_model), the unembedding read backwards
    h = prev_head if ov_head is None else ov_head
    W_OV = getattr(a0, ov_read)[h] @ a0.W_O[h]  # (d_model, d_model): what the head writes, given what it reads
    if ov_transposed:
        W_OV = W_OV.T
    W_Q = getattr(a1, query_matrix)[induction_head]  # (d_model, d_head)
    W_K = getattr(a1, key_matrix)[induction_head]  # (d_model, d_head)
    if biases:  # every bias on the path added where its layer adds it
        queries = embeds[query_embed] @ W_Q + a1.b_Q[induction_head]  # (d_vocab, d_head)
        copied = (embeds[key_embed] @ getattr(a0, ov_read)[h] + a0.b_V[h]) @ a0.W_O[h] + a0.b_O  # (d_vocab, d_model)
        keys = copied @ W_K + a1.b_K[induction_head]  # (d_vocab, d_head)
    elif query_path:  # the previous token reaches the query (Q-composition), the key reads its own token
        queries, keys = embeds[query_embed] @ W_OV @ W_Q, embeds[key_embed] @ W_K  # (d_vocab, d_head) each
    else:
        queries, keys = embeds[query_embed] @ W_Q, embeds[key_embed] @ W_OV @ W_K  # (d_vocab, d_head) each
    circuit = queries @ keys.T  # (d_vocab, d_vocab)
    if direct:
        circuit = circuit + W_E @ W_Q @ (W_E @ W_K).T  # the key's own token as well
    return circuit


def direct_qk(model: nn.Module, induction_head: int) -> Tensor:
    """Exercise 4's circuit: the query's token against the key's own token."""
    a1, W_E = model.blocks[1].attn, model.embed.W_E  # W_E: (d_vocab, d_model)
    return W_E @ a1.W_Q[induction_head] @ (W_E @ a1.W_K[induction_head]).T  # (d_vocab, d_vocab)


def expected(model: nn.Module, prev_head: int, induction_head: int) -> Tensor:
    return composed(model, prev_head, induction_head)  # (d_vocab, d_vocab)


def mistakes(model: nn.Module, prev_head: int, induction_head: int) -> Callable[[], list[Mistake]]:
    p, i = prev_head, induction_head
    d_head = model.blocks[1].attn.W_Q.shape[-1]
    right = composed(model, p, i)
    return lambda: [
        Mistake("the key side reads the key's own token: this is the direct QK circuit of Exercise 4. The key the "
                "induction head wants is computed from what the previous-token head wrote into that position: "
                "put head 0.prev_head's OV circuit (W_V then W_O) between W_E and W_K on the key side.",
                lambda: direct_qk(model, i)),
        Mistake("the previous-token head's output reaches the query, not the key: that is Q-composition. In the "
                "induction circuit the key position holds the copied previous token, so head 0.prev_head's OV "
                "circuit belongs on the key side, before W_K.", lambda: composed(model, p, i, query_path=True)),
        Mistake("the direct path is added to the composed one. The exercise asks for the K-composition path alone "
                "(the direct term is Exercise 4's circuit); leave out W_E W_Q (W_E W_K)^T.",
                lambda: composed(model, p, i, direct=True)),
        Mistake("query and key sides are swapped: rows must be the query's token (W_E @ W_Q), columns the key "
                "position's previous token.", lambda: right.T),
        Mistake("the previous-token head's OV circuit is transposed. A row vector in the residual stream meets W_V "
                "first, then W_O: W_E @ W_V[prev_head] @ W_O[prev_head], not W_O^T W_V^T.",
                lambda: composed(model, p, i, ov_transposed=True)),
        Mistake("the OV circuit on the key side is the induction head's own (layer 1). The token was copied into "
                "the key position by the previous-token head, in layer 0: use model.blocks[0].attn's W_V and W_O.",
                lambda: composed(model, p, i, ov_layer=1, ov_head=i)),
        Mistake("the head indices are swapped: prev_head indexes layer 0's W_V and W_O, induction_head indexes "
                "layer 1's W_Q and W_K.", lambda: composed(model, i, p)),
        Mistake("W_Q is used on the key side: the key is W_K of the induction head.",
                lambda: composed(model, p, i, key_matrix="W_Q")),
        Mistake("W_K is used on the query side: the query is W_Q of the induction head.",
                lambda: composed(model, p, i, query_matrix="W_K")),
        Mistake("you divided by sqrt(d_head): the circuit is the raw bilinear form; the attention layer applies the "
                "scale itself.", lambda: right / math.sqrt(d_head)),
        Mistake("the previous-token head's OV circuit starts with its W_Q: what a head copies is read by W_V, then "
                "written by W_O, so the key side is W_E @ W_V[prev_head] @ W_O[prev_head] @ W_K[induction_head].",
                lambda: composed(model, p, i, ov_read="W_Q")),
        Mistake("the previous-token head's OV circuit starts with its W_K: what a head copies is read by W_V, then "
                "written by W_O.", lambda: composed(model, p, i, ov_read="W_K")),
        Mistake("the key side starts from W_U.T instead of W_E: the key position's previous token enters the model "
                "through the embedding, so both sides start from W_E; W_U only reads the residual stream at the end.",
                lambda: composed(model, p, i, key_embed="W_U")),
        Mistake("the query side starts from W_U.T instead of W_E: the query's token enters the model through the "
                "embedding, so both sides start from W_E.", lambda: composed(model, p, i, query_embed="W_U")),
        Mistake("the previous-token head's W_V and W_O come from layer 1: the head that copies the previous token "
                "is in layer 0 (model.blocks[0].attn), indexed by prev_head.",
                lambda: composed(model, p, i, ov_layer=1)),
        Mistake("the induction head's W_Q and W_K come from layer 0: the induction head is in layer 1 "
                "(model.blocks[1].attn), indexed by induction_head.", lambda: composed(model, p, i, qk_layer=0)),
        Mistake("the biases are included (b_Q, b_V, b_O, b_K): the QK circuit is the product of the weights only, "
                "as Exercise 4's was; leave every bias out.", lambda: composed(model, p, i, biases=True)),
    ]


SHAPE_HINT = ("Likely cause: the factors do not meet. Build the query side, (d_vocab, d_head), and the key side, "
              "(d_vocab, d_head), then pair the first with the key side transposed. On the key side the previous-token "
              "head's OV circuit is W_V then W_O (d_model -> d_head -> d_model): W_V alone leaves it d_head wide "
              "where W_K expects d_model.")
FALLBACK = ("1) the query side is W_E @ W_Q[induction_head] of layer 1; 2) the key side is W_E @ W_V[prev_head] @ "
            "W_O[prev_head] (layer 0) @ W_K[induction_head] (layer 1); 3) no biases, no scale, no direct path; "
            "4) return FactoredMatrix(query_side, key_side.T).")


def test_induction_qk_circuit(induction_qk_circuit) -> None:
    """Check induction_qk_circuit: W_E W_Q^1 (W_E W_V^0 W_O^0 W_K^1)^T as a FactoredMatrix, on a random model."""
    __tracebackhide__ = True
    from transformer_lens import FactoredMatrix

    fn = core.expect_function(induction_qk_circuit, "induction_qk_circuit", TEST)
    model = random_model(1426)
    cfg = SMALL_CFG
    cases = []
    for prev_head, induction_head in ((1, 0), (2, 1)):
        what = f"induction_qk_circuit(model, prev_head={prev_head}, induction_head={induction_head})"
        label = (f"a random 2-layer model (d_vocab={cfg.d_vocab}, d_model={cfg.d_model}, heads 3 and 2), "
                 f"previous-token head 0.{prev_head}, induction head 1.{induction_head}")
        out = call_on_model(fn, model, (prev_head, induction_head), TEST, what, SHAPE_HINT)
        if isinstance(out, Tensor):
            core.fail(f"{TEST}: {what} returned a dense torch.Tensor of shape {tuple(out.shape)}; it should return a "
                      "FactoredMatrix.\nLikely cause: the product was multiplied out (.AB, or plain tensors "
                      "throughout). Return FactoredMatrix(query_side, key_side.T), so a GPT-sized circuit is never "
                      "built by accident.")
        if not isinstance(out, FactoredMatrix):
            core.fail(f"{TEST}: {what} returned {type(out).__name__}; it should return a FactoredMatrix "
                      "(from transformer_lens import FactoredMatrix). Did you forget `return`?")
        if out.mdim > cfg.d_model:
            core.fail(f"{TEST}: {what} is a FactoredMatrix whose inner dimension is {out.mdim}, wider than "
                      f"d_model = {cfg.d_model}.\nLikely cause: a d_vocab-wide matrix was built and wrapped. Keep the "
                      "factors narrow: split the product where it passes through the induction head, d_head wide.")
        with torch.no_grad():
            dense = out.AB.detach()
        want = expected(model, prev_head, induction_head).detach()  # (d_vocab, d_vocab)
        case = Case(label, cfg, None, (), want, DIMS, mistakes(model, prev_head, induction_head), FALLBACK)
        core.vet_output(dense, want, DIMS, TEST, f"{what}.AB", (
            (lambda got, exp: got[-1] == cfg.d_model,
             "the key side stops at d_model: finish it with W_E's rows, so that the columns are tokens."),
            (lambda got, exp: got[-1] == model.blocks[1].attn.W_K.shape[-1] or got[0] == got[-1] == cfg.d_model,
             "the circuit stops inside the model: both sides start from the token embedding W_E, so that rows and "
             "columns are tokens."),
            (lambda got, exp: len(got) == 3,
             "the circuit has an extra leading axis, one entry per head: index one head of each layer."),
        ))
        mismatch = core.compare(dense, want)
        if mismatch is not None:
            core.explain(TEST, "the circuit's", case, dense, mismatch)
        cases.append(case)
    core.passed(TEST, core.summary(cases))
