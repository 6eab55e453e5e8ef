"""test_direct_logit_attribution: correct variants pass; the stub is not done; each named mistake is caught."""

from __future__ import annotations

import einops
import pytest
import torch

import C1P1_tests as tests
from c1p1.parts import direct_logit_attribution
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions


def terms_of(cache, n_layers, position, order=None):
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out"]
    if order is not None:
        names = [names[i] for i in order]
    return torch.stack([cache[name] for name in names])[:, :, position]  # (n_terms, batch, d_model)


def with_constant(shares, constant):
    return torch.cat([shares, constant.reshape(1, 1).expand(1, shares.shape[1])])  # (n_terms + 1, batch)


def centred_after_projecting(cache, ln_final, W_U, b_U, n_layers, token, position=-1):
    terms = terms_of(cache, n_layers, position)  # (n_terms, batch, d_model)
    direction = ln_final.w * W_U[:, token]  # (d_model,)
    projected = einops.einsum(terms, direction, "t b m, m -> t b")  # (n_terms, batch)
    shares = (projected - terms.mean(-1) * direction.sum()) / cache["ln_final.hook_scale"][:, position, 0]
    return with_constant(shares, ln_final.b @ W_U[:, token] + b_U[token])


def scale_from_the_last_stream(cache, ln_final, W_U, b_U, n_layers, token, position=-1):
    final = cache[f"blocks.{n_layers - 1}.hook_resid_post"][:, position]  # (batch, d_model)
    scale = (final.var(-1, unbiased=False, keepdim=True) + ln_final.cfg.layer_norm_eps).sqrt()  # (batch, 1)
    rows = []
    for term in terms_of(cache, n_layers, position):  # (batch, d_model) each
        rows.append(((term - term.mean(-1, keepdim=True)) / scale * ln_final.w) @ W_U[:, token])  # (batch,)
    return with_constant(torch.stack(rows), ln_final.b @ W_U[:, token] + b_U[token])


def centred_direction(cache, ln_final, W_U, b_U, n_layers, token, position=-1):
    direction = ln_final.w * W_U[:, token]  # (d_model,)
    direction = direction - direction.mean()  # centring the direction instead of each term: the same numbers
    shares = terms_of(cache, n_layers, position) @ direction / cache["ln_final.hook_scale"][:, position, 0]
    return with_constant(shares, ln_final.b @ W_U[:, token] + b_U[token])


CORRECT = {
    "solution notebook": lambda: definitions("solutions/08_unembed.ipynb")["direct_logit_attribution"],
    "canonical part": lambda: direct_logit_attribution,
    "einsum, centred after projecting": lambda: centred_after_projecting,
    "scale recomputed from the last hook_resid_post, one term at a time": lambda: scale_from_the_last_stream,
    "the direction centred instead of the terms": lambda: centred_direction,
}


def variant(centre=True, own_scale=False, use_w=True, bias_everywhere=False, use_b=True, use_b_U=True, order=None,
            at=None, token_shift=0, divide=True):
    def fn(cache, ln_final, W_U, b_U, n_layers, token, position=-1):
        where = position if at is None else at
        terms = terms_of(cache, n_layers, where, order)  # (n_terms, batch, d_model)
        if centre:
            terms = terms - terms.mean(-1, keepdim=True)
        scale = cache["ln_final.hook_scale"][:, where]  # (batch, 1)
        if own_scale:
            scale = (terms.var(-1, unbiased=False, keepdim=True) + ln_final.cfg.layer_norm_eps).sqrt()
        if not divide:
            scale = torch.ones_like(scale)
        t = token if not token_shift else token_shift(cache, ln_final, W_U, b_U, n_layers, where)
        direction = (ln_final.w if use_w else 1.0) * W_U[:, t]  # (d_model,)
        constant = (ln_final.b @ W_U[:, t] if use_b else 0.0) + (b_U[t] if use_b_U else 0.0)
        shares = terms / scale @ direction  # (n_terms, batch)
        if bias_everywhere:
            shares = shares + constant
        return with_constant(shares, torch.as_tensor(constant, device=shares.device))

    return fn


def top_token(cache, ln_final, W_U, b_U, n_layers, position):
    return int((ln_final(cache[f"blocks.{n_layers - 1}.hook_resid_post"][:, position]) @ W_U + b_U)[0].argmax())


def grouped(n_layers):
    n = 2 + 2 * n_layers
    return [0, 1] + list(range(2, n, 2)) + list(range(3, n, 2))



