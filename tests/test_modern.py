"""Notebook 16's checks: the solutions and correct variants pass, the stubs are not done, each named mistake is caught."""

from __future__ import annotations

import math
import time

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import C1P1_tests as tests
from c1p1.checks import modern
from c1p1.modern import ModernConfig, llama_config, params_from_llama, random_llama
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions


@pytest.fixture(scope="module")
def solution():
    return definitions("solutions/16_modern_llm.ipynb")


@pytest.fixture(scope="module")
def stub():
    return definitions("notebooks/16_modern_llm.ipynb")


def variant(base: type, body) -> type:
    """A subclass of the solution's class whose forward is ``body(self, x)``, under the same name."""
    return type(base.__name__, (base,), {"forward": lambda self, x: body(self, x)})


# ------------------------------------------------------------------------------ the reference itself


def test_the_reference_is_hugging_face_and_the_map_is_strict():
    """The expected angle table gives Hugging Face's own cos and sin; the map uses every tensor of the model."""
    from transformers.models.llama import modeling_llama as hf

    cfg = modern.SMALL_A
    for case in modern.angle_cases():
        if case.cfg is cfg:
            rotary = hf.LlamaRotaryEmbedding(llama_config(cfg)).to(case.expected.device)
            positions = case.inputs[0]
            cos, sin = rotary(case.expected, positions[None])  # (1, posn, d_head)
            assert torch.allclose(case.expected.cos(), cos[0], atol=1e-6)
            assert torch.allclose(case.expected.sin(), sin[0], atol=1e-6)
    model = random_llama(cfg, seed=1)
    params = params_from_llama(model)
    assert sum(v.numel() for v in params.values()) == sum(p.numel() for p in model.parameters())
    norms = [v for k, v in params.items() if k.endswith(".w")]
    assert all(float((w - 1).abs().max()) > 0.3 for w in norms), "RMSNorm weights must not be all ones"


def test_default_and_small_configs_differ_in_every_size():
    for small in (modern.SMALL_A, modern.SMALL_B):
        for field in ("d_model", "d_vocab", "d_head", "d_mlp", "n_heads", "rope_theta"):
            assert getattr(small, field) != getattr(ModernConfig(), field), field
    assert modern.SMALL_B.d_model != modern.SMALL_B.n_heads * modern.SMALL_B.d_head


# ------------------------------------------------------------------------------------------ RMSNorm


def rms_variant(solution, body):
    return variant(solution["RMSNorm"], body)


RMS_CORRECT = {
    "norm over sqrt(d)": lambda s, x: x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) / x.shape[-1] + s.cfg.rms_norm_eps) * s.w,
    "F.rms_norm": lambda s, x: F.rms_norm(x, (x.shape[-1],), s.w, eps=s.cfg.rms_norm_eps),
    "float64 then back": lambda s, x: (x.double() * torch.rsqrt(x.double().square().mean(-1, keepdim=True)
                                                               + s.cfg.rms_norm_eps)).to(x.dtype) * s.w,
}

RMS_MISTAKES = {
    "centres": (lambda s, x: (lambda c: c * torch.rsqrt(c.pow(2).mean(-1, keepdim=True) + s.cfg.rms_norm_eps) * s.w)(
        x - x.mean(-1, keepdim=True)), ["subtracted", "does not centre"]),
    "eps outside": (lambda s, x: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + s.cfg.rms_norm_eps) * s.w,
                    ["eps is added outside the root"]),
    "no weight": (lambda s, x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.cfg.rms_norm_eps),
                  ["self.w is never used"]),
    "weight added": (lambda s, x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.cfg.rms_norm_eps) + s.w,
                     ["added instead of multiplied"]),
    "eps hard-coded": (lambda s, x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * s.w,
                       ["rms_norm_eps"]),
    "Gemma's (1 + w)": (lambda s, x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.cfg.rms_norm_eps) * (1 + s.w),
                        ["(1 + w)", "Gemma"]),
    "d_model hard-coded": (lambda s, x: x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) / 64 + s.cfg.rms_norm_eps) * s.w,
                           ["divided by 64", "d_model is 72", ".mean(dim=-1"]),
    "unbiased std": (lambda s, x: x / torch.sqrt(x.var(-1, keepdim=True) + s.cfg.rms_norm_eps) * s.w,
                     ["standard deviation"]),
    "sum, not mean": (lambda s, x: x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + s.cfg.rms_norm_eps) * s.w,
                      ["summed, not averaged"]),
}


