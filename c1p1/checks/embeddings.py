"""test_embed (notebook 02) and test_pos_embed (notebook 03): the two lookup tables that start the residual stream."""

from __future__ import annotations

import torch
from torch import Tensor

from c1p1.checks import core, oracle
from c1p1.checks.core import Advice, Case, Mistake
from c1p1.config import Config

DIMS = ("batch", "posn", "d_model")

# ------------------------------------------------------------------------------- token embedding

EMBED_FALLBACK = (
    "1) return the rows of self.W_E picked by the token ids, exactly as given: self.W_E[tokens]; "
    "2) do not add, subtract or reorder anything: the token at (batch b, position s) gets row tokens[b, s]; "
    "3) if you build one-hot vectors, they need d_vocab entries and a float dtype before the matmul with W_E."
)

EMBED_INDEX_ERROR = (
    "Likely cause: an index out of range. W_E has one row per token id (d_vocab rows, ids 0 .. d_vocab - 1) "
    "and d_model columns. Index its rows with the token ids exactly as given, self.W_E[tokens]: "
    "not self.W_E.T[tokens], not self.W_E[:, tokens], and without adding 1 to the ids."
)


def embed_shape_hints(cfg: Config) -> tuple:
    v, d = cfg.d_vocab, cfg.d_model
    return (
        (
            lambda got, want: len(got) == 3 and got[:2] == want[:2] and got[2] == v,
            "the output has d_vocab features: a one-hot vector per token, or a row of W_E.T. Multiply the "
            "one-hot vectors by W_E, or pick rows of W_E itself, to get d_model features.",
        ),
        (
            lambda got, want: got == (v, d),
            "you returned the whole table W_E (d_vocab, d_model). Pick the rows of the input's tokens: self.W_E[tokens].",
        ),
        (
            lambda got, want: got == (d, v) or (len(got) == len(want) and got[-1] == v),
            "the last dimension has d_vocab entries: W_E is used transposed (W_E.T). Keep W_E as "
            "(d_vocab, d_model) and pick its rows: self.W_E[tokens].",
        ),
        (
            lambda got, want: len(got) == 3 and got[0] in (v, d) and got[1:] == want[:2],
            "the table is indexed along the wrong dimension (self.W_E[:, tokens] or W_E.T). "
            "Token ids pick rows: self.W_E[tokens].",
        ),
        (
            lambda got, want: got == want[1:],
            "the batch dimension is missing (or flattened into the positions). Index with the whole "
            "(batch, posn) tensor of token ids, not tokens[0] or tokens.flatten().",
        ),
        (
            lambda got, want: got == (want[0] * want[1], want[2]),
            "the batch and position dimensions are flattened into one. Index with the (batch, posn) tensor "
            "itself, or reshape back to (batch, posn, d_model).",
        ),
    )


def embed_mistakes(tokens: Tensor, p: dict[str, Tensor]):
    """What each plausible embedding mistake gives on these token ids."""
    w_e = p["W_E"]
    d_vocab = w_e.shape[0]
    return lambda: [
        Mistake(
            "the token ids are shifted by one: you return row tokens - 1. Index with the ids exactly as "
            "given, self.W_E[tokens] (the ids already start at 0).",
            lambda: w_e[tokens - 1],
        ),
        Mistake(
            "the token ids are shifted by one: you return row tokens + 1. Index with the ids exactly as "
            "given, self.W_E[tokens] (the ids already start at 0).",
            lambda: w_e[(tokens + 1) % d_vocab],
        ),
        Mistake(
            "the output is shifted by one position: position s holds the embedding of the next token. "
            "Do not roll or slice the tokens; every position embeds its own token.",
            lambda: w_e[tokens.roll(-1, dims=-1)],
        ),
        Mistake(
            "the output is shifted by one position: position s holds the embedding of the previous token. "
            "Do not roll or slice the tokens; every position embeds its own token.",
            lambda: w_e[tokens.roll(1, dims=-1)],
        ),
        Mistake(
            "every sequence gets the embeddings of the first sequence's tokens (tokens[0]). "
            "Index with the whole (batch, posn) tensor.",
            lambda: w_e[tokens[:1]].expand(tokens.shape[0], -1, -1),
        ),
    ]


