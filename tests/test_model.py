"""test_unembed, test_demo_transformer, test_get_log_probs: correct variants pass; the stubs and known mistakes are named."""

from __future__ import annotations

import functools

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import C1P1_tests as tests
from c1p1 import parts
from c1p1.parts import MLP, Attention, DemoTransformer, LayerNorm, TransformerBlock, Unembed, gelu_new, get_log_probs
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

# ------------------------------------------------------------------------------------------ Unembed


def unembed_variant(body):
    """An Unembed whose forward is `body(self, x)`."""
    return type("Unembed", (Unembed,), {"forward": lambda self, x: body(self, x)})


class TransposedUnembed(nn.Module):
    """W_U stored as (d_vocab, d_model), the way nn.Linear stores its weight."""

    def __init__(self, cfg):
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))  # (d_vocab, d_model)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))  # (d_vocab,)

    def forward(self, x):
        return x @ self.W_U.T + self.b_U  # (batch, posn, d_vocab)


UNEMBED_CORRECT = {
    "solution notebook": lambda: definitions("solutions/08_unembed.ipynb")["Unembed"],
    "einsum": lambda: unembed_variant(
        lambda s, x: einops.einsum(x, s.W_U, "b p m, m v -> b p v") + s.b_U
    ),
    "F.linear": lambda: unembed_variant(lambda s, x: F.linear(x, s.W_U.T, s.b_U)),
    "torch.addmm on flattened positions": lambda: unembed_variant(
        lambda s, x: torch.addmm(s.b_U, x.reshape(-1, x.shape[-1]), s.W_U).reshape(*x.shape[:-1], -1)
    ),
}

UNEMBED_MISTAKES = {
    "b_U dropped": (lambda s, x: x @ s.W_U, ["b_U"]),
    "log_softmax returned": (lambda s, x: (x @ s.W_U + s.b_U).log_softmax(-1), ["log probabilities"]),
    "softmax returned": (lambda s, x: (x @ s.W_U + s.b_U).softmax(-1), ["probabilities", "raw logits"]),
    "normalised again": (
        lambda s, x: F.layer_norm(x, (x.shape[-1],), eps=1e-5) @ s.W_U + s.b_U,
        ["normalised again"],
    ),
}


@pytest.mark.parametrize("name", UNEMBED_CORRECT)
def test_unembed_correct_variants_pass(name, reference):
    tests.test_unembed(UNEMBED_CORRECT[name]())


def test_unembed_stub_is_not_done(reference):
    not_done(tests.test_unembed, definitions("notebooks/08_unembed.ipynb")["Unembed"])


@pytest.mark.parametrize("name", UNEMBED_MISTAKES)
def test_unembed_mistakes_are_named(name, reference):
    body, keywords = UNEMBED_MISTAKES[name]
    fails(tests.test_unembed, unembed_variant(body), *keywords)


def test_unembed_transposed_weight_is_named(reference):
    message = fails(tests.test_unembed, TransposedUnembed, "W_U", "transposed")
    assert "(50257, 768)" in message


# ---------------------------------------------------------------------------------- DemoTransformer


def model_variant(forward, blocks=None):
    """A DemoTransformer with forward `forward(self, tokens)` and, optionally, blocks built by `blocks(cfg)`."""
    attrs = {"forward": lambda self, tokens: forward(self, tokens)}
    if blocks is not None:

        def __init__(self, cfg):
            DemoTransformer.__init__(self, cfg)
            self.blocks = blocks(cfg)

        attrs["__init__"] = __init__
    return type("DemoTransformer", (DemoTransformer,), attrs)


def run_blocks(self, residual):
    for block in self.blocks:
        residual = block(residual)  # (batch, posn, d_model)
    return residual


class SequentialModel(nn.Module):
    """Blocks in an nn.Sequential, called as one module."""

    def __init__(self, cfg):
        super().__init__()
        from c1p1.parts import Embed, PosEmbed

        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg)
        self.unembed = Unembed(cfg)

    def forward(self, tokens):
        residual = self.embed(tokens) + self.pos_embed(tokens)  # (batch, posn, d_model)
        return self.unembed(self.ln_final(self.blocks(residual)))  # (batch, posn, d_vocab)


