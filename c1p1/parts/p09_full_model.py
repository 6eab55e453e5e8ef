"""Generated from solutions/09_full_model.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
from c1p1.config import Config
from c1p1.parts.p01_layernorm import LayerNorm
from c1p1.parts.p02_embed import Embed
from c1p1.parts.p03_pos_embed import PosEmbed
from c1p1.parts.p07_transformer_block import TransformerBlock
from c1p1.parts.p08_unembed import Unembed

__all__ = ['DemoTransformer', 'get_log_probs']

class DemoTransformer(nn.Module):
    """GPT-2: embeddings, n_layers blocks, a final LayerNorm and the unembedding."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg)
        self.unembed = Unembed(cfg)

    def forward(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, "batch posn d_vocab"]:
        """Return the logits for every position: both embeddings, every block in turn, ln_final, then the unembedding."""
        ### BEGIN SOLUTION
        residual = self.embed(tokens) + self.pos_embed(tokens)  # (batch, posn, d_model)
        for block in self.blocks:
            residual = block(residual)  # (batch, posn, d_model)
        return self.unembed(self.ln_final(residual))  # (batch, posn, d_vocab)
        ### END SOLUTION


def get_log_probs(
    logits: Float[Tensor, "batch posn d_vocab"], tokens: Int[Tensor, "batch posn"]
) -> Float[Tensor, "batch posn_minus_1"]:
    """The log probability the model gave to each actual next token (the last position predicts nothing)."""
    ### BEGIN SOLUTION
    log_probs = logits.log_softmax(dim=-1)  # (batch, posn, d_vocab)
    next_tokens = tokens[:, 1:]  # (batch, posn - 1)
    return log_probs[:, :-1].gather(dim=-1, index=next_tokens.unsqueeze(-1)).squeeze(-1)  # (batch, posn - 1)
    ### END SOLUTION