def reference_lookup_cases(prefix: str, hook: str, mistakes, fallback: str) -> list[Case]:
    """The reference sentence and the batch for a lookup table: tokens in, the ``hook`` activation out."""
    ref = core.reference()
    label = core.weights_label(ref)
    p = ref.params_for(prefix)
    out = []
    for which, text in core.REFERENCE_RUNS:
        acts = ref.activations(which)
        tokens = acts["tokens"]  # (batch, posn)
        out.append(Case(f"{text} with {label}", ref.cfg, p, (tokens,), acts[hook], DIMS, mistakes(tokens, p), fallback))
    return out


def embed_cases() -> list[Case]:
    ref = core.reference()
    out = reference_lookup_cases("embed", "hook_embed", embed_mistakes, EMBED_FALLBACK)
    small = core.SMALL
    rp = core.random_params({"W_E": (small.d_vocab, small.d_model)}, seed=201, device=ref.device)
    tokens = core.random_tokens((3, 9), small.d_vocab, seed=202, device=ref.device)  # (3, 9)
    tokens[0, 0] = small.d_vocab - 1  # the last id, as GPT-2's BOS token is
    out.append(Case(f"random W_E and token ids (d_vocab={small.d_vocab}, d_model={small.d_model})", small, rp,
                    (tokens,), oracle.embed(tokens, rp), DIMS, embed_mistakes(tokens, rp), EMBED_FALLBACK))
    return out


# ---------------------------------------------------------------------------- positional embedding

POS_FALLBACK = (
    "1) take the first posn rows of self.W_pos, one per position 0 .. posn - 1 (self.W_pos[:posn]); "
    "2) ignore the values of the token ids: only their shape (batch, posn) matters; "
    "3) repeat those rows for every sequence in the batch, giving (batch, posn, d_model)."
)

POS_INDEX_ERROR = (
    "Likely cause: W_pos is indexed with the token ids. W_pos has one row per position (n_ctx rows), and token "
    "ids go up to d_vocab - 1. Index it with the positions 0 .. posn - 1 (torch.arange(posn) or "
    "self.W_pos[:posn]); the token ids only tell you batch and posn."
)


def pos_shape_hints(cfg: Config) -> tuple:
    n, d = cfg.n_ctx, cfg.d_model
    return (
        (
            lambda got, want: got == want[1:],
            "the batch dimension is missing: you returned W_pos[:posn] as (posn, d_model). Repeat it for every "
            "sequence, e.g. einops.repeat(rows, 'posn d_model -> batch posn d_model', batch=batch).",
        ),
        (
            lambda got, want: len(got) == 3 and got[0] == 1 and want[0] > 1 and got[1:] == want[1:],
            "the batch dimension has size 1: the rows are not repeated over the batch. Use einops.repeat, "
            ".expand(batch, -1, -1) or .repeat(batch, 1, 1).",
        ),
        (
            lambda got, want: len(got) == 3 and got[0] == want[0] and got[1] == n and got[2] == want[2],
            "the output has n_ctx positions: you used the whole table W_pos. Take only the first posn rows.",
        ),
        (
            lambda got, want: len(got) == 3 and got[0] == want[0] and got[2] == want[2] and got[1] == want[1] - 1,
            "one position is missing: the rows start at 1 (W_pos[1:posn]). Positions start at 0: W_pos[:posn].",
        ),
        (
            lambda got, want: got in ((n, d), (d, n)),
            "you returned the whole table W_pos. Take its first posn rows and repeat them over the batch.",
        ),
        (
            lambda got, want: got == (want[0] * want[1], want[2]),
            "the batch and position dimensions are flattened into one. Return (batch, posn, d_model).",
        ),
    )


