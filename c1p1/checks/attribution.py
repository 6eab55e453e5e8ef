"""test_direct_logit_attribution: the final residual stream split into its terms, each read as a share of one logit.

The learner writes ``direct_logit_attribution(cache, ln_final, W_U, b_U, n_layers, token, position)``. The
stream after the last block is the sum of 2 + 2 * n_layers terms: the token embedding, the positional
embedding, then each block's attention output and MLP output. With ``ln_final``'s scale frozen at the scale
of that whole stream, ``ln_final`` is linear up to its bias, so the logit of ``token`` splits exactly into one
number per term (centred, divided by the frozen scale, multiplied by ``ln_final.w`` and projected on
``W_U[:, token]``) plus a constant (``ln_final.b @ W_U[:, token] + b_U[token]``), returned as the last row.
The rows sum to the model's logit. The check compares with that formula on the reference's activations
(exact on the stand-in too: it is a formula, not a behaviour) and on a small random model whose terms have
large means, different sizes and a random ``b_U``, so that each named mistake changes the answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from c1p1.checks import core
from c1p1.checks.lens import _LnFinal, call_lending_W_U, final_params, layer_norm
from c1p1.config import Config

TEST = "test_direct_logit_attribution"
DIMS = ("term", "batch")


def term_names(n_layers: int) -> list[str]:
    """The hooks of the final stream's terms, in the order they are written into the stream."""
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out"]
    return names


def term_labels(n_layers: int) -> list[str]:
    """Short labels for the rows: embed, pos, 0 attn, 0 mlp, ..., then the constant."""
    labels = ["embed", "pos"]
    for layer in range(n_layers):
        labels += [f"{layer} attn", f"{layer} mlp"]
    return labels + ["const"]


def stacked_terms(cache: dict[str, Tensor], n_layers: int, position: int) -> Tensor:
    return torch.stack([cache[name] for name in term_names(n_layers)])[:, :, position]  # (n_terms, batch, d_model)


def attribution(terms: Tensor, scale: Tensor, w: Tensor, b: Tensor, W_U: Tensor, b_U: Tensor, token: int, *,
                centre: bool = True, use_w: bool = True, bias_in_terms: bool = False, use_b: bool = True,
                use_b_U: bool = True) -> Tensor:
    """The terms' shares of the logit of `token` and the constant, as rows; the flags make the mistakes."""
    if centre:
        terms = terms - terms.mean(dim=-1, keepdim=True)  # (n_terms, batch, d_model)
    direction = (w if use_w else torch.ones_like(w)) * W_U[:, token]  # (d_model,)
    shares = terms / scale @ direction  # (n_terms, batch)
    constant = (b @ W_U[:, token] if use_b else 0.0) + (b_U[token] if use_b_U else 0.0)  # ()
    if bias_in_terms:
        shares = shares + constant  # (n_terms, batch)
    last = torch.as_tensor(constant, dtype=shares.dtype, device=shares.device).expand(1, shares.shape[1])  # (1, batch)
    return torch.cat([shares, last])  # (n_terms + 1, batch)


