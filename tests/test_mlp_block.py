"""test_mlp and test_transformer_block: pass the solutions and correct variants; reject the stubs and each known mistake by name."""

from __future__ import annotations

import math
import time

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import C1P1_tests as tests
from c1p1.checks import core, mlp, oracle
from c1p1.parts import MLP, TransformerBlock
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

# ------------------------------------------------------------------------------------------ MLP


def mlp_variant(body):
    """An MLP whose forward is `body(self, x)`."""
    return type("MLP", (MLP,), {"forward": lambda self, x: body(self, x)})


def gelu_pow(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_cube(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))


def exact_gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


class ModuleMLP(nn.Module):
    """A different structure: nn.GELU('tanh') as a submodule and the weights read through F.linear."""

    def __init__(self, cfg):
        super().__init__()
        self.W_in = nn.Parameter(torch.zeros(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.zeros(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act = nn.GELU(approximate="tanh")

    def forward(self, x):
        return F.linear(self.act(F.linear(x, self.W_in.T, self.b_in)), self.W_out.T, self.b_out)


MLP_CORRECT = {
    "solution notebook": lambda: definitions("solutions/06_mlp.ipynb")["MLP"],
    "F.gelu(approximate='tanh')": lambda: mlp_variant(
        lambda s, x: F.gelu(x @ s.W_in + s.b_in, approximate="tanh") @ s.W_out + s.b_out
    ),
    "gelu_new with torch.pow": lambda: mlp_variant(lambda s, x: gelu_pow(x @ s.W_in + s.b_in) @ s.W_out + s.b_out),
    "gelu_new with x*x*x": lambda: mlp_variant(lambda s, x: gelu_cube(x @ s.W_in + s.b_in) @ s.W_out + s.b_out),
    "einsum": lambda: mlp_variant(
        lambda s, x: torch.einsum(
            "bsn,nm->bsm", F.gelu(torch.einsum("bsm,mn->bsn", x, s.W_in) + s.b_in, approximate="tanh"), s.W_out
        )
        + s.b_out
    ),
    "einops.einsum": lambda: mlp_variant(
        lambda s, x: einops.einsum(
            gelu_cube(einops.einsum(x, s.W_in, "b p m, m n -> b p n") + s.b_in), s.W_out, "b p n, n m -> b p m"
        )
        + s.b_out
    ),
    "F.linear with transposed views, nn.GELU submodule": lambda: ModuleMLP,
    "float64 then cast back": lambda: mlp_variant(
        lambda s, x: (
            gelu_pow(x.double() @ s.W_in.double() + s.b_in.double()) @ s.W_out.double() + s.b_out.double()
        ).to(x.dtype)
    ),
    "addmm on flattened positions": lambda: mlp_variant(
        lambda s, x: torch.addmm(
            s.b_out, F.gelu(torch.addmm(s.b_in, x.reshape(-1, x.shape[-1]), s.W_in), approximate="tanh"), s.W_out
        ).view(x.shape)
    ),
}

MLP_MISTAKES = {
    "ReLU": (lambda s, x: F.relu(x @ s.W_in + s.b_in) @ s.W_out + s.b_out, ["ReLU"]),
    "exact GELU (F.gelu)": (lambda s, x: F.gelu(x @ s.W_in + s.b_in) @ s.W_out + s.b_out, ["exact GELU", "tanh"]),
    "exact GELU written with erf": (lambda s, x: exact_gelu(x @ s.W_in + s.b_in) @ s.W_out + s.b_out, ["exact GELU"]),
    "no activation": (lambda s, x: (x @ s.W_in + s.b_in) @ s.W_out + s.b_out, ["no activation"]),
    "b_in dropped": (lambda s, x: gelu_pow(x @ s.W_in) @ s.W_out + s.b_out, ["b_in is never added"]),
    "b_out dropped": (lambda s, x: gelu_pow(x @ s.W_in + s.b_in) @ s.W_out, ["b_out is never added"]),
    "b_in after the activation": (lambda s, x: (gelu_pow(x @ s.W_in) + s.b_in) @ s.W_out + s.b_out, ["after the activation"]),
    "activation on the output": (lambda s, x: gelu_pow((x @ s.W_in + s.b_in) @ s.W_out + s.b_out), ["instead of the hidden"]),
    "activation twice": (lambda s, x: gelu_pow(gelu_pow(x @ s.W_in + s.b_in) @ s.W_out + s.b_out), ["twice"]),
}


@pytest.mark.parametrize("name", MLP_CORRECT)
def test_mlp_correct_variants_pass(name, reference):
    tests.test_mlp(MLP_CORRECT[name]())


def test_mlp_exercise_stub_is_not_done(reference):
    not_done(tests.test_mlp, definitions("notebooks/06_mlp.ipynb")["MLP"])


@pytest.mark.parametrize("name", MLP_MISTAKES)
def test_mlp_mistakes_are_named(name, reference):
    body, keywords = MLP_MISTAKES[name]
    fails(tests.test_mlp, mlp_variant(body), *keywords)


def test_exact_gelu_is_rejected_by_the_random_case_far_beyond_tolerance(reference):
    """The random case alone rejects exact GELU, on many values (not on one unlucky one)."""
    case = mlp.mlp_cases()[-1]
    x, p = case.inputs[0], case.params
    exact = oracle.mlp(x, p, activation="gelu")
    close = torch.isclose(exact, case.expected, atol=core.ATOL, rtol=core.RTOL)
    assert (~close).sum() >= 20, int((~close).sum())
    assert float((exact - case.expected).abs().max()) > 5 * core.ATOL


def test_mlp_returning_the_hidden_layer_is_explained(reference):
    fails(tests.test_mlp, mlp_variant(lambda s, x: gelu_pow(x @ s.W_in + s.b_in)), "hidden width", "W_out")


def test_mlp_transposed_weights_are_explained(reference):
    class Transposed(MLP):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.W_in = nn.Parameter(torch.zeros(cfg.d_mlp, cfg.d_model))
            self.W_out = nn.Parameter(torch.zeros(cfg.d_model, cfg.d_mlp))

    fails(tests.test_mlp, Transposed, "transposed")


def test_mlp_hard_coded_size_is_explained(reference):
    message = fails(
        tests.test_mlp,
        mlp_variant(lambda s, x: (gelu_pow(x @ s.W_in + s.b_in) @ s.W_out + s.b_out).view(*x.shape[:2], 768)),
        "smaller Config",
    )
    assert "view(*x.shape[:2], 768)" in message


def test_mlp_instance_is_explained(reference):
    fails(tests.test_mlp, MLP(core.SMALL), "instance", "tests.test_mlp(MLP)")


# ------------------------------------------------------------------------------ transformer block


def block_variant(body):
    """A TransformerBlock whose forward is `body(self, x)`."""
    return type("TransformerBlock", (TransformerBlock,), {"forward": lambda self, x: body(self, x)})


def intermediate(s, x):
    normalised_pre = s.ln1(x)
    attn_out = s.attn(normalised_pre)
    resid_mid = x + attn_out
    normalised_mid = s.ln2(resid_mid)
    mlp_out = s.mlp(normalised_mid)
    resid_post = resid_mid + mlp_out
    return resid_post


def regrouped(s, x):
    attn_out = s.attn(s.ln1(x))
    mlp_out = s.mlp(s.ln2(attn_out + x))
    return x + (attn_out + mlp_out)


def in_place_on_a_copy(s, x):
    resid = x.clone()
    resid += s.attn(s.ln1(resid))
    resid += s.mlp(s.ln2(resid))
    return resid


class ListedBlock(nn.Module):
    """The same block written with its own __init__ and a loop over (norm, layer) pairs."""

    def __init__(self, cfg):
        super().__init__()
        from c1p1.parts import MLP as CourseMLP
        from c1p1.parts import Attention, LayerNorm

        self.ln1, self.attn, self.ln2, self.mlp = LayerNorm(cfg), Attention(cfg), LayerNorm(cfg), CourseMLP(cfg)

    def forward(self, resid):
        for norm, layer in ((self.ln1, self.attn), (self.ln2, self.mlp)):
            resid = layer(norm(resid)) + resid
        return resid


BLOCK_CORRECT = {
    "solution notebook": lambda: definitions("solutions/07_transformer_block.ipynb")["TransformerBlock"],
    "intermediate variables": lambda: block_variant(intermediate),
    "additions regrouped": lambda: block_variant(regrouped),
    "+= on a copy": lambda: block_variant(in_place_on_a_copy),
    "own __init__ and a loop": lambda: ListedBlock,
}


def post_ln(s, x):
    mid = s.ln1(x + s.attn(x))
    return s.ln2(mid + s.mlp(mid))


def parallel(s, x):
    return x + s.attn(s.ln1(x)) + s.mlp(s.ln2(x))


BLOCK_MISTAKES = {
    "no attention residual": (
        lambda s, x: (lambda mid: mid + s.mlp(s.ln2(mid)))(s.attn(s.ln1(x))),
        ["attention's residual connection is missing"],
    ),
    "no MLP residual": (
        lambda s, x: s.mlp(s.ln2(x + s.attn(s.ln1(x)))),
        ["MLP's residual connection is missing"],
    ),
    "post-LN": (post_ln, ["wrong place", "pre-LN"]),
    "ln1 and ln2 swapped": (
        lambda s, x: (lambda mid: mid + s.mlp(s.ln1(mid)))(x + s.attn(s.ln2(x))),
        ["swapped"],
    ),
    "attention and MLP in parallel": (parallel, ["parallel"]),
    "normalised stream as residual": (
        lambda s, x: (lambda n1: (lambda mid: s.ln2(mid) + s.mlp(s.ln2(mid)))(n1 + s.attn(n1)))(s.ln1(x)),
        ["normalised stream"],
    ),
    "attention output lost": (
        lambda s, x: x + s.mlp(s.ln2(x + s.attn(s.ln1(x)))),
        ["attention's output is lost"],
    ),
    "ln1 used twice": (
        lambda s, x: (lambda mid: mid + s.mlp(s.ln1(mid)))(x + s.attn(s.ln1(x))),
        ["ln1 is used twice"],
    ),
    "ln2 used twice": (
        lambda s, x: (lambda mid: mid + s.mlp(s.ln2(mid)))(x + s.attn(s.ln2(x))),
        ["ln2 is used twice"],
    ),
    "no LayerNorm": (
        lambda s, x: (lambda mid: mid + s.mlp(mid))(x + s.attn(x)),
        ["no LayerNorm"],
    ),
}


@pytest.mark.parametrize("name", BLOCK_CORRECT)
def test_block_correct_variants_pass(name, reference):
    tests.test_transformer_block(BLOCK_CORRECT[name]())


def test_block_exercise_stub_is_not_done(reference):
    not_done(tests.test_transformer_block, definitions("notebooks/07_transformer_block.ipynb")["TransformerBlock"])


@pytest.mark.parametrize("name", BLOCK_MISTAKES)
def test_block_mistakes_are_named(name, reference):
    body, keywords = BLOCK_MISTAKES[name]
    fails(tests.test_transformer_block, block_variant(body), *keywords)


def test_block_submodule_names_are_explained(reference):
    class Renamed(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            from c1p1.parts import MLP as CourseMLP
            from c1p1.parts import Attention, LayerNorm

            self.norm1, self.attn, self.norm2, self.mlp = LayerNorm(cfg), Attention(cfg), LayerNorm(cfg), CourseMLP(cfg)

        def forward(self, x):
            mid = x + self.attn(self.norm1(x))
            return mid + self.mlp(self.norm2(mid))

    fails(tests.test_transformer_block, Renamed, "ln1, ln2", "self.ln1 = LayerNorm(cfg)")


def test_block_changing_the_stream_in_place_is_explained(reference):
    def in_place(s, x):
        x += s.attn(s.ln1(x))
        x += s.mlp(s.ln2(x))
        return x

    fails(tests.test_transformer_block, block_variant(in_place), "in place")


# ------------------------------------------------------------------------------------------ speed


@pytest.mark.parametrize("check, cls", [(tests.test_mlp, MLP), (tests.test_transformer_block, TransformerBlock)])
def test_checks_take_under_a_second(check, cls, reference, capsys):
    check(cls)  # warm up: the reference's activations are cached per kernel
    start = time.perf_counter()
    check(cls)
    assert time.perf_counter() - start < 1.0
