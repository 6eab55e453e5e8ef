"""Functional forms of GPT-2's components, used by the checks as the reference computation.

Each function takes TransformerLens-layout parameters as a dict (``w``, ``b``; ``W_Q`` ...), so the
checks can run it on random parameters as well as on GPT-2's. Keyword flags switch on one known
mistake at a time; the checks compare a wrong answer with these to name its cause. With every flag
at its default each function is the correct computation, and `tests/test_oracle.py` confirms that
it reproduces the reference bridge's own hooks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from c1p1.config import Config


def layer_norm(
    x: Tensor,
    p: dict[str, Tensor],
    eps: float,
    *,
    unbiased: bool = False,
    eps_outside: bool = False,
    affine: bool = True,
    no_bias: bool = False,
    no_centre: bool = False,
    dim: int = -1,
) -> Tensor:
    """x: (..., d_model) -> (..., d_model), normalised over ``dim``, then scaled by w and shifted by b."""
    mean = x.mean(dim=dim, keepdim=True)  # (..., 1)
    centred = x if no_centre else x - mean  # (..., d_model)
    var = (x - mean).pow(2).sum(dim=dim, keepdim=True) / (x.shape[dim] - (1 if unbiased else 0))  # (..., 1)
    scale = var.sqrt() + eps if eps_outside else (var + eps).sqrt()  # (..., 1)
    normed = centred / scale  # (..., d_model)
    if not affine:
        return normed
    return normed * p["w"] + (0 if no_bias else p["b"])  # (..., d_model)


def embed(tokens: Tensor, p: dict[str, Tensor]) -> Tensor:
    """tokens: (batch, posn) -> (batch, posn, d_model), row ``tokens[b, s]`` of W_E."""
    return F.embedding(tokens, p["W_E"])


def pos_embed(tokens: Tensor, p: dict[str, Tensor], *, by_token: bool = False, offset: int = 0) -> Tensor:
    """tokens: (batch, posn) -> (batch, posn, d_model), row ``s`` of W_pos at position ``s``."""
    batch, posn = tokens.shape
    if by_token:
        return p["W_pos"][tokens % p["W_pos"].shape[0]]  # (batch, posn, d_model)
    rows = p["W_pos"][offset : offset + posn]  # (posn, d_model)
    return rows.unsqueeze(0).expand(batch, posn, rows.shape[-1])  # (batch, posn, d_model)


def causal_mask(scores: Tensor, *, diagonal: int = 1, lower: bool = False, value: float = float("-inf")) -> Tensor:
    """scores: (batch, n_heads, query_pos, key_pos); key positions after the query are set to ``value``."""
    q, k = scores.shape[-2:]
    ones = torch.ones(q, k, dtype=torch.bool, device=scores.device)  # (query_pos, key_pos)
    mask = ones.tril(-diagonal) if lower else ones.triu(diagonal)  # (query_pos, key_pos)
    return scores.masked_fill(mask, value)  # (batch, n_heads, query_pos, key_pos)


def attention_parts(
    x: Tensor,
    p: dict[str, Tensor],
    *,
    scale: str = "d_head",
    softmax_dim: int = -1,
    mask_after_softmax: bool = False,
    no_mask: bool = False,
    no_bias: bool = False,
    no_value_bias: bool = False,
    no_output_bias: bool = False,
    mean_heads: bool = False,
    swap_qk: bool = False,
) -> tuple[Tensor, Tensor]:
    """x: (batch, posn, d_model) -> (pattern (batch, n_heads, query_pos, key_pos), out (batch, posn, d_model))."""
    zero = 0.0 if no_bias else None

    def bias(name: str) -> Tensor | float:
        if zero is not None or (name == "b_V" and no_value_bias) or (name == "b_O" and no_output_bias):
            return 0.0
        return p[name]

    q = torch.einsum("bsm,hmd->bshd", x, p["W_Q"]) + bias("b_Q")  # (batch, posn, n_heads, d_head)
    k = torch.einsum("bsm,hmd->bshd", x, p["W_K"]) + bias("b_K")  # (batch, posn, n_heads, d_head)
    v = torch.einsum("bsm,hmd->bshd", x, p["W_V"]) + bias("b_V")  # (batch, posn, n_heads, d_head)
    if swap_qk:
        q, k = k, q
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k)  # (batch, n_heads, query_pos, key_pos)
    d_head, d_model = q.shape[-1], x.shape[-1]
    divisor = {"d_head": math.sqrt(d_head), "none": 1.0, "d_model": math.sqrt(d_model), "no_sqrt": d_head}[scale]
    scores = scores / divisor  # (batch, n_heads, query_pos, key_pos)
    if mask_after_softmax:
        pattern = scores.softmax(dim=softmax_dim)  # (batch, n_heads, query_pos, key_pos)
        pattern = causal_mask(pattern, value=0.0)  # (batch, n_heads, query_pos, key_pos)
    else:
        masked = scores if no_mask else causal_mask(scores)  # (batch, n_heads, query_pos, key_pos)
        pattern = masked.softmax(dim=softmax_dim)  # (batch, n_heads, query_pos, key_pos)
        pattern = torch.nan_to_num(pattern)  # a column softmax leaves NaN where a column is all -inf
    z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)  # (batch, posn, n_heads, d_head)
    per_head = torch.einsum("bqhd,hdm->bqhm", z, p["W_O"])  # (batch, posn, n_heads, d_model)
    heads = per_head.mean(dim=2) if mean_heads else per_head.sum(dim=2)  # (batch, posn, d_model)
    return pattern, heads + bias("b_O")


def attention(x: Tensor, p: dict[str, Tensor], **mistake: object) -> Tensor:
    """x: (batch, posn, d_model) -> (batch, posn, d_model)."""
    return attention_parts(x, p, **mistake)[1]


def gelu_new(x: Tensor) -> Tensor:
    """GPT-2's activation: the tanh approximation of GELU."""
    return F.gelu(x, approximate="tanh")


