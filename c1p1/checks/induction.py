"""Checks of notebook 14: attention scores, full circuits, composition scores and head ablation.

Every check is exact against a formula written here, on random patterns or a small model with random
weights, so it needs neither GPT-2 nor the trained induction model and gives the same verdict offline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from c1p1.checks import core
from c1p1.checks.core import Case, Mistake
from c1p1.config import Config

HEAD_DIMS = ("n_heads",)
VOCAB_DIMS = ("query token", "key token")


def _device() -> torch.device:
    from c1p1.reference import pick_device

    return pick_device()


def random_pattern(batch: int, n_heads: int, posn: int, seed: int) -> Tensor:
    """A causal attention pattern from random scores: rows sum to 1, nothing above the diagonal."""
    scores = core.random_input((batch, n_heads, posn, posn), seed, _device(), scale=2.0)  # (batch, heads, q, k)
    future = torch.ones(posn, posn, dtype=torch.bool, device=scores.device).triu(1)  # (q, k)
    return scores.masked_fill(future, float("-inf")).softmax(-1)  # (batch, n_heads, query_pos, key_pos)


def _stripe(pattern: Tensor, offset: int) -> Tensor:
    return pattern.diagonal(offset=offset, dim1=-2, dim2=-1)  # (batch, n_heads, entries)


SCORE_SHAPE_HINTS = (
    (lambda got, want: len(got) == 2 and got[1] == want[0],
     "you kept the batch axis: average over the batch as well, to get one score per head."),
    (lambda got, want: len(got) == 2 and got[0] == want[0],
     "you kept the position axis: average over the query positions as well, to get one score per head."),
    (lambda got, want: len(got) == 1,
     "the scores are per batch element or position, not per head: the heads are axis 1 of the pattern "
     "(batch, n_heads, query_pos, key_pos); average over every other axis."),
    (lambda got, want: len(got) == 0,
     "you averaged everything into one number: keep one score per head (average over dims 0 and -1 of the stripe)."),
)


def run_function_cases(test: str, fn: Callable, name: str, cases: list[Case], values: str, hints=()) -> None:
    __tracebackhide__ = True
    for case in cases:
        out = core.call(fn, case.inputs, test, name)
        core.vet_output(out, case.expected, case.dims, test, "the output", hints)
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(test, values, case, out, mismatch)


# -------------------------------------------------------------------------------- prev_token_score


def prev_mistakes(p: Tensor):
    posn = p.shape[-1]
    return lambda: [
        Mistake("the diagonal is off by one: you measured attention to the token itself (offset 0). The previous "
                "token is one key to the left, pattern[:, :, i, i - 1]: diagonal(offset=-1, dim1=-2, dim2=-1).",
                lambda: _stripe(p, 0).mean((0, -1))),
        Mistake("you read the diagonal above the main one (offset +1), which the causal mask sets to 0; or the "
                "query and key axes are swapped. The pattern is (batch, n_heads, query_pos, key_pos): use offset=-1.",
                lambda: _stripe(p, 1).mean((0, -1))),
        Mistake("position 0 was counted: it has no previous token. Average over the posn - 1 queries 1..posn-1 "
                f"(here {posn - 1}), not over all {posn} positions.",
                lambda: _stripe(p, -1).sum(-1).mean(0) / posn),
        Mistake("you summed over the positions (or the batch) instead of averaging: take the mean, so that a "
                "perfect previous-token head scores 1.",
                lambda: _stripe(p, -1).sum(-1).mean(0)),
        Mistake("you summed over the batch instead of averaging.", lambda: _stripe(p, -1).mean(-1).sum(0)),
    ]


def test_prev_token_score(prev_token_score) -> None:
    """Check prev_token_score against the mean of diagonal -1 on random causal patterns."""
    __tracebackhide__ = True
    test = "test_prev_token_score"
    fn = core.expect_function(prev_token_score, "prev_token_score", test)
    cases = []
    for (batch, heads, posn), seed in (((3, 4, 9), 1401), ((2, 3, 6), 1402)):
        p = random_pattern(batch, heads, posn, seed)
        cases.append(Case(f"random causal patterns (batch={batch}, n_heads={heads}, posn={posn})", Config(), None,
                          (p,), _stripe(p, -1).mean((0, -1)), HEAD_DIMS, prev_mistakes(p),
                          "1) take pattern.diagonal(offset=-1, dim1=-2, dim2=-1); 2) average it over the batch and "
                          "the positions, keeping the heads."))
    run_function_cases(test, fn, "prev_token_score", cases, "the score", SCORE_SHAPE_HINTS)
    core.passed(test, core.summary(cases))


# ---------------------------------------------------------------------------------- induction_score


def induction_mistakes(p: Tensor, seq_len: int):
    posn = p.shape[-1]
    return lambda: [
        Mistake("the repeat offset is wrong: you measured attention to the same token's first occurrence "
                "(q - seq_len). An induction head attends to the token after it, q - seq_len + 1: "
                "diagonal(offset=1 - seq_len).",
                lambda: _stripe(p, -seq_len)[..., :].mean((0, -1))),
        Mistake("the repeat offset is wrong: you measured attention to q - seq_len - 1, the token before the first "
                "occurrence. An induction head attends to q - seq_len + 1: diagonal(offset=1 - seq_len).",
                lambda: _stripe(p, -seq_len - 1).mean((0, -1))),
        Mistake("you included query seq_len - 1, the last token of the first half, which is not part of the second "
                "repeat: the diagonal offset=1 - seq_len starts there, so drop its first entry ([..., 1:]).",
                lambda: _stripe(p, 1 - seq_len).mean((0, -1))),
        Mistake("the offset has the wrong sign (or the query and key axes are swapped): keys after the query are "
                "masked to 0. The stripe is below the diagonal: offset=1 - seq_len, with dim1=-2 (query), dim2=-1 (key).",
                lambda: _stripe(p, seq_len - 1).mean((0, -1))),
        Mistake("you summed instead of averaging: a perfect induction head should score 1.",
                lambda: _stripe(p, 1 - seq_len)[..., 1:].sum(-1).mean(0)),
        Mistake("the previous-token stripe (offset -1) is not the induction stripe: on a sequence repeated after "
                "seq_len tokens, the induction head attends seq_len - 1 positions back.",
                lambda: _stripe(p, -1).mean((0, -1))),
        Mistake(f"only the queries seq_len .. 2 * seq_len - 1 were averaged, but this pattern has {posn} positions: "
                "the rule is every query q >= seq_len, up to the last position (a sequence repeated more than twice "
                "counts each later repeat too). Take the whole stripe, diagonal(offset=1 - seq_len)[..., 1:].",
                lambda: _stripe(p, 1 - seq_len)[..., 1 : seq_len + 1].mean((0, -1))),
        Mistake(f"only the last seq_len queries were averaged, but this pattern has {posn} positions: the rule is "
                "every query q >= seq_len, up to the last position. Take diagonal(offset=1 - seq_len)[..., 1:].",
                lambda: _stripe(p, 1 - seq_len)[..., -seq_len:].mean((0, -1))),
        Mistake(f"the last query, position {posn - 1}, was dropped (a range that stops at posn - 1, or [..., 1:-1]): "
                "the rule is every query q >= seq_len, up to and including the last position. Take "
                "diagonal(offset=1 - seq_len)[..., 1:].",
                lambda: _stripe(p, 1 - seq_len)[..., 1:-1].mean((0, -1))),
    ]


def test_induction_score(induction_score) -> None:
    """Check induction_score against the mean of the stripe q - seq_len + 1 on random causal patterns, over every
    query q >= seq_len (to the last position, also when the pattern is longer than 2 * seq_len)."""
    __tracebackhide__ = True
    test = "test_induction_score"
    fn = core.expect_function(induction_score, "induction_score", test)
    cases = []
    for (batch, heads, seq_len, posn), seed in (((3, 4, 5, 10), 1403), ((2, 2, 7, 14), 1404), ((2, 3, 4, 11), 1410)):
        p = random_pattern(batch, heads, posn, seed)
        expected = _stripe(p, 1 - seq_len)[..., 1:].mean((0, -1))  # (n_heads,): every query from seq_len to posn - 1
        longer = ", longer than 2 * seq_len: every query q >= seq_len counts" if posn > 2 * seq_len else ""
        cases.append(Case(f"random causal patterns with seq_len={seq_len} (posn={posn}{longer}, n_heads={heads})",
                          Config(), None, (p, seq_len), expected, HEAD_DIMS, induction_mistakes(p, seq_len),
                          "1) the stripe is pattern.diagonal(offset=1 - seq_len, dim1=-2, dim2=-1); 2) drop its "
                          "first entry (query seq_len - 1); 3) average over the batch and the queries; 4) use the "
                          "seq_len argument, not a fixed number."))
    run_function_cases(test, fn, "induction_score", cases, "the score", SCORE_SHAPE_HINTS)
    core.passed(test, core.summary(cases))


# ------------------------------------------------------------------------------- a random small model

SMALL_CFG = Config(d_model=24, d_vocab=37, n_ctx=16, d_head=8, d_mlp=96, n_heads=3, n_layers=2, init_range=0.3)
SMALL_HEADS = (3, 2)


def random_model(seed: int) -> nn.Module:
    """The course's AttnOnlyTransformer with every parameter random (biases too), on the course device."""
    from c1p1.parts import AttnOnlyTransformer

    model = AttnOnlyTransformer(SMALL_CFG, SMALL_HEADS)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            scale = 0.3 if param.dim() == 1 or "b_" in _ else 1 / math.sqrt(param.shape[-2])
            param.copy_(scale * torch.randn(param.shape, generator=gen))
    return model.requires_grad_(False).to(_device()).eval()


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def untouched(model: nn.Module, before: dict[str, Tensor], test: str, what: str) -> None:
    __tracebackhide__ = True
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    if changed:
        core.fail(f"{test}: {what} changed the model it was given ({', '.join(changed)}).\n"
                  "Likely cause: an in-place edit of the model's weights. Leave the model as it is: build new tensors "
                  "(and, for an ablation, edit a copy made with copy.deepcopy(model)).")


