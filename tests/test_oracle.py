"""The checks' reference computations reproduce the bridge's own hooks, so a check compares against GPT-2."""

from __future__ import annotations

import torch

from c1p1.checks import oracle

ATOL = 1e-4


def close(a, b):
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=ATOL, rtol=1e-3), float((a - b).abs().max())


def test_every_component_matches_its_hooks(reference):
    p = reference.params()
    eps = reference.cfg.layer_norm_eps
    for which in ("sentence", "batch"):
        a = reference.activations(which)
        tokens = a["tokens"]
        close(oracle.embed(tokens, oracle.sub(p, "embed")), a["hook_embed"])
        close(oracle.pos_embed(tokens, oracle.sub(p, "pos_embed")), a["hook_pos_embed"])
        for i in (0, 7):
            b = f"blocks.{i}"
            close(oracle.layer_norm(a[f"{b}.ln1.hook_in"], oracle.sub(p, f"{b}.ln1"), eps), a[f"{b}.ln1.hook_out"])
            pattern, out = oracle.attention_parts(a[f"{b}.ln1.hook_out"], oracle.sub(p, f"{b}.attn"))
            close(pattern, a[f"{b}.attn.hook_pattern"])
            close(out, a[f"{b}.attn.hook_out"])
            close(oracle.mlp(a[f"{b}.ln2.hook_out"], oracle.sub(p, f"{b}.mlp")), a[f"{b}.mlp.hook_out"])
            close(oracle.block(a[f"{b}.hook_resid_pre"], oracle.sub(p, b), eps), a[f"{b}.hook_resid_post"])
        close(oracle.unembed(a["ln_final.hook_out"], oracle.sub(p, "unembed")), a["logits"])
        close(oracle.model(tokens, p, reference.cfg), a["logits"])


def test_causal_mask_and_log_probs():
    scores = torch.randn(1, 2, 4, 4)  # (batch, n_heads, query_pos, key_pos)
    masked = oracle.causal_mask(scores)
    assert torch.isinf(masked[0, 0, 0, 1:]).all() and torch.equal(masked[0, 0, 3], scores[0, 0, 3])
    logits = torch.randn(2, 5, 7)  # (batch, posn, d_vocab)
    tokens = torch.randint(0, 7, (2, 5))  # (batch, posn)
    lp = oracle.log_probs(logits, tokens)
    expected = -torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), tokens[:, 1:].reshape(-1), reduction="none")
    close(lp, expected.view(2, 4))
