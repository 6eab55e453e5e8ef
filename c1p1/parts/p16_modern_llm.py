"""Generated from solutions/16_modern_llm.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
import einops
import torch
import torch.nn.functional as F
from c1p1.modern import ModernConfig
from c1p1.parts.p02_embed import Embed

__all__ = ['RMSNorm', 'rope_angles', 'apply_rope', 'SwiGLU', 'GroupedQueryAttention', 'ModernBlock', 'ModernUnembed', 'ModernTransformer']

class RMSNorm(nn.Module):
    """Divide each position's vector by its root mean square, then scale by w (no centring, no bias)."""

    def __init__(self, cfg: ModernConfig):
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(torch.ones(cfg.d_model))  # (d_model,)

    def forward(self, residual: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        """x / sqrt(mean(x**2) + eps) * w, the mean over d_model (Hugging Face computes it in float32, then casts back)."""
        ### BEGIN SOLUTION
        x = residual.float()  # (batch, posn, d_model)
        mean_square = x.pow(2).mean(dim=-1, keepdim=True)  # (batch, posn, 1)
        normalized = x * torch.rsqrt(mean_square + self.cfg.rms_norm_eps)  # (batch, posn, d_model)
        return normalized.to(residual.dtype) * self.w  # (batch, posn, d_model)
        ### END SOLUTION


def rope_angles(positions: Int[Tensor, "posn"], d_head: int, theta: float) -> Float[Tensor, "posn d_head"]:
    """position * theta**(-2k/d_head) for the d_head/2 pairs k, then the same block again (the halves' layout)."""
    ### BEGIN SOLUTION
    pair = torch.arange(0, d_head, 2, device=positions.device, dtype=torch.float32)  # (d_head/2,): 2k
    frequencies = theta ** (-pair / d_head)  # (d_head/2,)
    angles = positions.float()[:, None] * frequencies[None, :]  # (posn, d_head/2)
    return torch.cat([angles, angles], dim=-1)  # (posn, d_head)
    ### END SOLUTION


def apply_rope(
    x: Float[Tensor, "batch posn n_heads d_head"], theta: float, offset: int = 0
) -> Float[Tensor, "batch posn n_heads d_head"]:
    """Rotate feature k with feature k + d_head/2 of every head by position * frequency, positions from offset."""
    ### BEGIN SOLUTION
    posn, d_head = x.shape[1], x.shape[-1]
    positions = torch.arange(offset, offset + posn, device=x.device)  # (posn,)
    angles = rope_angles(positions, d_head, theta)  # (posn, d_head)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (posn, 1, d_head): broadcast over heads
    first, second = x[..., : d_head // 2], x[..., d_head // 2 :]  # (batch, posn, n_heads, d_head/2) each
    rotated_half = torch.cat([-second, first], dim=-1)  # (batch, posn, n_heads, d_head)
    return x * cos + rotated_half * sin  # (batch, posn, n_heads, d_head)
    ### END SOLUTION


class SwiGLU(nn.Module):
    """The gated MLP: silu(x @ W_gate) times x @ W_in, element by element, then @ W_out. No biases."""

    def __init__(self, cfg: ModernConfig):
        super().__init__()
        self.cfg = cfg
        self.W_gate = nn.Parameter(torch.empty((cfg.d_model, cfg.d_mlp)))  # (d_model, d_mlp)
        self.W_in = nn.Parameter(torch.empty((cfg.d_model, cfg.d_mlp)))  # (d_model, d_mlp)
        self.W_out = nn.Parameter(torch.empty((cfg.d_mlp, cfg.d_model)))  # (d_mlp, d_model)
        for weight in (self.W_gate, self.W_in, self.W_out):
            nn.init.normal_(weight, std=cfg.init_range)

    def forward(self, normalized_resid_mid: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        """(silu(x @ W_gate) * (x @ W_in)) @ W_out at every position."""
        ### BEGIN SOLUTION
        gate = F.silu(normalized_resid_mid @ self.W_gate)  # (batch, posn, d_mlp)
        up = normalized_resid_mid @ self.W_in  # (batch, posn, d_mlp)
        return (gate * up) @ self.W_out  # (batch, posn, d_model)
        ### END SOLUTION


class GroupedQueryAttention(nn.Module):
    """Causal attention with n_heads query heads sharing n_kv_heads key-value heads, RoPE on q and k, no biases."""

    def __init__(self, cfg: ModernConfig):
        super().__init__()
        self.cfg = cfg
        self.W_Q = nn.Parameter(torch.empty((cfg.n_heads, cfg.d_model, cfg.d_head)))  # (n_heads, d_model, d_head)
        self.W_K = nn.Parameter(torch.empty((cfg.n_kv_heads, cfg.d_model, cfg.d_head)))  # (n_kv_heads, d_model, d_head)
        self.W_V = nn.Parameter(torch.empty((cfg.n_kv_heads, cfg.d_model, cfg.d_head)))  # (n_kv_heads, d_model, d_head)
        self.W_O = nn.Parameter(torch.empty((cfg.n_heads, cfg.d_head, cfg.d_model)))  # (n_heads, d_head, d_model)
        for weight in (self.W_Q, self.W_K, self.W_V, self.W_O):
            nn.init.normal_(weight, std=cfg.init_range)

    def forward(self, normalized_resid_pre: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        """Rotated queries and keys, query head h reading key-value head h // group, causal softmax, W_O."""
        ### BEGIN SOLUTION
        x = normalized_resid_pre
        q = einops.einsum(x, self.W_Q, "batch posn d_model, head d_model d_head -> batch posn head d_head")
        k = einops.einsum(x, self.W_K, "batch posn d_model, kv d_model d_head -> batch posn kv d_head")
        v = einops.einsum(x, self.W_V, "batch posn d_model, kv d_model d_head -> batch posn kv d_head")
        q = apply_rope(q, self.cfg.rope_theta)  # (batch, posn, n_heads, d_head)
        k = apply_rope(k, self.cfg.rope_theta)  # (batch, posn, n_kv_heads, d_head)
        group = self.cfg.n_heads // self.cfg.n_kv_heads
        k = k.repeat_interleave(group, dim=2)  # (batch, posn, n_heads, d_head): head h reads kv head h // group
        v = v.repeat_interleave(group, dim=2)  # (batch, posn, n_heads, d_head)
        scores = einops.einsum(q, k, "batch q head d_head, batch k head d_head -> batch head q k")
        scores = scores / self.cfg.d_head**0.5  # (batch, n_heads, query_pos, key_pos)
        posn = x.shape[1]
        future = torch.ones(posn, posn, dtype=torch.bool, device=x.device).triu(1)  # (query_pos, key_pos)
        pattern = scores.masked_fill(future, float("-inf")).softmax(dim=-1)  # (batch, n_heads, query_pos, key_pos)
        z = einops.einsum(pattern, v, "batch head q k, batch k head d_head -> batch q head d_head")
        return einops.einsum(z, self.W_O, "batch q head d_head, head d_head d_model -> batch q d_model")
        ### END SOLUTION


class ModernBlock(nn.Module):
    """Pre-norm block: RMSNorm, grouped-query attention, add; RMSNorm, SwiGLU, add."""

    def __init__(self, cfg: ModernConfig):
        super().__init__()
        self.cfg = cfg
        self.ln1 = RMSNorm(cfg)
        self.attn = GroupedQueryAttention(cfg)
        self.ln2 = RMSNorm(cfg)
        self.mlp = SwiGLU(cfg)

    def forward(self, resid_pre: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        """resid_post: attention reads ln1 of the stream and adds to it, then the MLP reads ln2 of that and adds."""
        ### BEGIN SOLUTION
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre))  # (batch, posn, d_model)
        return resid_mid + self.mlp(self.ln2(resid_mid))  # (batch, posn, d_model)
        ### END SOLUTION


class ModernUnembed(nn.Module):
    """The untied unembedding: its own W_U, no bias."""

    def __init__(self, cfg: ModernConfig):
        super().__init__()
        self.cfg = cfg
        self.W_U = nn.Parameter(torch.empty((cfg.d_model, cfg.d_vocab)))  # (d_model, d_vocab)
        nn.init.normal_(self.W_U, std=cfg.init_range)

    def forward(self, normalized_resid_final: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_vocab"]:
        return normalized_resid_final @ self.W_U  # (batch, posn, d_vocab)


class ModernTransformer(nn.Module):
    """A Llama-style model: embed, ModernBlocks, final RMSNorm, untied unembedding; no W_pos."""

    def __init__(self, cfg: ModernConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.blocks = nn.ModuleList([ModernBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = RMSNorm(cfg)
        self.unembed = ModernUnembed(cfg)

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_vocab"]:
        """The logits at every position."""
        ### BEGIN SOLUTION
        resid = self.embed(tokens)  # (batch, posn, d_model)
        for block in self.blocks:
            resid = block(resid)  # (batch, posn, d_model)
        return self.unembed(self.ln_final(resid))  # (batch, posn, d_vocab)
        ### END SOLUTION
