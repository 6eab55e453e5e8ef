"""Notebook 13's checks: correct variants pass, the stubs are not done, and each known mistake is named."""

from __future__ import annotations

import einops
import pytest
import torch
import torch.nn.functional as F

import C1P1_tests as tests
from c1p1.parts import (
    CachedAttention,
    CachedPosEmbed,
    CachedTransformer,
    KVCache,
    LayerCache,
    generate_with_cache,
    sample_next_token,
)
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

SOLUTION = "solutions/13_kv_cache.ipynb"
EXERCISE = "notebooks/13_kv_cache.ipynb"

# ---------------------------------------------------------------------------------------------- KVCache


def cache_class(append=None, layers=None):
    """A KVCache whose LayerCache.append is `append(self, k, v)` and whose layers are `layers(cfg)`."""
    entry = type("LayerCache", (LayerCache,), {"append": append}) if append else LayerCache

    def __init__(self, cfg):
        self.cfg = cfg
        self.layers = layers(cfg, entry) if layers else [entry() for _ in range(cfg.n_layers)]

    return type("KVCache", (KVCache,), {"__init__": __init__})


class ChunkList:
    """A layer cache that keeps a list of chunks and joins them when k or v is read."""

    def __init__(self):
        self.ks, self.vs = [], []

    k = property(lambda self: torch.cat(self.ks, dim=1) if self.ks else None)
    v = property(lambda self: torch.cat(self.vs, dim=1) if self.vs else None)

    def __len__(self):
        return sum(k.shape[1] for k in self.ks)

    def append(self, k_new, v_new):
        self.ks.append(k_new)
        self.vs.append(v_new)
        return self.k, self.v


def joined(self, k, v, dim=1, new_first=False, copies=1, swap=False, only_new=False):
    for _ in range(copies):
        parts_k = [k] if self.k is None else ([k, self.k] if new_first else [self.k, k])
        parts_v = [v] if self.v is None else ([v, self.v] if new_first else [self.v, v])
        self.k, self.v = torch.cat(parts_k, dim=dim), torch.cat(parts_v, dim=dim)
    if swap:
        self.k, self.v = self.v, self.k
    return (k, v) if only_new else (self.k, self.v)


CACHE_CORRECT = {
    "solution notebook": lambda: definitions(SOLUTION)["KVCache"],
    "a list of chunks joined on reading": lambda: cache_class(layers=lambda cfg, e: [ChunkList() for _ in range(cfg.n_layers)]),
    "layers built with map": lambda: cache_class(layers=lambda cfg, e: list(map(lambda _: e(), range(cfg.n_layers)))),
}

CACHE_MISTAKES = {
    "one LayerCache shared by all layers": (cache_class(layers=lambda cfg, e: [e()] * cfg.n_layers), ["same LayerCache object", "[LayerCache()] * n"]),
    "a hard-coded 12 layers": (cache_class(layers=lambda cfg, e: [e() for _ in range(12)]), ["cfg.n_layers = 3"]),
    "concatenated along the heads": (cache_class(append=lambda s, k, v: joined(s, k, v, dim=2)), ["wrong dimension", "dim=1"]),
    "new positions first": (cache_class(append=lambda s, k, v: joined(s, k, v, new_first=True)), ["before the cached ones"]),
    "keys and values swapped": (cache_class(append=lambda s, k, v: joined(s, k, v, swap=True)), ["swapped"]),
    "each chunk stored twice": (cache_class(append=lambda s, k, v: joined(s, k, v, copies=2)), ["appended twice"]),
    "append returns only the new keys": (cache_class(append=lambda s, k, v: joined(s, k, v, only_new=True)), ["not only the new ones"]),
    "append returns nothing": (cache_class(append=lambda s, k, v: (joined(s, k, v), None)[1]), ["return self.k, self.v"]),
}


@pytest.mark.parametrize("name", CACHE_CORRECT)
def test_kv_cache_correct_variants_pass(name, reference):
    tests.test_kv_cache(CACHE_CORRECT[name]())


@pytest.mark.parametrize("name", CACHE_MISTAKES)
def test_kv_cache_mistakes_are_named(name, reference):
    cls, keywords = CACHE_MISTAKES[name]
    fails(tests.test_kv_cache, cls, *keywords)