def call_on_model(fn: Callable, model: nn.Module, args: tuple, test: str, what: str, shape_hint: str = "") -> object:
    """Run the learner's function on the model; `shape_hint` is added when it raises for mismatched shapes."""
    __tracebackhide__ = True
    before = snapshot(model)
    try:
        with torch.no_grad():
            out = fn(model, *args)
    except Exception as exc:  # noqa: BLE001 - the learner's error, shown with their line
        untouched(model, before, test, what)
        mismatched = isinstance(exc, AssertionError) or "cannot be multiplied" in str(exc) or "size" in str(exc)
        core.learner_raised(test, what, exc, shape_hint if mismatched else "")
    untouched(model, before, test, what)
    return out


# ------------------------------------------------------------------------------------- full circuits


def ov_dense(model: nn.Module, layer: int, head: int) -> Tensor:
    a = model.blocks[layer].attn
    return model.embed.W_E @ a.W_V[head] @ a.W_O[head] @ model.unembed.W_U  # (d_vocab, d_vocab)


def qk_dense(model: nn.Module, layer: int, head: int, q: str = "W_Q", k: str = "W_K") -> Tensor:
    a = model.blocks[layer].attn
    W_E = model.embed.W_E  # (d_vocab, d_model)
    return W_E @ getattr(a, q)[head] @ (W_E @ getattr(a, k)[head]).T  # (d_vocab, d_vocab)


