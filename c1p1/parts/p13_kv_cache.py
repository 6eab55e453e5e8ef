"""Generated from solutions/13_kv_cache.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
import einops
import torch
from c1p1.config import Config
from c1p1.parts.p01_layernorm import LayerNorm
from c1p1.parts.p02_embed import Embed
from c1p1.parts.p03_pos_embed import PosEmbed
from c1p1.parts.p05_attention import Attention
from c1p1.parts.p07_transformer_block import TransformerBlock
from c1p1.parts.p08_unembed import Unembed
from c1p1.parts.p12_sampling import sample_next_token

__all__ = ['LayerCache', 'KVCache', 'CachedAttention', 'CachedPosEmbed', 'CachedBlock', 'CachedTransformer', 'generate_with_cache']

class LayerCache:
    """One layer's keys and values for every position seen so far, each (batch, posn, n_heads, d_head)."""

    def __init__(self):
        self.k: Tensor | None = None  # (batch, posn, n_heads, d_head); None until the first append
        self.v: Tensor | None = None  # (batch, posn, n_heads, d_head)

    def __len__(self) -> int:
        """The number of positions cached."""
        return 0 if self.k is None else self.k.shape[1]

    def append(
        self, k_new: Float[Tensor, "batch new n_heads d_head"], v_new: Float[Tensor, "batch new n_heads d_head"]
    ) -> tuple[Float[Tensor, "batch posn n_heads d_head"], Float[Tensor, "batch posn n_heads d_head"]]:
        """Store the new positions' keys and values after the cached ones; return all keys and values so far."""
        ### BEGIN SOLUTION
        if self.k is None:
            self.k, self.v = k_new, v_new
        else:
            self.k = torch.cat([self.k, k_new], dim=1)  # (batch, posn, n_heads, d_head)
            self.v = torch.cat([self.v, v_new], dim=1)  # (batch, posn, n_heads, d_head)
        return self.k, self.v
        ### END SOLUTION


class KVCache:
    """Every layer's keys and values: self.layers[i] is the LayerCache of block i."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        ### BEGIN SOLUTION
        self.layers = [LayerCache() for _ in range(cfg.n_layers)]
        ### END SOLUTION

    @property
    def n_positions(self) -> int:
        """How many positions every layer has cached (they all see the same tokens)."""
        return len(self.layers[0])

    def size_bytes(self) -> int:
        """The memory the cached keys and values take."""
        tensors = [t for layer in self.layers for t in (layer.k, layer.v) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


class CachedAttention(Attention):
    """Notebook 05's attention for new positions only, reading and extending one layer's LayerCache."""

    def project_qkv(
        self, x: Float[Tensor, "batch new d_model"]
    ) -> tuple[Float[Tensor, "batch new n_heads d_head"], ...]:
        """Written for you: notebook 05's q, k and v of the positions in x, computed as one matrix product.

        The same numbers as three einsums with W_Q, W_K, W_V (plus b_Q, b_K, b_V), only faster on a CPU:
        c1p1.fused keeps the three weights side by side as one (d_model, 3 * n_heads * d_head) matrix.
        """
        from c1p1.fused import fused_qkv  # the course's library: the weights arranged once, not per token

        W, b = fused_qkv(self)  # (d_model, 3 * n_heads * d_head), (3 * n_heads * d_head,)
        qkv = (x @ W + b).unflatten(-1, (3, self.cfg.n_heads, self.cfg.d_head))  # (batch, new, 3, n_heads, d_head)
        return qkv.unbind(dim=2)  # q, k, v: each (batch, new, n_heads, d_head)

    def forward(
        self, normalized_resid_pre: Float[Tensor, "batch new d_model"], cache: LayerCache
    ) -> Float[Tensor, "batch new d_model"]:
        """Attend from the new positions to every cached position and to themselves; append their k and v."""
        ### BEGIN SOLUTION
        past = len(cache)  # positions cached before this call
        q, k_new, v_new = self.project_qkv(normalized_resid_pre)  # each (batch, new, n_heads, d_head)
        k, v = cache.append(k_new, v_new)  # each (batch, past + new, n_heads, d_head)
        scores = einops.einsum(q, k, "b q h d, b k h d -> b h q k") / self.cfg.d_head**0.5  # (batch, n_heads, new, past + new)
        new, total = scores.shape[-2:]
        ones = torch.ones(new, total, dtype=torch.bool, device=scores.device)  # (new, past + new)
        future = ones.triu(diagonal=past + 1)  # (new, past + new): key j is after new query i when j > past + i
        pattern = scores.masked_fill(future, self.IGNORE).softmax(dim=-1)  # (batch, n_heads, new, past + new)
        z = einops.einsum(pattern, v, "b h q k, b k h d -> b q h d")  # (batch, new, n_heads, d_head)
        return einops.einsum(z, self.W_O, "b q h d, h d m -> b q m") + self.b_O  # (batch, new, d_model)
        ### END SOLUTION


class CachedPosEmbed(PosEmbed):
    """Notebook 03's PosEmbed for tokens that start at position `offset` instead of 0."""

    def forward(self, tokens: Int[Tensor, "batch new"], offset: int) -> Float[Tensor, "batch new d_model"]:
        """Return W_pos[offset .. offset + new - 1] repeated over the batch."""
        ### BEGIN SOLUTION
        batch, new = tokens.shape
        rows = self.W_pos[offset : offset + new]  # (new, d_model)
        return rows.unsqueeze(0).expand(batch, new, rows.shape[-1])  # (batch, new, d_model)
        ### END SOLUTION