def test_kv_cache_stub_is_not_done(reference):
    not_done(tests.test_kv_cache, definitions(EXERCISE)["KVCache"])


def test_kv_cache_append_stub_is_not_done(reference):
    """With __init__ written and append still a stub, the message names append."""
    stub_entry = definitions(EXERCISE)["LayerCache"]
    message = not_done(tests.test_kv_cache, cache_class(layers=lambda cfg, e: [stub_entry() for _ in range(cfg.n_layers)]))
    assert "LayerCache.append" in message


def test_kv_cache_wants_the_class(reference):
    fails(tests.test_kv_cache, KVCache(_small_cfg()), "wants the class KVCache")


def _small_cfg():
    from c1p1.checks.core import SMALL

    return SMALL


# ------------------------------------------------------------------------------------- CachedAttention


def attention_variant(forward):
    return type("CachedAttention", (CachedAttention,), {"forward": forward})


def heads(self, x):
    """Queries, keys and values of the new positions, notebook 05's way: each (batch, new, n_heads, d_head)."""
    q = einops.einsum(x, self.W_Q, "b s m, h m d -> b s h d") + self.b_Q
    k = einops.einsum(x, self.W_K, "b s m, h m d -> b s h d") + self.b_K
    v = einops.einsum(x, self.W_V, "b s m, h m d -> b s h d") + self.b_V
    return q, k, v


def finish(self, q, k, v, hidden):
    """Scores, mask (True = hidden), softmax, values and the output projection."""
    scores = einops.einsum(q, k, "b q h d, b k h d -> b h q k") / self.cfg.d_head**0.5
    if hidden is not None:
        scores = scores.masked_fill(hidden, float("-inf"))
    z = einops.einsum(scores.softmax(-1), v, "b h q k, b k h d -> b q h d")
    return einops.einsum(z, self.W_O, "b q h d, h d m -> b q m") + self.b_O


def arange_mask(past, new, total, device):
    query = past + torch.arange(new, device=device)[:, None]  # (new, 1): absolute positions
    return torch.arange(total, device=device)[None, :] > query  # (new, total)


def einsum_attention(self, x, cache):
    past = len(cache)
    q, k_new, v_new = heads(self, x)
    k, v = cache.append(k_new, v_new)
    return finish(self, q, k, v, arange_mask(past, q.shape[1], k.shape[1], x.device))


def sdpa_attention(self, x, cache):
    past = len(cache)
    q, k_new, v_new = heads(self, x)
    k, v = cache.append(k_new, v_new)
    allowed = ~arange_mask(past, q.shape[1], k.shape[1], x.device)  # (new, total): True = may attend
    z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed)
    return einops.einsum(z, self.W_O, "b h q d, h d m -> b q m") + self.b_O


def direct_write_attention(self, x, cache):
    """Writes cache.k and cache.v itself instead of calling append."""
    past = len(cache)
    q, k_new, v_new = heads(self, x)
    cache.k = k_new if cache.k is None else torch.cat([cache.k, k_new], dim=1)
    cache.v = v_new if cache.v is None else torch.cat([cache.v, v_new], dim=1)
    return finish(self, q, cache.k, cache.v, arange_mask(past, q.shape[1], cache.k.shape[1], x.device))


def unshifted_mask(self, x, cache):
    q, k_new, v_new = heads(self, x)
    k, v = cache.append(k_new, v_new)
    scores = einops.einsum(q, k, "b q h d, b k h d -> b h q k") / self.cfg.d_head**0.5
    pattern = self.apply_causal_mask(scores).softmax(-1)  # notebook 04's square mask on the rectangle
    z = einops.einsum(pattern, v, "b h q k, b k h d -> b q h d")
    return einops.einsum(z, self.W_O, "b q h d, h d m -> b q m") + self.b_O


def no_mask(self, x, cache):
    q, k_new, v_new = heads(self, x)
    k, v = cache.append(k_new, v_new)
    return finish(self, q, k, v, None)


