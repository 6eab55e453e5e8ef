"""Generated from solutions/07_transformer_block.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor
from torch import nn
from c1p1.config import Config
from c1p1.parts.p01_layernorm import LayerNorm
from c1p1.parts.p05_attention import Attention
from c1p1.parts.p06_mlp import MLP

__all__ = ['TransformerBlock']

class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: attention then MLP, each reading a normalised copy and adding to the stream."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.ln1 = LayerNorm(cfg)
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, resid_pre: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        """Return resid_post: attention reads ln1 of the stream and adds to it, then the MLP reads ln2 of that and adds."""
        ### BEGIN SOLUTION
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre))  # (batch, posn, d_model)
        return resid_mid + self.mlp(self.ln2(resid_mid))  # (batch, posn, d_model)
        ### END SOLUTION
