"""test_layer_norm: passes the solution and correct variants; rejects the stub and each known mistake by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import C1P1_tests as tests
from c1p1.parts import LayerNorm
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions


def variant(body):
    """A LayerNorm whose forward is `body(self, x)`."""
    return type("LayerNorm", (LayerNorm,), {"forward": lambda self, x: body(self, x)})


def eps(self):
    return self.cfg.layer_norm_eps


CORRECT = {
    "solution notebook": lambda: definitions("solutions/01_layernorm.ipynb")["LayerNorm"],
    "F.layer_norm": lambda: variant(lambda s, x: F.layer_norm(x, (s.cfg.d_model,), s.w, s.b, eps(s))),
    "float64 then cast back": lambda: variant(
        lambda s, x: F.layer_norm(x.double(), (s.cfg.d_model,), s.w.double(), s.b.double(), eps(s)).to(x.dtype)
    ),
    "rsqrt": lambda: variant(
        lambda s, x: (x - x.mean(-1, keepdim=True)) * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + eps(s))
        * s.w + s.b
    ),
    "var_mean with correction=0": lambda: variant(
        lambda s, x: (lambda v, m: (x - m) / (v + eps(s)).sqrt() * s.w + s.b)(*torch.var_mean(x, -1, keepdim=True, correction=0))
    ),
}

MISTAKES = {
    "unbiased variance": (
        lambda s, x: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + eps(s)).sqrt() * s.w + s.b,
        ["unbiased"],
    ),
    "eps outside the root": (
        lambda s, x: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False).sqrt() + eps(s)) * s.w + s.b,
        ["eps", "inside"],
    ),
    "no affine": (
        lambda s, x: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + eps(s)).sqrt(),
        ["affine", "self.w"],
    ),
    "bias forgotten": (
        lambda s, x: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + eps(s)).sqrt() * s.w,
        ["self.b"],
    ),
    "mean not subtracted": (
        lambda s, x: x / (x.var(-1, keepdim=True, unbiased=False) + eps(s)).sqrt() * s.w + s.b,
        ["mean"],
    ),
    "normalised over positions": (
        lambda s, x: (x - x.mean(-2, keepdim=True)) / (x.var(-2, keepdim=True, unbiased=False) + eps(s)).sqrt() * s.w + s.b,
        ["wrong dimension"],
    ),
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name, reference):
    tests.test_layer_norm(CORRECT[name]())


def test_exercise_stub_is_not_done(reference):
    not_done(tests.test_layer_norm, definitions("notebooks/01_layernorm.ipynb")["LayerNorm"])


@pytest.mark.parametrize("name", MISTAKES)
def test_mistakes_are_named(name, reference):
    body, keywords = MISTAKES[name]
    fails(tests.test_layer_norm, variant(body), *keywords)


def test_hard_coded_size_is_explained(reference):
    message = fails(tests.test_layer_norm, variant(lambda s, x: F.layer_norm(x, (768,), s.w, s.b, 1e-5)), "smaller Config")
    assert "F.layer_norm(x, (768,)" in message  # the learner's own line is shown