def mask_read_after_append(self, x, cache):
    q, k_new, v_new = heads(self, x)
    k, v = cache.append(k_new, v_new)
    past = len(cache)  # read after the append: already counts the new positions
    return finish(self, q, k, v, arange_mask(past, q.shape[1], k.shape[1], x.device))


def mask_hides_own_key(self, x, cache):
    past = len(cache)
    q, k_new, v_new = heads(self, x)
    k, v = cache.append(k_new, v_new)
    return finish(self, q, k, v, arange_mask(past - 1, q.shape[1], k.shape[1], x.device))


def mask_one_ahead(self, x, cache):
    past = len(cache)
    q, k_new, v_new = heads(self, x)
    k, v = cache.append(k_new, v_new)
    return finish(self, q, k, v, arange_mask(past + 1, q.shape[1], k.shape[1], x.device))


def cache_unread(self, x, cache):
    q, k_new, v_new = heads(self, x)
    cache.append(k_new, v_new)
    return finish(self, q, k_new, v_new, arange_mask(0, q.shape[1], q.shape[1], x.device))


def appended_twice(self, x, cache):
    past = len(cache)
    q, k_new, v_new = heads(self, x)
    cache.append(k_new, v_new)
    k, v = cache.append(k_new, v_new)
    return finish(self, q, k, v, arange_mask(past, q.shape[1], k.shape[1], x.device))


def residual_cached(self, x, cache):
    """Caches the normalised residual and recomputes every key and value from it (right output, no saving)."""
    past = len(cache)
    every_x, _ = cache.append(x, x)  # (batch, posn, d_model)
    q = heads(self, x)[0]
    _, k, v = heads(self, every_x)
    return finish(self, q, k, v, arange_mask(past, q.shape[1], k.shape[1], x.device))


def residual_split_cached(self, x, cache):
    """Caches the normalised residual split into heads (the keys' shape) and recomputes the keys and values from it."""
    past = len(cache)
    split = x.view(*x.shape[:2], self.cfg.n_heads, self.cfg.d_head)  # (batch, new, n_heads, d_head)
    every_x, _ = cache.append(split, split)  # (batch, posn, n_heads, d_head)
    q = heads(self, x)[0]
    _, k, v = heads(self, every_x.flatten(2))
    return finish(self, q, k, v, arange_mask(past, q.shape[1], k.shape[1], x.device))


def old_keys_only(fallback):
    """Attends to the keys cached before this call only (fallback: the new ones when the cache was empty)."""
    def forward(self, x, cache):
        past = len(cache)
        q, k_new, v_new = heads(self, x)
        k, v = cache.append(k_new, v_new)
        if past == 0 and fallback:
            return finish(self, q, k, v, arange_mask(past, q.shape[1], k.shape[1], x.device))
        return finish(self, q, k[:, :past], v[:, :past], None)
    return forward


def unscaled_attention(self, x, cache):
    past = len(cache)
    q, k_new, v_new = heads(self, x)
    k, v = cache.append(k_new, v_new)
    return finish(self, q * self.cfg.d_head**0.5, k, v, arange_mask(past, q.shape[1], k.shape[1], x.device))


def never_appended(self, x, cache):
    q, k, v = heads(self, x)
    return finish(self, q, k, v, arange_mask(0, q.shape[1], q.shape[1], x.device))


ATTENTION_CORRECT = {
    "solution notebook": lambda: definitions(SOLUTION)["CachedAttention"],
    "notebook 05's einsums, arange mask": lambda: attention_variant(einsum_attention),
    "F.scaled_dot_product_attention with a boolean mask": lambda: attention_variant(sdpa_attention),
    "writes cache.k and cache.v directly": lambda: attention_variant(direct_write_attention),
}

