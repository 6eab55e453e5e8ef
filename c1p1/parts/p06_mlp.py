"""Generated from solutions/06_mlp.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
import torch
from c1p1.config import Config

__all__ = ['gelu_new', 'MLP', 'neuron_logit_effect']

def gelu_new(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """GPT-2's GELU: the tanh approximation, applied element-wise."""
    inner = (2.0 / torch.pi) ** 0.5 * (x + 0.044715 * x.pow(3))  # same shape as x
    return 0.5 * x * (1.0 + torch.tanh(inner))  # same shape as x


class MLP(nn.Module):
    """Two linear maps with gelu_new between them, applied to every position on its own."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.W_in = nn.Parameter(torch.empty((cfg.d_model, cfg.d_mlp)))  # (d_model, d_mlp)
        self.W_out = nn.Parameter(torch.empty((cfg.d_mlp, cfg.d_model)))  # (d_mlp, d_model)
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))  # (d_mlp,)
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))  # (d_model,)
        nn.init.normal_(self.W_in, std=cfg.init_range)
        nn.init.normal_(self.W_out, std=cfg.init_range)

    def forward(self, normalized_resid_mid: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        """Up to d_mlp through W_in and b_in, gelu_new, then back down through W_out and b_out, at every position."""
        ### BEGIN SOLUTION
        pre = normalized_resid_mid @ self.W_in + self.b_in  # (batch, posn, d_mlp)
        post = gelu_new(pre)  # (batch, posn, d_mlp)
        return post @ self.W_out + self.b_out  # (batch, posn, d_model)
        ### END SOLUTION


def neuron_logit_effect(
    W_out: Float[Tensor, "d_mlp d_model"], W_U: Float[Tensor, "d_model d_vocab"], neurons: Int[Tensor, "n"]
) -> Float[Tensor, "n d_vocab"]:
    """Each neuron's direct effect on every token's logit per unit of activation, centred over the vocabulary."""
    ### BEGIN SOLUTION
    raw = W_out[neurons] @ W_U  # (n, d_vocab): each neuron's value, read by every token's unembedding
    return raw - raw.mean(dim=-1, keepdim=True)  # (n, d_vocab): only differences between logits matter
    ### END SOLUTION
