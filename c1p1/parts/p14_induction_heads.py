"""Generated from solutions/14_induction_heads.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from dataclasses import replace
from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
from tqdm.auto import tqdm
import copy
import torch
from c1p1.config import Config
from c1p1.parts.p02_embed import Embed
from c1p1.parts.p03_pos_embed import PosEmbed
from c1p1.parts.p05_attention import Attention
from c1p1.parts.p08_unembed import Unembed
from c1p1.parts.p09_full_model import get_log_probs

__all__ = ['AttnOnlyBlock', 'AttnOnlyTransformer', 'repeated_tokens', 'periodic_tokens', 'loss_by_half', 'train_induction', 'prev_token_score', 'induction_score', 'full_ov_circuit', 'full_qk_circuit', 'induction_qk_circuit', 'composition_score', 'ablate_head']

class AttnOnlyBlock(nn.Module):
    """One layer of the attention-only model: resid_post = resid_pre + attn(resid_pre); no LayerNorm, no MLP."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.attn = Attention(cfg)

    def forward(self, resid_pre: Float[Tensor, "batch posn d_model"]) -> Float[Tensor, "batch posn d_model"]:
        return resid_pre + self.attn(resid_pre)  # (batch, posn, d_model)


class AttnOnlyTransformer(nn.Module):
    """Embeddings, attention-only blocks (heads_per_layer[i] heads in block i) and the unembedding."""

    def __init__(self, cfg: Config, heads_per_layer: tuple[int, ...] = (3, 1)):
        super().__init__()
        self.cfg = cfg
        self.heads_per_layer = tuple(heads_per_layer)
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        # Each block gets a copy of cfg with its own number of heads.
        self.blocks = nn.ModuleList([AttnOnlyBlock(replace(cfg, n_heads=n)) for n in self.heads_per_layer])
        self.unembed = Unembed(cfg)

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_vocab"]:
        residual = self.embed(tokens) + self.pos_embed(tokens)  # (batch, posn, d_model)
        for block in self.blocks:
            residual = block(residual)  # (batch, posn, d_model); each attn keeps its pattern in .pattern
        return self.unembed(residual)  # (batch, posn, d_vocab)


def repeated_tokens(batch: int, seq_len: int, d_vocab: int, seed: int) -> Int[Tensor, "batch two_seq_len"]:
    """seq_len different random tokens, then the same seq_len tokens again, drawn on the CPU from a seeded generator."""
    if seq_len > d_vocab:
        raise ValueError(f"{seq_len} different tokens cannot be drawn from a vocabulary of {d_vocab}")
    gen = torch.Generator().manual_seed(seed)
    shuffled = torch.rand(batch, d_vocab, generator=gen, device=gen.device).argsort(dim=-1)  # (batch, d_vocab)
    first = shuffled[:, :seq_len]  # (batch, seq_len): seq_len different tokens per row; callers move it
    return torch.cat([first, first], dim=1)  # (batch, 2 * seq_len)


def periodic_tokens(
    batch: int, n_ctx: int, d_vocab: int, min_period: int, max_period: int, gen: torch.Generator
) -> Int[Tensor, "batch n_ctx"]:
    """Training data: each sequence repeats its own random block, of min_period..max_period tokens, n_ctx long."""
    block = torch.randint(0, d_vocab, (batch, max_period), generator=gen, device=gen.device)  # (batch, max_period)
    period = torch.randint(min_period, max_period + 1, (batch, 1), generator=gen, device=gen.device)  # (batch, 1)
    index = torch.arange(n_ctx, device=gen.device) % period  # (batch, n_ctx): position i reads block[i mod period]
    return block.gather(1, index)  # (batch, n_ctx)


def loss_by_half(model: nn.Module, tokens: Int[Tensor, "batch two_seq_len"], seq_len: int) -> tuple[float, float]:
    """Mean loss on the first half's predictions (tokens 1..seq_len-1) and on the repeated half's (seq_len+1..)."""
    with torch.no_grad():
        log_probs = get_log_probs(model(tokens), tokens)  # (batch, 2 * seq_len - 1): entry i predicts token i + 1
    return -log_probs[:, : seq_len - 1].mean().item(), -log_probs[:, seq_len:].mean().item()


