"""Generated from solutions/01_layernorm.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor
from torch import nn
import torch
from c1p1.config import Config

__all__ = ['LayerNorm']

class LayerNorm(nn.Module):
    """Normalise each position of the residual stream, then scale by w and shift by b."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(torch.ones(cfg.d_model))  # (d_model,)
        self.b = nn.Parameter(torch.zeros(cfg.d_model))  # (d_model,)

    def forward(self, residual: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        """Normalise each position over d_model (biased variance, eps inside the root), then scale by w and shift by b."""
        ### BEGIN SOLUTION
        mean = residual.mean(dim=-1, keepdim=True)  # (batch, posn, 1)
        centred = residual - mean  # (batch, posn, d_model)
        variance = centred.pow(2).mean(dim=-1, keepdim=True)  # (batch, posn, 1)
        normalised = centred / torch.sqrt(variance + self.cfg.layer_norm_eps)  # (batch, posn, d_model)
        return normalised * self.w + self.b  # (batch, posn, d_model)
        ### END SOLUTION
