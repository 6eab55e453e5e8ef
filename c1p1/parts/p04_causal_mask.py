"""Generated from solutions/04_causal_mask.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor
from torch import nn
import torch
from c1p1.config import Config

__all__ = ['Attention', 'MaskedAttention']

class Attention(nn.Module):
    """The masking part of attention; notebook 05 adds the weights and the forward pass."""

    IGNORE: Float[Tensor, ""]

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("IGNORE", torch.tensor(float("-inf"), dtype=torch.float32), persistent=False)

    def apply_causal_mask(
        self, attn_scores: Float[Tensor, "batch n_heads query_pos key_pos"]
    ) -> Float[Tensor, "batch n_heads query_pos key_pos"]:
        """Set every score where the key comes after the query to self.IGNORE; keep the rest."""
        ### BEGIN SOLUTION
        query_pos, key_pos = attn_scores.shape[-2:]
        ones = torch.ones(query_pos, key_pos, device=attn_scores.device)  # (query_pos, key_pos)
        future = torch.triu(ones, diagonal=1).bool()  # (query_pos, key_pos): True above the diagonal
        return attn_scores.masked_fill(future, self.IGNORE)  # (batch, n_heads, query_pos, key_pos)
        ### END SOLUTION


MaskedAttention = Attention  # notebook 05 builds the full attention layer on this class