def train_induction(
    model: nn.Module, steps: int, lr: float, batch: int, seed: int, min_period: int, weight_decay: float,
    eval_batch: Int[Tensor, "eval_batch two_seq_len"], seq_len: int, eval_every: int = 25, probe=None,
) -> list[tuple[float, ...]]:
    """Train on periodic_tokens; return [(step, loss on the first half, loss on the repeated half, *probe)].

    probe(model), when given, is called right after each evaluation, while every attention layer still holds
    the evaluation batch's pattern; the numbers it returns (a tuple) are added to that row.
    """
    device = eval_batch.device
    gen = torch.Generator().manual_seed(seed)  # the data are drawn on the CPU, then moved: the same on every device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    model.train()
    for step in tqdm(range(steps), desc="training"):
        if step % eval_every == 0:
            history.append((step, *loss_by_half(model, eval_batch, seq_len), *(probe(model) if probe else ())))
        tokens = periodic_tokens(batch, model.cfg.n_ctx, model.cfg.d_vocab, min_period, seq_len, gen)  # (batch, n_ctx)
        loss = -get_log_probs(model(tokens.to(device)), tokens.to(device)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    history.append((steps, *loss_by_half(model, eval_batch, seq_len), *(probe(model) if probe else ())))
    model.eval()
    return history


def prev_token_score(pattern: Float[Tensor, "batch n_heads query_pos key_pos"]) -> Float[Tensor, "n_heads"]:
    """Mean attention from each position to the one before it, over the batch and positions 1..posn-1."""
    ### BEGIN SOLUTION
    to_previous = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # (batch, n_heads, posn - 1): [.., i, i - 1]
    return to_previous.mean(dim=(0, -1))  # (n_heads,)
    ### END SOLUTION


def induction_score(pattern: Float[Tensor, "batch n_heads query_pos key_pos"], seq_len: int) -> Float[Tensor, "n_heads"]:
    """Mean attention from each query q >= seq_len, to the last, to key q - seq_len + 1, over the batch."""
    ### BEGIN SOLUTION
    stripe = pattern.diagonal(offset=1 - seq_len, dim1=-2, dim2=-1)  # (batch, n_heads, posn - seq_len + 1): q = seq_len - 1 ..
    return stripe[..., 1:].mean(dim=(0, -1))  # (n_heads,): queries seq_len .. posn - 1
    ### END SOLUTION


def full_ov_circuit(model: nn.Module, layer: int, head: int) -> FactoredMatrix:
    """W_E W_V[head] W_O[head] W_U as a FactoredMatrix (rows: attended token, columns: output logits).

    Factors: A of shape Float[Tensor, "d_vocab d_head"], B of shape Float[Tensor, "d_head d_vocab"].
    """
    from transformer_lens import FactoredMatrix  # TransformerLens's matrix kept as two factors

    ### BEGIN SOLUTION
    attn = model.blocks[layer].attn
    left = model.embed.W_E @ attn.W_V[head]  # (d_vocab, d_head)
    right = attn.W_O[head] @ model.unembed.W_U  # (d_head, d_vocab)
    return FactoredMatrix(left, right)
    ### END SOLUTION


def full_qk_circuit(model: nn.Module, layer: int, head: int) -> FactoredMatrix:
    """W_E W_Q[head] W_K[head]^T W_E^T as a FactoredMatrix (rows: query token, columns: key token).

    Factors: A of shape Float[Tensor, "d_vocab d_head"], B of shape Float[Tensor, "d_head d_vocab"].
    """
    from transformer_lens import FactoredMatrix  # TransformerLens's matrix kept as two factors

    ### BEGIN SOLUTION
    attn = model.blocks[layer].attn
    queries = model.embed.W_E @ attn.W_Q[head]  # (d_vocab, d_head)
    keys = model.embed.W_E @ attn.W_K[head]  # (d_vocab, d_head)
    return FactoredMatrix(queries, keys.T)
    ### END SOLUTION


def induction_qk_circuit(model: nn.Module, prev_head: int, induction_head: int) -> FactoredMatrix:
    """Head 1.induction_head's attention score from a query token (rows) to the token *before* the key position
    (columns), along the path where head 0.prev_head copied that token into the key position (K-composition).

    A FactoredMatrix of shape (d_vocab, d_vocab) whose factors meet at d_head or d_model; positions, biases and the
    1/sqrt(d_head) scale left out.
    """
    from transformer_lens import FactoredMatrix  # TransformerLens's matrix kept as two factors

    ### BEGIN SOLUTION
    a0, a1 = model.blocks[0].attn, model.blocks[1].attn
    copied = model.embed.W_E @ a0.W_V[prev_head] @ a0.W_O[prev_head]  # (d_vocab, d_model): written at the next position
    keys = copied @ a1.W_K[induction_head]  # (d_vocab, d_head): the key computed from that copy
    queries = model.embed.W_E @ a1.W_Q[induction_head]  # (d_vocab, d_head)
    return FactoredMatrix(queries, keys.T)
    ### END SOLUTION


def composition_score(W_A: Float[Tensor, "d_in d_mid"], W_B: Float[Tensor, "d_mid d_out"]) -> Float[Tensor, ""]:
    """||W_A W_B||_F / (||W_A||_F ||W_B||_F): how much of what W_A writes W_B reads (0-dim tensor)."""
    ### BEGIN SOLUTION
    product = torch.linalg.matrix_norm(W_A @ W_B)  # Frobenius norm by default
    return product / (torch.linalg.matrix_norm(W_A) * torch.linalg.matrix_norm(W_B))
    ### END SOLUTION


def ablate_head(model: nn.Module, layer: int, head: int) -> nn.Module:
    """A copy of model in which head `head` of block `layer` adds nothing to the residual stream.

    Zero the one parameter every path through that head passes; every other parameter (the layer's b_O, the
    other heads, and this head's W_Q, W_K, W_V and biases) is unchanged, and the model passed in is left as
    it was.
    """
    ### BEGIN SOLUTION
    ablated = copy.deepcopy(model)
    with torch.no_grad():
        ablated.blocks[layer].attn.W_O[head] = 0.0  # (d_head, d_model) of zeros: z^h W_O^h = 0
    return ablated
    ### END SOLUTION
