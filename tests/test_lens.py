"""test_logit_lens: correct variants pass; the stub is not done; each named mistake is caught; bad output is named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import C1P1_tests as tests
from c1p1.parts import logit_lens
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions


def stack(cache, n_layers, suffix="hook_resid_post"):
    rows = [cache["blocks.0.hook_resid_pre"]] + [cache[f"blocks.{i}.{suffix}"] for i in range(n_layers)]
    return torch.stack(rows)  # (n_layers + 1, batch, posn, d_model)


def per_layer_loop(cache, ln_final, W_U, b_U, n_layers, position=-1):
    rows = []
    for name in ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]:
        rows.append(ln_final(cache[name][:, position]) @ W_U + b_U)  # (batch, d_vocab)
    return torch.stack(rows)  # (n_layers + 1, batch, d_vocab)


def functional_layer_norm(cache, ln_final, W_U, b_U, n_layers, position=-1):
    resid = stack(cache, n_layers)[:, :, position]  # (n_layers + 1, batch, d_model)
    d_model = resid.shape[-1]
    normalised = F.layer_norm(resid, (d_model,), ln_final.w, ln_final.b, eps=ln_final.cfg.layer_norm_eps)
    return torch.addmm(b_U, normalised.flatten(0, 1), W_U).view(*resid.shape[:2], -1)  # (n_layers + 1, batch, d_vocab)


CORRECT = {
    "solution notebook": lambda: definitions("solutions/08_unembed.ipynb")["logit_lens"],
    "canonical part": lambda: logit_lens,
    "one layer at a time": lambda: per_layer_loop,
    "F.layer_norm with ln_final's w, b and eps, then addmm": lambda: functional_layer_norm,
}


def lens_with(resid_fn, finish=lambda x, W_U, b_U: x @ W_U + b_U, ln=True):
    def fn(cache, ln_final, W_U, b_U, n_layers, position=-1):
        resid = resid_fn(cache, n_layers, position)  # (rows, batch, d_model)
        return finish(ln_final(resid) if ln else resid, W_U, b_U)

    return fn


def final_scale(cache, ln_final, W_U, b_U, n_layers, position=-1):
    resid = stack(cache, n_layers)[:, :, position]  # (n_layers + 1, batch, d_model)
    centred = resid - resid.mean(dim=-1, keepdim=True)  # (n_layers + 1, batch, d_model)
    scale = cache["ln_final.hook_scale"][:, position]  # (batch, 1)
    return (centred / scale * ln_final.w + ln_final.b) @ W_U + b_U  # (n_layers + 1, batch, d_vocab)


def at(position_override):
    return lambda cache, n_layers, position: stack(cache, n_layers)[:, :, position_override]


MISTAKES = {
    "no ln_final": (lens_with(lambda c, n, p: stack(c, n)[:, :, p], ln=False), ["ln_final first"]),
    "the final layer's scale for every layer": (final_scale, ["final layer's scale"]),
    "b_U forgotten": (lens_with(lambda c, n, p: stack(c, n)[:, :, p], finish=lambda x, W, b: x @ W), ["b_U"]),
    "softmax at the end": (lens_with(lambda c, n, p: stack(c, n)[:, :, p],
                                     finish=lambda x, W, b: (x @ W + b).softmax(-1)), ["softmax"]),
    "log_softmax at the end": (lens_with(lambda c, n, p: stack(c, n)[:, :, p],
                                         finish=lambda x, W, b: (x @ W + b).log_softmax(-1)), ["log_softmax"]),
    "hook_resid_mid": (lens_with(lambda c, n, p: stack(c, n, "hook_resid_mid")[:, :, p]), ["hook_resid_mid"]),
    "layers reversed": (lens_with(lambda c, n, p: stack(c, n)[:, :, p].flip(0)), ["reverse order"]),
    "position ignored": (lens_with(at(-1)), ["`position` argument is ignored"]),
    "position 0": (lens_with(at(0)), ["position 0"]),
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name, reference):
    tests.test_logit_lens(CORRECT[name]())


@pytest.mark.parametrize("name", MISTAKES)
def test_each_mistake_is_named(name, reference):
    fn, keywords = MISTAKES[name]
    fails(tests.test_logit_lens, fn, *keywords)


def test_the_stub_is_not_done(reference):
    stub = definitions("notebooks/08_unembed.ipynb")["logit_lens"]
    not_done(tests.test_logit_lens, stub)


def test_a_missing_embeddings_row_is_named(reference):
    def blocks_only(cache, ln_final, W_U, b_U, n_layers, position=-1):
        return ln_final(stack(cache, n_layers)[1:, :, position]) @ W_U + b_U  # (n_layers, batch, d_vocab)

    fails(tests.test_logit_lens, blocks_only, "one row too few", "hook_resid_pre")


def test_every_position_kept_is_named(reference):
    def all_positions(cache, ln_final, W_U, b_U, n_layers, position=-1):
        return ln_final(stack(cache, n_layers)) @ W_U + b_U  # (n_layers + 1, batch, posn, d_vocab)

    fails(tests.test_logit_lens, all_positions, "every position")


def test_bad_input_gets_one_clear_message(reference):
    fails(tests.test_logit_lens, lambda *args: (logit_lens(*args), None), "tuple")
    fails(tests.test_logit_lens, "logit_lens", "function")


def test_the_learner_never_changes_the_cache(reference):
    def in_place(cache, ln_final, W_U, b_U, n_layers, position=-1):
        cache["blocks.0.hook_resid_pre"] *= 0
        return logit_lens(cache, ln_final, W_U, b_U, n_layers, position)

    before = reference.activations("sentence")["blocks.0.hook_resid_pre"].clone()
    with pytest.raises(tests.CheckFailed):
        tests.test_logit_lens(in_place)
    assert torch.equal(reference.activations("sentence")["blocks.0.hook_resid_pre"], before)
