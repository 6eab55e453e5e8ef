"""test_causal_mask and test_attention: pass the solutions and correct variants; reject stubs and each known mistake."""

from __future__ import annotations

import math

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import C1P1_tests as tests
from c1p1.config import Config
from c1p1.parts import Attention, MaskedAttention
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

# ----------------------------------------------------------------------------------- causal mask


def future_of(scores):
    q, k = scores.shape[-2:]
    return torch.ones(q, k, dtype=torch.bool, device=scores.device).triu(1)  # (query_pos, key_pos)


class BufferMask(nn.Module):
    """A learner's class that registers the whole n_ctx x n_ctx mask as a (persistent) buffer and slices it."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mask", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)))

    def apply_causal_mask(self, attn_scores):
        q, k = attn_scores.shape[-2:]
        return attn_scores.masked_fill(~self.mask[:q, :k], -1e5)  # (batch, n_heads, query_pos, key_pos)


class WhereMask(MaskedAttention):
    """torch.where with the smallest float32 and a non-persistent bool buffer."""

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.register_buffer("keep", torch.ones(cfg.n_ctx, cfg.n_ctx).tril().bool(), persistent=False)

    def apply_causal_mask(self, attn_scores):
        q, k = attn_scores.shape[-2:]
        low = torch.tensor(torch.finfo(attn_scores.dtype).min, device=attn_scores.device)
        return torch.where(self.keep[:q, :k], attn_scores, low)  # (batch, n_heads, query_pos, key_pos)


def loose_method(self, attn_scores):
    """A method written outside any class: the check lends it a `self` with cfg and IGNORE."""
    return attn_scores.masked_fill(future_of(attn_scores), self.IGNORE)


CORRECT_MASKS = {
    "solution notebook (unbound method)": lambda: definitions("solutions/04_causal_mask.ipynb")[
        "Attention"
    ].apply_causal_mask,
    "canonical part, inherited by notebook 05's class": lambda: Attention.apply_causal_mask,
    "plain function, torch.where and -1e5": lambda: lambda s: torch.where(future_of(s), torch.tensor(-1e5), s),
    "plain function, masked_fill with -inf": lambda: lambda s: s.masked_fill(future_of(s), float("-inf")),
    "plain function, tril and finfo.min": lambda: lambda s: s.masked_fill(
        torch.ones_like(s).tril() == 0, torch.finfo(s.dtype).min
    ),
    "persistent n_ctx x n_ctx buffer, -1e5": lambda: BufferMask.apply_causal_mask,
    "non-persistent buffer, torch.where": lambda: WhereMask.apply_causal_mask,
    "bound method of an instance": lambda: MaskedAttention(Config()).apply_causal_mask,
    "the class itself": lambda: MaskedAttention,
    "a method outside any class": lambda: loose_method,
}


def mask_variant(body):
    """A plain function of the scores (the check accepts those as well as the method)."""
    return lambda s: body(s, future_of(s))


MASK_MISTAKES = {
    "diagonal masked too": (lambda s, f: s.masked_fill(torch.ones_like(f).triu(0), float("-inf")), ["diagonal"]),
    "lower triangle masked": (lambda s, f: s.masked_fill(f.T, float("-inf")), ["wrong triangle"]),
    "inverted mask": (lambda s, f: s.masked_fill(~f, float("-inf")), ["wrong triangle"]),
    "mask times -inf gives NaN": (lambda s, f: s + f * float("-inf"), ["NaN", "0 * -inf"]),
    "masked with 0": (lambda s, f: s.masked_fill(f, 0.0), ["0 instead of -inf"]),
    "multiplied by the lower triangle": (lambda s, f: s * (~f), ["0 instead of -inf"]),
    "masked with -10": (lambda s, f: s.masked_fill(f, -10.0), ["not negative enough"]),
    "nothing masked": (lambda s, f: s.clone(), ["nothing is masked"]),
    "kept scores rescaled": (lambda s, f: s.masked_fill(f, float("-inf")) / 8, ["kept scores changed"]),
    "in place": (lambda s, f: s.masked_fill_(f, float("-inf")), ["in place", "masked_fill_"]),
    "+inf": (lambda s, f: s.masked_fill(f, float("inf")), ["+inf"]),
}


@pytest.mark.parametrize("name", CORRECT_MASKS)
def test_mask_correct_variants_pass(name, reference, capsys):
    tests.test_causal_mask(CORRECT_MASKS[name]())
    assert "test_causal_mask passed" in capsys.readouterr().out


def test_mask_exercise_stub_is_not_done(reference):
    not_done(tests.test_causal_mask, definitions("notebooks/04_causal_mask.ipynb")["Attention"].apply_causal_mask)


@pytest.mark.parametrize("name", MASK_MISTAKES)
def test_mask_mistakes_are_named(name, reference):
    body, keywords = MASK_MISTAKES[name]
    fails(tests.test_causal_mask, mask_variant(body), *keywords)


def test_mask_mistake_in_a_method_shows_the_line(reference):
    class Wrong(MaskedAttention):
        def apply_causal_mask(self, attn_scores):
            return attn_scores.masked_fill(torch.ones(35, 35).triu(1).bool(), self.IGNORE)  # a fixed size

    message = fails(tests.test_causal_mask, Wrong.apply_causal_mask, "raised")
    assert "torch.ones(35, 35)" in message


def test_mask_wrong_kind_of_argument(reference):
    fails(tests.test_causal_mask, torch.zeros(3), "function")


# ------------------------------------------------------------------------------------- attention


def forward_with(self, x, *, scale="d_head", softmax_dim=-1, mask="before", bias=("Q", "K", "V", "O"),
                 heads="sum", swap=False, b_o_per_head=False):
    """An attention forward written with matmuls, with one switch per mistake."""
    d_head = self.W_Q.shape[-1]
    zero = torch.zeros_like(self.b_Q)

    def b(name):
        return getattr(self, f"b_{name}") if name in bias else (zero if name != "O" else torch.zeros_like(self.b_O))

    xh = x.unsqueeze(1)  # (batch, 1, posn, d_model)
    q = xh @ self.W_Q + b("Q").unsqueeze(1)  # (batch, n_heads, posn, d_head)
    k = xh @ self.W_K + b("K").unsqueeze(1)  # (batch, n_heads, posn, d_head)
    v = xh @ self.W_V + b("V").unsqueeze(1)  # (batch, n_heads, posn, d_head)
    if swap:
        q, k = k, q
    divisor = {"d_head": math.sqrt(d_head), "none": 1.0, "d_model": math.sqrt(x.shape[-1]), "no_sqrt": d_head}[scale]
    scores = q @ k.transpose(-1, -2) / divisor  # (batch, n_heads, query_pos, key_pos)
    if mask == "before":
        pattern = self.apply_causal_mask(scores).softmax(dim=softmax_dim)  # (batch, n_heads, query_pos, key_pos)
    elif mask == "after":
        pattern = scores.softmax(dim=softmax_dim).masked_fill(future_of(scores), 0.0)  # same
    else:
        pattern = scores.softmax(dim=softmax_dim)  # (batch, n_heads, query_pos, key_pos)
    self.pattern = pattern  # (batch, n_heads, query_pos, key_pos), as the docstring asks
    per_head = (pattern @ v) @ self.W_O  # (batch, n_heads, posn, d_model)
    out = per_head.sum(1) if heads == "sum" else per_head.mean(1)  # (batch, posn, d_model)
    if b_o_per_head:
        return (per_head + self.b_O).sum(1)  # (batch, posn, d_model)
    return out + b("O")  # (batch, posn, d_model)


def attn_variant(**flags):
    return type("Attention", (Attention,), {"forward": lambda self, x: forward_with(self, x, **flags)})


def sdpa_forward(self, x):
    q = einops.einsum(x, self.W_Q, "b s m, h m d -> b h s d") + self.b_Q[:, None]  # (batch, n_heads, posn, d_head)
    k = einops.einsum(x, self.W_K, "b s m, h m d -> b h s d") + self.b_K[:, None]  # (batch, n_heads, posn, d_head)
    v = einops.einsum(x, self.W_V, "b s m, h m d -> b h s d") + self.b_V[:, None]  # (batch, n_heads, posn, d_head)
    z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (batch, n_heads, posn, d_head)
    return einops.einsum(z, self.W_O, "b h s d, h d m -> b s m") + self.b_O  # (batch, posn, d_model)


def quarter_power_forward(self, x):
    """q and k each scaled by d_head ** -0.25, with the learner's own mask buffer of n_ctx x n_ctx."""
    s = self.cfg.d_head ** -0.25
    q = (torch.einsum("bsm,hmd->bhsd", x, self.W_Q) + self.b_Q[:, None]) * s  # (batch, n_heads, posn, d_head)
    k = (torch.einsum("bsm,hmd->bhsd", x, self.W_K) + self.b_K[:, None]) * s  # (batch, n_heads, posn, d_head)
    v = torch.einsum("bsm,hmd->bhsd", x, self.W_V) + self.b_V[:, None]  # (batch, n_heads, posn, d_head)
    n = x.shape[1]
    scores = torch.where(self.keep[:n, :n], q @ k.transpose(-1, -2), -1e5)  # (batch, n_heads, query_pos, key_pos)
    self.pattern = scores.softmax(-1)  # (batch, n_heads, query_pos, key_pos)
    return torch.einsum("bhqd,hdm->bqm", self.pattern @ v, self.W_O) + self.b_O  # (batch, posn, d_model)


