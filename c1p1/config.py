"""The sizes of GPT-2 small, under TransformerLens's names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    d_model: int = 768  # width of the residual stream
    d_vocab: int = 50257  # number of tokens in GPT-2's BPE vocabulary
    init_range: float = 0.02  # standard deviation of the initial weights
    layer_norm_eps: float = 1e-5  # added to the variance inside the square root
    n_ctx: int = 1024  # longest context, and rows of W_pos
    d_head: int = 64  # width of one attention head
    d_mlp: int = 3072  # hidden width of the MLP (4 * d_model)
    n_heads: int = 12  # attention heads per layer (n_heads * d_head == d_model)
    n_layers: int = 12  # transformer blocks