def circuit_mistakes(model: nn.Module, layer: int, head: int, kind: str):
    other_layer = 1 - layer
    other_head = (head + 1) % model.heads_per_layer[layer]
    mine = ov_dense if kind == "OV" else qk_dense
    other = qk_dense if kind == "OV" else ov_dense
    out = [
        Mistake(f"the wrong layer: you used block {other_layer}'s weights. Index model.blocks[layer].attn.",
                lambda: mine(model, other_layer, head % model.heads_per_layer[other_layer])),
        Mistake(f"the wrong head: you used head {other_head}. Index the head with the first axis, W[head].",
                lambda: mine(model, layer, other_head)),
        Mistake(f"you computed the {'QK' if kind == 'OV' else 'OV'} circuit: the {kind} circuit uses "
                + ("W_V and W_O, and ends in W_U." if kind == "OV" else "W_Q and W_K, with W_E on both sides."),
                lambda: other(model, layer, head)),
    ]
    if kind == "OV":
        a = model.blocks[layer].attn
        W_E = model.embed.W_E  # (d_vocab, d_model)
        out += [
            Mistake("rows and columns are swapped: rows are the attended token, columns the output logits. "
                    "FactoredMatrix(W_E @ W_V[head], W_O[head] @ W_U) without a transpose.",
                    lambda: ov_dense(model, layer, head).T),
            Mistake("the circuit ends in W_E.T where W_U belongs: GPT-2 ties its unembedding to W_E, but this model's "
                    "unembedding is a matrix of its own. End with model.unembed.W_U: B = W_O[head] @ W_U.",
                    lambda: W_E @ a.W_V[head] @ a.W_O[head] @ W_E.T),
            *[Mistake(f"you used {w} where W_V belongs: the OV circuit reads the values, A = W_E @ W_V[head].",
                      lambda w=w: W_E @ getattr(a, w)[head] @ a.W_O[head] @ model.unembed.W_U) for w in ("W_Q", "W_K")],
        ]
        W_U, A_b = model.unembed.W_U, W_E @ a.W_V[head] + a.b_V[head]  # (d_model, d_vocab), (d_vocab, d_head)
        bias_cause = ("the biases are included (b_V, b_O): the full OV circuit is the product of the weights only, "
                      "W_E W_V[head] W_O[head] W_U; the biases add the same vector whatever the token, so leave them out.")
        out += [Mistake(bias_cause, f) for f in (
            lambda: A_b @ a.W_O[head] @ W_U,  # b_V in A
            lambda: (A_b @ a.W_O[head] + a.b_O) @ W_U,  # b_V and b_O, dense
            lambda: (W_E @ a.W_V[head] @ a.W_O[head] + a.b_O) @ W_U,  # b_O only, dense
            lambda: A_b @ (a.W_O[head] @ W_U + a.b_O @ W_U),  # b_V in A, b_O's logits added to every row of B
            lambda: W_E @ a.W_V[head] @ (a.W_O[head] @ W_U + a.b_O @ W_U),  # b_O's logits added to B
        )]
    else:
        d_head = model.blocks[layer].attn.W_Q.shape[-1]
        out += [
            Mistake("query and key sides are swapped: rows are the query token (W_E @ W_Q[head]), columns the key "
                    "token ((W_E @ W_K[head]).T).", lambda: qk_dense(model, layer, head).T),
            Mistake("you divided by sqrt(d_head): the full QK circuit is the raw bilinear form W_E W_Q W_K^T W_E^T; "
                    "the attention layer applies the scale itself.",
                    lambda: qk_dense(model, layer, head) / math.sqrt(d_head)),
            Mistake("W_Q is used on both sides: the key side is W_E @ W_K[head].",
                    lambda: qk_dense(model, layer, head, "W_Q", "W_Q")),
            Mistake("W_K is used on both sides: the query side is W_E @ W_Q[head].",
                    lambda: qk_dense(model, layer, head, "W_K", "W_K")),
        ]
        a, W_E = model.blocks[layer].attn, model.embed.W_E  # W_E: (d_vocab, d_model)
        out += [
            Mistake("W_U is on the key side where W_E belongs: both the query and the key are tokens of the input, so "
                    "both sides start from W_E: B = (W_E @ W_K[head]).T, not W_K[head].T @ W_U.",
                    lambda: W_E @ a.W_Q[head] @ a.W_K[head].T @ model.unembed.W_U),
            Mistake("the biases b_Q and b_K are included: the full QK circuit is the bilinear form of the weights only, "
                    "W_E W_Q[head] W_K[head]^T W_E^T. Leave b_Q and b_K out.",
                    lambda: (W_E @ a.W_Q[head] + a.b_Q[head]) @ (W_E @ a.W_K[head] + a.b_K[head]).T),
            Mistake("b_Q is included: the full QK circuit is the weights only, W_E W_Q[head] W_K[head]^T W_E^T.",
                    lambda: (W_E @ a.W_Q[head] + a.b_Q[head]) @ (W_E @ a.W_K[head]).T),
            Mistake("b_K is included: the full QK circuit is the weights only, W_E W_Q[head] W_K[head]^T W_E^T.",
                    lambda: (W_E @ a.W_Q[head]) @ (W_E @ a.W_K[head] + a.b_K[head]).T),
        ]
    return lambda: out