class CachedBlock(TransformerBlock):
    """Notebook 07's block, whose attention reads and extends this layer's LayerCache."""

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.attn = CachedAttention(cfg)  # same name, same parameters: blocks.i.attn.W_Q, ...

    def forward(self, resid_pre: Float[Tensor, "batch new d_model"], cache: LayerCache) -> Float[Tensor, "batch new d_model"]:
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre), cache)  # (batch, new, d_model)
        return resid_mid + self.mlp(self.ln2(resid_mid))  # (batch, new, d_model)


class CachedTransformer(nn.Module):
    """GPT-2 that runs only the new tokens, reading and extending a KVCache."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = CachedPosEmbed(cfg)
        self.blocks = nn.ModuleList([CachedBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg)
        self.unembed = Unembed(cfg)

    def forward(
        self, tokens: Int[Tensor, "batch new"], cache: KVCache | None = None
    ) -> tuple[Float[Tensor, "batch new d_vocab"], KVCache]:
        """Logits for the new positions, and the cache extended by them."""
        if cache is None:
            cache = KVCache(self.cfg)
        offset = cache.n_positions  # read before the blocks append to the cache
        if offset + tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"{offset} cached + {tokens.shape[1]} new positions is more than n_ctx = {self.cfg.n_ctx}: "
                "the model has no positional embedding past that. Start again from a shorter context."
            )
        ### BEGIN SOLUTION
        residual = self.embed(tokens) + self.pos_embed(tokens, offset)  # (batch, new, d_model)
        for block, layer_cache in zip(self.blocks, cache.layers, strict=True):
            residual = block(residual, layer_cache)  # (batch, new, d_model)
        logits = self.unembed(self.ln_final(residual))  # (batch, new, d_vocab)
        return logits, cache
        ### END SOLUTION


@torch.no_grad()
def generate_with_cache(
    model: nn.Module, input_ids: Int[Tensor, "batch posn"], max_new_tokens: int, **sampling
) -> Int[Tensor, "batch posn_plus_new"]:
    """Prefill the cache with the prompt, then feed one new token per step; return prompt + new tokens.

    max_new_tokens forward passes in all: the prompt in one, then each new token but the last (returned, never fed).

    model(tokens, cache) -> (logits, cache) as CachedTransformer; sampling: keyword arguments of
    sample_next_token (temperature, top_k, top_p, freq_penalty, generator). temperature=0.0 is greedy.
    """
    if input_ids.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise ValueError(
            f"a {input_ids.shape[1]}-token prompt and {max_new_tokens} new tokens need more than n_ctx = "
            f"{model.cfg.n_ctx} positions. Ask for fewer new tokens or shorten the prompt."
        )
    ### BEGIN SOLUTION
    logits, cache = model(input_ids)  # (batch, posn, d_vocab): the whole prompt at once, into a fresh cache
    for step in range(max_new_tokens):
        next_ids = sample_next_token(input_ids, logits[:, -1], **sampling)  # (batch,)
        input_ids = torch.cat([input_ids, next_ids.unsqueeze(1)], dim=1)  # (batch, posn + step + 1)
        if step < max_new_tokens - 1:  # the last token is returned, never fed
            logits, cache = model(next_ids.unsqueeze(1), cache)  # (batch, 1, d_vocab): only the new token
    return input_ids
    ### END SOLUTION
