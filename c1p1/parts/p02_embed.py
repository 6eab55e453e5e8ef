"""Generated from solutions/02_embed.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
import torch
from c1p1.config import Config

__all__ = ['Embed']

class Embed(nn.Module):
    """Look up each token id's row of W_E."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty((cfg.d_vocab, cfg.d_model)))  # (d_vocab, d_model)
        nn.init.normal_(self.W_E, std=cfg.init_range)

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_model"]:
        """Return row tokens[b, s] of W_E for every batch b and position s: (batch, posn) ids to (batch, posn, d_model)."""
        ### BEGIN SOLUTION
        return self.W_E[tokens]  # (batch, posn, d_model)
        ### END SOLUTION
