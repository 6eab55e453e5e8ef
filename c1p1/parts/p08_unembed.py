"""Generated from solutions/08_unembed.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor
from torch import nn
import torch
from c1p1.config import Config

__all__ = ['Unembed', 'logit_lens', 'direct_logit_attribution']

class Unembed(nn.Module):
    """Turn each position's residual vector into one logit per vocabulary token."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.W_U = nn.Parameter(torch.empty((cfg.d_model, cfg.d_vocab)))  # (d_model, d_vocab)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))  # (d_vocab,): TransformerLens's name; GPT-2's is all zeros
        nn.init.normal_(self.W_U, std=cfg.init_range)

    def forward(self, normalized_resid_final: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_vocab"]:
        """Return the logits at every position: one score per vocabulary token, from W_U and b_U."""
        ### BEGIN SOLUTION
        logits = normalized_resid_final @ self.W_U  # (batch, posn, d_vocab)
        logits += self.b_U  # in place is safe on a tensor we just made, and spares a second 50257-wide copy
        return logits  # (batch, posn, d_vocab)
        ### END SOLUTION


def logit_lens(
    cache: dict[str, Tensor],
    ln_final: nn.Module,
    W_U: Float[Tensor, "d_model d_vocab"],
    b_U: Float[Tensor, "d_vocab"],
    n_layers: int,
    position: int = -1,
) -> Float[Tensor, "layer batch d_vocab"]:
    """The logits read at `position` from the stream before block 0 and after each block: n_layers + 1 rows."""
    ### BEGIN SOLUTION
    streams = [cache["blocks.0.hook_resid_pre"]]  # before any block: the embeddings
    streams += [cache[f"blocks.{layer}.hook_resid_post"] for layer in range(n_layers)]  # after each block
    resid = torch.stack(streams)[:, :, position]  # (n_layers + 1, batch, d_model)
    return ln_final(resid) @ W_U + b_U  # (n_layers + 1, batch, d_vocab): each row normalised with its own scale
    ### END SOLUTION


def direct_logit_attribution(
    cache: dict[str, Tensor],
    ln_final: nn.Module,
    W_U: Float[Tensor, "d_model d_vocab"],
    b_U: Float[Tensor, "d_vocab"],
    n_layers: int,
    token: int,
    position: int = -1,
) -> Float[Tensor, "term batch"]:
    """Each term's share of the logit of `token` at `position` (ln_final's scale frozen), then the constant."""
    ### BEGIN SOLUTION
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out"]
    terms = torch.stack([cache[name] for name in names])[:, :, position]  # (n_terms, batch, d_model)
    scale = cache["ln_final.hook_scale"][:, position]  # (batch, 1): the whole stream's scale, frozen
    centred = terms - terms.mean(dim=-1, keepdim=True)  # (n_terms, batch, d_model): centring is linear
    direction = ln_final.w * W_U[:, token]  # (d_model,): multiply by w, then read the token's column
    shares = centred / scale @ direction  # (n_terms, batch)
    constant = ln_final.b @ W_U[:, token] + b_U[token]  # (): the biases belong to no term
    return torch.cat([shares, constant.expand(1, shares.shape[1])])  # (n_terms + 1, batch)
    ### END SOLUTION