def check_circuit(fn: Callable, name: str, test: str, kind: str) -> None:
    __tracebackhide__ = True
    from transformer_lens import FactoredMatrix

    fn = core.expect_function(fn, name, test)
    model = random_model(1405)
    cfg = SMALL_CFG
    hint = ("Likely cause: W_K is not transposed. The key side is (W_E @ W_K[head]).T, of shape (d_head, d_vocab), "
            "so that A (d_vocab, d_head) meets B (d_head, d_vocab)." if kind == "QK" else
            "Likely cause: the factors do not meet: A = W_E @ W_V[head] is (d_vocab, d_head) and "
            "B = W_O[head] @ W_U is (d_head, d_vocab).")
    cases = []
    for layer, head in ((0, 2), (1, 1)):
        expected = (ov_dense if kind == "OV" else qk_dense)(model, layer, head).detach()  # (d_vocab, d_vocab)
        label = f"a random 2-layer model (d_vocab={cfg.d_vocab}, d_model={cfg.d_model}), layer {layer}, head {head}"
        what = f"{name}(model, {layer}, {head})"
        out = call_on_model(fn, model, (layer, head), test, what, hint)
        if isinstance(out, Tensor):
            core.fail(f"{test}: {what} returned a dense torch.Tensor of shape {tuple(out.shape)}; it should return a "
                      "FactoredMatrix.\nLikely cause: the product was multiplied out. Return FactoredMatrix(A, B) with "
                      "the two factors, so a GPT-sized circuit (50257 x 50257) is never built by accident.")
        if not isinstance(out, FactoredMatrix):
            core.fail(f"{test}: {what} returned {type(out).__name__}; it should return a FactoredMatrix "
                      "(from transformer_lens import FactoredMatrix). Did you forget `return`?")
        d_head = model.blocks[layer].attn.W_Q.shape[-1]
        if out.mdim > cfg.d_model:
            core.fail(f"{test}: {what} is a FactoredMatrix whose inner dimension is {out.mdim}, wider than d_model = "
                      f"{cfg.d_model}.\nLikely cause: the full matrix was built and wrapped (e.g. with an identity "
                      "factor). Keep the factors narrow: split the product where it passes through the head, d_head wide.")
        if out.mdim != d_head:
            split = ("A = W_E @ W_V[head], B = W_O[head] @ W_U" if kind == "OV"
                     else "A = W_E @ W_Q[head], B = (W_E @ W_K[head]).T")
            core.fail(f"{test}: {what} is a FactoredMatrix whose inner dimension is {out.mdim}"
                      f"{' (d_model)' if out.mdim == cfg.d_model else ''}; the rule is d_head = {d_head}.\n"
                      f"Likely cause: the product was split at W_E (or W_U), where it is d_model wide. Split it where it "
                      f"passes through the head: {split}, so A is (d_vocab, d_head) and B is (d_head, d_vocab), the "
                      "narrowest factors (the circuit's rank is at most d_head).")
        with torch.no_grad():
            dense = out.AB.detach()
        case = Case(label, cfg, None, (), expected, VOCAB_DIMS if kind == "QK" else ("attended token", "output token"),
                    circuit_mistakes(model, layer, head, kind))
        core.vet_output(dense, expected, case.dims, test, f"{what}.AB", (
            (lambda got, want: got[-1] == cfg.d_model,
             "the last factor stops at d_model: finish the product with " + ("W_U." if kind == "OV" else "W_E.T.")),
            (lambda got, want: got[0] == cfg.n_ctx,
             "you used the positional embedding W_pos; the circuit starts from the token embedding W_E."),
            (lambda got, want: len(got) == 3,
             "the circuit has an extra leading axis, one entry per head: index one head, W_V[head] and W_O[head] "
             "(W_Q[head] and W_K[head] for QK)."),
        ))
        mismatch = core.compare(dense, expected)
        if mismatch is not None:
            core.explain(test, "the circuit's", case, dense, mismatch)
        cases.append(case)
    core.passed(test, core.summary(cases))


