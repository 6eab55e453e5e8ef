"""test_neuron_logit_effect: a neuron's value read through the unembedding, W_out[n] @ W_U, centred over tokens.

The learner writes ``neuron_logit_effect(W_out, W_U, neurons)``: for each neuron, how much one unit of its
activation raises every token's logit along the direct path (ignoring ln_final), with the mean over the
vocabulary taken out, since only differences between logits matter. The check compares with that formula
on the reference's MLP weights and on small random ones, as a list of cases plus named mistakes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from c1p1.checks import core
from c1p1.config import Config

TEST = "test_neuron_logit_effect"
DIMS = ("neuron", "d_vocab")


def effect(W_out: Tensor, W_U: Tensor, neurons: Tensor) -> Tensor:
    raw = W_out[neurons] @ W_U  # (n, d_vocab)
    return raw - raw.mean(dim=-1, keepdim=True)  # (n, d_vocab)


def mistakes(W_out: Tensor, W_U: Tensor, neurons: Tensor):
    def build() -> list[core.Mistake]:
        raw = W_out[neurons] @ W_U  # (n, d_vocab)
        values = W_out[neurons]  # (n, d_model)
        return [
            core.Mistake("the logits are not centred: subtract each row's mean over the vocabulary "
                         "(only differences between logits matter).", lambda: raw),
            core.Mistake("the mean is taken over the neurons (dim 0). Centre each neuron's row over the vocabulary: "
                         "mean(dim=-1, keepdim=True).", lambda: raw - raw.mean(dim=0, keepdim=True)),
            core.Mistake("the value vector is centred over d_model before the unembedding, the way LayerNorm centres; "
                         "centre the logits instead, after @ W_U.",
                         lambda: (values - values.mean(dim=-1, keepdim=True)) @ W_U),
            core.Mistake("the result went through a softmax. Return centred logit changes, not probabilities.",
                         lambda: effect(W_out, W_U, neurons).softmax(dim=-1)),
        ]

    return build


SHAPE_HINTS = (
    (lambda out, exp: len(out) == 2 and out[0] != exp[0] and out[1] == exp[1],
     "one row per neuron in `neurons`: index the rows of W_out with the whole tensor of neuron ids."),
)


def neuron_cases():
    """The cases one at a time, so that a failure on the first never pays for the others."""
    ref = core.reference()
    params = ref.params()
    label = core.weights_label(ref)
    W_U = params["unembed.W_U"]
    device = ref.device
    for layer, ids in ((0, [0, 5, 3071, 100]), (6, [2047, 1])):
        neurons = torch.tensor(ids, device=device)  # (n,)
        W_out = params[f"blocks.{layer}.mlp.W_out"]
        yield core.Case(f"blocks.{layer}.mlp neurons {ids}, {label}", Config(), None, (W_out, W_U, neurons),
                        effect(W_out, W_U, neurons), DIMS, mistakes(W_out, W_U, neurons))
    small = core.SMALL
    p = core.random_params({"mlp.W_out": (small.d_mlp, small.d_model), "unembed.W_U": (small.d_model, small.d_vocab)},
                           21, device)
    p["unembed.W_U"] = p["unembed.W_U"] + 0.5  # a large common offset: an uncentred answer is far off
    neurons = torch.tensor([3, 0, small.d_mlp - 1], device=device)  # (3,)
    yield core.Case("a smaller model with random weights, neurons [3, 0, d_mlp - 1]", small, None,
                    (p["mlp.W_out"], p["unembed.W_U"], neurons), effect(p["mlp.W_out"], p["unembed.W_U"], neurons),
                    DIMS, mistakes(p["mlp.W_out"], p["unembed.W_U"], neurons))


def test_neuron_logit_effect(neuron_logit_effect) -> None:
    """Check neuron_logit_effect: W_out[neurons] @ W_U, centred over the vocabulary."""
    __tracebackhide__ = True
    fn = core.expect_function(neuron_logit_effect, "neuron_logit_effect", TEST)
    cases = []
    for case in neuron_cases():
        cases.append(case)
        out = core.call(fn, case.inputs, TEST, "neuron_logit_effect")
        core.vet_output(out, case.expected, case.dims, TEST, "the output", SHAPE_HINTS)
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(TEST, "the logit-effect", case, out, mismatch)
    core.passed(TEST, core.summary(cases))
