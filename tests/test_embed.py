"""test_embed and test_pos_embed: pass the solutions and correct variants; reject the stubs and each known mistake by name."""

from __future__ import annotations

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import C1P1_tests as tests
from c1p1 import Config
from c1p1.parts import Embed, PosEmbed
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions


def embed_variant(body):
    """An Embed whose forward is `body(self, tokens)`."""
    return type("Embed", (Embed,), {"forward": lambda self, tokens: body(self, tokens)})


def pos_variant(body):
    """A PosEmbed whose forward is `body(self, tokens)`."""
    return type("PosEmbed", (PosEmbed,), {"forward": lambda self, tokens: body(self, tokens)})


def rows(s, tokens):
    return s.W_pos[: tokens.shape[1]]  # (posn, d_model)


# --------------------------------------------------------------------------------------- Embed

EMBED_CORRECT = {
    "solution notebook": lambda: definitions("solutions/02_embed.ipynb")["Embed"],
    "one-hot matmul": lambda: embed_variant(lambda s, t: F.one_hot(t, s.cfg.d_vocab).float() @ s.W_E),
    "F.embedding": lambda: embed_variant(lambda s, t: F.embedding(t, s.W_E)),
    "torch.index_select": lambda: embed_variant(
        lambda s, t: torch.index_select(s.W_E, 0, t.flatten()).reshape(*t.shape, s.cfg.d_model)
    ),
    "einops.rearrange of a flat lookup": lambda: embed_variant(
        lambda s, t: einops.rearrange(s.W_E[t.flatten()], "(b p) d -> b p d", b=t.shape[0])
    ),
}


class TransposedEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.zeros(cfg.d_model, cfg.d_vocab))  # (d_model, d_vocab): wrong

    def forward(self, tokens):
        return self.W_E.T[tokens]


class LayerEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embedding = nn.Embedding(cfg.d_vocab, cfg.d_model)

    def forward(self, tokens):
        return self.embedding(tokens)


EMBED_MISTAKES = {
    "ids minus one": (lambda s, t: s.W_E[t - 1], ["shifted by one", "tokens - 1"]),
    "ids plus one": (lambda s, t: s.W_E[t + 1], ["IndexError", "adding 1"]),
    "ids plus one, wrapped": (lambda s, t: s.W_E[(t + 1) % s.cfg.d_vocab], ["shifted by one", "tokens + 1"]),
    "next token's embedding": (lambda s, t: s.W_E[t.roll(-1, dims=-1)], ["next token"]),
    "previous token's embedding": (lambda s, t: s.W_E[t.roll(1, dims=-1)], ["previous token"]),
    "indexed by column": (lambda s, t: s.W_E[:, t], ["IndexError", "W_E[:, tokens]"]),
    "rows picked, dimensions in the wrong order": (lambda s, t: s.W_E.T[:, t], ["wrong dimension"]),
    "transposed lookup result": (lambda s, t: s.W_E[t].transpose(-1, -2), ["d_model"]),
    "the whole table": (lambda s, t: s.W_E, ["whole table"]),
    "W_E.T returned": (lambda s, t: s.W_E.T, ["transposed"]),
    "one-hot never multiplied": (lambda s, t: F.one_hot(t, s.cfg.d_vocab).float(), ["one-hot"]),
    "first sequence only": (lambda s, t: s.W_E[t[0]], ["batch dimension is missing"]),
    "first sequence broadcast": (lambda s, t: s.W_E[t[:1]].expand(t.shape[0], -1, -1), ["first sequence"]),
    "flattened": (lambda s, t: s.W_E[t.flatten()], ["flattened"]),
    "GPT-2's d_vocab hard-coded": (lambda s, t: F.one_hot(t, 50257).float() @ s.W_E, ["smaller Config"]),
}


@pytest.mark.parametrize("name", EMBED_CORRECT)
def test_embed_correct_variants_pass(name, reference):
    tests.test_embed(EMBED_CORRECT[name]())


def test_embed_stub_is_not_done(reference):
    not_done(tests.test_embed, definitions("notebooks/02_embed.ipynb")["Embed"])


@pytest.mark.parametrize("name", EMBED_MISTAKES)
def test_embed_mistakes_are_named(name, reference):
    body, keywords = EMBED_MISTAKES[name]
    fails(tests.test_embed, embed_variant(body), *keywords)


