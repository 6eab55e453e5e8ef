"""Time the course's moving parts: the reference, every check, and our GPT-2 against the reference's.

Usage: ``python -m c1p1.bench`` (or ``make bench``). It prints figures and asserts nothing:

- how long ``load_reference()`` takes, and the reference's activations on the sentence and the batch;
- each check of ``c1p1.catalog`` run on its canonical answer once the reference is loaded (median of 3);
- the canonical ``DemoTransformer`` (the reference's weights loaded strictly) against the reference
  bridge's forward pass on the same tokens: the reference sentence and a batch of 4 x 128 tokens,
  median of 7 alternating runs each, with the ratio and the largest logit difference;
- generation with and without the KV cache, against Hugging Face's ``generate`` (``c1p1.bench_generation``);
- notebook 14's induction model trained from its recipe (not from the cache): the time, the step at which the
  repeated half is learned, and the two heads' scores;
- the process's peak resident memory.

Run it with ``OMP_NUM_THREADS=1`` (as ``make bench`` does) for figures comparable between machines.
"""

from __future__ import annotations

import contextlib
import io
import resource
import statistics
import sys
import time
from collections.abc import Callable

REPEATS = 3
MODEL_REPEATS = 7
BATCH_SHAPE = (4, 128)


def run_times(fn: Callable[[], object], repeats: int = REPEATS) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def seconds(t: float) -> str:
    return f"{t * 1000:8.1f} ms" if t < 1 else f"{t:8.2f} s "


def peak_rss_mib() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 / 1024 if sys.platform == "darwin" else usage / 1024  # bytes on macOS, KiB on Linux


def time_checks() -> None:
    from c1p1.catalog import CHECKS, PartMissing, check_function

    print(f"\nEach check on its canonical answer, reference already loaded (median of {REPEATS}; first run):")
    width = max(len(name) for name in CHECKS)
    total = 0.0
    for name, info in CHECKS.items():
        try:
            check = check_function(name)
            thing = info.canonical()
        except (AttributeError, PartMissing) as exc:
            print(f"  {name:<{width}}  not available: {exc}")
            continue

        def run(check=check, thing=thing) -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                check(thing)

        try:
            times = run_times(run)
        except Exception as exc:  # a figure, not a test: report and go on
            print(f"  {name:<{width}}  raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        t = statistics.median(times)
        total += t
        print(f"  {name:<{width}}  {seconds(t)}   (first {seconds(times[0]).strip()})")
    print(f"  {'all checks':<{width}}  {seconds(total)}")


def time_model(ref) -> None:
    import torch

    from c1p1.catalog import PartMissing, part
    from c1p1.checks import core

    try:
        demo_cls = part("DemoTransformer")()
    except PartMissing as exc:
        print(f"\nDemoTransformer not available: {exc}")
        return
    model = demo_cls(ref.cfg).to(ref.device)
    core.load_strict(model, ref.params(), "bench")
    model.eval()
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, ref.cfg.d_vocab, BATCH_SHAPE, generator=gen).to(ref.device)  # (4, 128)
    inputs = {
        f"reference sentence {tuple(ref.sentence_tokens().shape)}": ref.sentence_tokens(),
        f"random tokens {BATCH_SHAPE}": batch,
    }
    print(f"\nForward pass, DemoTransformer (canonical, reference weights) vs the reference bridge "
          f"(median of {MODEL_REPEATS}, the two runs alternating; torch threads: {torch.get_num_threads()}):")
    for label, tokens in inputs.items():
        with torch.no_grad():
            ours = model(tokens)  # (batch, posn, d_vocab)
            theirs = ref.model(tokens)  # (batch, posn, d_vocab)
            # Alternating runs share whatever else the machine is doing, so their ratio is steadier.
            pairs = [(run_times(lambda t=tokens: model(t), 1)[0], run_times(lambda t=tokens: ref.model(t), 1)[0])
                     for _ in range(MODEL_REPEATS)]
        t_ours = statistics.median(p[0] for p in pairs)
        t_theirs = statistics.median(p[1] for p in pairs)
        diff = float((ours - theirs).abs().max())
        print(f"  {label}: DemoTransformer {seconds(t_ours).strip()}, bridge {seconds(t_theirs).strip()}, "
              f"ratio {t_ours / t_theirs:.2f}x; max |logit difference| {diff:.2e}")


def time_induction() -> list[str]:
    """Train notebook 14's induction model from its recipe, bypassing the cache; print and return the report."""
    import math

    import torch

    from c1p1 import parts
    from c1p1.induction import RECIPE, SEQ_LEN, eval_tokens, train_from_recipe
    from c1p1.reference import pick_device

    device = pick_device()
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bar
        model, history = train_from_recipe(device)
    total = time.perf_counter() - start
    steps = RECIPE["steps"]
    half = math.log(RECIPE["d_vocab"]) / 2
    learned = next((step for step, _, repeated in history if repeated < half), None)
    with torch.no_grad():
        model(eval_tokens(device))
    prev = parts.prev_token_score(model.blocks[0].attn.pattern).max().item()
    induction = parts.induction_score(model.blocks[-1].attn.pattern, SEQ_LEN).max().item()
    _, first, repeated = history[-1]
    lines = [
        f"\nInduction model (notebook 14), trained from its recipe on {device.type}, torch threads: "
        f"{torch.get_num_threads()}:",
        f"  {steps} steps of {RECIPE['batch']} sequences in {total:.1f} s ({1000 * total / steps:.1f} ms a step, "
        f"evaluation every 25 steps included)",
        f"  repeated half below ln({RECIPE['d_vocab']})/2 from step {learned} of {steps}; at the end: first half "
        f"{first:.3f}, repeated half {repeated:.3f} nats",
        f"  best previous-token score (layer 0) {prev:.3f}, best induction score (layer 1) {induction:.3f}",
    ]
    print("\n".join(lines))
    return lines


def main() -> int:
    from c1p1.reference import load_reference

    start = imported = time.perf_counter()
    ref = load_reference(verbose=False)
    loaded = time.perf_counter()
    ref.activations("sentence")
    ref.activations("batch")
    cached = time.perf_counter()
    print(ref.describe())
    print(f"  load_reference()                  {seconds(loaded - imported)}")
    print(f"  activations (sentence and batch)  {seconds(cached - loaded)}")
    time_checks()
    time_model(ref)
    from c1p1.bench_generation import time_generation

    time_generation(ref)
    time_induction()
    print(f"\nPeak resident memory: {peak_rss_mib():.0f} MiB; whole run {time.perf_counter() - start:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
