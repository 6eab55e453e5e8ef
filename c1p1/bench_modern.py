"""Notebook 16's comparison: a modern model and a GPT-2-style model of the same size, trained side by side.

Usage: ``python -m c1p1.bench_modern`` (``make bench`` runs it). Both models train with notebook 11's recipe
and parts (``c1p1.trained``: the same batches, optimiser, schedule and initialisation), interleaved step by
step so that a shared machine's load falls on both alike. The GPT-2-style model is the course's
``FastTransformer`` at the recipe's sizes; the modern one is ``FastModernTransformer`` (RMSNorm, RoPE,
SwiGLU, GQA, no biases), with the recipe's width, depth and heads, half as many key-value heads, and the
SwiGLU width that brings its parameter count to the GPT-2-style model's (`matching_modern_config`). It
prints each model's validation loss over the whole validation split and its training time, the modern
model's loss when its training time reaches the GPT-2-style model's whole run, and how the modern model
does on windows longer than it was trained on (the GPT-2-style model has no position vector there).

``--quick`` runs the short recipe that notebook 16 trains under ``C1P1_QUICK=1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from c1p1.modern import ModernConfig
from c1p1.trained import Recipe

# The short form notebook 16 runs under C1P1_QUICK=1 (and tests/test_modern.py): a few seconds for both models.
TINY_RECIPE = Recipe(name="tiny", n_layers=2, n_heads=4, d_model=32, block_size=32, batch_size=16,
                     max_steps=80, warmup_steps=8, max_lr=5e-3, min_lr=5e-4, eval_every=20, eval_batches=4)
TINY_VAL_CHARS = 8192  # the short form's final losses are measured on the first characters of the validation split


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def modern_parameters(cfg: ModernConfig) -> int:
    """A ModernTransformer's parameter count, from its sizes alone."""
    attention = cfg.d_model * cfg.d_head * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    block = attention + 3 * cfg.d_model * cfg.d_mlp + 2 * cfg.d_model
    return 2 * cfg.d_vocab * cfg.d_model + cfg.n_layers * block + cfg.d_model