def parts_differently(self, tokens):
    """Same computation, put together differently: positions first, reduce over blocks, unembed by hand."""
    residual = self.pos_embed(tokens) + self.embed(tokens)  # (batch, posn, d_model)
    residual = functools.reduce(lambda r, block: block(r), self.blocks, residual)  # (batch, posn, d_model)
    normalised = self.ln_final(residual)  # (batch, posn, d_model)
    return einops.einsum(normalised, self.unembed.W_U, "b p m, m v -> b p v") + self.unembed.b_U


MODEL_CORRECT = {
    "solution notebook": lambda: definitions("solutions/09_full_model.ipynb")["DemoTransformer"],
    "loop over an nn.Sequential": lambda: model_variant(
        lambda s, t: s.unembed(s.ln_final(run_blocks(s, s.embed(t) + s.pos_embed(t)))),
        blocks=lambda cfg: nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg.n_layers)]),
    ),
    "nn.Sequential called as one module": lambda: SequentialModel,
    "the parts used differently": lambda: model_variant(parts_differently),
}

MODEL_MISTAKES = {
    "ln_final skipped": (
        lambda s, t: s.unembed(run_blocks(s, s.embed(t) + s.pos_embed(t))),
        None,
        ["ln_final is skipped"],
    ),
    "positional embedding missing": (
        lambda s, t: s.unembed(s.ln_final(run_blocks(s, s.embed(t)))),
        None,
        ["positional embedding is missing"],
    ),
    "token embedding missing": (
        lambda s, t: s.unembed(s.ln_final(run_blocks(s, s.pos_embed(t)))),
        None,
        ["token embedding is missing"],
    ),
    "n_layers - 1 blocks built": (
        lambda s, t: s.unembed(s.ln_final(run_blocks(s, s.embed(t) + s.pos_embed(t)))),
        lambda cfg: nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers - 1)]),
        ["number of blocks is wrong", "cfg.n_layers", "11 blocks"],
    ),
    "hard-coded 12 blocks": (
        lambda s, t: s.unembed(s.ln_final(run_blocks(s, s.embed(t) + s.pos_embed(t)))),
        lambda cfg: nn.ModuleList([TransformerBlock(cfg) for _ in range(12)]),
        ["number of blocks is wrong", "cfg.n_layers", "n_layers = 3"],
    ),
    "last block never run": (
        lambda s, t: s.unembed(s.ln_final(functools.reduce(lambda r, b: b(r), s.blocks[:-1], s.embed(t) + s.pos_embed(t)))),
        None,
        ["only 11 of the 12 blocks run"],
    ),
    "residual added twice": (
        lambda s, t: s.unembed(s.ln_final(functools.reduce(lambda r, b: r + b(r), s.blocks, s.embed(t) + s.pos_embed(t)))),
        None,
        ["added twice"],
    ),
    "residual stream returned": (
        lambda s, t: s.ln_final(run_blocks(s, s.embed(t) + s.pos_embed(t))),
        None,
        ["residual stream", "d_vocab"],
    ),
    "log probabilities returned": (
        lambda s, t: s.unembed(s.ln_final(run_blocks(s, s.embed(t) + s.pos_embed(t)))).log_softmax(-1),
        None,
        ["log probabilities"],
    ),
}


@pytest.mark.parametrize("name", MODEL_CORRECT)
def test_demo_transformer_correct_variants_pass(name, reference):
    tests.test_demo_transformer(MODEL_CORRECT[name]())


def test_demo_transformer_stub_is_not_done(reference):
    not_done(tests.test_demo_transformer, definitions("notebooks/09_full_model.ipynb")["DemoTransformer"])


@pytest.mark.parametrize("name", MODEL_MISTAKES)
def test_demo_transformer_mistakes_are_named(name, reference):
    forward, blocks, keywords = MODEL_MISTAKES[name]
    fails(tests.test_demo_transformer, model_variant(forward, blocks), *keywords)


def test_demo_transformer_misnamed_submodules(reference):
    class Renamed(SequentialModel):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.layers = self.blocks
            del self.blocks

        def forward(self, tokens):
            residual = self.embed(tokens) + self.pos_embed(tokens)  # (batch, posn, d_model)
            return self.unembed(self.ln_final(self.layers(residual)))  # (batch, posn, d_vocab)

    fails(tests.test_demo_transformer, Renamed, "unexpected: layers.0", "blocks (an nn.ModuleList)")


def test_demo_transformer_without_pos_embed_module(reference):
    class NoPos(SequentialModel):
        def __init__(self, cfg):
            super().__init__(cfg)
            del self.pos_embed

        def forward(self, tokens):
            return self.unembed(self.ln_final(self.blocks(self.embed(tokens))))  # (batch, posn, d_vocab)

    fails(tests.test_demo_transformer, NoPos, "missing:", "pos_embed.W_pos")