def test_full_ov_circuit(full_ov_circuit) -> None:
    """Check full_ov_circuit: a FactoredMatrix equal to W_E W_V W_O W_U on a random two-layer model."""
    __tracebackhide__ = True
    check_circuit(full_ov_circuit, "full_ov_circuit", "test_full_ov_circuit", "OV")


def test_full_qk_circuit(full_qk_circuit) -> None:
    """Check full_qk_circuit: a FactoredMatrix equal to W_E W_Q W_K^T W_E^T on a random two-layer model."""
    __tracebackhide__ = True
    check_circuit(full_qk_circuit, "full_qk_circuit", "test_full_qk_circuit", "QK")


# --------------------------------------------------------------------------------- composition_score


def _fro(m: Tensor) -> Tensor:
    return torch.linalg.matrix_norm(m)


def composition_mistakes(A: Tensor, B: Tensor):
    out = [
        Mistake("the score is not normalised: divide ||W_A W_B||_F by ||W_A||_F * ||W_B||_F.",
                lambda: _fro(A @ B)),
        Mistake("the norms in the denominator are squared: divide by ||W_A||_F * ||W_B||_F, not their squares "
                "(torch.linalg.matrix_norm is already the square root of the sum of squares).",
                lambda: _fro(A @ B) / (_fro(A) ** 2 * _fro(B) ** 2)),
        Mistake("the denominator adds the norms: it is their product, ||W_A||_F * ||W_B||_F.",
                lambda: _fro(A @ B) / (_fro(A) + _fro(B))),
        Mistake("the numerator uses the spectral norm (ord=2): all three norms are Frobenius norms, "
                "torch.linalg.matrix_norm(M) with its default ord='fro'.",
                lambda: torch.linalg.matrix_norm(A @ B, ord=2) / (_fro(A) * _fro(B))),
        Mistake("the denominator uses spectral norms (ord=2): all three norms are Frobenius norms.",
                lambda: _fro(A @ B) / (torch.linalg.matrix_norm(A, ord=2) * torch.linalg.matrix_norm(B, ord=2))),
        Mistake("only one norm is in the denominator: divide by ||W_A||_F * ||W_B||_F.",
                lambda: _fro(A @ B) / _fro(A)),
    ]
    if A.shape[0] == B.shape[1]:
        out.append(Mistake("the product is in the wrong order: W_A @ W_B (the earlier head's map first), "
                           "not W_B @ W_A.", lambda: _fro(B @ A) / (_fro(A) * _fro(B))))
    return lambda: [Mistake(m.cause, lambda f=m.output: f().reshape(1)) for m in out]


