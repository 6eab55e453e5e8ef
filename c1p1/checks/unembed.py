"""test_unembed (notebook 08): Unembed against GPT-2's unembedding, and against random W_U and b_U."""

from __future__ import annotations

import torch
from torch import Tensor

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake

LOGIT_DIMS = ("batch", "posn", "d_vocab")
FIELDS = "cfg.d_model, cfg.n_layers, ..."

UNEMBED_FALLBACK = (
    "1) the logits are normalized_resid_final @ W_U + b_U, with W_U of shape (d_model, d_vocab); "
    "2) return the raw logits: no softmax, no LayerNorm (the input is already ln_final's output); "
    "3) add b_U once, after the matrix product."
)

UNEMBED_SHAPE_HINTS = (
    (
        lambda got, want: len(got) == 3 and got[:2] == want[:2] and got[-1] != want[-1],
        "the last dimension should be d_vocab, one logit per token in the vocabulary: multiply by W_U "
        "(d_model -> d_vocab).",
    ),
)


def unembed_mistakes(x: Tensor, p: dict[str, Tensor], eps: float):
    """What each plausible unembedding mistake gives on this input."""
    ones = torch.ones(x.shape[-1], device=x.device)  # (d_model,)
    plain_ln = {"w": ones, "b": torch.zeros_like(ones)}
    return lambda: [
        Mistake(
            "b_U is never added: the logits are normalized_resid_final @ W_U + b_U. (GPT-2's own b_U is all "
            "zeros, so only the case with random parameters can show this.)",
            lambda: oracle.unembed(x, p, no_bias=True),
        ),
        Mistake(
            "you returned log probabilities (a log_softmax of the logits). The unembedding returns the raw "
            "logits; the softmax comes later, in the loss.",
            lambda: oracle.unembed(x, p).log_softmax(-1),
        ),
        Mistake(
            "you returned probabilities (a softmax of the logits). The unembedding returns the raw logits.",
            lambda: oracle.unembed(x, p).softmax(-1),
        ),
        Mistake(
            "the input is normalised again. It is already ln_final's output: multiply it by W_U and add b_U, "
            "with no LayerNorm inside Unembed.",
            lambda: oracle.unembed(oracle.layer_norm(x, plain_ln, eps), p),
        ),
    ]


def unembed_cases() -> list[Case]:
    ref = core.reference()
    cfg = ref.cfg
    eps = cfg.layer_norm_eps
    label = core.weights_label(ref)
    p = ref.params_for("unembed")
    out = []
    for which, text in core.REFERENCE_RUNS:
        acts = ref.activations(which)
        x = acts["ln_final.hook_out"].clone()  # (batch, posn, d_model): an in-place edit spares the cache
        out.append(Case(f"{text}, unembed with {label}", cfg, p, (x,), acts["unembed.hook_out"], LOGIT_DIMS,
                        unembed_mistakes(x, p, eps), UNEMBED_FALLBACK))
    small = core.SMALL
    ps = core.random_params({"W_U": (small.d_model, small.d_vocab), "b_U": (small.d_vocab,)}, seed=801,
                            device=ref.device)
    xs = core.random_input((2, 7, small.d_model), seed=802, device=ref.device)  # (2, 7, d_model)
    out.append(Case("random W_U, b_U and input (d_model=96, d_vocab=503)", small, ps, (xs,), oracle.unembed(xs, ps),
                    LOGIT_DIMS, unembed_mistakes(xs, ps, eps), UNEMBED_FALLBACK))
    return out


def test_unembed(Unembed) -> None:
    """Check an Unembed class against GPT-2's unembedding, and against random W_U and b_U."""
    __tracebackhide__ = True
    test = "test_unembed"
    cls = core.expect_module_class(Unembed, "Unembed", test)
    cases = unembed_cases()
    core.run_cases(test, cls, cases, shape_hints=UNEMBED_SHAPE_HINTS, values="the logit", fields=FIELDS, lend=True)
    core.passed(test, core.summary(cases))