def fused_forward(self, x):
    """One big matmul per Q, K, V with the heads concatenated, as in GPT-2's original c_attn."""
    h, m, d = self.W_Q.shape
    batch, posn, _ = x.shape

    def project(W, b):
        fused = W.permute(1, 0, 2).reshape(m, h * d)  # (d_model, n_heads * d_head)
        flat = x @ fused + b.reshape(h * d)  # (batch, posn, n_heads * d_head)
        return flat.view(batch, posn, h, d).transpose(1, 2)  # (batch, n_heads, posn, d_head)

    q, k, v = project(self.W_Q, self.b_Q), project(self.W_K, self.b_K), project(self.W_V, self.b_V)
    scores = self.apply_causal_mask(q @ k.transpose(-1, -2) / math.sqrt(d))  # (batch, n_heads, query_pos, key_pos)
    self.pattern = scores.softmax(-1)  # (batch, n_heads, query_pos, key_pos)
    z = self.pattern @ v  # (batch, n_heads, posn, d_head)
    return z.transpose(1, 2).reshape(batch, posn, h * d) @ self.W_O.reshape(h * d, m) + self.b_O  # (batch, posn, d_model)


class QuarterPower(Attention):
    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.register_buffer("keep", torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool).tril())

    forward = quarter_power_forward


