"""Generated from solutions/03_pos_embed.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
import einops
import torch
from c1p1.config import Config

__all__ = ['PosEmbed']

class PosEmbed(nn.Module):
    """Look up each position's row of W_pos (positions 0 .. posn - 1), the same for every sequence."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.W_pos = nn.Parameter(torch.empty((cfg.n_ctx, cfg.d_model)))  # (n_ctx, d_model)
        nn.init.normal_(self.W_pos, std=cfg.init_range)

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_model"]:
        """Return W_pos[0 .. posn - 1] repeated over the batch."""
        ### BEGIN SOLUTION
        batch, posn = tokens.shape
        rows = self.W_pos[:posn]  # (posn, d_model)
        return einops.repeat(rows, "posn d_model -> batch posn d_model", batch=batch)  # (batch, posn, d_model)
        ### END SOLUTION