def test_composition_score(composition_score) -> None:
    """Check composition_score against ||W_A W_B||_F / (||W_A||_F ||W_B||_F) on random matrices."""
    __tracebackhide__ = True
    test = "test_composition_score"
    fn = core.expect_function(composition_score, "composition_score", test)
    device = _device()
    cases = []
    for (a_shape, b_shape), seed in ((((24, 24), (24, 24)), 1406), (((20, 30), (30, 12)), 1407)):
        A = core.random_input(a_shape, seed, device)  # a_shape
        B = core.random_input(b_shape, seed + 100, device) + 0.5 * core.random_input(b_shape, seed + 200, device).abs()
        expected = (_fro(A @ B) / (_fro(A) * _fro(B))).reshape(1)  # (1,)
        cases.append(Case(f"random W_A {a_shape} and W_B {b_shape}", Config(), None, (A, B), expected, ("value",),
                          composition_mistakes(A, B),
                          "1) multiply W_A @ W_B; 2) take Frobenius norms (torch.linalg.matrix_norm); 3) divide by "
                          "the product of the two factors' norms."))
    for case in cases:
        out = core.call(fn, case.inputs, test, "composition_score")
        if out.numel() != 1:
            core.fail(f"{test}: composition_score returned a tensor of shape {tuple(out.shape)}; it should return one "
                      "number (a 0-dim tensor).\nLikely cause: a norm over one axis only (e.g. .norm(dim=...)); the "
                      "Frobenius norm is over the whole matrix: torch.linalg.matrix_norm(M).")
        if isinstance(out, Tensor) and out.dim() != 0:
            core.fail(f"{test}: composition_score returned a tensor of shape {tuple(out.shape)}; it should return a "
                      "0-dim tensor (shape ()), one number.\nLikely cause: a reshape, unsqueeze or keepdim=True "
                      "added an axis: torch.linalg.matrix_norm(M) of a matrix is already 0-dim.")
        out = out.reshape(1)  # (1,)
        core.vet_output(out, case.expected, case.dims, test, "the score")
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(test, "the score", case, out, mismatch)
    core.passed(test, core.summary(cases))


# -------------------------------------------------------------------------------------- ablate_head


