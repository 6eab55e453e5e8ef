"""Train nanoGPT's CPU Shakespeare recipe and the course's recipe side by side, on the same corpus.

Usage: ``python -m c1p1.bench_training`` (``make bench`` runs it after ``c1p1.bench``). For each recipe it
prints the throughput (tokens per second), the validation loss reached (the whole validation split, each
model with its own context) and the time taken, then the machine's load average during the run: on a
shared machine the figures move with it, so compare the two recipes from one command, not across runs.

``--quick`` runs the short recipe only (what ``make test`` trains). ``--recipes nanogpt,course`` picks.
Both recipes run on the same model code (``c1p1.trained.FastTransformer``) with notebook 11's parts,
so the comparison is of the recipes. The anchor is nanoGPT's published recipe (Karpathy,
https://github.com/karpathy/nanoGPT, README "I only have a macbook"): 4 layers, 4 heads, 128 wide,
block 64, batch 12, AdamW 1e-3, betas (0.9, 0.99), 2,000 iterations, warm-up 100, cosine to 1e-4.
"""

from __future__ import annotations

import argparse
import os
import sys


def interleave(recipes, train_data, val_data, d_vocab, device) -> list[dict]:
    """Train every recipe at once, always stepping the one with the least training time so far.

    On a shared machine the load moves; interleaving gives each recipe the same conditions, so their
    times compare. Each recipe's time is the sum of its own steps (validation estimates included).
    """
    from c1p1.trained import TrainingRun, full_val_loss

    runs = [TrainingRun(recipe, train_data, val_data, d_vocab, device) for recipe in recipes]
    while not all(run.done for run in runs):
        min((run for run in runs if not run.done), key=lambda run: run.history.seconds).step()
    results = []
    for run in runs:
        recipe = run.recipe
        results.append({"recipe": recipe, "val": full_val_loss(run.model, run.val_data, recipe.block_size),
                        "seconds": run.history.seconds,
                        "tokens_per_s": recipe.tokens_per_step * recipe.max_steps / run.history.seconds,
                        "params": sum(p.numel() for p in run.model.parameters()), "curve": run.history.val})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="nanogpt,course", help="comma-separated: nanogpt, course, quick")
    parser.add_argument("--quick", action="store_true", help="only the short recipe that make test trains")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch

    from c1p1 import course_device
    from c1p1.data import CharTokenizer, CorpusMissing, load_text, split
    from c1p1.trained import COURSE_RECIPE, NANOGPT_RECIPE, QUICK_RECIPE

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        text = load_text()
    except CorpusMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    tokenizer = CharTokenizer(text)
    train_text, val_text = split(text)
    train_data, val_data = tokenizer.encode(train_text), tokenizer.encode(val_text)
    device = course_device()
    table = {"nanogpt": NANOGPT_RECIPE, "course": COURSE_RECIPE, "quick": QUICK_RECIPE}
    names = ["quick"] if args.quick else [n.strip() for n in args.recipes.split(",") if n.strip()]
    print(f"Training side by side on {device} with {torch.get_num_threads()} torch thread(s), torch "
          f"{torch.__version__}: {len(text):,} characters, vocabulary {tokenizer.d_vocab}, "
          f"{len(val_data):,} validation characters")
    load_before = os.getloadavg()
    results = interleave([table[name] for name in names], train_data, val_data, tokenizer.d_vocab, device)
    for result in results:
        r = result["recipe"]
        curve = ", ".join(f"{step}: {loss:.2f}" for step, loss in result["curve"])
        print(f"  {r.name:<12} {r.n_layers} layers x {r.d_model} wide ({result['params'] / 1e6:.2f} M parameters), "
              f"batch {r.batch_size} x block {r.block_size}, {r.max_steps} steps, lr {r.max_lr:g}")
        print(f"  {'':<12} validation loss {result['val']:.3f} nats/char in {result['seconds']:.0f} s, "
              f"{result['tokens_per_s']:,.0f} tokens/s   (estimates during training: {curve})")
    load_after = os.getloadavg()
    print(f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores")
    if len(results) == 2:
        a, b = results
        print(f"{b['recipe'].name} vs {a['recipe'].name}: validation loss {b['val'] - a['val']:+.3f} nats/char, "
              f"time x{b['seconds'] / a['seconds']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