def mlp(
    x: Tensor,
    p: dict[str, Tensor],
    *,
    activation: str = "gelu_new",
    no_bias_in: bool = False,
    no_bias_out: bool = False,
) -> Tensor:
    """x: (batch, posn, d_model) -> (batch, posn, d_model)."""
    act = {"gelu_new": gelu_new, "gelu": F.gelu, "relu": F.relu, "none": lambda t: t}[activation]
    pre = x @ p["W_in"] + (0 if no_bias_in else p["b_in"])  # (batch, posn, d_mlp)
    return act(pre) @ p["W_out"] + (0 if no_bias_out else p["b_out"])  # (batch, posn, d_model)


def sub(p: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    start = prefix + "."
    return {k[len(start) :]: v for k, v in p.items() if k.startswith(start)}


def block(
    x: Tensor,
    p: dict[str, Tensor],
    eps: float,
    *,
    no_attn_residual: bool = False,
    no_mlp_residual: bool = False,
    post_ln: bool = False,
    swap_ln: bool = False,
    parallel: bool = False,
) -> Tensor:
    """resid_pre: (batch, posn, d_model) -> resid_post: (batch, posn, d_model)."""
    ln1, ln2 = (sub(p, "ln2"), sub(p, "ln1")) if swap_ln else (sub(p, "ln1"), sub(p, "ln2"))
    if post_ln:
        mid = layer_norm(x + attention(x, sub(p, "attn")), ln1, eps)  # (batch, posn, d_model)
        return layer_norm(mid + mlp(mid, sub(p, "mlp")), ln2, eps)  # (batch, posn, d_model)
    attn_out = attention(layer_norm(x, ln1, eps), sub(p, "attn"))  # (batch, posn, d_model)
    mid = attn_out if no_attn_residual else x + attn_out  # (batch, posn, d_model)
    mlp_in = x if parallel else mid  # (batch, posn, d_model)
    mlp_out = mlp(layer_norm(mlp_in, ln2, eps), sub(p, "mlp"))  # (batch, posn, d_model)
    return mlp_out if no_mlp_residual else mid + mlp_out  # (batch, posn, d_model)


def unembed(x: Tensor, p: dict[str, Tensor], *, no_bias: bool = False) -> Tensor:
    """x: (batch, posn, d_model) -> logits (batch, posn, d_vocab)."""
    logits = x @ p["W_U"]  # (batch, posn, d_vocab)
    return logits if no_bias else logits + p["b_U"]


def model(
    tokens: Tensor,
    p: dict[str, Tensor],
    cfg: Config,
    *,
    skip_ln_final: bool = False,
    n_layers: int | None = None,
    no_pos: bool = False,
) -> Tensor:
    """tokens: (batch, posn) -> logits (batch, posn, d_vocab)."""
    resid = embed(tokens, sub(p, "embed"))  # (batch, posn, d_model)
    if not no_pos:
        resid = resid + pos_embed(tokens, sub(p, "pos_embed"))  # (batch, posn, d_model)
    for i in range(cfg.n_layers if n_layers is None else n_layers):
        resid = block(resid, sub(p, f"blocks.{i}"), cfg.layer_norm_eps)  # (batch, posn, d_model)
    if not skip_ln_final:
        resid = layer_norm(resid, sub(p, "ln_final"), cfg.layer_norm_eps)  # (batch, posn, d_model)
    return unembed(resid, sub(p, "unembed"))  # (batch, posn, d_vocab)


def log_probs(logits: Tensor, tokens: Tensor, *, shift: int = 1, probs: bool = False) -> Tensor:
    """logits (batch, posn, d_vocab), tokens (batch, posn) -> (batch, posn - 1): log p(next token)."""
    lp = logits.log_softmax(dim=-1)  # (batch, posn, d_vocab)
    if probs:
        lp = lp.exp()
    if shift == 0:
        return lp[:, :-1].gather(-1, tokens[:, :-1, None])[..., 0]  # (batch, posn - 1)
    return lp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # (batch, posn - 1)
