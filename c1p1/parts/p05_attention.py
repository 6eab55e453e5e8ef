"""Generated from solutions/05_attention.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
import einops
import torch
from c1p1.config import Config
from c1p1.parts.p04_causal_mask import MaskedAttention

__all__ = ['Attention', 'top_token_pairs']

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


def top_token_pairs(circuit: "FactoredMatrix", k: int = 10, chunk_rows: int = 1024) -> Int[Tensor, "k 2"]:
    """The (row, column) of the k largest entries of circuit (A @ B), largest first, chunk_rows rows at a time."""
    ### BEGIN SOLUTION
    n_cols = circuit.shape[1]
    chunk_values, chunk_pairs = [], []
    for start in range(0, circuit.shape[0], chunk_rows):
        scores = circuit.A[start : start + chunk_rows] @ circuit.B  # (chunk, n_cols): these rows of the product
        values, flat = scores.flatten().topk(min(k, scores.numel()))  # (k,), (k,): this chunk's best
        rows = flat // n_cols + start  # (k,): row numbers in the whole matrix
        chunk_values.append(values)
        chunk_pairs.append(torch.stack([rows, flat % n_cols], dim=-1))  # (k, 2)
    values, pairs = torch.cat(chunk_values), torch.cat(chunk_pairs)  # (n_chunks * k,), (n_chunks * k, 2)
    return pairs[values.topk(k).indices]  # (k, 2): the k best of all chunks, largest first
    ### END SOLUTION