CORRECT_ATTENTION = {
    "solution notebook": lambda: definitions("solutions/05_attention.ipynb")["Attention"],
    "matmuls and transposes": lambda: attn_variant(),
    "q and k scaled by d_head**-0.25, own persistent mask buffer": lambda: QuarterPower,
    "fused n_heads*d_head matmuls": lambda: type("Attention", (Attention,), {"forward": fused_forward}),
}

ATTENTION_MISTAKES = {
    "missing scale": ({"scale": "none"}, ["not scaled", "sqrt(d_head)"]),
    "scaled by sqrt(d_model)": ({"scale": "d_model"}, ["sqrt(d_model)"]),
    "scaled by d_head": ({"scale": "no_sqrt"}, ["without the square root"]),
    "softmax over queries": ({"softmax_dim": -2}, ["wrong dimension", "dim=-1"]),
    "softmax over heads": ({"softmax_dim": 1}, ["wrong dimension"]),
    "mask after softmax": ({"mask": "after"}, ["after the softmax"]),
    "no mask": ({"mask": "none"}, ["no causal mask"]),
    "no biases": ({"bias": ()}, ["biases are never added"]),
    "no b_V": ({"bias": ("Q", "K", "O")}, ["b_V"]),
    "no b_O": ({"bias": ("Q", "K", "V")}, ["b_O is never added"]),
    "no b_Q": ({"bias": ("K", "V", "O")}, ["b_Q"]),
    "b_O once per head": ({"b_o_per_head": True}, ["once per head"]),
    "heads averaged": ({"heads": "mean"}, ["averaged"]),
    "Q and K swapped": ({"swap": True}, ["swapped"]),
}