def forward_edited(model: nn.Module, tokens: Tensor, edit: Callable[[dict[str, Tensor]], None]) -> Tensor:
    """The attention-only model's logits, written out from its parameters after `edit` changes a copy of them."""
    p = {k: v.detach().clone() for k, v in model.named_parameters()}
    edit(p)
    resid = p["embed.W_E"][tokens] + p["pos_embed.W_pos"][: tokens.shape[1]]  # (batch, posn, d_model)
    posn = tokens.shape[1]
    future = torch.ones(posn, posn, dtype=torch.bool, device=tokens.device).triu(1)  # (q, k)
    for i in range(len(model.blocks)):
        a = {k.split(".")[-1]: v for k, v in p.items() if k.startswith(f"blocks.{i}.attn.")}
        q = torch.einsum("bpm,hmd->bphd", resid, a["W_Q"]) + a["b_Q"]  # (batch, posn, n_heads, d_head)
        k = torch.einsum("bpm,hmd->bphd", resid, a["W_K"]) + a["b_K"]  # (batch, posn, n_heads, d_head)
        v = torch.einsum("bpm,hmd->bphd", resid, a["W_V"]) + a["b_V"]  # (batch, posn, n_heads, d_head)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])  # (batch, n_heads, q, k)
        pattern = scores.masked_fill(future, float("-inf")).softmax(-1)  # (batch, n_heads, q, k)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)  # (batch, posn, n_heads, d_head)
        resid = resid + torch.einsum("bqhd,hdm->bqm", z, a["W_O"]) + a["b_O"]  # (batch, posn, d_model)
    return resid @ p["unembed.W_U"] + p["unembed.b_U"]  # (batch, posn, d_vocab)


def _zero(*names_and_index):
    def edit(p: dict[str, Tensor]) -> None:
        for name, index in names_and_index:
            p[name][index] = 0.0

    return edit


def ablation_mistakes(model: nn.Module, tokens: Tensor, layer: int, head: int):
    b = f"blocks.{layer}.attn"
    other = f"blocks.{1 - layer}.attn"
    other_head = head % model.heads_per_layer[1 - layer]
    return lambda: [
        Mistake("zeroing W_V is not enough: the value bias b_V still flows through the pattern and W_O. Zero the "
                "head's W_O[head], and change nothing else.",
                lambda: forward_edited(model, tokens, _zero((f"{b}.W_V", head)))),
        Mistake("b_O was removed too: it belongs to the layer, not to one head. Zero only the head's W_O[head].",
                lambda: forward_edited(model, tokens, _zero((f"{b}.W_O", head), (f"{b}.b_O", slice(None))))),
        Mistake("the whole layer was removed: zero only W_O[head], the head's own slice (the first axis is the head).",
                lambda: forward_edited(model, tokens, _zero((f"{b}.W_O", slice(None)), (f"{b}.b_O", slice(None))))),
        Mistake("the wrong axis of W_O: its shape is (n_heads, d_head, d_model), so the head is W_O[head], "
                "not W_O[:, head].",
                lambda: forward_edited(model, tokens, _zero((f"{b}.W_O", (slice(None), head))))),
        *[Mistake("zeroing W_Q does not remove a head: its attention becomes a plain average (or a pattern of b_Q "
                  "alone) and it still writes. Zero its output, W_O[head], and nothing else.",
                  lambda edit=edit: forward_edited(model, tokens, edit))
          for edit in (_zero((f"{b}.W_Q", head), (f"{b}.b_Q", head)), _zero((f"{b}.W_Q", head)))],
        Mistake(f"the wrong layer: you removed a head of block {1 - layer}. Use model.blocks[layer].",
                lambda: forward_edited(model, tokens, _zero((f"{other}.W_O", other_head)))),
    ]


