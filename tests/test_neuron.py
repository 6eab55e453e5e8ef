"""test_neuron_logit_effect: correct variants pass; the stub is not done; each named mistake is caught."""

from __future__ import annotations

import einops
import pytest

import C1P1_tests as tests
from c1p1.parts import neuron_logit_effect
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

CORRECT = {
    "solution notebook": lambda: definitions("solutions/06_mlp.ipynb")["neuron_logit_effect"],
    "canonical part": lambda: neuron_logit_effect,
    "W_U centred first": lambda: lambda W_out, W_U, n: W_out[n] @ (W_U - W_U.mean(dim=1, keepdim=True)),
    "index_select and einsum": lambda: lambda W_out, W_U, n: (
        lambda raw: raw - raw.mean(-1, keepdim=True)
    )(einops.einsum(W_out.index_select(0, n), W_U, "n m, m v -> n v")),
}

MISTAKES = {
    "not centred": (lambda W_out, W_U, n: W_out[n] @ W_U, ["not centred"]),
    "centred over neurons": (
        lambda W_out, W_U, n: (lambda raw: raw - raw.mean(0, keepdim=True))(W_out[n] @ W_U), ["over the neurons"]
    ),
    "value centred before W_U": (
        lambda W_out, W_U, n: (W_out[n] - W_out[n].mean(-1, keepdim=True)) @ W_U, ["before the unembedding"]
    ),
    "softmax": (lambda W_out, W_U, n: neuron_logit_effect(W_out, W_U, n).softmax(-1), ["softmax"]),
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name, reference):
    tests.test_neuron_logit_effect(CORRECT[name]())


@pytest.mark.parametrize("name", MISTAKES)
def test_each_mistake_is_named(name, reference):
    fn, keywords = MISTAKES[name]
    fails(tests.test_neuron_logit_effect, fn, *keywords)


def test_the_stub_is_not_done(reference):
    not_done(tests.test_neuron_logit_effect, definitions("notebooks/06_mlp.ipynb")["neuron_logit_effect"])


def test_bad_output_gets_one_clear_message(reference):
    fails(tests.test_neuron_logit_effect, lambda W_out, W_U, n: W_out[n[:1]] @ W_U, "one row per neuron")  # a row short
    fails(tests.test_neuron_logit_effect, lambda *args: (neuron_logit_effect(*args),), "tuple")
