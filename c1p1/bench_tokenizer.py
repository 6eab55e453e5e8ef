"""Tokenizer speed: notebook 15's encoder and trainer beside Hugging Face's and tiktoken's (``make bench``).

Usage: ``python -m c1p1.bench_tokenizer [--chars N] [--vocab-size V] [--naive-merges K]``. On the Shakespeare
corpus (all of it by default) it prints:

- encoding: the course's ``BPETokenizer`` (notebook 15, pure Python, a fresh instance so its cache of
  pre-tokens starts empty), Hugging Face's pure-Python ``GPT2Tokenizer`` (``c1p1.reference.build_tokenizer``,
  without its BOS token) and tiktoken (Rust), all three over GPT-2's own ``encoder.json`` and ``vocab.bpe``:
  MB/s, the ratios, and whether the three give identical tokens;
- training to ``--vocab-size`` (1,256: 1,000 merges): the course's ``train_bpe`` (incremental pair counts),
  the plain loop that recounts every pair at every merge (``--naive-merges`` merges timed, then extrapolated),
  and the ``tokenizers`` library's ``BpeTrainer`` (Rust) with GPT-2's byte-level pre-tokenizer, with how many
  of its merges the course's trainer also makes, and how many at the same rank.

It prints figures and asserts nothing; other programs on the machine move every figure (the load average is
printed before and after), so compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

VOCAB_SIZE = 1256  # 256 bytes + 1,000 merges
NAIVE_MERGES = 3


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


class Seconds(float):
    """Wall-clock seconds of one call, carrying its CPU seconds (this process, all threads) as ``.cpu``."""

    cpu: float = float("nan")

    def __str__(self) -> str:
        return f"(CPU {self.cpu:.2f} s)"


def timed(fn, *args) -> tuple[object, Seconds]:
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    seconds = Seconds(time.perf_counter() - start)
    seconds.cpu = time.process_time() - cpu
    return out, seconds


def bench_encode(text: str) -> dict[str, float]:
    """Encode text three ways; print MB/s, ratios and whether the tokens agree. Returns the seconds of each."""
    from c1p1.checks.tokenizer import gpt2_encoding, gpt2_files
    from c1p1.parts import BPETokenizer
    from c1p1.reference import build_tokenizer

    megabytes = len(text.encode("utf-8")) / 1e6
    course, build_s = timed(BPETokenizer, *gpt2_files())
    hf = build_tokenizer()
    tik = gpt2_encoding()
    ours, ours_s = timed(course.encode, text)
    theirs, hf_s = timed(lambda t: hf.encode(t, add_special_tokens=False), text)
    rust, tik_s = timed(tik.encode_ordinary, text)
    print(f"Encoding {len(text):,} characters ({megabytes:.2f} MB) with GPT-2's merges:")
    print(f"  course BPETokenizer (pure Python, cache of pre-tokens): {ours_s:6.2f} s  {megabytes / ours_s:5.2f} MB/s"
          f"  {ours_s}, built in {build_s:.2f} s")
    print(f"  Hugging Face GPT2Tokenizer (pure Python):               {hf_s:6.2f} s  {megabytes / hf_s:5.2f} MB/s  {hf_s}")
    print(f"  tiktoken (Rust):                                        {tik_s:6.2f} s  {megabytes / tik_s:5.2f} MB/s  {tik_s}")
    print(f"  course / Hugging Face speed: {hf_s / ours_s:.2f}x; tiktoken / course: {ours_s / tik_s:.1f}x")
    same = ours == list(theirs) == list(rust)
    print(f"  tokens: course {len(ours):,}, Hugging Face {len(theirs):,}, tiktoken {len(rust):,}: "
          + ("identical" if same else "DIFFERENT"))
    return {"course": ours_s, "hf": hf_s, "tiktoken": tik_s, "identical": float(same)}


def bench_train(text: str, vocab_size: int = VOCAB_SIZE, naive_merges: int = NAIVE_MERGES) -> dict[str, float]:
    """Train to vocab_size three ways; print the times. Returns the seconds of each (the naive one extrapolated)."""
    from c1p1.checks.tokenizer import reference_train
    from c1p1.parts import bytes_to_unicode, train_bpe

    n_merges = vocab_size - 256
    (merges, _), ours_s = timed(train_bpe, text, vocab_size)
    _, setup_s = timed(reference_train, text, 256)  # pre-tokenize and count the words, no merge
    _, naive_s = timed(reference_train, text, 256 + naive_merges)
    per_merge = max(naive_s - setup_s, 0.0) / naive_merges
    naive_total = setup_s + per_merge * n_merges
    rust_s, same, same_rank = float("nan"), -1, -1
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        _, rust_s = timed(tok.train_from_iterator, [text], trainer)
        table = bytes_to_unicode()
        vocab = {i: bytes([i]) for i in range(256)}
        for k, (a, b) in enumerate(merges):
            vocab[256 + k] = vocab[a] + vocab[b]
        ours_text = ["".join(table[x] for x in vocab[a]) + " " + "".join(table[x] for x in vocab[b]) for a, b in merges]
        rust_merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]
        same = len(set(ours_text) & set(rust_merges))
        same_rank = sum(a == b for a, b in zip(ours_text, rust_merges, strict=False))
    except ImportError:
        pass
    print(f"Training a byte-level BPE to a vocabulary of {vocab_size:,} ({n_merges:,} merges) on {len(text):,} characters:")
    print(f"  course train_bpe (incremental pair counts, a heap):     {ours_s:7.2f} s  {ours_s}")
    print(f"  plain loop recounting every pair at every merge:        {naive_total:7.1f} s  (extrapolated: "
          f"{setup_s:.2f} s to count the words, {per_merge:.3f} s a merge, {naive_merges} merges timed)")
    print(f"  {f'tokenizers BpeTrainer (Rust, {os.cpu_count()} cores):':55} {rust_s:7.2f} s  {rust_s}"
          + (f"  ({same:,} of its {n_merges:,} merges are also the course's, {same_rank:,} at the same rank)" if same >= 0 else ""))
    print(f"  speed-up of the incremental counts over the plain loop: {naive_total / ours_s:.0f}x")
    return {"course": ours_s, "naive": naive_total, "tokenizers": rust_s}


def bench_tokenizer(chars: int | None = None, vocab_size: int = VOCAB_SIZE, naive_merges: int = NAIVE_MERGES) -> dict:
    """The whole section: encoding and training on the first ``chars`` characters of the corpus (all by default)."""
    from c1p1.data import load_text

    text = load_text()
    text = text if chars is None else text[:chars]
    print(f"== Tokenizer (notebook 15); load average {load()}")
    out = {"encode": bench_encode(text), "train": bench_train(text, vocab_size, naive_merges)}
    print(f"   load average after: {load()}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=None, help="the first N characters of the corpus (default: all)")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--naive-merges", type=int, default=NAIVE_MERGES)
    args = parser.parse_args(argv)
    bench_tokenizer(args.chars, args.vocab_size, args.naive_merges)
    return 0


if __name__ == "__main__":
    sys.exit(main())
