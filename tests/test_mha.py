"""test_multihead_attention, test_per_head_to_linear, test_linear_to_per_head: notebook 10.

Correct variants pass; the exercise stubs are "not done"; each known mistake is rejected with a message
naming its cause.
"""

from __future__ import annotations

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import C1P1_tests as tests
from c1p1.config import Config
from c1p1.parts import MultiHeadAttention, linear_to_per_head, per_head_to_linear
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

SOLUTION = "solutions/10_multihead_attention.ipynb"
EXERCISE = "notebooks/10_multihead_attention.ipynb"

# ------------------------------------------------------------------------------ MultiHeadAttention


def project(self, x):
    """Step 1 and the sizes every variant needs."""
    return self.W_query(x), self.W_key(x), self.W_value(x)  # each (batch, posn, d_out)


def forward_with(self, x, *, split="right", merge="right", scale="head_dim", mask="-inf", out_proj=True,
                 contiguous=True, dropout="weights", sliced=True):
    """A MultiHeadAttention forward written step by step, with one switch per mistake."""
    b, n, _ = x.shape
    h, hd = self.num_heads, self.head_dim
    q, k, v = project(self, x)
    if split == "view_only":
        q, k, v = (t.view(b, h, n, hd) for t in (q, k, v))  # (batch, n_heads, posn, head_dim), scrambled
    else:
        q, k, v = (t.view(b, n, h, hd).transpose(1, 2) for t in (q, k, v))  # (batch, n_heads, posn, head_dim)
    scores = q @ k.transpose(2, 3)  # (batch, n_heads, query_pos, key_pos)
    future = self.mask.bool()[:n, :n] if sliced else self.mask.bool()  # (posn, posn)
    if mask == "-inf":
        scores = scores.masked_fill(future, float("-inf"))
    elif mask == "finite":
        scores = scores.masked_fill(future, -1e9)
    divisor = {"head_dim": hd**0.5, "d_out": self.d_out**0.5, "none": 1.0}[scale]
    weights = torch.softmax(scores / divisor, dim=-1)  # (batch, n_heads, query_pos, key_pos)
    if dropout == "weights":
        weights = self.dropout(weights)
    elif dropout == "always":
        weights = F.dropout(weights, self.dropout.p, training=True)
    z = weights @ v  # (batch, n_heads, posn, head_dim)
    if merge == "no_transpose" or split == "view_only" and merge == "view":
        merged = z.contiguous().view(b, n, self.d_out)  # (batch, posn, d_out), scrambled
    elif contiguous:
        merged = z.transpose(1, 2).contiguous().view(b, n, self.d_out)  # (batch, posn, d_out)
    else:
        merged = z.transpose(1, 2).view(b, n, self.d_out)  # raises: not contiguous
    out = self.out_proj(merged) if out_proj else merged  # (batch, posn, d_out)
    return self.dropout(out) if dropout == "output" else out


def mha_variant(**flags):
    return type("MultiHeadAttention", (MultiHeadAttention,), {"forward": lambda self, x: forward_with(self, x, **flags)})


def reshape_forward(self, x):
    b, n, _ = x.shape
    q, k, v = (t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in project(self, x))
    scores = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5  # (batch, n_heads, query_pos, key_pos)
    scores = torch.where(self.mask[:n, :n], torch.tensor(float("-inf")), scores)
    z = self.dropout(scores.softmax(-1)) @ v  # (batch, n_heads, posn, head_dim)
    return self.out_proj(z.transpose(1, 2).reshape(b, n, self.d_out))  # (batch, posn, d_out)


def sdpa_forward(self, x):
    b, n, _ = x.shape
    q, k, v = (t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in project(self, x))
    keep = ~self.mask[:n, :n]  # (posn, posn): True where attending is allowed
    p = self.dropout.p if self.training else 0.0
    z = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)  # (batch, n_heads, posn, head_dim)
    return self.out_proj(z.transpose(1, 2).reshape(b, n, self.d_out))  # (batch, posn, d_out)


def einops_forward(self, x):
    n = x.shape[1]
    q, k, v = (einops.rearrange(t, "b s (h d) -> b h s d", h=self.num_heads) for t in project(self, x))
    scores = einops.einsum(q, k, "b h q d, b h k d -> b h q k") / self.head_dim**0.5
    weights = self.dropout(scores.masked_fill(self.mask[:n, :n], float("-inf")).softmax(-1))
    z = einops.einsum(weights, v, "b h q k, b h k d -> b h q d")  # (batch, n_heads, posn, head_dim)
    return self.out_proj(einops.rearrange(z, "b h s d -> b s (h d)"))  # (batch, posn, d_out)


