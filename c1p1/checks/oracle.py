"""Functional forms of GPT-2's components, used by the checks as the reference computation.

Every reference formula of the checks is here. Each function takes TransformerLens-layout parameters
as a dict (``w``, ``b``; ``W_Q`` ...), so the checks can run it on random parameters as well as on
GPT-2's. Keyword flags switch on one known mistake at a time; the checks compare a wrong answer with
these to name its cause. With every flag at its default each function is the correct computation,
and `tests/test_oracle.py` confirms that it reproduces the reference bridge's own hooks.

The last part is notebook 10's form of attention: ``nn.Linear`` projections (``weight [out, in]``,
``bias [out]``) cut into heads with ``.view`` and ``.transpose``. `to_linear` / `to_per_head`
convert between the two layouts, `linear_params` turns a block's parameters into a
MultiHeadAttention state dict, and `mha` is the fused forward pass. The ``*_shapes`` functions give
each component's parameter shapes for a Config.
"""

from __future__ import annotations

import math

import einops
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
    no_token: bool = False,
    double_residual: bool = False,
) -> Tensor:
    """tokens: (batch, posn) -> logits (batch, posn, d_vocab)."""
    token = 0.0 if no_token else embed(tokens, sub(p, "embed"))  # (batch, posn, d_model)
    position = 0.0 if no_pos else pos_embed(tokens, sub(p, "pos_embed"))  # (batch, posn, d_model)
    resid = token + position  # (batch, posn, d_model)
    for i in range(cfg.n_layers if n_layers is None else n_layers):
        out = block(resid, sub(p, f"blocks.{i}"), cfg.layer_norm_eps)  # (batch, posn, d_model)
        resid = resid + out if double_residual else out  # (batch, posn, d_model)
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


# ------------------------------------------------------------------------- parameter shapes


def attention_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    h, m, d = cfg.n_heads, cfg.d_model, cfg.d_head
    shapes: dict[str, tuple[int, ...]] = {f"W_{n}": (h, m, d) for n in "QKV"}
    shapes.update({"W_O": (h, d, m)})
    shapes.update({f"b_{n}": (h, d) for n in "QKV"})
    shapes.update({"b_O": (m,)})
    return shapes


def mlp_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    return {"W_in": (cfg.d_model, cfg.d_mlp), "W_out": (cfg.d_mlp, cfg.d_model), "b_in": (cfg.d_mlp,), "b_out": (cfg.d_model,)}


def block_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    shapes = {f"ln{i}.{leaf}": (cfg.d_model,) for i in (1, 2) for leaf in ("w", "b")}
    shapes.update({f"attn.{k}": v for k, v in attention_shapes(cfg).items()})
    shapes.update({f"mlp.{k}": v for k, v in mlp_shapes(cfg).items()})
    return shapes


