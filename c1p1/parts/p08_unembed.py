"""Generated from solutions/08_unembed.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor
from torch import nn
import torch
from c1p1.config import Config

__all__ = ['Unembed']

class Unembed(nn.Module):
    """Turn each position's residual vector into one logit per vocabulary token."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.W_U = nn.Parameter(torch.empty((cfg.d_model, cfg.d_vocab)))  # (d_model, d_vocab)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab, requires_grad=False))  # (d_vocab,)
        nn.init.normal_(self.W_U, std=cfg.init_range)

    def forward(self, normalized_resid_final: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_vocab"]:
        """Return normalized_resid_final @ W_U + b_U: the logits at every position."""
        ### BEGIN SOLUTION
        logits = normalized_resid_final @ self.W_U  # (batch, posn, d_vocab)
        logits += self.b_U  # in place is safe on a tensor we just made, and spares a second 50257-wide copy
        return logits  # (batch, posn, d_vocab)
        ### END SOLUTION