def test_rms_norm_solution_passes(solution):
    tests.test_rms_norm(solution["RMSNorm"])


@pytest.mark.parametrize("name", RMS_CORRECT)
def test_rms_norm_correct_variants_pass(name, solution):
    tests.test_rms_norm(rms_variant(solution, RMS_CORRECT[name]))


def test_rms_norm_stub_is_not_done(stub):
    not_done(tests.test_rms_norm, stub["RMSNorm"])


@pytest.mark.parametrize("name", RMS_MISTAKES)
def test_rms_norm_mistakes_are_named(name, solution):
    body, keywords = RMS_MISTAKES[name]
    fails(tests.test_rms_norm, rms_variant(solution, body), *keywords)


def test_rms_norm_with_a_bias_is_told_the_names(solution):
    class WithBias(solution["RMSNorm"]):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.b = nn.Parameter(torch.zeros(cfg.d_model))

    fails(tests.test_rms_norm, WithBias, "unexpected: b", "LLAMA_NAMES")


# ---------------------------------------------------------------------------------------- RoPE angles


def angles_halves(positions, d_head, theta):
    freqs = 1.0 / theta ** (torch.arange(0, d_head, 2, device=positions.device).float() / d_head)
    angles = torch.outer(positions.float(), freqs)
    return angles.repeat(1, 2)