ATTENTION_MISTAKES = {
    "new query masked from the cached keys": (unshifted_mask, ["masked from the cached keys", "diagonal=past + 1"]),
    "no mask": (no_mask, ["the mask hides nothing", "no causal mask"]),
    "past read after append": (mask_read_after_append, ["the mask hides nothing", "past was read after cache.append"]),
    "mask hides the own key": (mask_hides_own_key, ["NaN at position 0", "off by one and hides each query's own key",
                                                    "diagonal=past instead of past + 1"]),
    "mask one ahead": (mask_one_ahead, ["off by one", "sees the key just after it", "not past + 2"]),
    "cache never read": (cache_unread, ["never read"]),
    "keys appended twice": (appended_twice, ["appended twice"]),
    "cache holds the normalised residual": (residual_cached, ["normalised residual"]),
    "nothing stored in the cache": (never_appended, ["holds no keys", "cache.append"]),
    "cache holds the residual split into heads": (residual_split_cached, ["you cached the residual, not the keys/values"]),
    "old cache only, the prompt on its own keys": (old_keys_only(True), ["attend to the old cache only"]),
    "old cache only, nothing for the prompt": (old_keys_only(False), ["attend to the old cache only"]),
    "no 1/sqrt(d_head) scale": (unscaled_attention, ["not divided by sqrt(d_head)"]),
}


@pytest.mark.parametrize("name", ATTENTION_CORRECT)
def test_cached_attention_correct_variants_pass(name, reference):
    tests.test_cached_attention(ATTENTION_CORRECT[name]())


@pytest.mark.parametrize("name", ATTENTION_MISTAKES)
def test_cached_attention_mistakes_are_named(name, reference):
    forward, keywords = ATTENTION_MISTAKES[name]
    fails(tests.test_cached_attention, attention_variant(forward), *keywords)


def test_cached_attention_stub_is_not_done(reference):
    not_done(tests.test_cached_attention, definitions(EXERCISE)["CachedAttention"])


def test_cached_attention_wants_the_class(reference):
    fails(tests.test_cached_attention, einsum_attention, "wants the class CachedAttention")


# ------------------------------------------------------------------------------------- CachedPosEmbed


def pos_variant(forward):
    return type("CachedPosEmbed", (CachedPosEmbed,), {"forward": forward})


POS_CORRECT = {
    "solution notebook": lambda: definitions(SOLUTION)["CachedPosEmbed"],
    "indexing with arange": lambda: pos_variant(
        lambda s, t, offset: s.W_pos[offset + torch.arange(t.shape[1], device=t.device)].expand(t.shape[0], -1, -1)
    ),
    "einops.repeat": lambda: pos_variant(
        lambda s, t, offset: einops.repeat(s.W_pos[offset : offset + t.shape[1]], "p m -> b p m", b=t.shape[0])
    ),
}

POS_MISTAKES = {
    "positions not offset": (lambda s, t, offset: s.W_pos[: t.shape[1]].expand(t.shape[0], -1, -1), ["not offset"]),
    "offset + 1": (lambda s, t, offset: s.W_pos[offset + 1 : offset + 1 + t.shape[1]].expand(t.shape[0], -1, -1), ["offset + 1"]),
}


@pytest.mark.parametrize("name", POS_CORRECT)
def test_cached_pos_embed_correct_variants_pass(name, reference):
    tests.test_cached_pos_embed(POS_CORRECT[name]())


@pytest.mark.parametrize("name", POS_MISTAKES)
def test_cached_pos_embed_mistakes_are_named(name, reference):
    forward, keywords = POS_MISTAKES[name]
    fails(tests.test_cached_pos_embed, pos_variant(forward), *keywords)


def test_cached_pos_embed_stub_is_not_done(reference):
    not_done(tests.test_cached_pos_embed, definitions(EXERCISE)["CachedPosEmbed"])


# ----------------------------------------------------------------------------------- CachedTransformer


def model_variant(body, guard=True):
    """A CachedTransformer whose forward, after the given preamble, is `body(self, tokens, cache, offset)`."""

    def forward(self, tokens, cache=None):
        cache = KVCache(self.cfg) if cache is None else cache
        offset = cache.n_positions
        if guard and offset + tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError("past n_ctx")
        return body(self, tokens, cache, offset)

    return type("CachedTransformer", (CachedTransformer,), {"forward": forward})


def run_blocks(self, tokens, cache, offset, layer_of=lambda cache, i: cache.layers[i]):
    residual = self.embed(tokens) + self.pos_embed(tokens, offset)
    for i, block in enumerate(self.blocks):
        residual = block(residual, layer_of(cache, i))
    return self.unembed(self.ln_final(residual)), cache


