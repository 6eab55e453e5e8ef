"""c1p1.fused: W_Q, W_K, W_V side by side give notebook 05's q, k, v, and follow every change of the weights."""

from __future__ import annotations

import einops
import torch

from c1p1 import Config, parts
from c1p1.fused import fused_qkv

CFG = Config(d_model=24, d_vocab=37, n_ctx=16, d_head=8, d_mlp=96, n_heads=3, n_layers=1)


def attention() -> torch.nn.Module:
    torch.manual_seed(0)
    attn = parts.CachedAttention(CFG)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p))
    return attn


def separate(attn, x):
    return [einops.einsum(x, W, "b s m, h m d -> b s h d") + b  # (batch, posn, n_heads, d_head)
            for W, b in ((attn.W_Q, attn.b_Q), (attn.W_K, attn.b_K), (attn.W_V, attn.b_V))]


def test_project_qkv_equals_three_einsums():
    attn, x = attention(), torch.randn(2, 5, CFG.d_model)
    with torch.no_grad():
        for got, want in zip(attn.project_qkv(x), separate(attn, x), strict=True):
            torch.testing.assert_close(got, want)


def test_kept_until_a_weight_changes_in_place_or_is_replaced():
    attn, x = attention(), torch.randn(2, 5, CFG.d_model)
    with torch.no_grad():
        first = fused_qkv(attn)
        assert fused_qkv(attn) is first  # nothing changed: the same matrices
        attn.W_K.mul_(2.0)  # in place: the version counter moves
        torch.testing.assert_close(attn.project_qkv(x)[1], separate(attn, x)[1])
        attn.b_V.add_(1.0)  # a bias changed in place
        torch.testing.assert_close(attn.project_qkv(x)[2], separate(attn, x)[2])
        attn.load_state_dict({k: torch.randn_like(v) for k, v in attn.state_dict().items()})  # copied in
        torch.testing.assert_close(attn.project_qkv(x)[0], separate(attn, x)[0])


def test_gradients_reach_the_weights():
    attn, x = attention(), torch.randn(2, 5, CFG.d_model)
    sum(t.sum() for t in attn.project_qkv(x)).backward()
    assert all(p.grad is not None for p in (attn.W_Q, attn.W_K, attn.W_V, attn.b_Q, attn.b_K, attn.b_V))