def angles_exp_log(positions, d_head, theta):
    k = torch.arange(d_head // 2, device=positions.device, dtype=torch.float32)
    freqs = torch.exp(-2 * k / d_head * math.log(theta))
    return einops.repeat(positions.float()[:, None] * freqs, "p k -> p (two k)", two=2)


ANGLE_MISTAKES = {
    "neighbours' layout": (lambda p, d, t: modern.rope_angles(p, d, t, layout="neighbours"), ["neighbours' layout", "torch.cat"]),
    "exponent k/d": (lambda p, d, t: modern.rope_angles(p, d, t, exponent=1.0), ["2k / d_head"]),
    "growing frequencies": (lambda p, d, t: modern.rope_angles(p, d, t, sign=1.0), ["grow instead of shrinking"]),
    "one frequency per feature": (lambda p, d, t: modern.rope_angles(p, d, t, per_feature=True), ["own frequency"]),
    "theta hard-coded": (lambda p, d, t: modern.rope_angles(p, d, 10000.0), ["wrong theta", "500000",
                                                                            "row 8 (position 48)"]),
    "exponent over d_head - 2": (lambda p, d, t: modern.rope_angles(p, d, t, denominator=d - 2), ["d_head - 2"]),
    "positions ignored": (lambda p, d, t: modern.rope_angles(torch.arange(len(p), device=p.device), d, t),
                          ["positions are ignored"]),
}


def test_rope_angles_solution_passes(solution):
    tests.test_rope_angles(solution["rope_angles"])


@pytest.mark.parametrize("fn", [angles_halves, angles_exp_log], ids=["1/theta**x with repeat", "exp(log) with einops"])
def test_rope_angles_correct_variants_pass(fn):
    tests.test_rope_angles(fn)


def test_rope_angles_stub_is_not_done(stub):
    not_done(tests.test_rope_angles, stub["rope_angles"])


@pytest.mark.parametrize("name", ANGLE_MISTAKES)
def test_rope_angles_mistakes_are_named(name):
    fn, keywords = ANGLE_MISTAKES[name]
    fails(tests.test_rope_angles, fn, *keywords)


def test_rope_angles_with_one_column_per_pair_is_explained():
    fails(tests.test_rope_angles, lambda p, d, t: modern.rope_angles(p, d, t)[:, : d // 2], "one column per pair")


# ---------------------------------------------------------------------------------------- applying RoPE

def complex_rope(x, theta, offset=0):
    """RoPE with complex numbers, pairing feature k with k + d_head/2 (the matching permutation of Meta's code)."""
    d_head = x.shape[-1]
    positions = torch.arange(offset, offset + x.shape[1], device=x.device)
    freqs = theta ** (-torch.arange(0, d_head, 2, device=x.device).float() / d_head)
    turn = torch.polar(torch.ones(len(positions), d_head // 2, device=x.device), torch.outer(positions.float(), freqs))
    z = torch.complex(x[..., : d_head // 2], x[..., d_head // 2 :])  # (batch, posn, heads, d_head/2)
    z = z * turn[:, None, :]
    return torch.cat([z.real, z.imag], dim=-1)


def permuted_neighbours_rope(x, theta, offset=0):
    """Permute each head to the neighbours' layout, rotate neighbours, permute back: the same function."""
    d_head = x.shape[-1]
    to_halves = torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)]).to(x.device)
    to_neighbours = torch.argsort(to_halves)
    out = modern.apply_rope(x[..., to_neighbours], theta, offset, convention="neighbours")
    return out[..., to_halves]


def meta_complex_rope(x, theta, offset=0):
    """Meta's way: complex numbers over neighbouring pairs, on the features permuted into the neighbours' layout."""
    d_head = x.shape[-1]
    to_halves = torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)]).to(x.device)
    neighbours = x[..., torch.argsort(to_halves)]  # (batch, posn, heads, d_head): pairs (0, 1), (2, 3), ...
    positions = torch.arange(offset, offset + x.shape[1], device=x.device).float()
    freqs = 1.0 / theta ** (torch.arange(0, d_head, 2, device=x.device)[: d_head // 2].float() / d_head)
    freqs_cis = torch.polar(torch.ones(len(positions), d_head // 2, device=x.device), torch.outer(positions, freqs))
    z = torch.view_as_complex(neighbours.float().reshape(*x.shape[:-1], -1, 2))  # (batch, posn, heads, d_head/2)
    rotated = torch.view_as_real(z * freqs_cis[:, None, :]).flatten(-2)  # (batch, posn, heads, d_head), neighbours
    return rotated[..., to_halves].type_as(x)


ROPE_MISTAKES = {
    "neighbours' convention": (lambda x, t, o=0: modern.apply_rope(x, t, o, convention="neighbours"),
                               ["other convention", "rotate_half"]),
    "Meta's complex numbers without the permutation": (
        lambda x, t, o=0: torch.view_as_real(
            torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
            * torch.polar(torch.ones(x.shape[1], x.shape[-1] // 2, device=x.device),
                          torch.outer(torch.arange(o, o + x.shape[1], device=x.device).float(),
                                      t ** (-torch.arange(0, x.shape[-1], 2, device=x.device).float() / x.shape[-1])))[:, None, :]
        ).flatten(-2),
        ["other convention", "permutation"]),
    "halves with a neighbours' table": (lambda x, t, o=0: modern.apply_rope(x, t, o, table="neighbours"),
                                        ["angle table is in the neighbours' layout"]),
    "neighbours with a halves' table": (lambda x, t, o=0: modern.apply_rope(x, t, o, convention="neighbours", table="halves"),
                                        ["rotation pairs neighbours"]),
    "no offset": (lambda x, t, o=0: modern.apply_rope(x, t, 0), ["not offset", "torch.arange(offset, offset + posn)",
                                                                 "row 0 (position 13)"]),
    "offset + 1": (lambda x, t, o=0: modern.apply_rope(x, t, o + 1), ["offset + 1"]),
    "wrong way": (lambda x, t, o=0: modern.apply_rope(x, t, o, sign=-1.0), ["wrong way"]),
    "theta hard-coded": (lambda x, t, o=0: modern.apply_rope(x, 10000.0, o), ["wrong theta"]),
    "unrotated": (lambda x, t, o=0: x.clone(), ["unrotated"]),
    "angle by head index": (lambda x, t, o=0: x * modern.rope_angles(torch.arange(o, o + x.shape[2], device=x.device),
                                                                     x.shape[-1], t).cos()
                            + modern.rotate_half(x) * modern.rope_angles(torch.arange(o, o + x.shape[2], device=x.device),
                                                                         x.shape[-1], t).sin(),
                            ["head index"]),
}


def test_apply_rope_solution_passes(solution):
    tests.test_apply_rope(solution["apply_rope"])


@pytest.mark.parametrize("fn", [complex_rope, permuted_neighbours_rope, meta_complex_rope],
                         ids=["complex numbers over the halves", "permute, neighbours, permute back",
                              "Meta's complex numbers over neighbours, with the permutation"])
def test_apply_rope_correct_variants_pass(fn):
    tests.test_apply_rope(fn)


def test_apply_rope_stub_is_not_done(stub):
    not_done(tests.test_apply_rope, stub["apply_rope"])


@pytest.mark.parametrize("name", ROPE_MISTAKES)
def test_apply_rope_mistakes_are_named(name):
    fn, keywords = ROPE_MISTAKES[name]
    fails(tests.test_apply_rope, fn, *keywords)


def test_apply_rope_without_a_heads_dimension_is_explained():
    def no_heads_dim(x, theta, offset=0):
        angles = modern.rope_angles(torch.arange(offset, offset + x.shape[1], device=x.device), x.shape[-1], theta)
        return x * angles.cos() + modern.rotate_half(x) * angles.sin()

    fails(tests.test_apply_rope, no_heads_dim, "cos[:, None, :]")


# -------------------------------------------------------------------------------------------- SwiGLU

SWIGLU_CORRECT = {
    "F.linear on transposed views": lambda s, x: F.linear(F.silu(F.linear(x, s.W_gate.T)) * F.linear(x, s.W_in.T), s.W_out.T),
    "x * sigmoid(x) by hand": lambda s, x: ((x @ s.W_gate) * torch.sigmoid(x @ s.W_gate) * (x @ s.W_in)) @ s.W_out,
    "einsum": lambda s, x: torch.einsum("bpf,fm->bpm", F.silu(torch.einsum("bpm,mf->bpf", x, s.W_gate))
                                        * torch.einsum("bpm,mf->bpf", x, s.W_in), s.W_out),
}

SWIGLU_MISTAKES = {
    "gate and up swapped": (lambda s, x: (F.silu(x @ s.W_in) * (x @ s.W_gate)) @ s.W_out, ["swapped", "silu(x @ W_gate)"]),
    "SiLU on both": (lambda s, x: (F.silu(x @ s.W_gate) * F.silu(x @ s.W_in)) @ s.W_out, ["both branches"]),
    "GELU": (lambda s, x: (F.gelu(x @ s.W_gate) * (x @ s.W_in)) @ s.W_out, ["GELU"]),
    "ReLU": (lambda s, x: (F.relu(x @ s.W_gate) * (x @ s.W_in)) @ s.W_out, ["ReLU"]),
    "sigmoid gate (GLU)": (lambda s, x: (torch.sigmoid(x @ s.W_gate) * (x @ s.W_in)) @ s.W_out, ["GLU"]),
    "no activation": (lambda s, x: ((x @ s.W_gate) * (x @ s.W_in)) @ s.W_out, ["no activation"]),
    "SiLU after the product": (lambda s, x: F.silu((x @ s.W_gate) * (x @ s.W_in)) @ s.W_out, ["after the product"]),
    "gate added": (lambda s, x: (F.silu(x @ s.W_gate) + (x @ s.W_in)) @ s.W_out, ["gate is added"]),
}


def test_swiglu_solution_passes(solution):
    tests.test_swiglu(solution["SwiGLU"])


@pytest.mark.parametrize("name", SWIGLU_CORRECT)
def test_swiglu_correct_variants_pass(name, solution):
    tests.test_swiglu(variant(solution["SwiGLU"], SWIGLU_CORRECT[name]))


def test_swiglu_stub_is_not_done(stub):
    not_done(tests.test_swiglu, stub["SwiGLU"])


@pytest.mark.parametrize("name", SWIGLU_MISTAKES)
def test_swiglu_mistakes_are_named(name, solution):
    body, keywords = SWIGLU_MISTAKES[name]
    fails(tests.test_swiglu, variant(solution["SwiGLU"], body), *keywords)


def test_swiglu_returning_the_hidden_layer_is_explained(solution):
    fails(tests.test_swiglu, variant(solution["SwiGLU"], lambda s, x: F.silu(x @ s.W_gate) * (x @ s.W_in)), "d_mlp", "W_out")


# ------------------------------------------------------------------------------- grouped-query attention


def gqa_body(rope, group_kv, scale, causal=True):
    """A GroupedQueryAttention forward assembled from parts, so each mistake changes one of them."""

    def forward(s, x):
        cfg = s.cfg
        q = torch.einsum("bpm,nmh->bpnh", x, s.W_Q)
        k = torch.einsum("bpm,nmh->bpnh", x, s.W_K)
        v = torch.einsum("bpm,nmh->bpnh", x, s.W_V)
        q, k, v = rope(q, k, v, cfg.rope_theta)
        k, v = group_kv(k, cfg), group_kv(v, cfg)
        scores = torch.einsum("bqnh,bknh->bnqk", q, k) / scale(cfg)
        if causal:
            posn = x.shape[1]
            scores = scores.masked_fill(torch.ones(posn, posn, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        z = torch.einsum("bnqk,bknh->bqnh", scores.softmax(-1), v)
        return torch.einsum("bqnh,nhm->bqm", z, s.W_O)

    return forward


def rope_qk(q, k, v, theta):
    return modern.apply_rope(q, theta), modern.apply_rope(k, theta), v


def interleave(t, cfg):
    return t.repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=2)


def expand_group(t, cfg):
    """repeat_kv's way: a new axis, expand (no copy), then merge it into the heads."""
    b, p, kv, h = t.shape
    group = cfg.n_heads // cfg.n_kv_heads
    return t[:, :, :, None, :].expand(b, p, kv, group, h).reshape(b, p, kv * group, h)


def root_d_head(cfg):
    return math.sqrt(cfg.d_head)


class GroupedEinsumAttention(nn.Module):
    """No copies at all: the query heads split into (n_kv_heads, group) and one einsum broadcasts over the group."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.W_Q = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_model, cfg.d_head))
        self.W_K = nn.Parameter(torch.zeros(cfg.n_kv_heads, cfg.d_model, cfg.d_head))
        self.W_V = nn.Parameter(torch.zeros(cfg.n_kv_heads, cfg.d_model, cfg.d_head))
        self.W_O = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, cfg.d_model))

    def forward(self, x):
        cfg = self.cfg
        q = modern.apply_rope(torch.einsum("bpm,nmh->bpnh", x, self.W_Q), cfg.rope_theta)
        k = modern.apply_rope(torch.einsum("bpm,nmh->bpnh", x, self.W_K), cfg.rope_theta)
        v = torch.einsum("bpm,nmh->bpnh", x, self.W_V)
        q = einops.rearrange(q, "b p (kv g) h -> b p kv g h", kv=cfg.n_kv_heads)
        scores = einops.einsum(q, k, "b q kv g h, b k kv h -> b kv g q k") / math.sqrt(cfg.d_head)
        posn = x.shape[1]
        scores = scores.masked_fill(torch.ones(posn, posn, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        z = einops.einsum(scores.softmax(-1), v, "b kv g q k, b k kv h -> b q kv g h")
        z = einops.rearrange(z, "b q kv g h -> b q (kv g) h")
        return torch.einsum("bqnh,nhm->bqm", z, self.W_O)


GQA_CORRECT = {
    "einsum with repeat_interleave": lambda: gqa_body(rope_qk, interleave, root_d_head),
    "expand and reshape (repeat_kv's way)": lambda: gqa_body(rope_qk, expand_group, root_d_head),
    "complex-number RoPE": lambda: gqa_body(lambda q, k, v, t: (complex_rope(q, t), complex_rope(k, t), v),
                                            interleave, root_d_head),
}

GQA_MISTAKES = {
    "repeat instead of repeat_interleave": (gqa_body(rope_qk, lambda t, c: t.repeat(1, 1, c.n_heads // c.n_kv_heads, 1), root_d_head),
                                            ["grouped the wrong way", "h % n_kv_heads", "repeat_interleave"]),
    "scaled by d_model": (gqa_body(rope_qk, interleave, lambda c: math.sqrt(c.d_model)), ["sqrt(d_model)", "sqrt(d_head)"]),
    "not scaled": (gqa_body(rope_qk, interleave, lambda c: 1.0), ["not scaled"]),
    "RoPE on values": (gqa_body(lambda q, k, v, t: (modern.apply_rope(q, t), modern.apply_rope(k, t), modern.apply_rope(v, t)),
                                interleave, root_d_head), ["values too"]),
    "RoPE on queries only": (gqa_body(lambda q, k, v, t: (modern.apply_rope(q, t), k, v), interleave, root_d_head),
                             ["queries only"]),
    "RoPE on keys only": (gqa_body(lambda q, k, v, t: (q, modern.apply_rope(k, t), v), interleave, root_d_head),
                          ["keys only"]),
    "no RoPE": (gqa_body(lambda q, k, v, t: (q, k, v), interleave, root_d_head), ["there is no RoPE"]),
    "RoPE in the neighbours' convention": (
        gqa_body(lambda q, k, v, t: (modern.apply_rope(q, t, convention="neighbours"),
                                     modern.apply_rope(k, t, convention="neighbours"), v), interleave, root_d_head),
        ["other convention"]),
    "theta hard-coded": (gqa_body(lambda q, k, v, t: (modern.apply_rope(q, 10000.0), modern.apply_rope(k, 10000.0), v),
                                  interleave, root_d_head), ["wrong theta", "500000"]),
    "no causal mask": (gqa_body(rope_qk, interleave, root_d_head, causal=False), ["no causal mask"]),
    "frequencies over d_model": (
        gqa_body(lambda q, k, v, t: (modern.apply_rope(q, t, denominator=q.shape[-1] * q.shape[-2]),
                                     modern.apply_rope(k, t, denominator=q.shape[-1] * q.shape[-2]), v),
                 interleave, root_d_head),
        ["d_model", "-2k / d_head"]),
    "RoPE before splitting the heads": (
        gqa_body(lambda q, k, v, t: (modern.apply_rope(q.flatten(-2)[:, :, None], t).view(q.shape),
                                     modern.apply_rope(k.flatten(-2)[:, :, None], t).view(k.shape), v),
                 interleave, root_d_head),
        ["all heads' features at once"]),
}


def test_gqa_solution_passes(solution):
    tests.test_grouped_query_attention(solution["GroupedQueryAttention"])


@pytest.mark.parametrize("name", GQA_CORRECT)
def test_gqa_correct_variants_pass(name, solution):
    tests.test_grouped_query_attention(variant(solution["GroupedQueryAttention"], GQA_CORRECT[name]()))


def test_gqa_grouped_einsum_without_copies_passes():
    tests.test_grouped_query_attention(GroupedEinsumAttention)


def test_gqa_stub_is_not_done(stub):
    not_done(tests.test_grouped_query_attention, stub["GroupedQueryAttention"])


@pytest.mark.parametrize("name", GQA_MISTAKES)
def test_gqa_mistakes_are_named(name, solution):
    body, keywords = GQA_MISTAKES[name]
    fails(tests.test_grouped_query_attention, variant(solution["GroupedQueryAttention"], body), *keywords)


def test_gqa_mask_that_hides_the_diagonal_is_named(solution):
    """With -inf, position 0 has no key left (NaN); with the lowest float it attends everywhere: both are named."""
    for fill in (float("-inf"), torch.finfo(torch.float32).min):
        def forward(s, x, fill=fill):
            cfg = s.cfg
            q = modern.apply_rope(torch.einsum("bpm,nmh->bpnh", x, s.W_Q), cfg.rope_theta)
            k = modern.apply_rope(torch.einsum("bpm,nmh->bpnh", x, s.W_K), cfg.rope_theta)
            v = torch.einsum("bpm,nmh->bpnh", x, s.W_V)
            k, v = interleave(k, cfg), interleave(v, cfg)
            scores = torch.einsum("bqnh,bknh->bnqk", q, k) / math.sqrt(cfg.d_head)
            posn = x.shape[1]
            scores = scores.masked_fill(torch.ones(posn, posn, dtype=torch.bool, device=x.device).triu(0), fill)
            z = torch.einsum("bnqk,bknh->bqnh", scores.softmax(-1), v)
            return torch.einsum("bqnh,nhm->bqm", z, s.W_O)

        fails(tests.test_grouped_query_attention, variant(solution["GroupedQueryAttention"], forward),
              "hides the diagonal")


def test_gqa_hard_coded_group_is_caught_on_a_smaller_config(solution):
    body = gqa_body(rope_qk, lambda t, c: t.repeat_interleave(4, dim=2), root_d_head)
    fails(tests.test_grouped_query_attention, variant(solution["GroupedQueryAttention"], body), "smaller config")


def test_gqa_full_size_kv_weights_are_told_the_shapes(solution):
    class FullKV(solution["GroupedQueryAttention"]):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.W_K = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_model, cfg.d_head))

    fails(tests.test_grouped_query_attention, FullKV, "wrong shape: W_K")


# --------------------------------------------------------------------------------------- block and model


BLOCK_MISTAKES = {
    "post-norm": (lambda s, x: (lambda mid: s.ln2(mid + s.mlp(mid)))(s.ln1(x + s.attn(x))), ["post-norm"]),
    "parallel": (lambda s, x: x + s.attn(s.ln1(x)) + s.mlp(s.ln2(x)), ["parallel"]),
    "norms swapped": (lambda s, x: (lambda mid: mid + s.mlp(s.ln1(mid)))(x + s.attn(s.ln2(x))), ["swapped"]),
    "no attention residual": (lambda s, x: (lambda mid: mid + s.mlp(s.ln2(mid)))(s.attn(s.ln1(x))), ["attention's residual"]),
    "no MLP residual": (lambda s, x: s.mlp(s.ln2(x + s.attn(s.ln1(x)))), ["MLP's residual"]),
    "residual added to the normed stream": (
        lambda s, x: (lambda h: (lambda mid: s.ln2(mid) + s.mlp(s.ln2(mid)))(h + s.attn(h)))(s.ln1(x)),
        ["added to the normalised copy"]),
}


def test_block_solution_passes(solution):
    tests.test_modern_block(solution["ModernBlock"])


def test_block_stub_is_not_done(stub):
    not_done(tests.test_modern_block, stub["ModernBlock"])


@pytest.mark.parametrize("name", BLOCK_MISTAKES)
def test_block_mistakes_are_named(name, solution):
    body, keywords = BLOCK_MISTAKES[name]
    fails(tests.test_modern_block, variant(solution["ModernBlock"], body), *keywords)


def run_model(s, tokens, final=True, tied=False, scale=1.0, order=None, norm_each=False, log_probs=False):
    resid = s.embed(tokens) * scale
    for blk in s.blocks if order is None else order(list(s.blocks)):
        resid = blk(resid)
        if norm_each:
            resid = s.ln_final(resid)
    if final and not norm_each:
        resid = s.ln_final(resid)
    logits = resid @ s.embed.W_E.T if tied else s.unembed(resid)
    return logits.log_softmax(-1) if log_probs else logits


MODEL_MISTAKES = {
    "no final norm": (lambda s, t: run_model(s, t, final=False), ["ln_final"]),
    "tied unembedding": (lambda s, t: run_model(s, t, tied=True), ["W_E.T", "unembed.W_U"]),
    "embeddings scaled": (lambda s, t: run_model(s, t, scale=math.sqrt(s.cfg.d_model)), ["Gemma"]),
    "log_softmax returned": (lambda s, t: run_model(s, t, log_probs=True), ["log-softmax", "Return the logits"]),
    "first block only": (lambda s, t: run_model(s, t, order=lambda blocks: blocks[:1]), ["only the first block"]),
    "blocks reversed": (lambda s, t: run_model(s, t, order=lambda blocks: blocks[::-1]), ["reverse order"]),
    "ln_final after every block": (lambda s, t: run_model(s, t, norm_each=True), ["after every block"]),
}


def test_model_solution_passes(solution):
    tests.test_modern_transformer(solution["ModernTransformer"])


def test_model_stub_is_not_done(stub):
    not_done(tests.test_modern_transformer, stub["ModernTransformer"])


@pytest.mark.parametrize("name", MODEL_MISTAKES)
def test_model_mistakes_are_named(name, solution):
    body, keywords = MODEL_MISTAKES[name]
    fails(tests.test_modern_transformer, variant(solution["ModernTransformer"], body), *keywords)


def test_model_with_a_position_table_is_told_the_names(solution):
    class WithPos(solution["ModernTransformer"]):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.W_pos = nn.Parameter(torch.zeros(cfg.n_ctx, cfg.d_model))

    fails(tests.test_modern_transformer, WithPos, "unexpected: W_pos", "Hugging Face's Llama")


# ------------------------------------------------------------------------------------------------ speed


@pytest.mark.parametrize("check, name", [
    (tests.test_rms_norm, "RMSNorm"), (tests.test_rope_angles, "rope_angles"), (tests.test_apply_rope, "apply_rope"),
    (tests.test_swiglu, "SwiGLU"), (tests.test_grouped_query_attention, "GroupedQueryAttention"),
    (tests.test_modern_block, "ModernBlock"), (tests.test_modern_transformer, "ModernTransformer"),
])
def test_checks_take_under_a_second(check, name, solution, capsys):
    check(solution[name])  # warm up: the Hugging Face models are built once per kernel
    start = time.perf_counter()
    check(solution[name])
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------------------------------- the comparison


def test_fast_modern_twin_computes_the_readable_model_and_hugging_face():
    from c1p1.bench_modern import fast_modern_class
    from c1p1.parts import ModernTransformer

    cfg = modern.SMALL_A
    hf_model = random_llama(cfg, seed=5)
    device = hf_model.lm_head.weight.device  # the course's one device
    readable, fast = ModernTransformer(cfg).to(device), fast_modern_class()(cfg).to(device)
    for model in (readable, fast):
        model.load_state_dict(params_from_llama(hf_model), strict=True)
    tokens = torch.randint(0, cfg.d_vocab, (2, 13), generator=torch.Generator().manual_seed(7)).to(device)
    with torch.no_grad():
        expected = hf_model(tokens).logits
        assert torch.allclose(readable(tokens), expected, atol=1e-4, rtol=1e-3)
        assert torch.allclose(fast(tokens), expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("recipe_name", ["tiny", "course"])
def test_the_modern_model_matches_the_gpt2_style_parameter_count(recipe_name):
    from c1p1.bench_modern import TINY_RECIPE, fast_modern_class, matching_modern_config, modern_parameters
    from c1p1.trained import COURSE_RECIPE, FastTransformer

    recipe = TINY_RECIPE if recipe_name == "tiny" else COURSE_RECIPE
    gpt2 = sum(p.numel() for p in FastTransformer(recipe.config(77)).parameters())
    cfg = matching_modern_config(recipe, 77, gpt2)
    ours = sum(p.numel() for p in fast_modern_class()(cfg).parameters())
    assert ours == modern_parameters(cfg)
    assert abs(ours - gpt2) / gpt2 < 0.02
    assert cfg.n_kv_heads < cfg.n_heads and cfg.d_model == recipe.d_model and cfg.n_layers == recipe.n_layers


def test_beyond_the_training_length_compares_the_same_characters():
    """Every long window the data allows; the first span is the same computation in long and in short windows."""
    from c1p1.bench_modern import beyond_training_length, span_lines
    from c1p1.parts import ModernTransformer

    torch.manual_seed(0)
    cfg = ModernConfig(d_model=32, d_vocab=20, n_ctx=8, d_head=8, d_mlp=64, n_heads=4, n_kv_heads=2, n_layers=1)
    model = ModernTransformer(cfg).eval()
    data = torch.randint(0, cfg.d_vocab, (4 * 8 * 5 + 3,))  # room for 5 windows of 32, not 6
    with torch.no_grad():
        result = beyond_training_length(model, data, block=8)
    assert result["long"].shape == result["short"].shape == (5, 4)
    torch.testing.assert_close(result["long"][:, 0], result["short"][:, 0])
    assert not torch.allclose(result["long"][:, 1:], result["short"][:, 1:])  # more context changes the later spans
    lines = span_lines(result, 8)
    assert len(lines) == 4 and "the same computation" in lines[0]
    assert all(("within noise" in line) or ("worse" in line) or ("better" in line) for line in lines[1:])