def pos_mistakes(tokens: Tensor, p: dict[str, Tensor]):
    """What each plausible positional-embedding mistake gives on these token ids."""
    return lambda: [
        Mistake(
            "W_pos is indexed with the token ids. W_pos has one row per position: use the positions "
            "0 .. posn - 1 (self.W_pos[:posn]); the token ids only tell you batch and posn.",
            lambda: oracle.pos_embed(tokens, p, by_token=True),
        ),
        Mistake(
            "the positions start at 1 (W_pos[1:posn + 1]). The first token is at position 0: use W_pos[:posn].",
            lambda: oracle.pos_embed(tokens, p, offset=1),
        ),
        Mistake(
            "the positions run backwards: the last token gets row 0. Position s gets row s: W_pos[:posn], "
            "not flipped.",
            lambda: oracle.pos_embed(tokens, p).flip(1),
        ),
    ]


def pos_tokens(batch: int, posn: int, d_vocab: int, n_ctx: int, seed: int) -> Tensor:
    """Random ids below n_ctx that never equal the position s or s + 1, so indexing by token is caught."""
    gen = torch.Generator().manual_seed(seed)
    positions = torch.arange(posn)  # (posn,)
    jump = torch.randint(2, n_ctx, (batch, posn), generator=gen)  # (batch, posn)
    return (positions + jump) % min(n_ctx, d_vocab)  # (batch, posn)


def pos_cases() -> list[Case]:
    ref = core.reference()
    out = reference_lookup_cases("pos_embed", "hook_pos_embed", pos_mistakes, POS_FALLBACK)
    small = core.SMALL
    rp = core.random_params({"W_pos": (small.n_ctx, small.d_model)}, seed=301, device=ref.device)
    tokens = pos_tokens(3, 11, small.d_vocab, small.n_ctx, seed=302).to(ref.device)  # (3, 11)
    out.append(Case(f"random W_pos and token ids, batch of 3 (n_ctx={small.n_ctx}, d_model={small.d_model})",
                    small, rp, (tokens,), oracle.pos_embed(tokens, rp), DIMS, pos_mistakes(tokens, rp), POS_FALLBACK))
    full = pos_tokens(2, small.n_ctx, small.d_vocab, small.n_ctx, seed=303).to(ref.device)  # (2, n_ctx)
    out.append(Case(f"a full context of {small.n_ctx} positions", small, rp, (full,), oracle.pos_embed(full, rp),
                    DIMS, pos_mistakes(full, rp), POS_FALLBACK))
    return out


# ------------------------------------------------------------------------------------------ checks

# The learner's class is built once per Config and parameters: initialising a (50257, 768) table
# takes about half a second on a small CPU, and the check should stay under a second.
FIELDS = "cfg.d_vocab, cfg.n_ctx, cfg.d_model"


def _index_error(advice: str) -> Advice:
    return Advice(error=lambda exc: advice if isinstance(exc, IndexError) else "")


def test_embed(Embed) -> None:
    """Check an Embed class against GPT-2's hook_embed, and against a random W_E in a smaller Config."""
    __tracebackhide__ = True
    cls = core.expect_module_class(Embed, "Embed", "test_embed")
    cases = embed_cases()
    core.run_cases("test_embed", cls, cases, shape_hints=lambda case: embed_shape_hints(case.cfg), fields=FIELDS,
                   advice=_index_error(EMBED_INDEX_ERROR))
    core.passed("test_embed", core.summary(cases))


def test_pos_embed(PosEmbed) -> None:
    """Check a PosEmbed class against GPT-2's hook_pos_embed, and against a random W_pos in a smaller Config."""
    __tracebackhide__ = True
    cls = core.expect_module_class(PosEmbed, "PosEmbed", "test_pos_embed")
    cases = pos_cases()
    core.run_cases("test_pos_embed", cls, cases, shape_hints=lambda case: pos_shape_hints(case.cfg), fields=FIELDS,
                   advice=_index_error(POS_INDEX_ERROR))
    core.passed("test_pos_embed", core.summary(cases))