class TrilMask(MultiHeadAttention):
    """A float lower-triangular buffer of ones (persistent), compared with == 0 to find the future."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias)
        del self.mask
        self.register_buffer("mask", torch.tril(torch.ones(context_length, context_length)))

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in project(self, x))
        scores = q @ k.transpose(2, 3) / self.head_dim**0.5  # (batch, n_heads, query_pos, key_pos)
        scores = scores.masked_fill(self.mask[:n, :n] == 0, float("-inf"))
        z = self.dropout(torch.softmax(scores, dim=-1)) @ v  # (batch, n_heads, posn, head_dim)
        return self.out_proj(z.transpose(1, 2).contiguous().view(b, n, self.d_out))  # (batch, posn, d_out)


class BroadcastMask(MultiHeadAttention):
    """A (1, 1, context_length, context_length) buffer that broadcasts over batch and heads."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias)
        del self.mask
        causal = torch.ones(context_length, context_length).tril().view(1, 1, context_length, context_length)
        self.register_buffer("causal", causal)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in project(self, x))
        scores = q @ k.transpose(-1, -2) / self.head_dim**0.5  # (batch, n_heads, query_pos, key_pos)
        scores = scores.masked_fill(self.causal[:, :, :n, :n] == 0, float("-inf"))
        z = self.dropout(scores.softmax(-1)) @ v  # (batch, n_heads, posn, head_dim)
        return self.out_proj(z.transpose(1, 2).reshape(b, n, self.d_out))  # (batch, posn, d_out)


def finfo_forward(self, x):
    b, n, _ = x.shape
    q, k, v = (t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in project(self, x))
    scores = q @ k.transpose(-1, -2) / self.head_dim**0.5  # (batch, n_heads, query_pos, key_pos)
    scores = scores.masked_fill(self.mask[:n, :n], torch.finfo(scores.dtype).min)
    z = self.dropout(scores.softmax(-1)) @ v  # (batch, n_heads, posn, head_dim)
    return self.out_proj(z.transpose(1, 2).contiguous().view(b, n, self.d_out))  # (batch, posn, d_out)


def with_forward(fn):
    return type("MultiHeadAttention", (MultiHeadAttention,), {"forward": fn})


CORRECT_MHA = {
    "solution notebook": lambda: definitions(SOLUTION)["MultiHeadAttention"],
    "step by step": lambda: mha_variant(),
    ".reshape instead of .view, torch.where": lambda: with_forward(reshape_forward),
    "F.scaled_dot_product_attention": lambda: with_forward(sdpa_forward),
    "einops.rearrange for split and merge": lambda: with_forward(einops_forward),
    "torch.tril float buffer compared == 0": lambda: TrilMask,
    "(1, 1, ctx, ctx) buffer named causal": lambda: BroadcastMask,
    "masked_fill with -1e9": lambda: mha_variant(mask="finite"),
    "masked_fill with finfo.min": lambda: with_forward(finfo_forward),
}

MHA_MISTAKES = {
    "split without a transpose, merged without one": (dict(split="view_only", merge="view"), ["split without a transpose"]),
    "split without a transpose, merged correctly": (dict(split="view_only"), ["split without a transpose"]),
    "merged without transposing back": (dict(merge="no_transpose"), ["merged without transposing back"]),
    "scaled by sqrt(d_out)": (dict(scale="d_out"), ["sqrt(d_out)", "sqrt(head_dim)"]),
    "not scaled": (dict(scale="none"), ["not scaled"]),
    "no mask": (dict(mask="none"), ["no causal mask"]),
    "no output projection": (dict(out_proj=False), ["output projection"]),
    ".view without .contiguous": (dict(contiguous=False), [".contiguous()"]),
    "mask not sliced": (dict(sliced=False), ["raised", "self.mask[:num_tokens, :num_tokens]"]),
    "dropout also in eval mode": (dict(dropout="always"), ["eval mode", "nn.Dropout"]),
    "dropout never applied": (dict(dropout="none"), ["never acts"]),
    "dropout on the output": (dict(dropout="output"), ["applied to the output"]),
}


@pytest.mark.parametrize("name", CORRECT_MHA)
def test_mha_correct_variants_pass(name, reference, capsys):
    tests.test_multihead_attention(CORRECT_MHA[name]())
    assert "test_multihead_attention passed" in capsys.readouterr().out


def test_mha_exercise_stub_is_not_done(reference):
    not_done(tests.test_multihead_attention, definitions(EXERCISE)["MultiHeadAttention"])


@pytest.mark.parametrize("name", MHA_MISTAKES)
def test_mha_mistakes_are_named(name, reference):
    flags, keywords = MHA_MISTAKES[name]
    fails(tests.test_multihead_attention, mha_variant(**flags), *keywords)