def model_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter of GPT-2 under TransformerLens names, for a given Config."""
    m, v = cfg.d_model, cfg.d_vocab
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (v, m), "pos_embed.W_pos": (cfg.n_ctx, m)}
    for i in range(cfg.n_layers):
        shapes.update({f"blocks.{i}.{k}": s for k, s in block_shapes(cfg).items()})
    shapes.update({"ln_final.w": (m,), "ln_final.b": (m,), "unembed.W_U": (m, v), "unembed.b_U": (v,)})
    return shapes


# ------------------------------------------------------------ attention with nn.Linear (notebook 10)

LINEAR_NAMES = ("W_query", "W_key", "W_value")
TL_NAMES = ("Q", "K", "V")


def to_linear(
    W: Tensor, b: Tensor, kind: str, *, transpose: bool = True, permute: bool = True, head_order: str = "h d"
) -> tuple[Tensor, Tensor]:
    """Per-head (TransformerLens) weights -> nn.Linear's (weight [out, in], bias [out]).

    kind "qkv": W [n_heads, d_model, d_head], b [n_heads, d_head] -> weight [n_heads*d_head, d_model].
    kind "out": W [n_heads, d_head, d_model], b [d_model] -> weight [d_model, n_heads*d_head].
    Mistakes: transpose=False leaves x @ W's layout [in, out]; permute=False reshapes in memory order
    without moving d_model; head_order="d h" interleaves the heads.
    """
    n_heads = W.shape[0]
    if kind == "qkv":
        if not permute:
            return W.reshape(-1, W.shape[1]), b.reshape(-1)  # mixes d_model into the rows
        weight = einops.rearrange(W, f"h m d -> ({head_order}) m")  # (n_heads * d_head, d_model)
        bias = einops.rearrange(b, f"h d -> ({head_order})")  # (n_heads * d_head,)
        return (weight.T if not transpose else weight), bias
    if not permute:
        return W.reshape(W.shape[-1], -1), b  # mixes the rows of W_O
    weight = einops.rearrange(W, f"h d m -> m ({head_order})", h=n_heads)  # (d_model, n_heads * d_head)
    return (weight.T if not transpose else weight), b


def to_per_head(
    weight: Tensor, bias: Tensor, kind: str, n_heads: int, *, direct: bool = False, head_order: str = "h d"
) -> tuple[Tensor, Tensor]:
    """nn.Linear's (weight [out, in], bias [out]) -> per-head (TransformerLens) weights; the inverse of to_linear.

    Mistakes: direct=True reshapes straight into the per-head shape without moving any dimension;
    head_order="d h" reads the heads as interleaved.
    """
    if kind == "qkv":
        d_model = weight.shape[1]
        d_head = weight.shape[0] // n_heads
        if direct:
            return weight.reshape(n_heads, d_model, d_head), bias.reshape(n_heads, d_head)
        W = einops.rearrange(weight, f"({head_order}) m -> h m d", h=n_heads)  # (n_heads, d_model, d_head)
        return W, einops.rearrange(bias, f"({head_order}) -> h d", h=n_heads)  # (n_heads, d_head)
    d_model = weight.shape[0]
    d_head = weight.shape[1] // n_heads
    if direct:
        return weight.reshape(n_heads, d_head, d_model), bias
    return einops.rearrange(weight, f"m ({head_order}) -> h d m", h=n_heads), bias  # (n_heads, d_head, d_model)


def linear_params(p: dict[str, Tensor], qkv_bias: bool = True) -> dict[str, Tensor]:
    """A block's attention parameters (TransformerLens names) as a MultiHeadAttention state dict."""
    out = {}
    for lin, tl in zip(LINEAR_NAMES, TL_NAMES, strict=True):
        weight, bias = to_linear(p[f"W_{tl}"], p[f"b_{tl}"], "qkv")
        out[f"{lin}.weight"] = weight.contiguous()
        if qkv_bias:
            out[f"{lin}.bias"] = bias.contiguous()
    weight, bias = to_linear(p["W_O"], p["b_O"], "out")
    out["out_proj.weight"] = weight.contiguous()
    out["out_proj.bias"] = bias.contiguous()
    return out


def mha(
    x: Tensor,
    lp: dict[str, Tensor],
    num_heads: int,
    *,
    split: str = "view_transpose",
    merge: str = "transpose",
    scale: str = "head_dim",
    masked: bool = True,
    softmax_dim: int = -1,
    project_out: bool = True,
) -> Tensor:
    """The fused multi-head attention: x (batch, posn, d_in) -> (batch, posn, d_out).

    split: "view_transpose" (correct), "view_only" (.view(b, heads, posn, head_dim) straight away), or
    "over_heads" (no transpose at all, so each token's heads attend to one another, causally).
    merge: "transpose" (correct) or "no_transpose" (.view(b, posn, d_out) straight from (b, heads, posn, head_dim)).
    scale: "head_dim" (correct), "d_out", "none", "no_sqrt".
    """
    b, s, _ = x.shape

    def lin(name: str, t: Tensor) -> Tensor:
        return F.linear(t, lp[f"{name}.weight"], lp.get(f"{name}.bias"))

    q, k, v = (lin(n, x) for n in LINEAR_NAMES)  # each (batch, posn, d_out)
    d_out = q.shape[-1]
    head_dim = d_out // num_heads

    def heads(t: Tensor) -> Tensor:
        if split == "view_only":
            return t.reshape(b, num_heads, s, head_dim)  # (batch, n_heads, posn, head_dim), scrambled
        if split == "over_heads":
            return t.reshape(b, s, num_heads, head_dim)  # (batch, posn, n_heads, head_dim)
        return t.reshape(b, s, num_heads, head_dim).transpose(1, 2)  # (batch, n_heads, posn, head_dim)

    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-1, -2)  # (batch, n_heads, query_pos, key_pos)
    divisor = {"head_dim": math.sqrt(head_dim), "d_out": math.sqrt(d_out), "none": 1.0, "no_sqrt": head_dim}[scale]
    scores = scores / divisor
    if masked:
        n = scores.shape[-1]
        future = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)  # (query_pos, key_pos)
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.nan_to_num(scores.softmax(dim=softmax_dim))  # (batch, n_heads, query_pos, key_pos)
    context = weights @ v  # (batch, n_heads, posn, head_dim)
    if split == "over_heads" or merge == "no_transpose":
        merged = context.reshape(b, s, d_out)  # (batch, posn, d_out)
    else:
        merged = context.transpose(1, 2).reshape(b, s, d_out)  # (batch, posn, d_out)
    return lin("out_proj", merged) if project_out else merged  # (batch, posn, d_out)