def _only_w_o_changed(test: str, what: str, model: nn.Module, out: nn.Module, layer: int, head: int) -> None:
    """The rule: the copy has the model's parameters, by name, and only blocks[layer].attn.W_O[head] is zero."""
    __tracebackhide__ = True
    before, after = model.state_dict(), out.state_dict()
    if set(before) != set(after):
        extra = sorted(set(after) - set(before))[:3]
        missing = sorted(set(before) - set(after))[:3]
        core.fail(f"{test}: the model returned by {what} does not have the model's parameters "
                  f"(new: {', '.join(extra) or 'none'}; missing: {', '.join(missing) or 'none'}).\n"
                  "Likely cause: a layer was replaced or wrapped. The rule is a copy of the same model in which only "
                  "blocks[layer].attn.W_O[head] is zero: copy.deepcopy(model), then zero that slice.")
    w_o = f"blocks.{layer}.attn.W_O"
    changed = [k for k in before if k != w_o and not torch.equal(before[k], after[k].to(before[k].device))]
    if changed:
        kinds = {k.rsplit(".", 1)[-1] for k in changed}
        w_o_zeroed = torch.equal(after[w_o].to(before[w_o].device)[head], torch.zeros_like(before[w_o][head]))
        if kinds <= {"W_V", "b_V"}:
            what_else = ("W_V and b_V zeroed gives the same logits, but the rule is that only W_O[head] changes, so the "
                         "ablated copy's values, z and circuits still show what the head computes")
        elif kinds <= {"W_Q", "b_Q", "W_K", "b_K"} and not w_o_zeroed:
            what_else = ("zeroing the queries or keys does not remove a head: it changes where the head looks, and "
                         "it still writes to the residual stream")
        else:
            what_else = "only W_O[head] changes; every other parameter, b_O included, stays as it was"
        done = "as well as zeroing W_O[head]" if w_o_zeroed else "and left W_O[head] as it was"
        core.fail(f"{test}: {what} changed {', '.join(changed)} {done}.\nLikely cause: {what_else}. Zero "
                  "ablated.blocks[layer].attn.W_O[head] and nothing else.")
    others = torch.ones(before[w_o].shape[0], dtype=torch.bool, device=before[w_o].device)  # (n_heads,)
    others[head] = False
    new_w_o = after[w_o].to(before[w_o].device)  # (n_heads, d_head, d_model)
    if not bool((new_w_o[head] == 0).all()) or not torch.equal(new_w_o[others], before[w_o][others]):
        core.fail(f"{test}: in the model returned by {what}, W_O is not the model's W_O with head {head}'s slice "
                  "set to zero.\nLikely cause: zero W_O[head] (the first axis is the head), exactly, and leave the "
                  "other heads' slices as they were.")


def test_ablate_head(ablate_head) -> None:
    """Check ablate_head on a random two-layer model: the copy's logits without one head; the original unchanged;
    only W_O[head] of the copy differs from the model (it is zero)."""
    __tracebackhide__ = True
    test = "test_ablate_head"
    fn = core.expect_function(ablate_head, "ablate_head", test)
    model = random_model(1408)
    tokens = core.random_tokens((2, 11), SMALL_CFG.d_vocab, seed=1409, device=_device())  # (2, 11)
    cases = []
    for layer, head in ((0, 1), (1, 0)):
        what = f"ablate_head(model, {layer}, {head})"
        out = call_on_model(fn, model, (layer, head), test, what)
        if out is None:
            core.fail(f"{test}: {what} returned None; it should return the ablated copy of the model.\n"
                      "Likely cause: the function edits a copy but does not `return` it.")
        if out is model:
            core.fail(f"{test}: {what} returned the model it was given; it should return a copy.\n"
                      "Likely cause: no copy was made. Start with ablated = copy.deepcopy(model).")
        if not isinstance(out, nn.Module):
            core.fail(f"{test}: {what} returned {type(out).__name__}; it should return the ablated model (an nn.Module).")
        expected = forward_edited(model, tokens, _zero((f"blocks.{layer}.attn.W_O", head)))  # (batch, posn, d_vocab)
        case = Case(f"a random 2-layer model (heads {SMALL_HEADS}), head {layer}.{head} removed", SMALL_CFG, None,
                    (tokens,), expected, ("batch", "posn", "d_vocab"), ablation_mistakes(model, tokens, layer, head),
                    "1) copy the model with copy.deepcopy; 2) in the copy, set blocks[layer].attn.W_O[head] to zero "
                    "under torch.no_grad(); 3) leave b_O and every other head alone.")
        logits = core.call(out, case.inputs, test, f"the model returned by {what}")
        core.vet_output(logits, expected, case.dims, test, "the ablated model's logits")
        mismatch = core.compare(logits, expected)
        if mismatch is not None:
            try:
                core.explain(test, "the logit", case, logits, mismatch)
            except core.CheckFailed as failed:
                if "Likely cause: " not in str(failed):  # no known mistake: name the parameters that changed
                    _only_w_o_changed(test, what, model, out, layer, head)
                raise
        _only_w_o_changed(test, what, model, out, layer, head)
        cases.append(case)
    core.passed(test, core.summary(cases))