def mistakes(cache, w, b, eps, W_U, b_U, n_layers, token, position, other_token) -> Callable[[], list[core.Mistake]]:
    terms = stacked_terms(cache, n_layers, position)  # (n_terms, batch, d_model)
    scale = cache["ln_final.hook_scale"][:, position]  # (batch, 1)

    def rows(**flags) -> Tensor:
        return attribution(terms, scale, w, b, W_U, b_U, token, **flags)  # (n_terms + 1, batch)

    def own_scales() -> Tensor:
        centred = terms - terms.mean(dim=-1, keepdim=True)  # (n_terms, batch, d_model)
        own = (centred.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()  # (n_terms, batch, 1)
        return attribution(terms, own, w, b, W_U, b_U, token)  # (n_terms + 1, batch)

    def reorder(order: list[int]) -> Tensor:
        right = rows()  # (n_terms + 1, batch)
        return torch.cat([right[:-1][order], right[-1:]])  # (n_terms + 1, batch)

    n_terms = 2 + 2 * n_layers
    grouped = [0, 1] + list(range(2, n_terms, 2)) + list(range(3, n_terms, 2))

    def build() -> list[core.Mistake]:
        return [
            core.Mistake("each term is divided by its own scale. Freeze the scale of the whole final stream "
                         "(ln_final.hook_scale, or the scale of blocks.{n_layers - 1}.hook_resid_post) and divide "
                         "every term by that one number: only then do the rows add up to the logit.", own_scales),
            core.Mistake("the terms are not centred. ln_final subtracts the mean over d_model before it divides; with "
                         "the scale frozen, that step is linear too, so centre each term (term - term.mean(-1)).",
                         lambda: rows(centre=False)),
            core.Mistake("ln_final.w is missing: after dividing by the scale, ln_final multiplies every feature by w. "
                         "Project on ln_final.w * W_U[:, token].", lambda: rows(use_w=False)),
            core.Mistake("the biases (ln_final.b @ W_U[:, token] + b_U[token]) are added to every term. They belong to "
                         "no term: they are the constant, the last row, counted once.",
                         lambda: rows(bias_in_terms=True)),
            core.Mistake("the constant row has no b_U[token] (GPT-2's b_U is zero, so this case uses a random one).",
                         lambda: rows(use_b_U=False)),
            core.Mistake("the constant row has no ln_final.b @ W_U[:, token]: the LayerNorm's bias goes through the "
                         "unembedding too.", lambda: rows(use_b=False)),
            core.Mistake("the terms are not divided by the frozen scale at all. ln_final divides the centred stream by "
                         "its scale before multiplying by w.",
                         lambda: attribution(terms, torch.ones_like(scale), w, b, W_U, b_U, token)),
            core.Mistake("the rows are projected on another token's column (the one the model ranks first here). Use "
                         "W_U[:, token], the token you were asked about.",
                         lambda: attribution(terms, scale, w, b, W_U, b_U, other_token)),
            core.Mistake("the terms are in the wrong order: all attention outputs first, then all MLP outputs. The "
                         "order is the order of writing: embed, pos_embed, then block 0's attn_out and mlp_out, "
                         "block 1's, ...", lambda: reorder(grouped)),
            core.Mistake("the terms are in reverse order. Row 0 is the token embedding, row 1 the positional "
                         "embedding, then block 0's attn_out and mlp_out, and so on; the constant comes last.",
                         lambda: reorder(list(range(n_terms))[::-1])),
            core.Mistake("the embeddings are swapped: row 0 is hook_embed (the token embedding), row 1 "
                         "hook_pos_embed.", lambda: reorder([1, 0] + list(range(2, n_terms)))),
            core.Mistake("the `position` argument is ignored: the last position is read every time.",
                         lambda: attribution(stacked_terms(cache, n_layers, -1),
                                             cache["ln_final.hook_scale"][:, -1], w, b, W_U, b_U, token)),
        ]

    return build


SHAPE_HINTS = (
    (lambda out, exp: len(out) == 2 and out[0] == exp[0] - 1 and out[1] == exp[1],
     "one row too few. Return the 2 + 2 * n_layers terms and then the constant (ln_final.b @ W_U[:, token] + "
     "b_U[token], the same for every sequence) as the last row, so that the rows sum to the logit."),
    (lambda out, exp: len(out) == 2 and out[0] in (2 + (exp[0] - 3) // 2, 3 + (exp[0] - 3) // 2),
     "only the embeddings and one row per block: each block writes two terms, hook_attn_out and hook_mlp_out."),
    (lambda out, exp: len(out) == 2 and out[0] == exp[1] and out[1] == exp[0],
     "the term and batch dimensions are swapped: stack the terms first, (term, batch)."),
    (lambda out, exp: len(out) == 3 and out[0] == exp[0] and out[1] == exp[1],
     "a dimension is left over: project each term on one direction, ln_final.w * W_U[:, token], and read only "
     "the position given by `position`."),
)

NEEDED = ("hook_embed", "hook_pos_embed", "hook_attn_out", "hook_mlp_out", "hook_resid_", "ln_final.hook_scale")


def _case(label, cache, w, b, eps, W_U, b_U, n_layers, token, position) -> core.Case:
    cache = {k: v for k, v in cache.items() if isinstance(v, Tensor) and any(part in k for part in NEEDED)}
    terms = stacked_terms(cache, n_layers, position)  # (n_terms, batch, d_model)
    scale = cache["ln_final.hook_scale"][:, position]  # (batch, 1)
    expected = attribution(terms, scale, w, b, W_U, b_U, token)  # (n_terms + 1, batch)
    final = cache[f"blocks.{n_layers - 1}.hook_resid_post"][:, position]  # (batch, d_model)
    top = int((layer_norm(final, w, b, eps) @ W_U + b_U)[0].argmax())  # the model's first choice, sequence 0
    other = top if top != token else (token + 1) % W_U.shape[1]
    cfg = Config() if W_U.shape == (Config().d_model, Config().d_vocab) else core.SMALL
    inputs = (cache, w, b, eps, W_U, b_U, n_layers, token, position)
    return core.Case(label, cfg, None, inputs, expected, DIMS,
                     mistakes=mistakes(cache, w, b, eps, W_U, b_U, n_layers, token, position, other),
                     fallback="the scale is not the whole final stream's (frozen, one per sequence); a term is not "
                     "centred, or not multiplied by ln_final.w; the biases are not all in the last row, once; a term "
                     "is read from the wrong hook or in the wrong order.")


def random_terms_cache(cfg: Config, batch: int, posn: int, seed: int, device: torch.device) -> dict[str, Tensor]:
    """A cache whose terms have large means and different sizes, with the streams and ln_final's scale they give."""
    gen = torch.Generator().manual_seed(seed)
    cache = {}
    for i, name in enumerate(term_names(cfg.n_layers)):
        size = 0.5 + i % 4  # terms of different sizes: a per-term scale is visibly wrong
        offset = 2.0 * torch.randn(batch, posn, 1, generator=gen)  # (batch, posn, 1): a mean centring must remove
        cache[name] = size * torch.randn(batch, posn, cfg.d_model, generator=gen) + offset  # (batch, posn, d_model)
    resid = cache["hook_embed"] + cache["hook_pos_embed"]  # (batch, posn, d_model)
    for layer in range(cfg.n_layers):
        cache[f"blocks.{layer}.hook_resid_pre"] = resid
        resid = resid + cache[f"blocks.{layer}.hook_attn_out"]  # (batch, posn, d_model)
        cache[f"blocks.{layer}.hook_resid_mid"] = resid
        resid = resid + cache[f"blocks.{layer}.hook_mlp_out"]  # (batch, posn, d_model)
        cache[f"blocks.{layer}.hook_resid_post"] = resid
    centred = resid - resid.mean(dim=-1, keepdim=True)  # (batch, posn, d_model)
    cache["ln_final.hook_scale"] = (centred.pow(2).mean(dim=-1, keepdim=True) + cfg.layer_norm_eps).sqrt()
    return {k: v.to(device) for k, v in cache.items()}


def attribution_cases():
    """The cases one at a time, so that a failure on the first never pays for the others."""
    ref = core.reference()
    cfg = Config()
    w, b, W_U, b_U = final_params(ref)
    paris = int(ref.to_tokens(" Paris")[0, -1])
    yield _case(f"the reference sentence, the last position, token {paris} (' Paris'), {core.weights_label(ref)}",
                ref.activations("sentence"), w, b, cfg.layer_norm_eps, W_U, b_U, cfg.n_layers, paris, -1)
    period = int(ref.to_tokens(".")[0, -1])
    yield _case(f"a batch of two prompts, position 4, token {period} ('.'), {core.weights_label(ref)}",
                ref.activations("batch"), w, b, cfg.layer_norm_eps, W_U, b_U, cfg.n_layers, period, 4)
    small = core.SMALL
    p = core.random_params({"ln_final.w": (small.d_model,), "ln_final.b": (small.d_model,),
                            "unembed.W_U": (small.d_model, small.d_vocab), "unembed.b_U": (small.d_vocab,)}, 31, ref.device)
    cache = random_terms_cache(small, batch=3, posn=6, seed=32, device=ref.device)
    yield _case("a smaller model with random parameters, position 2, token 7", cache, p["ln_final.w"], p["ln_final.b"],
                small.layer_norm_eps, p["unembed.W_U"], p["unembed.b_U"], small.n_layers, 7, 2)


def test_direct_logit_attribution(direct_logit_attribution) -> None:
    """Check direct_logit_attribution: each term's share of one logit with ln_final's scale frozen, then the constant."""
    __tracebackhide__ = True
    fn = core.expect_function(direct_logit_attribution, "direct_logit_attribution", TEST)
    cases = []
    for case in attribution_cases():
        cases.append(case)
        cache, w, b, eps, W_U, b_U, n_layers, token, position = case.inputs
        copies = {k: v.clone() for k, v in cache.items()}  # the learner never sees the reference's own tensors
        ln_final = _LnFinal(w, b, case.cfg).to(W_U.device)
        out = call_lending_W_U(fn, (copies, ln_final, W_U, b_U, n_layers, token, position), TEST,
                               "direct_logit_attribution")
        core.vet_output(out, case.expected, case.dims, TEST, "the output", SHAPE_HINTS)
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(TEST, "the attribution", case, out, mismatch)
    core.passed(TEST, core.summary(cases))