def test_embed_transposed_parameter(reference):
    fails(tests.test_embed, TransposedEmbed, "looks transposed", "W_E (50257, 768)")


def test_embed_nn_embedding_submodule_is_named(reference):
    fails(tests.test_embed, LayerEmbed, "missing", "W_E", "unexpected", "embedding.weight")


def test_embed_instance_instead_of_class(reference):
    fails(tests.test_embed, Embed(Config()), "class itself")


# ------------------------------------------------------------------------------------ PosEmbed

POS_CORRECT = {
    "solution notebook": lambda: definitions("solutions/03_pos_embed.ipynb")["PosEmbed"],
    "einops.repeat": lambda: pos_variant(
        lambda s, t: einops.repeat(rows(s, t), "p d -> b p d", b=t.shape[0])
    ),
    ".expand": lambda: pos_variant(lambda s, t: rows(s, t).expand(t.shape[0], -1, -1)),
    ".unsqueeze(0).repeat": lambda: pos_variant(lambda s, t: rows(s, t).unsqueeze(0).repeat(t.shape[0], 1, 1)),
    "torch.arange indexing": lambda: pos_variant(
        lambda s, t: s.W_pos[torch.arange(t.shape[1], device=t.device)].expand(t.shape[0], -1, -1)
    ),
    "arange grid of positions": lambda: pos_variant(
        lambda s, t: s.W_pos[torch.arange(t.shape[1], device=t.device).expand_as(t)]
    ),
    "broadcast against zeros": lambda: pos_variant(
        lambda s, t: torch.zeros(*t.shape, s.cfg.d_model, device=t.device) + rows(s, t)
    ),
}


class TransposedPosEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.W_pos = nn.Parameter(torch.zeros(cfg.d_model, cfg.n_ctx))  # (d_model, n_ctx): wrong

    def forward(self, tokens):
        return self.W_pos.T[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)


POS_MISTAKES = {
    "indexed by token ids": (lambda s, t: s.W_pos[t], ["IndexError", "token ids", "positions"]),
    "indexed by token ids, wrapped": (lambda s, t: s.W_pos[t % s.cfg.n_ctx], ["indexed with the token ids"]),
    "no batch dimension": (lambda s, t: rows(s, t), ["batch dimension is missing", "einops.repeat"]),
    "batch of one": (lambda s, t: rows(s, t).unsqueeze(0), ["size 1", "expand"]),
    "positions start at 1": (
        lambda s, t: s.W_pos[1 : t.shape[1] + 1].expand(t.shape[0], -1, -1),
        ["start at 1", "W_pos[:posn]"],
    ),
    "positions reversed": (lambda s, t: rows(s, t).flip(0).expand(t.shape[0], -1, -1), ["backwards"]),
    "whole table": (lambda s, t: s.W_pos.expand(t.shape[0], -1, -1), ["whole table"]),
    "W_pos alone": (lambda s, t: s.W_pos, ["whole table"]),
    "GPT-2's d_model hard-coded": (lambda s, t: rows(s, t).expand(t.shape[0], t.shape[1], 768), ["smaller Config"]),
}


@pytest.mark.parametrize("name", POS_CORRECT)
def test_pos_embed_correct_variants_pass(name, reference):
    tests.test_pos_embed(POS_CORRECT[name]())


def test_pos_embed_stub_is_not_done(reference):
    not_done(tests.test_pos_embed, definitions("notebooks/03_pos_embed.ipynb")["PosEmbed"])


@pytest.mark.parametrize("name", POS_MISTAKES)
def test_pos_embed_mistakes_are_named(name, reference):
    body, keywords = POS_MISTAKES[name]
    fails(tests.test_pos_embed, pos_variant(body), *keywords)


def test_pos_embed_transposed_parameter(reference):
    fails(tests.test_pos_embed, TransposedPosEmbed, "looks transposed", "W_pos (1024, 768)")


def test_random_case_token_ids_differ_from_positions():
    from c1p1.checks.embeddings import pos_tokens

    t = pos_tokens(3, 64, 503, 64, seed=0)  # (3, 64)
    positions = torch.arange(64)  # (64,)
    assert t.shape == (3, 64) and int(t.max()) < 64
    assert not (t == positions).any() and not (t == (positions + 1) % 64).any()