def test_demo_transformer_reports_the_learners_line(reference):
    def broken(self, tokens):
        return self.unembed(self.ln_final(self.embed(tokens) @ self.pos_embed(tokens)))

    message = fails(tests.test_demo_transformer, model_variant(broken), "RuntimeError")
    assert "self.embed(tokens) @ self.pos_embed(tokens)" in message


# ------------------------------------------------------------------------------------ get_log_probs


def log_softmax_float64(logits, tokens):
    probs = torch.softmax(logits.double(), dim=-1)  # (batch, posn, d_vocab)
    log_probs = probs.log()[:, :-1]  # (batch, posn - 1, d_vocab)
    return log_probs.gather(-1, tokens[:, 1:, None]).squeeze(-1).to(logits.dtype)  # (batch, posn - 1)


def cross_entropy_based(logits, tokens):
    batch, posn, d_vocab = logits.shape
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, d_vocab), tokens[:, 1:].reshape(-1), reduction="none")
    return -loss.reshape(batch, posn - 1)  # (batch, posn - 1)


def cross_entropy_transposed(logits, tokens):
    # cross_entropy also takes (batch, classes, positions) directly.
    return -F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")  # (batch, posn - 1)


def advanced_indexing(logits, tokens):
    log_probs = logits.log_softmax(-1)[:, :-1]  # (batch, posn - 1, d_vocab)
    batch, steps = tokens.shape[0], tokens.shape[1] - 1
    rows = torch.arange(batch, device=tokens.device)[:, None]  # (batch, 1)
    cols = torch.arange(steps, device=tokens.device)[None, :]  # (1, posn - 1)
    return log_probs[rows, cols, tokens[:, 1:]]  # (batch, posn - 1)


def logsumexp_by_hand(logits, tokens):
    chosen = logits[:, :-1].gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)  # (batch, posn - 1)
    return chosen - logits[:, :-1].logsumexp(-1)  # (batch, posn - 1)


LOG_PROBS_CORRECT = {
    "solution notebook": lambda: definitions("solutions/09_full_model.ipynb")["get_log_probs"],
    "torch.gather (canonical)": lambda: get_log_probs,
    "-F.cross_entropy(reduction='none')": lambda: cross_entropy_based,
    "F.cross_entropy on (batch, classes, posn)": lambda: cross_entropy_transposed,
    "advanced indexing": lambda: advanced_indexing,
    "log(softmax) in float64, cast back": lambda: log_softmax_float64,
    "logit minus logsumexp": lambda: logsumexp_by_hand,
}


def lp(logits):
    return logits.log_softmax(-1)  # (batch, posn, d_vocab)


LOG_PROBS_MISTAKES = {
    "own token (shift 0)": (lambda z, t: lp(z)[:, :-1].gather(-1, t[:, :-1, None])[..., 0], ["off by one"]),
    "predicted from position 1": (lambda z, t: lp(z)[:, 1:].gather(-1, t[:, 1:, None])[..., 0], ["off by one"]),
    "probabilities": (
        lambda z, t: z.softmax(-1)[:, :-1].gather(-1, t[:, 1:, None])[..., 0],
        ["probabilities, not log probabilities"],
    ),
    "raw logits": (lambda z, t: z[:, :-1].gather(-1, t[:, 1:, None])[..., 0], ["raw logits", "log_softmax"]),
    "negated": (lambda z, t: -lp(z)[:, :-1].gather(-1, t[:, 1:, None])[..., 0], ["sign"]),
    "softmax over positions": (
        lambda z, t: z.log_softmax(1)[:, :-1].gather(-1, t[:, 1:, None])[..., 0],
        ["wrong dimension"],
    ),
    "posn values (last position kept)": (
        lambda z, t: torch.cat([lp(z)[:, :-1].gather(-1, t[:, 1:, None])[..., 0], z[:, -1:, 0]], dim=1),
        ["posn - 1", "last position"],
    ),
    "gather not squeezed": (lambda z, t: lp(z)[:, :-1].gather(-1, t[:, 1:, None]), ["squeeze"]),
    "whole distribution": (lambda z, t: lp(z)[:, :-1], ["whole distribution"]),
    "float64 never cast back": (
        lambda z, t: z.double().log_softmax(-1)[:, :-1].gather(-1, t[:, 1:, None])[..., 0],
        ["dtype", "torch.float64"],
    ),
}