@pytest.mark.parametrize("name", CORRECT_ATTENTION)
def test_attention_correct_variants_pass(name, reference, capsys):
    tests.test_attention(CORRECT_ATTENTION[name]())
    assert "test_attention passed" in capsys.readouterr().out


def test_attention_exercise_stub_is_not_done(reference):
    not_done(tests.test_attention, definitions("notebooks/05_attention.ipynb")["Attention"])


@pytest.mark.parametrize("name", ATTENTION_MISTAKES)
def test_attention_mistakes_are_named(name, reference):
    flags, keywords = ATTENTION_MISTAKES[name]
    fails(tests.test_attention, attn_variant(**flags), *keywords)


def test_attention_without_its_pattern_is_named(reference):
    def forward(self, x):
        out = Attention.forward(self, x)
        del self.pattern  # the docstring asks for it: notebook 14 reads it
        return out

    fails(tests.test_attention, type("Attention", (Attention,), {"forward": forward}), "the output matches",
          "there is no self.pattern", "self.pattern = pattern")


def test_attention_by_scaled_dot_product_attention_is_told_to_keep_its_pattern(reference):
    fails(tests.test_attention, type("Attention", (Attention,), {"forward": sdpa_forward}), "the output matches",
          "there is no self.pattern", "F.scaled_dot_product_attention keeps its pattern to itself")


def test_attention_with_a_pattern_of_the_wrong_shape_is_named(reference):
    def forward(self, x):
        out = Attention.forward(self, x)
        self.pattern = self.pattern.mean(1)  # (batch, query_pos, key_pos): averaged over the heads
        return out

    fails(tests.test_attention, type("Attention", (Attention,), {"forward": forward}), "self.pattern has shape",
          "(batch, n_heads, query_pos, key_pos)")


def test_attention_wrong_pattern_is_reported(reference):
    def forward(self, x):
        out = Attention.forward(self, x)
        self.pattern = self.pattern.transpose(-1, -2)  # stored the wrong way round
        return out

    fails(tests.test_attention, type("Attention", (Attention,), {"forward": forward}), "self.pattern")


def test_attention_pattern_hint_after_softmax(reference):
    """A mistake after the softmax that no fingerprint names: the fallback says the pattern is right."""

    def forward(self, x):
        out = Attention.forward(self, x)
        return out + 0.5 * torch.tanh(out)

    fails(tests.test_attention, type("Attention", (Attention,), {"forward": forward}), "pattern matches")


def test_attention_hard_coded_size_is_explained(reference):
    def forward(self, x):
        return forward_with(self, x.view(*x.shape[:2], 768), scale="d_head")

    message = fails(tests.test_attention, type("Attention", (Attention,), {"forward": forward}), "smaller Config")
    assert "768" in message


def test_attention_returning_per_head_outputs(reference):
    def forward(self, x):
        z = (x.unsqueeze(1) @ self.W_V)  # (batch, n_heads, posn, d_head)
        return z @ self.W_O  # (batch, n_heads, posn, d_model)

    fails(tests.test_attention, type("Attention", (Attention,), {"forward": forward}), "sum over heads")


def test_attention_instance_is_refused(reference):
    fails(tests.test_attention, Attention(Config()), "class itself")