def run_blocks_without_ln_final(self, tokens, cache, offset):
    residual = self.embed(tokens) + self.pos_embed(tokens, offset)
    for block, layer_cache in zip(self.blocks, cache.layers, strict=True):
        residual = block(residual, layer_cache)
    return self.unembed(residual)


class KeptCache(CachedTransformer):
    """Keeps the cache on the model between calls: a second prompt continues the first."""

    def forward(self, tokens, cache=None):
        if cache is None:
            cache = getattr(self, "kept", None) or KVCache(self.cfg)
            self.kept = cache
        return run_blocks(self, tokens, cache, cache.n_positions)


_MODULE_CACHE = {}


class ModuleLevelCache(CachedTransformer):
    """With cache=None, reuses one cache kept in a module-level variable."""

    def forward(self, tokens, cache=None):
        if cache is None:
            cache = _MODULE_CACHE.setdefault("cache", KVCache(self.cfg))
        return run_blocks(self, tokens, cache, cache.n_positions)


MODEL_CORRECT = {
    "solution notebook": lambda: definitions(SOLUTION)["CachedTransformer"],
    "blocks by index": lambda: model_variant(run_blocks),
}

MODEL_MISTAKES = {
    "positions not offset": (model_variant(lambda s, t, c, o: run_blocks(s, t, c, 0)), ["positions are not offset"]),
    "one cache for every block": (
        model_variant(lambda s, t, c, o: run_blocks(s, t, c, o, layer_of=lambda cache, i: cache.layers[0])),
        ["one cache is used by every block"],
    ),
    "n_ctx test removed": (model_variant(run_blocks, guard=False), ["n_ctx test at the top of forward"]),
    "cache kept across prompts": (KeptCache, ["kept from the previous prompt"]),
    "logits only": (model_variant(lambda s, t, c, o: run_blocks(s, t, c, o)[0]), ["(logits, cache)"]),
    "cache ignored": (model_variant(lambda s, t, c, o: (run_blocks(s, t, KVCache(s.cfg), 0)[0], c)),
                      ["returned cache holds 0 positions", "the cache is ignored", "cache.layers[i] of the cache passed in"]),
    "cache ignored, returned filled": (model_variant(lambda s, t, c, o: run_blocks(s, t, KVCache(s.cfg), 0)),
                                       ["the cache is ignored", "positions from 0", "cache.layers[i] of the cache passed in"]),
    "positions offset + 1": (model_variant(lambda s, t, c, o: run_blocks(s, t, c, o + 1)),
                             ["positions start one too far, at offset + 1"]),
    "no ln_final": (model_variant(lambda s, t, c, o: (run_blocks_without_ln_final(s, t, c, o), c)),
                    ["ln_final is left out", "self.unembed(self.ln_final(residual))"]),
}


@pytest.mark.parametrize("name", MODEL_CORRECT)
def test_cached_transformer_correct_variants_pass(name, reference):
    tests.test_cached_transformer(MODEL_CORRECT[name]())


@pytest.mark.parametrize("name", MODEL_MISTAKES)
def test_cached_transformer_mistakes_are_named(name, reference):
    cls, keywords = MODEL_MISTAKES[name]
    fails(tests.test_cached_transformer, cls, *keywords)


def test_cached_transformer_module_level_cache_is_named(reference):
    """A module-level cache: the check's second prompt with cache=None continues it, and so does a second run."""
    _MODULE_CACHE.clear()
    for _ in range(2):  # the second run meets the cache left by the first one at its first prompt
        fails(tests.test_cached_transformer, ModuleLevelCache, "kept from the previous prompt", "module-level variable")


def test_cached_transformer_stub_is_not_done(reference):
    not_done(tests.test_cached_transformer, definitions(EXERCISE)["CachedTransformer"])


