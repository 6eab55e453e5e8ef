"""W_Q, W_K and W_V side by side as one matrix, for notebook 13's `CachedAttention.project_qkv`.

Per-head weights of shape (n_heads, d_model, d_head) make an einsum either copy each weight into
(d_model, n_heads * d_head) on every call or run one small product per head; on a CPU both read the weights about
half as fast as one large product. `fused_qkv(attn)` arranges the three as one (d_model, 3 * n_heads * d_head)
matrix, and the three biases as one vector, and keeps them on the module until a weight is changed in place (its
version counter moves) or replaced (its address moves). While autograd is on it rebuilds them on every call, so
that gradients reach W_Q, W_K and W_V.

This is the course's library, not an exercise: the notebook's cache is the KV cache, and this one only saves a
copy of the weights per generated token.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


def _key(weights: tuple[Tensor, ...]) -> list[tuple[int, int, int]]:
    """What identifies the current values of the weights: the tensor, its storage and its in-place version."""
    return [(id(w), w.data_ptr(), w._version) for w in weights]


def fused_qkv(attn: nn.Module) -> tuple[Float[Tensor, "d_model three_heads_d_head"], Float[Tensor, "three_heads_d_head"]]:
    """(W, b): [W_Q | W_K | W_V] as (d_model, 3 * n_heads * d_head), heads in order, and the biases to match.

    `x @ W + b`, unflattened to (..., 3, n_heads, d_head), gives notebook 05's q, k and v.
    """
    weights = (attn.W_Q, attn.W_K, attn.W_V)
    biases = (attn.b_Q, attn.b_K, attn.b_V)
    key = _key(weights + biases)
    if torch.is_grad_enabled() or getattr(attn, "_fused_qkv_key", None) != key:
        W = torch.cat([w.permute(1, 0, 2).flatten(1) for w in weights], dim=1)  # (d_model, 3 * n_heads * d_head)
        b = torch.cat([bias.flatten() for bias in biases])  # (3 * n_heads * d_head,)
        attn._fused_qkv = (W, b)
        attn._fused_qkv_key = None if torch.is_grad_enabled() else key
    return attn._fused_qkv