def matching_modern_config(recipe: Recipe, d_vocab: int, gpt2_parameters: int) -> ModernConfig:
    """The recipe's width, depth and heads, half the key-value heads, and d_mlp (a multiple of 8) that matches the count."""
    base = ModernConfig(d_model=recipe.d_model, d_vocab=d_vocab, n_ctx=recipe.block_size, d_head=recipe.d_model // recipe.n_heads,
                        d_mlp=8, n_heads=recipe.n_heads, n_kv_heads=max(1, recipe.n_heads // 2), n_layers=recipe.n_layers)
    best = min(range(8, 16 * recipe.d_model, 8),
               key=lambda d_mlp: abs(modern_parameters(dataclasses.replace(base, d_mlp=d_mlp)) - gpt2_parameters))
    return dataclasses.replace(base, d_mlp=best)


def fast_modern_forward(model: nn.Module, tokens: Tensor) -> Tensor:
    """ModernTransformer's function on its parameters, computed with fused kernels (F.rms_norm, SDPA with GQA)."""
    cfg = model.cfg
    batch, posn = tokens.shape
    n_heads, n_kv, d_head, d_model, eps = cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_model, cfg.rms_norm_eps
    half = d_head // 2
    k_index = torch.arange(0, d_head, 2, device=tokens.device, dtype=torch.float32)  # (d_head/2,)
    angles = torch.arange(posn, device=tokens.device).float()[:, None] * cfg.rope_theta ** (-k_index / d_head)  # (posn, d_head/2)
    angles = torch.cat([angles, angles], dim=-1)  # (posn, d_head)
    cos, sin = angles.cos(), angles.sin()  # (posn, d_head) each

    def rope(t: Tensor) -> Tensor:  # (batch, heads, posn, d_head)
        return t * cos + torch.cat([-t[..., half:], t[..., :half]], dim=-1) * sin

    resid = model.embed.W_E[tokens]  # (batch, posn, d_model)
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        x = F.rms_norm(resid, (d_model,), block.ln1.w, eps)  # (batch, posn, d_model)
        # (heads, d_model, d_head) -> (d_model, heads * d_head) for each of Q, K, V: one matrix product
        W_QKV = torch.cat([w.permute(1, 0, 2).reshape(d_model, -1) for w in (attn.W_Q, attn.W_K, attn.W_V)], dim=1)
        q, k, v = (x @ W_QKV).split([n_heads * d_head, n_kv * d_head, n_kv * d_head], dim=-1)
        q = q.view(batch, posn, n_heads, d_head).transpose(1, 2)  # (batch, n_heads, posn, d_head)
        k = k.view(batch, posn, n_kv, d_head).transpose(1, 2)  # (batch, n_kv_heads, posn, d_head)
        v = v.view(batch, posn, n_kv, d_head).transpose(1, 2)  # (batch, n_kv_heads, posn, d_head)
        z = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True, enable_gqa=True)  # (batch, n_heads, posn, d_head)
        z = z.transpose(1, 2).reshape(batch, posn, n_heads * d_head)  # (batch, posn, n_heads * d_head)
        resid = resid + z @ attn.W_O.reshape(n_heads * d_head, d_model)  # (batch, posn, d_model)
        x = F.rms_norm(resid, (d_model,), block.ln2.w, eps)  # (batch, posn, d_model)
        resid = resid + (F.silu(x @ mlp.W_gate) * (x @ mlp.W_in)) @ mlp.W_out  # (batch, posn, d_model)
    return F.rms_norm(resid, (d_model,), model.ln_final.w, eps) @ model.unembed.W_U  # (batch, posn, d_vocab)


def fast_modern_class() -> type[nn.Module]:
    """ModernTransformer (from c1p1.parts) with the fused forward: the same parameters and the same function."""
    from c1p1.parts import ModernTransformer

    return type("FastModernTransformer", (ModernTransformer,), {"forward": fast_modern_forward})


def train_side_by_side(recipe: Recipe, train_data: Tensor, val_data: Tensor, d_vocab: int, device) -> dict:
    """Train the GPT-2-style and the modern model with one recipe, interleaved; their curves, times and losses.

    Each curve is (step, seconds of training so far, validation estimate). ``at_gpt2_time`` is the modern
    model's loss over the whole validation split when its training time reached the GPT-2-style model's
    whole run (or its final loss, if it finished first).
    """
    from c1p1.parts import init_weights
    from c1p1.trained import FastTransformer, TrainingRun, full_val_loss

    torch.manual_seed(recipe.seed)
    gpt2 = FastTransformer(recipe.config(d_vocab))
    init_weights(gpt2)
    cfg = matching_modern_config(recipe, d_vocab, count(gpt2))
    torch.manual_seed(recipe.seed)
    modern = fast_modern_class()(cfg)
    init_weights(modern)
    runs = {"GPT-2-style": TrainingRun(recipe, train_data, val_data, d_vocab, device, model=gpt2),
            "modern": TrainingRun(recipe, train_data, val_data, d_vocab, device, model=modern)}
    curves: dict[str, list[tuple[int, float, float]]] = {name: [] for name in runs}
    at_gpt2_time = None
    last_step = 0.0  # seconds of the modern model's latest step
    while not all(run.done for run in runs.values()):
        name, run = min(((n, r) for n, r in runs.items() if not r.done), key=lambda pair: pair[1].history.seconds)
        gpt2_run = runs["GPT-2-style"]
        if (name == "modern" and gpt2_run.done and at_gpt2_time is None
                and run.history.seconds + last_step > gpt2_run.history.seconds):  # the next step would pass its time
            at_gpt2_time = (run.step_count, full_val_loss(run.model, run.val_data, recipe.block_size))
        before = run.history.seconds
        _, val = run.step()
        if name == "modern":
            last_step = run.history.seconds - before
        if val is not None:
            curves[name].append((run.step_count, run.history.seconds, val))
    out = {"recipe": recipe, "modern_cfg": cfg, "curves": curves, "models": {n: r.model.eval() for n, r in runs.items()}}
    for name, run in runs.items():
        out[name] = {"val": full_val_loss(run.model, run.val_data, recipe.block_size), "seconds": run.history.seconds,
                     "params": count(run.model)}
    out["at_gpt2_time"] = at_gpt2_time or (runs["modern"].step_count, out["modern"]["val"])
    return out


@torch.no_grad()
@torch.no_grad()
def window_losses(model: nn.Module, data: Tensor, length: int, batch: int = 64) -> Tensor:
    """Cross-entropy at every position of every non-overlapping window of ``length`` characters: (windows, length)."""
    device = next(model.parameters()).device
    n_windows = (len(data) - 1) // length  # every window the data allows
    losses = []
    for first in range(0, n_windows, batch):
        last = min(n_windows, first + batch)
        inputs = data[first * length : last * length].view(-1, length).to(device)  # (windows, length)
        targets = data[first * length + 1 : last * length + 1].view(-1, length).to(device)  # (windows, length)
        logits = model(inputs)  # (windows, length, d_vocab)
        losses.append(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(-1, length))
    return torch.cat(losses)  # (windows, length)


def beyond_training_length(model: nn.Module, data: Tensor, block: int, spans: int = 4) -> dict[str, Tensor]:
    """Each span of ``block`` positions in windows of ``spans * block`` characters, against the same characters
    scored in windows of ``block`` (the training length). Returns (windows, spans) tensors of mean losses:
    ``long`` and ``short``; their difference per window is what the long context changes."""
    long = window_losses(model, data, spans * block)  # (windows, spans * block)
    n_windows = long.shape[0]
    short = window_losses(model, data[: n_windows * spans * block + 1], block)  # (windows * spans, block)
    return {"long": long.view(n_windows, spans, block).mean(dim=-1),  # (windows, spans)
            "short": short.view(n_windows, spans, block).mean(dim=-1)}  # (windows, spans)


def span_lines(result: dict[str, Tensor], block: int) -> list[str]:
    """One line per span: the long windows' loss, the same characters in windows of ``block``, and the difference
    with twice its standard error over the windows (a difference inside that is noise)."""
    difference = result["long"] - result["short"]  # (windows, spans)
    n_windows = difference.shape[0]
    lines = []
    for span in range(difference.shape[1]):
        mean, noise = difference[:, span].mean().item(), 2 * difference[:, span].std().item() / n_windows**0.5
        verdict = ("the same computation" if span == 0 else "within noise" if abs(mean) <= noise
                   else "worse" if mean > 0 else "better")
        lines.append(f"positions {span * block:4}-{(span + 1) * block - 1:4}: {result['long'][:, span].mean().item():.3f} "
                     f"vs {result['short'][:, span].mean().item():.3f} in windows of {block}: {mean:+.3f} "
                     f"(noise ±{noise:.3f}; {verdict})")
    return lines


def report(result: dict) -> list[str]:
    recipe, cfg = result["recipe"], result["modern_cfg"]
    gpt2, modern = result["GPT-2-style"], result["modern"]
    step, val_at = result["at_gpt2_time"]
    lines = [
        f"  recipe {recipe.name}: {recipe.n_layers} layers x {recipe.d_model} wide, batch {recipe.batch_size} x block "
        f"{recipe.block_size}, {recipe.max_steps:,} steps, lr {recipe.max_lr:g} -> {recipe.min_lr:g}",
        f"  GPT-2-style ({gpt2['params']:,} parameters, d_mlp {4 * recipe.d_model}, {recipe.n_heads} heads): "
        f"validation {gpt2['val']:.3f} nats/char in {gpt2['seconds']:.1f} s",
        f"  modern      ({modern['params']:,} parameters, d_mlp {cfg.d_mlp}, {cfg.n_heads} query / {cfg.n_kv_heads} "
        f"key-value heads): validation {modern['val']:.3f} nats/char in {modern['seconds']:.1f} s",
        f"  modern at the GPT-2-style model's training time ({gpt2['seconds']:.1f} s, step {step:,}): {val_at:.3f} vs "
        f"{gpt2['val']:.3f} ({val_at - gpt2['val']:+.3f}): {'lower' if val_at < gpt2['val'] else 'NOT lower'}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short recipe notebook 16 trains under C1P1_QUICK=1")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    from c1p1 import course_device
    from c1p1.data import CorpusMissing, char_splits, load_text
    from c1p1.trained import COURSE_RECIPE

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        text = load_text()
    except CorpusMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    tokenizer, train_data, val_data = char_splits(text)
    device = course_device()
    recipe = TINY_RECIPE if args.quick else COURSE_RECIPE
    print(f"GPT-2-style and modern models side by side on {device} with {torch.get_num_threads()} torch thread(s), "
          f"torch {torch.__version__}")
    load_before = os.getloadavg()
    start = time.perf_counter()
    result = train_side_by_side(recipe, train_data, val_data, tokenizer.d_vocab, device)
    print("\n".join(report(result)))
    block = recipe.block_size
    beyond = beyond_training_length(result["models"]["modern"], val_data, block)  # (windows, 4) each
    print(f"  modern model on all {beyond['long'].shape[0]} windows of {4 * block} the validation split allows "
          f"(trained on {block}), mean loss by span vs the same characters in windows of {block}:")
    print("\n".join("    " + line for line in span_lines(beyond, block)))
    print(f"  GPT-2-style model on windows of {4 * block}: cannot run, W_pos has {block} rows")
    load_after = os.getloadavg()
    print(f"Total {time.perf_counter() - start:.0f} s. Load average (1 min) {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after, on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