def test_mha_split_over_heads_is_named(reference):
    """No transpose at all, with SDPA's own causal mask: the heads of one token attend to one another."""

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.num_heads, self.head_dim) for t in project(self, x))
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (batch, posn, n_heads, head_dim)
        return self.out_proj(z.reshape(b, n, self.d_out))

    fails(tests.test_multihead_attention, with_forward(forward), "split without a transpose", "matmul runs over heads")


class MaskParameter(MultiHeadAttention):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias)
        del self.mask
        self.mask = nn.Parameter(torch.ones(context_length, context_length).triu(1), requires_grad=False)

    def forward(self, x):
        return forward_with(self, x)


class MaskAttribute(MultiHeadAttention):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias)
        del self.mask
        self.mask = torch.ones(context_length, context_length, dtype=torch.bool).triu(1)


class MaskFixedSize(MultiHeadAttention):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias)
        del self.mask
        self.register_buffer("mask", torch.ones(1024, 1024, dtype=torch.bool).triu(1))


class BiasIgnored(MultiHeadAttention):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias)
        self.W_query = nn.Linear(d_in, d_out)
        self.W_key = nn.Linear(d_in, d_out)
        self.W_value = nn.Linear(d_in, d_out)


class ConfigSignature(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()


@pytest.mark.parametrize(
    ("cls", "keywords"),
    [
        (MaskParameter, ["nn.Parameter", "register_buffer"]),
        (MaskAttribute, ["plain tensor attribute", "register_buffer"]),
        (MaskFixedSize, ["context_length", "(64, 64)"]),
        (BiasIgnored, ["qkv_bias"]),
        (ConfigSignature, ["def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False)"]),
    ],
    ids=["mask as parameter", "mask as plain attribute", "mask of a fixed size", "qkv_bias ignored", "cfg signature"],
)
def test_mha_structure_mistakes(cls, keywords, reference):
    fails(tests.test_multihead_attention, cls, *keywords)


def test_mha_writing_into_its_own_weights_is_caught(reference):
    def forward(self, x):
        self.W_query.weight.mul_(1.0)  # even a write that changes no value is a write into the weights
        return MultiHeadAttention.forward(self, x)

    fails(tests.test_multihead_attention, with_forward(forward), "wrote into its parameter W_query.weight", "x = x + y")


def test_mha_instance_is_refused(reference):
    fails(tests.test_multihead_attention, MultiHeadAttention(8, 8, 4, 0.0, 2), "class itself")


def test_mha_check_leaves_the_global_rng_alone(reference):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tests.test_multihead_attention(MultiHeadAttention)
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------------------ the conversions


def p2l_loops(W, b, kind):
    """One head at a time, concatenated."""
    if kind == "qkv":
        return torch.cat([W[h].T for h in range(W.shape[0])], dim=0), torch.cat(list(b))
    return torch.cat([W[h] for h in range(W.shape[0])], dim=0).T, b


def p2l_permute(W, b, kind):
    h = W.shape[0]
    if kind == "qkv":
        return W.permute(0, 2, 1).reshape(-1, W.shape[1]), b.reshape(-1)
    return W.reshape(h * W.shape[1], W.shape[2]).T.contiguous(), b.clone()


def l2p_view(weight, bias, kind, n_heads):
    if kind == "qkv":
        d_head = weight.shape[0] // n_heads
        return weight.view(n_heads, d_head, -1).transpose(1, 2), bias.view(n_heads, d_head)
    return weight.T.reshape(n_heads, -1, weight.shape[0]), bias


def l2p_chunks(weight, bias, kind, n_heads):
    if kind == "qkv":
        return torch.stack([c.T for c in weight.chunk(n_heads, dim=0)]), torch.stack(bias.chunk(n_heads))
    return torch.stack([c.T for c in weight.chunk(n_heads, dim=1)]), bias


def p2l_with(qkv=None, out=None):
    """The canonical per_head_to_linear with one kind replaced by a mistake."""

    def fn(W, b, kind):
        wrong = qkv if kind == "qkv" else out
        return wrong(W, b) if wrong is not None else per_head_to_linear(W, b, kind)

    return fn


def l2p_with(qkv=None, out=None):
    def fn(weight, bias, kind, n_heads):
        wrong = qkv if kind == "qkv" else out
        return wrong(weight, bias, n_heads) if wrong is not None else linear_to_per_head(weight, bias, kind, n_heads)

    return fn


CORRECT_P2L = {
    "solution notebook": lambda: definitions(SOLUTION)["per_head_to_linear"],
    "loops over heads": lambda: p2l_loops,
    "permute and reshape": lambda: p2l_permute,
}

P2L_MISTAKES = {
    "qkv: missing transpose (x @ W layout)": (
        p2l_with(qkv=lambda W, b: (einops.rearrange(W, "h m d -> m (h d)"), b.reshape(-1))), ["transpose"]),
    "qkv: reshape without permute": (p2l_with(qkv=lambda W, b: (W.reshape(-1, W.shape[1]), b.reshape(-1))), ["transpose"]),
    "qkv: wrong head order": (
        p2l_with(qkv=lambda W, b: (einops.rearrange(W, "h m d -> (d h) m"), einops.rearrange(b, "h d -> (d h)"))),
        ["head order"]),
    "qkv: wrong head order in the bias only": (
        p2l_with(qkv=lambda W, b: (einops.rearrange(W, "h m d -> (h d) m"), b.T.reshape(-1))), ["head order", "bias"]),
    "out: missing transpose": (p2l_with(out=lambda W, b: (W.reshape(-1, W.shape[-1]), b)), ["transpose"]),
    "out: wrong head order": (p2l_with(out=lambda W, b: (einops.rearrange(W, "h d m -> m (d h)"), b)), ["head order"]),
}


@pytest.mark.parametrize("name", CORRECT_P2L)
def test_p2l_correct_variants_pass(name, reference, capsys):
    tests.test_per_head_to_linear(CORRECT_P2L[name]())
    assert "test_per_head_to_linear passed" in capsys.readouterr().out


def test_p2l_exercise_stub_is_not_done(reference):
    not_done(tests.test_per_head_to_linear, definitions(EXERCISE)["per_head_to_linear"])


@pytest.mark.parametrize("name", P2L_MISTAKES)
def test_p2l_mistakes_are_named(name, reference):
    fn, keywords = P2L_MISTAKES[name]
    fails(tests.test_per_head_to_linear, fn, *keywords)


def test_p2l_bad_returns(reference):
    fails(tests.test_per_head_to_linear, lambda W, b, kind: {"weight": W, "bias": b}, "tuple of two tensors")
    fails(tests.test_per_head_to_linear, lambda W, b, kind: per_head_to_linear(W, b, kind)[0], "tuple of two tensors")
    fails(tests.test_per_head_to_linear, lambda W, b: (W, b), "per_head_to_linear(W, b, kind)")
    fails(tests.test_per_head_to_linear, MultiHeadAttention, "function")


CORRECT_L2P = {
    "solution notebook": lambda: definitions(SOLUTION)["linear_to_per_head"],
    "view and transpose": lambda: l2p_view,
    "chunks and stack": lambda: l2p_chunks,
}

L2P_MISTAKES = {
    "qkv: reshape without transpose": (
        l2p_with(qkv=lambda w, b, h: (w.reshape(h, w.shape[1], -1), b.reshape(h, -1))), ["transpose"]),
    "qkv: wrong head order": (
        l2p_with(qkv=lambda w, b, h: (einops.rearrange(w, "(d h) m -> h m d", h=h), einops.rearrange(b, "(d h) -> h d", h=h))),
        ["head order"]),
    "qkv: d_model and d_head swapped": (
        l2p_with(qkv=lambda w, b, h: (einops.rearrange(w, "(h d) m -> h d m", h=h), b.reshape(h, -1))), ["swapped"]),
    "out: reshape without transpose": (l2p_with(out=lambda w, b, h: (w.reshape(h, -1, w.shape[0]), b)), ["transpose"]),
    "out: wrong head order": (
        l2p_with(out=lambda w, b, h: (einops.rearrange(w, "m (d h) -> h d m", h=h), b)), ["head order"]),
}


@pytest.mark.parametrize("name", CORRECT_L2P)
def test_l2p_correct_variants_pass(name, reference, capsys):
    tests.test_linear_to_per_head(CORRECT_L2P[name]())
    assert "test_linear_to_per_head passed" in capsys.readouterr().out


def test_l2p_exercise_stub_is_not_done(reference):
    not_done(tests.test_linear_to_per_head, definitions(EXERCISE)["linear_to_per_head"])


@pytest.mark.parametrize("name", L2P_MISTAKES)
def test_l2p_mistakes_are_named(name, reference):
    fn, keywords = L2P_MISTAKES[name]
    fails(tests.test_linear_to_per_head, fn, *keywords)


def test_l2p_round_trip_with_the_solution(reference):
    """The two canonical conversions undo each other, for both kinds."""
    W = torch.randn(3, 10, 4)  # (n_heads, d_model, d_head)
    b = torch.randn(3, 4)  # (n_heads, d_head)
    back = linear_to_per_head(*per_head_to_linear(W, b, "qkv"), "qkv", 3)
    assert torch.equal(back[0], W) and torch.equal(back[1], b)
    W_O = torch.randn(3, 4, 10)  # (n_heads, d_head, d_model)
    b_O = torch.randn(10)  # (d_model,)
    back = linear_to_per_head(*per_head_to_linear(W_O, b_O, "out"), "out", 3)
    assert torch.equal(back[0], W_O) and torch.equal(back[1], b_O)
