"""Generation speed: notebook 09's naive loop, the course's KV cache and Hugging Face's generate, side by side.

Usage: ``python -m c1p1.bench_generation`` (``make bench`` runs it as the last section of ``c1p1.bench``).
On GPT-2 small's geometry with the loaded reference's weights, it generates ``--new-tokens`` tokens (200)
after a 20-token prompt, batch 1, greedy, on the course's device, three ways:

- the naive loop of notebook 09: ``DemoTransformer`` on the whole sequence at every step (run once: it is slow);
- the course's cached generation: ``generate_with_cache`` with ``CachedTransformer`` (notebook 13);
- Hugging Face's ``GPT2LMHeadModel.generate`` with its own cache, on a plain ``GPT2LMHeadModel`` holding the
  same weights (built the way ``c1p1.reference`` builds the reference's, without the TransformerLens bridge).

The cached and HF runs alternate (``--repeats`` each, median reported), so both see the same load. It prints
tokens per second, the ratios, whether the three produced the same tokens, the cache's size, and the load
average before and after: other programs on the machine move every figure, so compare within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

PROMPT_TOKENS = 20
NEW_TOKENS = 200
REPEATS = 3


def naive_generate(model, tokens, n_new: int):
    """Notebook 09's loop: the whole sequence through the model at every step, greedy."""
    import torch

    with torch.inference_mode():
        for _ in range(n_new):
            logits = model(tokens)  # (1, posn, d_vocab)
            tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)  # (1, posn + 1)
    return tokens


def hf_model_like(ref):
    """A plain GPT2LMHeadModel with the reference's weights, on its device, and whether its logits agree."""
    import torch

    from c1p1.reference import load_hf_model

    hf, _ = load_hf_model(ref.kind, "cache" if ref.kind == "gpt2" else ref.detail)
    hf = hf.to(ref.device).eval()
    hf.generation_config.eos_token_id = None  # always generate every token asked for
    hf.generation_config.pad_token_id = 50256
    tokens = ref.sentence_tokens()  # (1, 35)
    with torch.inference_mode():
        diff = float((hf(tokens).logits - ref.activations("sentence")["logits"]).abs().max())
    return hf, diff


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def time_generation(ref, n_new: int = NEW_TOKENS, repeats: int = REPEATS) -> dict[str, float]:
    import torch

    from c1p1.catalog import PartMissing, part

    try:
        demo_cls, cached_cls, generate_with_cache = (part(n)() for n in
                                                     ("DemoTransformer", "CachedTransformer", "generate_with_cache"))
    except PartMissing as exc:
        print(f"\nGeneration not available: {exc}")
        return {}
    cached = cached_cls(ref.cfg).to(ref.device)
    cached.load_state_dict(ref.params(), strict=True)
    naive = demo_cls(ref.cfg).to(ref.device)
    naive.load_state_dict(cached.state_dict(), strict=True, assign=True)  # the same tensors
    cached.eval(), naive.eval()
    hf, diff = hf_model_like(ref)
    prompt = ref.sentence_tokens()[:, :PROMPT_TOKENS]  # (1, 20)
    who = "GPT-2's weights" if ref.is_real else "the stand-in's weights (GPT-2 small's geometry)"
    print(f"\nGeneration: {n_new} new tokens after a {PROMPT_TOKENS}-token prompt, batch 1, greedy, {who}, on "
          f"{ref.device.type}, torch threads: {torch.get_num_threads()}; HF attention: {hf.config._attn_implementation}, "
          f"HF vs reference logits max |diff| {diff:.1e}")
    print(f"  load average before: {load()} on {os.cpu_count()} cores")

    def run_cached(n: int = n_new):
        with torch.inference_mode():  # as for HF below: no autograd bookkeeping on any tensor
            return generate_with_cache(cached, prompt, n, temperature=0.0)

    def run_hf(n: int = n_new):
        with torch.inference_mode():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False)

    def sync() -> None:
        if ref.device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - start, out

    times: dict[str, list[float]] = {"cached": [], "hf": []}
    outs = {}
    run_cached(5), run_hf(5)  # warm-up: first-call allocations
    for i in range(repeats):
        for name, fn in (("cached", run_cached), ("hf", run_hf)):
            seconds, outs[name] = timed(fn)
            times[name].append(seconds)
        if i == 0:  # the naive loop once, between the others, so it shares their conditions
            naive_seconds, outs["naive"] = timed(lambda: naive_generate(naive, prompt, n_new))
    rate = {"naive": n_new / naive_seconds, **{k: n_new / statistics.median(v) for k, v in times.items()}}
    spread = {k: f"{min(n_new / t for t in v):.1f}-{max(n_new / t for t in v):.1f}" for k, v in times.items()}
    with torch.inference_mode():  # (with autograd on, every step's graph would stay alive through the cache)
        _, cache = cached(prompt)  # a cache as full as at the end of a run: prompt + n_new - 1 positions
        for token in outs["cached"][0, PROMPT_TOKENS:-1]:
            _, cache = cached(token.view(1, 1), cache)
    same = torch.equal(outs["cached"], outs["naive"]) and torch.equal(outs["cached"].cpu(), outs["hf"].cpu())
    print(f"  naive loop (notebook 09, the whole sequence every step)  {rate['naive']:6.1f} tokens/s (1 run)")
    print(f"  cached (notebook 13, generate_with_cache)                {rate['cached']:6.1f} tokens/s "
          f"(median of {repeats}: {spread['cached']}); {rate['cached'] / rate['naive']:.1f}x the naive loop, "
          f"{rate['cached'] / rate['hf']:.2f}x HF")
    print(f"  Hugging Face GPT2LMHeadModel.generate (its own cache)    {rate['hf']:6.1f} tokens/s "
          f"(median of {repeats}: {spread['hf']})")
    print(f"  same tokens from all three: {'yes' if same else 'NO'}; the KV cache at the end: "
          f"{cache.n_positions} positions, {cache.size_bytes() / 1e6:.1f} MB")
    print(f"  load average after:  {load()}")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    from c1p1.reference import load_reference

    ref = load_reference()
    time_generation(ref, args.new_tokens, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