@pytest.mark.parametrize("name", LOG_PROBS_CORRECT)
def test_get_log_probs_correct_variants_pass(name, reference):
    tests.test_get_log_probs(LOG_PROBS_CORRECT[name]())


def test_get_log_probs_stub_is_not_done(reference):
    not_done(tests.test_get_log_probs, definitions("notebooks/09_full_model.ipynb")["get_log_probs"])


@pytest.mark.parametrize("name", LOG_PROBS_MISTAKES)
def test_get_log_probs_mistakes_are_named(name, reference):
    fn, keywords = LOG_PROBS_MISTAKES[name]
    fails(tests.test_get_log_probs, fn, *keywords)


def test_get_log_probs_wants_the_function(reference):
    fails(tests.test_get_log_probs, DemoTransformer, "wants the function get_log_probs")


# ------------------------------------------------------------------ the first divergence, for the whole model


class UnscaledAttention(Attention):
    """A learner's attention that forgot the 1/sqrt(d_head) scale."""

    def forward(self, x):
        q = torch.einsum("bpm,hmd->bphd", x, self.W_Q) + self.b_Q  # (batch, posn, n_heads, d_head)
        k = torch.einsum("bpm,hmd->bphd", x, self.W_K) + self.b_K  # (batch, posn, n_heads, d_head)
        v = torch.einsum("bpm,hmd->bphd", x, self.W_V) + self.b_V  # (batch, posn, n_heads, d_head)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k)  # (batch, n_heads, q, k): no scale
        posn = x.shape[1]
        future = torch.ones(posn, posn, dtype=torch.bool, device=x.device).triu(1)  # (q, k)
        pattern = scores.masked_fill(future, float("-inf")).softmax(-1)  # (batch, n_heads, q, k)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)  # (batch, posn, n_heads, d_head)
        return torch.einsum("bqhd,hdm->bqm", z, self.W_O) + self.b_O  # (batch, posn, d_model)


class BiaslessMLP(MLP):
    """A learner's MLP that leaves out b_out."""

    def forward(self, x):
        return gelu_new(x @ self.W_in + self.b_in) @ self.W_out  # (batch, posn, d_model)


def model_with(part: str, cls: type, layers=None):
    """The course's DemoTransformer with the learner's `cls` as `part` of the blocks in `layers` (all by default)."""

    class DemoTransformer(parts.DemoTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            for i, block in enumerate(self.blocks):
                if layers is None or i in layers:
                    setattr(block, part, cls(cfg))

    return DemoTransformer


def test_the_first_divergence_names_the_attention(reference):
    message = fails(tests.test_demo_transformer, model_with("attn", UnscaledAttention), "blocks.0.attn differs from",
                    "first", "every submodule before it matches", "run `tests.test_attention(UnscaledAttention)`")
    assert len(message.splitlines()) == 2
    whose = "GPT-2's" if reference.is_real else "the reference's"  # never the stand-in's weights called GPT-2's
    assert f"differs from {whose} first (on {whose} own input" in message


def test_the_first_divergence_is_the_first_wrong_block(reference):
    fails(tests.test_demo_transformer, model_with("mlp", BiaslessMLP, layers={2}), "blocks.2.mlp differs from",
          "run `tests.test_mlp(BiaslessMLP)`")


def test_the_first_divergence_names_a_wrong_embedding(reference):
    class DoubledEmbed(parts.Embed):
        def forward(self, tokens):
            return 2 * self.W_E[tokens]  # (batch, posn, d_model)

    class DemoTransformer(parts.DemoTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.embed = DoubledEmbed(cfg)

    fails(tests.test_demo_transformer, DemoTransformer, "embed differs from", "run `tests.test_embed(DoubledEmbed)`")


def test_the_first_divergence_names_a_block_wired_wrong(reference):
    class ParallelBlock(TransformerBlock):
        def forward(self, x):
            return x + self.attn(self.ln1(x)) + self.mlp(self.ln2(x))  # (batch, posn, d_model): MLP reads resid_pre

    class DemoTransformer(parts.DemoTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.blocks = nn.ModuleList([ParallelBlock(cfg) for _ in range(cfg.n_layers)])

    fails(tests.test_demo_transformer, DemoTransformer, "blocks.0 differs from",
          "run `tests.test_transformer_block(ParallelBlock)`")
