"""Train nanoGPT's CPU Shakespeare recipe and the course's recipe side by side, on the same corpus.

Usage: ``python -m c1p1.bench_training`` (``make bench`` runs it after ``c1p1.bench``). For each recipe it
prints the throughput (tokens per second), the validation loss reached (the whole validation split, each
model with its own context) and the time taken, then the comparison issue 14 asks for: the course run's
validation loss at the moment its training time reaches the anchor's whole run (measured on the whole
validation split at that step), against the anchor's final loss; and the course's final loss and time against
the targets (``TARGET_LOSS`` nats/char within ``TARGET_SECONDS``). Last, the machine's load average during the
run: on a shared machine the times move with it, so compare the recipes from one command, not across runs.

``--quick`` runs the short recipe only (what ``make test`` trains). ``--recipes nanogpt,course`` picks; the
first is the anchor. Every recipe runs on the same model code (``c1p1.trained.FastTransformer``) with
notebook 11's parts, so the comparison is of the recipes. The anchor is nanoGPT's published recipe (Karpathy,
https://github.com/karpathy/nanoGPT, README "I only have a macbook"): 4 layers, 4 heads, 128 wide,
block 64, batch 12, AdamW 1e-3, betas (0.9, 0.99), 2,000 iterations, warm-up 100, cosine to 1e-4.
"""

from __future__ import annotations

import argparse
import os
import sys

TARGET_LOSS = 1.80  # nats per character on the validation split (issue 14)
TARGET_SECONDS = 300.0  # of training, on the 2-core machine


def interleave(recipes, train_data, val_data, d_vocab, device) -> list[dict]:
    """Train every recipe at once, always stepping the one with the least training time so far.

    On a shared machine the load moves; interleaving gives each recipe the same conditions, so their
    times compare. Each recipe's time is the sum of its own steps (validation estimates included).
    The first recipe is the anchor: once it is done, every other run's validation loss over the whole
    validation split is measured (outside its timed steps) just before its training time would pass the
    anchor's, which is the "lower loss in no more time" comparison.
    """
    from c1p1.trained import TrainingRun, full_val_loss

    runs = [TrainingRun(recipe, train_data, val_data, d_vocab, device) for recipe in recipes]
    anchor = runs[0]
    last_step = [0.0] * len(runs)  # seconds of each run's latest step
    at_anchor: dict[int, tuple[float, int, float]] = {}  # run index -> (its seconds, its step, full validation loss)
    while not all(run.done for run in runs):
        i, run = min(((i, run) for i, run in enumerate(runs) if not run.done), key=lambda pair: pair[1].history.seconds)
        if (anchor.done and i > 0 and i not in at_anchor
                and run.history.seconds + last_step[i] > anchor.history.seconds):
            at_anchor[i] = (run.history.seconds, run.step_count,
                            full_val_loss(run.model, run.val_data, run.recipe.block_size))
        before = run.history.seconds
        run.step()
        last_step[i] = run.history.seconds - before
    results = []
    for i, run in enumerate(runs):
        recipe = run.recipe
        final = full_val_loss(run.model, run.val_data, recipe.block_size)
        if i > 0 and i not in at_anchor:  # done before the anchor's time was up: its final model is the one
            at_anchor[i] = (run.history.seconds, run.step_count, final)
        results.append({"recipe": recipe, "val": final, "seconds": run.history.seconds,
                        "tokens_per_s": recipe.tokens_per_step * recipe.max_steps / run.history.seconds,
                        "params": sum(p.numel() for p in run.model.parameters()), "curve": run.history.val,
                        "at_anchor": at_anchor.get(i)})
    return results


def report(results: list[dict]) -> list[str]:
    """The lines `main` prints: each recipe, then each recipe against the anchor (the first) and the targets."""
    lines = []
    for result in results:
        r = result["recipe"]
        curve = ", ".join(f"{step}: {loss:.2f}" for step, loss in result["curve"])
        lines.append(f"  {r.name:<12} {r.n_layers} layers x {r.d_model} wide ({result['params'] / 1e6:.2f} M parameters), "
                     f"batch {r.batch_size} x block {r.block_size} ({r.tokens_per_step:,} tokens/step), "
                     f"{r.max_steps:,} steps, lr {r.max_lr:g} -> {r.min_lr:g}")
        lines.append(f"  {'':<12} validation loss {result['val']:.3f} nats/char in {result['seconds']:.0f} s, "
                     f"{result['tokens_per_s']:,.0f} tokens/s   (estimates during training: {curve})")
    anchor = results[0]
    for result in results[1:]:
        name, (seconds, step, val) = result["recipe"].name, result["at_anchor"]
        lower = val < anchor["val"]
        lines.append(f"{name} vs {anchor['recipe'].name}: at the anchor's time ({anchor['seconds']:.0f} s; {name} at "
                     f"{seconds:.0f} s, step {step:,}) validation loss {val:.3f} vs the anchor's final "
                     f"{anchor['val']:.3f} ({val - anchor['val']:+.3f}): {'lower' if lower else 'NOT lower'}")
        met = result["val"] <= TARGET_LOSS and result["seconds"] <= TARGET_SECONDS
        lines.append(f"{name} final: {result['val']:.3f} nats/char in {result['seconds']:.0f} s "
                     f"(x{result['seconds'] / anchor['seconds']:.2f} the anchor's time); target at most "
                     f"{TARGET_LOSS:.2f} within {TARGET_SECONDS:.0f} s: {'met' if met else 'NOT met'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="nanogpt,course",
                        help="comma-separated, the first is the anchor: nanogpt, course, nanogpt-2x-lr, big-batch, quick")
    parser.add_argument("--quick", action="store_true", help="only the short recipe that make test trains")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch

    from c1p1 import course_device
    from c1p1.data import CorpusMissing, char_splits, load_text
    from c1p1.trained import RECIPES

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        text = load_text()
    except CorpusMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    tokenizer, train_data, val_data = char_splits(text)
    device = course_device()
    names = ["quick"] if args.quick else [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    print(f"Training side by side on {device} with {torch.get_num_threads()} torch thread(s), torch "
          f"{torch.__version__}: {len(text):,} characters, vocabulary {tokenizer.d_vocab}, "
          f"{len(val_data):,} validation characters")
    load_before = os.getloadavg()
    results = interleave([RECIPES[name] for name in names], train_data, val_data, tokenizer.d_vocab, device)
    load_after = os.getloadavg()
    print("\n".join(report(results)))
    print(f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
