"""Generated from solutions/05_attention.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor
from torch import nn
import einops
import torch
from c1p1.config import Config
from c1p1.parts.p04_causal_mask import MaskedAttention

__all__ = ['Attention']

class Attention(MaskedAttention):
    """GPT-2's attention layer, per-head weights; apply_causal_mask and IGNORE come from notebook 04."""

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.W_Q = nn.Parameter(torch.empty((cfg.n_heads, cfg.d_model, cfg.d_head)))  # (n_heads, d_model, d_head)
        self.W_K = nn.Parameter(torch.empty((cfg.n_heads, cfg.d_model, cfg.d_head)))  # (n_heads, d_model, d_head)
        self.W_V = nn.Parameter(torch.empty((cfg.n_heads, cfg.d_model, cfg.d_head)))  # (n_heads, d_model, d_head)
        self.W_O = nn.Parameter(torch.empty((cfg.n_heads, cfg.d_head, cfg.d_model)))  # (n_heads, d_head, d_model)
        self.b_Q = nn.Parameter(torch.zeros((cfg.n_heads, cfg.d_head)))  # (n_heads, d_head)
        self.b_K = nn.Parameter(torch.zeros((cfg.n_heads, cfg.d_head)))  # (n_heads, d_head)
        self.b_V = nn.Parameter(torch.zeros((cfg.n_heads, cfg.d_head)))  # (n_heads, d_head)
        self.b_O = nn.Parameter(torch.zeros(cfg.d_model))  # (d_model,)
        for weight in (self.W_Q, self.W_K, self.W_V, self.W_O):
            nn.init.normal_(weight, std=cfg.init_range)

    def forward(self, normalized_resid_pre: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        """Causal multi-head self-attention; also store the pattern as self.pattern."""
        ### BEGIN SOLUTION
        x = normalized_resid_pre
        q = einops.einsum(x, self.W_Q, "b s m, h m d -> b s h d") + self.b_Q  # (batch, posn, n_heads, d_head)
        k = einops.einsum(x, self.W_K, "b s m, h m d -> b s h d") + self.b_K  # (batch, posn, n_heads, d_head)
        v = einops.einsum(x, self.W_V, "b s m, h m d -> b s h d") + self.b_V  # (batch, posn, n_heads, d_head)
        scores = einops.einsum(q, k, "b q h d, b k h d -> b h q k")  # (batch, n_heads, query_pos, key_pos)
        scores = self.apply_causal_mask(scores / self.cfg.d_head**0.5)  # (batch, n_heads, query_pos, key_pos)
        self.pattern = scores.softmax(dim=-1)  # (batch, n_heads, query_pos, key_pos)
        z = einops.einsum(self.pattern, v, "b h q k, b k h d -> b q h d")  # (batch, posn, n_heads, d_head)
        out = einops.einsum(z, self.W_O, "b q h d, h d m -> b q m")  # (batch, posn, d_model): summed over heads
        return out + self.b_O  # (batch, posn, d_model)
        ### END SOLUTION