def ordered(make):
    def fn(cache, ln_final, W_U, b_U, n_layers, token, position=-1):
        return variant(order=make(n_layers))(cache, ln_final, W_U, b_U, n_layers, token, position)

    return fn


MISTAKES = {
    "a scale per term": (variant(own_scale=True), ["its own scale"]),
    "not centred": (variant(centre=False), ["not centred"]),
    "no ln_final.w": (variant(use_w=False), ["ln_final.w is missing"]),
    "biases in every term": (variant(bias_everywhere=True), ["added to every term"]),
    "no b_U in the constant": (variant(use_b_U=False), ["no b_U"]),
    "no ln_final.b in the constant": (variant(use_b=False), ["no ln_final.b"]),
    "no division by the scale": (variant(divide=False), ["not divided by the frozen scale"]),
    "another token's column": (variant(token_shift=top_token), ["another token's column"]),
    "attention first, then MLPs": (ordered(grouped), ["all attention outputs first"]),
    "reversed": (ordered(lambda n: list(range(2 + 2 * n))[::-1]), ["reverse order"]),
    "embeddings swapped": (ordered(lambda n: [1, 0] + list(range(2, 2 + 2 * n))), ["embeddings are swapped"]),
    "position ignored": (variant(at=-1), ["`position` argument is ignored"]),
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name, reference):
    tests.test_direct_logit_attribution(CORRECT[name]())


@pytest.mark.parametrize("name", MISTAKES)
def test_each_mistake_is_named(name, reference):
    fn, keywords = MISTAKES[name]
    fails(tests.test_direct_logit_attribution, fn, *keywords)


def test_the_stub_is_not_done(reference):
    not_done(tests.test_direct_logit_attribution, definitions("notebooks/08_unembed.ipynb")["direct_logit_attribution"])


def test_the_rows_sum_to_the_models_logit(reference):
    from c1p1.parts import LayerNorm

    cache, params = reference.activations("sentence"), reference.params()
    ln_final = LayerNorm(reference.cfg).to(reference.device)
    ln_final.load_state_dict(reference.params_for("ln_final"))
    token = int(cache["logits"][0, -1].argmax())
    rows = direct_logit_attribution(cache, ln_final, params["unembed.W_U"], params["unembed.b_U"], 12, token)
    assert rows.shape == (27, 1)
    torch.testing.assert_close(rows.sum(0), cache["logits"][:, -1, token], atol=1e-4, rtol=1e-4)


def test_bad_output_gets_one_clear_message(reference):
    def no_constant(*args):
        return direct_logit_attribution(*args)[:-1]

    def one_row_per_block(cache, ln_final, W_U, b_U, n_layers, token, position=-1):
        return direct_logit_attribution(cache, ln_final, W_U, b_U, n_layers, token, position)[::2]

    def transposed(*args):
        return direct_logit_attribution(*args).T

    fails(tests.test_direct_logit_attribution, no_constant, "one row too few", "constant")
    fails(tests.test_direct_logit_attribution, one_row_per_block, "hook_attn_out and hook_mlp_out")
    fails(tests.test_direct_logit_attribution, transposed, "swapped")
    fails(tests.test_direct_logit_attribution, lambda *args: (direct_logit_attribution(*args), None), "tuple")
    fails(tests.test_direct_logit_attribution, "direct_logit_attribution", "function")


def test_the_learner_never_changes_the_cache(reference):
    def in_place(cache, *args):
        cache["hook_embed"] *= 0
        return direct_logit_attribution(cache, *args)

    before = reference.activations("sentence")["hook_embed"].clone()
    fails(tests.test_direct_logit_attribution, in_place)
    assert torch.equal(reference.activations("sentence")["hook_embed"], before)


def test_a_write_into_W_U_is_caught_and_undone(reference, monkeypatch):
    W_U = reference.params()["unembed.W_U"]
    before = W_U[:, 0].clone()
    reloads = []
    # The check reloads the reference after such a write; a real reload costs seconds, so this one restores the column.
    monkeypatch.setattr(reference, "reload", lambda: reloads.append(W_U[:, 0].copy_(before)))

    def in_place(cache, ln_final, W_U, *args):
        W_U[:, 0] *= 2
        return direct_logit_attribution(cache, ln_final, W_U, *args)

    fails(tests.test_direct_logit_attribution, in_place, "changed W_U in place")
    assert len(reloads) == 1
    assert torch.equal(W_U[:, 0], before)