def test_cached_transformer_names_the_unfinished_attention(reference):
    """A finished model whose blocks use the exercise's CachedAttention stub: the message names the stub."""
    stub_block = definitions(EXERCISE)["CachedBlock"]  # built on the exercise notebook's CachedAttention

    class StubBlocks(CachedTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.blocks = torch.nn.ModuleList([stub_block(cfg) for _ in range(cfg.n_layers)])

    assert "CachedAttention.forward (which your CachedTransformer uses)" in not_done(tests.test_cached_transformer, StubBlocks)


# ---------------------------------------------------------------------------------- generate_with_cache


@torch.no_grad()
def feed_last_too(model, input_ids, max_new_tokens, **sampling):
    """Feeds the last sampled token as well: one forward pass more than the rule."""
    if input_ids.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise ValueError("too long")
    logits, cache = model(input_ids)
    for _ in range(max_new_tokens):
        next_ids = sample_next_token(input_ids, logits[:, -1], **sampling)
        input_ids = torch.cat([input_ids, next_ids[:, None]], dim=1)
        logits, cache = model(next_ids[:, None], cache) if input_ids.shape[1] < model.cfg.n_ctx else (logits, cache)
    return input_ids


@torch.no_grad()
def prompt_token_by_token(model, input_ids, max_new_tokens, **sampling):
    if input_ids.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise ValueError("too long")
    cache = None
    for i in range(input_ids.shape[1]):
        logits, cache = model(input_ids[:, i : i + 1], cache)
    for step in range(max_new_tokens):
        next_ids = sample_next_token(input_ids, logits[:, -1], **sampling)
        input_ids = torch.cat([input_ids, next_ids[:, None]], dim=1)
        if step < max_new_tokens - 1:
            logits, cache = model(next_ids[:, None], cache)
    return input_ids


_GLOBAL = {}


@torch.no_grad()
def global_cache(model, input_ids, max_new_tokens, **sampling):
    logits, _GLOBAL["cache"] = model(input_ids, _GLOBAL.get("cache"))
    for step in range(max_new_tokens):
        next_ids = sample_next_token(input_ids, logits[:, -1], **sampling)
        input_ids = torch.cat([input_ids, next_ids[:, None]], dim=1)
        if step < max_new_tokens - 1:
            logits, _GLOBAL["cache"] = model(next_ids[:, None], _GLOBAL["cache"])
    return input_ids


@torch.no_grad()
def whole_sequence_into_cache(model, input_ids, max_new_tokens, **sampling):
    logits, cache = model(input_ids)
    for _ in range(max_new_tokens):
        next_ids = sample_next_token(input_ids, logits[:, -1], **sampling)
        input_ids = torch.cat([input_ids, next_ids[:, None]], dim=1)
        logits, cache = model(input_ids, cache)
    return input_ids


@torch.no_grad()
def no_cache(model, input_ids, max_new_tokens, **sampling):
    for _ in range(max_new_tokens):
        logits, _ = model(input_ids)
        input_ids = torch.cat([input_ids, sample_next_token(input_ids, logits[:, -1], **sampling)[:, None]], dim=1)
    return input_ids


@torch.no_grad()
def new_tokens_only(model, input_ids, max_new_tokens, **sampling):
    return generate_with_cache(model, input_ids, max_new_tokens, **sampling)[:, input_ids.shape[1] :]


@torch.no_grad()
def first_position(model, input_ids, max_new_tokens, **sampling):
    logits, cache = model(input_ids)
    for _ in range(max_new_tokens):
        next_ids = sample_next_token(input_ids, logits[:, 0], **sampling)
        input_ids = torch.cat([input_ids, next_ids[:, None]], dim=1)
        logits, cache = model(next_ids[:, None], cache)
    return input_ids


@torch.no_grad()
def sample_then_feed(model, input_ids, max_new_tokens, **sampling):
    """Another order: the loop feeds the token it sampled at the top of the next turn."""
    if input_ids.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise ValueError("too long")
    logits, cache = model(input_ids)
    for step in range(max_new_tokens):
        if step:
            logits, cache = model(input_ids[:, -1:], cache)
        input_ids = torch.cat([input_ids, sample_next_token(input_ids, logits[:, -1], **sampling)[:, None]], dim=1)
    return input_ids


@torch.no_grad()
def penalty_on_prompt(model, input_ids, max_new_tokens, **sampling):
    prompt = input_ids
    logits, cache = model(input_ids)
    for step in range(max_new_tokens):
        next_ids = sample_next_token(prompt, logits[:, -1], **sampling)  # the penalty sees the prompt only
        input_ids = torch.cat([input_ids, next_ids[:, None]], dim=1)
        if step < max_new_tokens - 1:
            logits, cache = model(next_ids[:, None], cache)
    return input_ids


@torch.no_grad()
def prompt_last_fed_twice(model, input_ids, max_new_tokens, **sampling):
    _, cache = model(input_ids)
    for _ in range(max_new_tokens):
        logits, cache = model(input_ids[:, -1:], cache)  # the first turn feeds the prompt's last token again
        input_ids = torch.cat([input_ids, sample_next_token(input_ids, logits[:, -1], **sampling)[:, None]], dim=1)
    return input_ids


GENERATE_CORRECT = {
    "solution notebook": lambda: definitions(SOLUTION)["generate_with_cache"],
    "sample, then feed at the next turn": lambda: sample_then_feed,
}

GENERATE_MISTAKES = {
    "cache kept across prompts": (global_cache, ["kept across two prompts"]),
    "the whole sequence fed into the cache": (whole_sequence_into_cache, ["the whole sequence", "newest token"]),
    "no cache at all": (no_cache, ["without the cache"]),
    "only the new tokens returned": (new_tokens_only, ["prompt followed by the new tokens"]),
    "sampled from the first position": (first_position, ["logits[:, 0], the prompt's first position", "logits[:, -1]"]),
    "the penalty sees only the prompt": (penalty_on_prompt, ["sample_next_token sees only the prompt",
                                                             "whole sequence so far"]),
    "the prompt's last token fed twice": (prompt_last_fed_twice, ["the prompt's last token is fed twice"]),
    "the last token fed too": (feed_last_too, ["51 forward passes", "the rule is max_new_tokens = 50 passes",
                                                "last sampled token was fed", "never fed"]),
    "the prompt fed one token at a time": (prompt_token_by_token, ["57 forward passes", "fed in pieces",
                                                                   "model(input_ids)"]),
}


@pytest.mark.parametrize("name", GENERATE_CORRECT)
def test_generate_with_cache_correct_variants_pass(name, reference):
    tests.test_generate_with_cache(GENERATE_CORRECT[name]())


@pytest.mark.parametrize("name", GENERATE_MISTAKES)
def test_generate_with_cache_mistakes_are_named(name, reference):
    _GLOBAL.clear()
    fn, keywords = GENERATE_MISTAKES[name]
    fails(tests.test_generate_with_cache, fn, *keywords)


def test_generate_with_cache_stub_is_not_done(reference):
    not_done(tests.test_generate_with_cache, definitions(EXERCISE)["generate_with_cache"])


def test_generate_with_cache_wants_the_function(reference):
    fails(tests.test_generate_with_cache, CachedTransformer, "wants the function generate_with_cache")


# ------------------------------------------------------------------ the first divergence, for the cached model


def test_cached_transformer_names_the_first_wrong_submodule(reference):
    """A learner's CachedAttention without the scale, inside their model: the message names blocks.0.attn."""

    def unscaled(self, x, cache):
        past = len(cache)
        q, k_new, v_new = heads(self, x)
        k, v = cache.append(k_new, v_new)
        scores = einops.einsum(q, k, "b q h d, b k h d -> b h q k")  # no 1/sqrt(d_head)
        scores = scores.masked_fill(arange_mask(past, q.shape[1], k.shape[1], x.device), float("-inf"))
        z = einops.einsum(scores.softmax(-1), v, "b h q k, b k h d -> b q h d")
        return einops.einsum(z, self.W_O, "b q h d, h d m -> b q m") + self.b_O

    Unscaled = type("MyCachedAttention", (CachedAttention,), {"forward": unscaled})

    class Model(CachedTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            for block in self.blocks:
                block.attn = Unscaled(cfg)

    fails(tests.test_cached_transformer, type("CachedTransformer", (Model,), {}), "blocks.0.attn differs from",
          "every submodule before it matches", "run `tests.test_cached_attention(MyCachedAttention)`")
