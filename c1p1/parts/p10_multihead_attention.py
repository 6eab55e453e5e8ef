"""Generated from solutions/10_multihead_attention.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor
from torch import nn
import einops
import torch

__all__ = ['MultiHeadAttention', 'per_head_to_linear', 'linear_to_per_head']

class MultiHeadAttention(nn.Module):
    """Causal self-attention with nn.Linear projections; all heads share one batched matrix product."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out={d_out} must be a multiple of num_heads={num_heads}")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        ### BEGIN SOLUTION
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        future = torch.ones(context_length, context_length, dtype=torch.bool).triu(diagonal=1)  # (ctx, ctx)
        self.register_buffer("mask", future, persistent=False)
        ### END SOLUTION

    def forward(self, x: Float[Tensor, "batch posn d_in"]) -> Float[Tensor, "batch posn d_out"]:
        """Project, split into heads, attend causally, merge the heads, project out."""
        ### BEGIN SOLUTION
        batch, posn, _ = x.shape
        split = (batch, posn, self.num_heads, self.head_dim)
        q = self.W_query(x).view(split).transpose(1, 2)  # (batch, n_heads, posn, head_dim)
        k = self.W_key(x).view(split).transpose(1, 2)  # (batch, n_heads, posn, head_dim)
        v = self.W_value(x).view(split).transpose(1, 2)  # (batch, n_heads, posn, head_dim)
        scores = q @ k.transpose(-1, -2) / self.head_dim**0.5  # (batch, n_heads, query_pos, key_pos)
        scores = scores.masked_fill(self.mask[:posn, :posn], float("-inf"))  # (batch, n_heads, query_pos, key_pos)
        pattern = self.dropout(scores.softmax(dim=-1))  # (batch, n_heads, query_pos, key_pos)
        z = pattern @ v  # (batch, n_heads, posn, head_dim)
        merged = z.transpose(1, 2).contiguous().view(batch, posn, self.d_out)  # (batch, posn, d_out)
        return self.out_proj(merged)  # (batch, posn, d_out)
        ### END SOLUTION


def per_head_to_linear(
    W: Float[Tensor, "n_heads rows cols"], b: Float[Tensor, "..."], kind: str
) -> tuple[Float[Tensor, "out_features in_features"], Float[Tensor, "out_features"]]:
    """TransformerLens's per-head (W, b) -> nn.Linear's (weight, bias).

    kind "qkv": W [n_heads, d_model, d_head], b [n_heads, d_head] -> weight [n_heads * d_head, d_model], bias [n_heads * d_head].
    kind "out": W [n_heads, d_head, d_model], b [d_model] -> weight [d_model, n_heads * d_head], bias [d_model].
    """
    if kind not in ("qkv", "out"):
        raise ValueError(f"kind must be 'qkv' or 'out', not {kind!r}")
    ### BEGIN SOLUTION
    if kind == "qkv":
        weight = einops.rearrange(W, "h m d -> (h d) m")  # (n_heads * d_head, d_model)
        bias = einops.rearrange(b, "h d -> (h d)")  # (n_heads * d_head,)
        return weight, bias
    weight = einops.rearrange(W, "h d m -> m (h d)")  # (d_model, n_heads * d_head)
    return weight, b
    ### END SOLUTION


def linear_to_per_head(
    weight: Float[Tensor, "out_features in_features"], bias: Float[Tensor, "out_features"], kind: str, n_heads: int
) -> tuple[Float[Tensor, "n_heads rows cols"], Float[Tensor, "..."]]:
    """nn.Linear's (weight, bias) -> TransformerLens's per-head (W, b); the inverse of per_head_to_linear.

    kind "qkv": weight [n_heads * d_head, d_model] -> W [n_heads, d_model, d_head], bias -> b [n_heads, d_head].
    kind "out": weight [d_model, n_heads * d_head] -> W [n_heads, d_head, d_model], bias [d_model] unchanged.
    """
    if kind not in ("qkv", "out"):
        raise ValueError(f"kind must be 'qkv' or 'out', not {kind!r}")
    ### BEGIN SOLUTION
    if kind == "qkv":
        W = einops.rearrange(weight, "(h d) m -> h m d", h=n_heads)  # (n_heads, d_model, d_head)
        b = einops.rearrange(bias, "(h d) -> h d", h=n_heads)  # (n_heads, d_head)
        return W, b
    W = einops.rearrange(weight, "m (h d) -> h d m", h=n_heads)  # (n_heads, d_head, d_model)
    return W, bias
    ### END SOLUTION
