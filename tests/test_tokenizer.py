"""Notebook 15's checks: the solution and correct alternatives pass, the stubs are not done, each mistake is named.

The tokenizer check encodes the whole corpus once for the solution (tests/test_every_check.py and nbval);
here the variants run on a slice (CORPUS_CHARS), since every mistake shows on the hard strings first.
"""

from __future__ import annotations

import functools
import heapq
from collections import Counter
from itertools import pairwise

import pytest
import regex

import C1P1_tests as tests
from c1p1 import parts
from c1p1.checks import tokenizer as checks
from c1p1.checks.tokenizer import GPT2_PATTERN, PATTERNS, SPECIAL, reference_train
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

CHECKS = {
    "bytes_to_unicode": tests.test_bytes_to_unicode,
    "pretokenize": tests.test_pretokenize,
    "count_pairs": tests.test_count_pairs,
    "merge_pair": tests.test_merge_pair,
    "BPETokenizer": tests.test_bpe_tokenizer,
    "train_bpe": tests.test_train_bpe,
}


@functools.cache
def stubs() -> dict:
    return definitions("notebooks/15_tokenizer.ipynb")


@pytest.fixture(autouse=True)
def corpus_slice(monkeypatch):
    """Variants encode a 20,000-character slice of the corpus instead of all of it."""
    monkeypatch.setattr(checks, "CORPUS_CHARS", 20_000)


@pytest.mark.parametrize("name", [n for n in CHECKS if n != "BPETokenizer"])
def test_solution_passes(name, capsys):
    CHECKS[name](getattr(parts, name))
    assert " passed: " in capsys.readouterr().out


def test_solution_tokenizer_passes_on_a_slice(capsys):
    tests.test_bpe_tokenizer(parts.BPETokenizer)
    assert "the first 20,000 characters" in capsys.readouterr().out


def test_a_slow_encoder_is_checked_on_a_slice(monkeypatch, capsys):
    """An encoder that would take long on the whole corpus is checked on a fixed slice, and told so."""
    monkeypatch.setattr(checks, "CORPUS_CHARS", None)
    monkeypatch.setattr(checks, "SLOW_SECONDS", 0.0)
    monkeypatch.setattr(checks, "SLICE_CHARS", 30_000)
    tests.test_bpe_tokenizer(parts.BPETokenizer)
    out = capsys.readouterr().out
    assert "on the first 30,000 characters of the corpus" in out and "would take about" in out


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_done(name):
    not_done(CHECKS[name], stubs()[name])


def test_wrong_things_passed():
    fails(tests.test_bytes_to_unicode, parts.bytes_to_unicode(), "function bytes_to_unicode itself")
    fails(tests.test_bpe_tokenizer, parts.BPETokenizer(*checks.gpt2_files()), "class BPETokenizer")
    fails(tests.test_bpe_tokenizer, type("Tok", (), {"__init__": lambda self: None}), "__init__(self, encoder, merges)")
    fails(tests.test_train_bpe, parts.BPETokenizer, "function train_bpe")


# ------------------------------------------------------------------------------------------- bytes_to_unicode


def table_with(change):
    def bytes_to_unicode():
        table = parts.bytes_to_unicode()
        return change(table)

    return bytes_to_unicode


@pytest.mark.parametrize(("change", "keywords"), [
    (lambda t: {b: chr(b) for b in range(256)}, ["chr(b)", "chr(256 + n)"]),
    (lambda t: {b: (c if ord(c) < 256 else chr(256 + b)) for b, c in t.items()}, ["chr(256 + n)", "counts the bytes"]),
    (lambda t: {c: b for b, c in t.items()}, ["other way round"]),
    (lambda t: {**t, 173: chr(173)}, ["'®'..'ÿ'", "173"]),
    (lambda t: {b: c for b, c in t.items() if b != 0}, ["255 keys"]),
    (lambda t: {**t, **dict(zip([b for b, c in t.items() if ord(c) >= 256],
                                [c for b, c in t.items() if ord(c) >= 256][::-1], strict=True))},
     ["wrong order", "chr(256), chr(257), ... in byte order"]),
    (lambda t: list(t.values()), ["should return a dict"]),
])
def test_bytes_to_unicode_mistakes_are_named(change, keywords):
    fails(tests.test_bytes_to_unicode, table_with(change), *keywords)


# ------------------------------------------------------------------------------------------- pretokenize


@pytest.mark.parametrize("mistake", list(PATTERNS))
def test_pretokenize_regex_mistakes_are_named(mistake):
    keyword = {"no_ws_rule": r"\s+(?!\S)", "no_final_ws": r"final \s+", "ignore_case": "case-sensitive",
               "ascii_letters": r"\p{L}", "contractions_last": "tried left to right",
               "curly_apostrophe": "straight ' (U+0027)"}[mistake]
    fails(tests.test_pretokenize, lambda text: regex.findall(PATTERNS[mistake], text), keyword)


def test_pretokenize_other_mistakes_are_named():
    import re

    fails(tests.test_pretokenize, lambda text: re.findall(GPT2_PATTERN, text), "`regex` package", "bad escape")
    fails(tests.test_pretokenize, lambda text: text.split(), "join back")
    fails(tests.test_pretokenize, lambda text: [p.strip() or p for p in regex.findall(GPT2_PATTERN, text)], "join back")
    fails(tests.test_pretokenize, lambda text: " ".join(regex.findall(GPT2_PATTERN, text)), "list of str")
    curly = r"""['’]s|['’]t|['’]re|['’]ve|['’]m|['’]ll|['’]d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    fails(tests.test_pretokenize, lambda text: regex.findall(curly, text), "curly apostrophe", "GPT-2's pattern exactly")


@pytest.mark.parametrize("fn", [
    lambda text: regex.findall(GPT2_PATTERN, text.decode() if isinstance(text, bytes) else text),
    lambda text: regex.findall(GPT2_PATTERN, text) if isinstance(text, str) else [],
], ids=["decodes bytes", "[] for a non-str"])
def test_pretokenize_must_raise_on_a_non_str(fn):
    fails(tests.test_pretokenize, fn, "without an error", "TypeError")


def test_pretokenize_with_a_compiled_pattern_passes():
    compiled = regex.compile(GPT2_PATTERN)
    tests.test_pretokenize(lambda text: [m.group() for m in compiled.finditer(text)])


# ------------------------------------------------------------------------------------------- count_pairs, merge_pair


def test_count_pairs_alternatives_pass():
    tests.test_count_pairs(lambda ids: Counter(pairwise(ids)))
    tests.test_count_pairs(lambda ids: {p: sum(1 for q in zip(ids, ids[1:], strict=False) if q == p)
                                        for p in zip(ids, ids[1:], strict=False)})


@pytest.mark.parametrize(("fn", "keywords"), [
    (lambda ids: Counter((ids[i], ids[i + 1]) for i in range(0, len(ids) - 1, 2)), ["two ids at a time"]),
    (lambda ids: Counter((ids[i], ids[i + 1]) for i in range(len(ids) - 2)), ["last pair"]),
    (lambda ids: Counter(zip(ids, ids[1:] + ids[:1], strict=True)) if len(ids) > 1 else {}, ["wrapped around"]),
    (lambda ids: Counter(zip(ids, ids[1:] + ids[:1], strict=True)), ["wrapped around", "(last id, first id)"]),
    (lambda ids: dict.fromkeys(pairwise(ids), 1), ["once however often"]),
    (lambda ids: Counter(f"{a},{b}" for a, b in pairwise(ids)), ["tuples"]),
    (lambda ids: list(pairwise(ids)), ["dict (or Counter)"]),
])
def test_count_pairs_mistakes_are_named(fn, keywords):
    fails(tests.test_count_pairs, fn, *keywords)


def merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return [*ids[:i], new_id, *ids[i + 2 :]]
    return list(ids)


def merge_skip_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) - 1 and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_drops_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_overlapping(ids, pair, new_id):
    """Moves on by 1 after a merge and skips an id only when it ended a merged pair: (7 7 7) -> (X X)."""
    out = []
    for i, a in enumerate(ids):
        if i + 1 < len(ids) and (a, ids[i + 1]) == tuple(pair):
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], a) == tuple(pair)):
            out.append(a)
    return out


def merge_in_place(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            ids[i : i + 2] = [new_id]
        i += 1
    return ids


def merge_by_string(ids, pair, new_id):
    """Another correct way: replace in a string of ids, with separators so that 1,2 does not match 11,2."""
    text = "," + ",".join(map(str, ids)) + ","
    text = text.replace(f",{pair[0]},{pair[1]},", f",{new_id},")
    text = text.replace(f",{pair[0]},{pair[1]},", f",{new_id},")  # occurrences that shared a separator
    return [int(x) for x in text.strip(",").split(",") if x]


@pytest.mark.parametrize(("fn", "keywords"), [
    (merge_first_only, ["only the first occurrence"]),
    (merge_skip_last, ["ending at the last id"]),
    (lambda ids, pair, new_id: checks._merge_reference(ids, pair, new_id, "right_to_left"), ["from the right"]),
    (merge_in_place, ["in place"]),
    (merge_drops_last, ["last id is lost"]),
    (merge_overlapping, ["moves on by 1", "[300, 300]"]),
    (lambda ids, pair, new_id: None, ["forget `return`"]),
    (lambda ids, pair, new_id: [new_id if p == tuple(pair) else p[0] for p in zip(ids, ids[1:] + [None], strict=True)],
     ["when ids[i], ids[i + 1] is the pair"]),
])
def test_merge_pair_mistakes_are_named(fn, keywords):
    fails(tests.test_merge_pair, fn, *keywords)


def test_merge_pair_alternatives_pass():
    tests.test_merge_pair(merge_by_string)


# ------------------------------------------------------------------------------------------- the tokenizer


class StringSpace:
    """A correct alternative in GPT-2's original style: BPE on encoder.json's characters, ranks keyed by string pairs."""

    def __init__(self, encoder, merges):
        self.encoder = dict(encoder)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self.table = parts.bytes_to_unicode()
        self.back = {c: b for b, c in self.table.items()}

    def word(self, piece):
        word = [self.table[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pair = min(pairwise(word), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return [self.encoder[t] for t in word]

    def split(self, text):
        return regex.findall(GPT2_PATTERN, text)

    def encode(self, text, allowed_special=()):
        if not isinstance(text, str):
            raise TypeError("a str, please")
        if set(allowed_special) - {SPECIAL}:
            raise ValueError("unknown special token")
        chunks = regex.split(f"({regex.escape(SPECIAL)})", text) if SPECIAL in allowed_special else [text]
        ids = []
        for k, chunk in enumerate(chunks):
            ids += [self.encoder[SPECIAL]] if k % 2 else [i for piece in self.split(chunk) for i in self.word(piece)]
        return ids

    def decode(self, ids):
        return bytearray(self.back[c] for i in ids for c in self.decoder[i]).decode("utf-8", errors="replace")


class Heap(parts.BPETokenizer):
    """A correct alternative: a heap of (rank, position) over a linked list of the word's tokens."""

    def bpe(self, piece):
        ids = [self.byte_ids[b] for b in piece.encode("utf-8")]
        nxt, prev = list(range(1, len(ids) + 1)), list(range(-1, len(ids) - 1))
        alive = [True] * len(ids)
        heap = [(self.ranks[(a, b)], i) for i, (a, b) in enumerate(pairwise(ids)) if (a, b) in self.ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i] if alive[i] else len(ids)
            if j >= len(ids) or self.ranks.get((ids[i], ids[j])) != rank:
                continue  # stale: one side was merged already
            ids[i], alive[j] = self.merged[(ids[i], ids[j])], False
            nxt[i] = nxt[j]
            if nxt[i] < len(ids):
                prev[nxt[i]] = i
            for left in (prev[i], i):
                right = nxt[left] if left >= 0 else len(ids)
                if left >= 0 and right < len(ids) and (ids[left], ids[right]) in self.ranks:
                    heapq.heappush(heap, (self.ranks[(ids[left], ids[right])], left))
        return [t for t, keep in zip(ids, alive, strict=True) if keep]


class RankOrder(parts.BPETokenizer):
    """A correct alternative: one pass over all the merges in rank order, each applied to every word that has it."""

    def encode(self, text, allowed_special=()):
        if allowed_special:
            return super().encode(text, allowed_special)
        pieces = parts.pretokenize(text)
        words = {piece: [self.byte_ids[b] for b in piece.encode("utf-8")] for piece in dict.fromkeys(pieces)}
        where: dict[tuple[int, int], set[str]] = {}
        for piece, ids in words.items():
            for pair in pairwise(ids):
                where.setdefault(pair, set()).add(piece)
        for pair in sorted(self.ranks, key=self.ranks.get):  # lowest rank first, once each
            for piece in where.pop(pair, ()):
                words[piece] = parts.merge_pair(words[piece], pair, self.merged[pair])
                for new in pairwise(words[piece]):
                    where.setdefault(new, set()).add(piece)
        return [i for piece in pieces for i in words[piece]]


class MostFrequent(parts.BPETokenizer):
    def bpe(self, piece):
        ids = [self.byte_ids[b] for b in piece.encode("utf-8")]
        while True:
            seen = Counter(p for p in pairwise(ids) if p in self.ranks)
            if not seen:
                return ids
            pair = max(seen, key=lambda p: (seen[p], -self.ranks[p]))
            ids = parts.merge_pair(ids, pair, self.merged[pair])


class Characters(parts.BPETokenizer):
    def bpe(self, piece):
        ids = [self.byte_ids[ord(c)] for c in piece]  # a character's code point as if it were a byte
        while len(ids) > 1:
            pair = min(pairwise(ids), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            ids = parts.merge_pair(ids, pair, self.merged[pair])
        return ids


class NoTable(StringSpace):
    """Looks the text's own characters up in encoder.json (no byte table)."""

    def word(self, piece):
        return [self.encoder[c] for c in piece]


class ByteValues(parts.BPETokenizer):
    """Starts each word from the bytes' own values (list(piece.encode())), not their ids."""

    def bpe(self, piece):
        ids = list(piece.encode("utf-8"))
        while len(ids) > 1:
            pair = min(pairwise(ids), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            ids = parts.merge_pair(ids, pair, self.merged[pair])
        return ids


class OverlapMerge(parts.BPETokenizer):
    def bpe(self, piece):
        ids = [self.byte_ids[b] for b in piece.encode("utf-8")]
        while len(ids) > 1:
            pair = min(pairwise(ids), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            ids = merge_overlapping(ids, pair, self.merged[pair])
        return ids


class CaseInsensitiveOnTheCorpus(parts.BPETokenizer):
    """Upper-case contractions, with the hard strings passed through: only the corpus shows the mistake."""

    def encode(self, text, allowed_special=()):
        if allowed_special or not isinstance(text, str) or text in {hard for _, hard in checks.HARD_STRINGS}:
            return super().encode(text, allowed_special)
        return [i for piece in regex.findall(PATTERNS["ignore_case"], text) for i in self.bpe(piece)]


class Across(parts.BPETokenizer):
    def encode(self, text, allowed_special=()):
        return self.bpe(text) if text else []


def with_split(pattern):
    class Split(StringSpace):
        def split(self, text):
            return regex.findall(pattern, text)

    return Split


class SpecialAlways(StringSpace):
    def encode(self, text, allowed_special=()):
        return super().encode(text, allowed_special={SPECIAL})


class SpecialNever(StringSpace):
    def encode(self, text, allowed_special=()):
        return super().encode(text)


def decoding(decode):
    return type("Decoding", (parts.BPETokenizer,), {"decode": decode})


@pytest.mark.parametrize("cls", [StringSpace, Heap, RankOrder],
                         ids=["string space (GPT-2's original style)", "heap", "merges in rank order"])
def test_tokenizer_alternatives_pass(cls, capsys):
    tests.test_bpe_tokenizer(cls)
    assert "identical" in capsys.readouterr().out


@pytest.mark.parametrize(("cls", "keywords"), [
    (MostFrequent, ["most often in the word", "lowest rank"]),
    (Characters, ["ord(c)", "encode('utf-8')"]),
    (NoTable, ["KeyError", "bytes_to_unicode"]),
    (Across, ["across pre-token boundaries"]),
    (with_split(PATTERNS["no_ws_rule"]), [r"\s+(?!\S)"]),
    (with_split(PATTERNS["ascii_letters"]), [r"\p{L}"]),
    (SpecialAlways, ["did not allow"]),
    (ByteValues, ["not its value", "(byte 44) is id 11", "id 220", "encoder[byte_encoder[b]]"]),
    (OverlapMerge, ["second id of a merged pair", "move on by 2"]),
    (with_split(PATTERNS["ignore_case"]), ["case-sensitive"]),
    (SpecialNever, ["allowed it"]),
    (decoding(lambda self, ids: b"".join(self.vocab[i] for i in ids).decode("utf-8")), ["UnicodeDecodeError", "strictly"]),
    (decoding(lambda self, ids: "".join(self.vocab[i].decode("utf-8") for i in ids)), ["UnicodeDecodeError", "strictly"]),
    (decoding(lambda self, ids: "".join(self.vocab[i].decode("utf-8", errors="replace") for i in ids)),
     ["decoded on its own"]),
    (decoding(lambda self, ids: b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="ignore")), ["errors='ignore'"]),
    (decoding(lambda self, ids: b"".join(self.vocab[i] for i in ids)), ["bytes", "errors='replace'"]),
])
def test_tokenizer_mistakes_are_named(cls, keywords):
    fails(tests.test_bpe_tokenizer, cls, *keywords)


def test_a_corpus_only_mistake_is_explained_quickly(monkeypatch):
    """A mistake only the corpus shows is explained on the lines around it, fast (it once took minutes)."""
    import time

    monkeypatch.setattr(checks, "CORPUS_CHARS", 60_000)
    start = time.perf_counter()
    fails(tests.test_bpe_tokenizer, CaseInsensitiveOnTheCorpus, "the first 60,000 characters", "differ too",
          "case-sensitive")
    assert time.perf_counter() - start < 60  # a guard against a hang, not a speed target: it once took minutes


class AcceptsBytes(parts.BPETokenizer):
    def encode(self, text, allowed_special=()):
        return super().encode(text.decode() if isinstance(text, bytes) else text, allowed_special)


class IgnoresUnknownSpecials(parts.BPETokenizer):
    def encode(self, text, allowed_special=()):
        return super().encode(text, set(allowed_special) & {SPECIAL})


def test_tokenizer_bad_input_is_required():
    fails(tests.test_bpe_tokenizer, AcceptsBytes, "accepted bytes instead of a str", "TypeError")
    fails(tests.test_bpe_tokenizer, IgnoresUnknownSpecials, "unknown special token", "ValueError")


def test_solution_tokenizer_bad_input_messages():
    tok = parts.BPETokenizer(*checks.gpt2_files())
    with pytest.raises(TypeError, match="takes a str"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match=r"unknown special tokens \['<\|unknown\|>'\]"):
        tok.encode("hi", {"<|unknown|>"})
    assert tok.encode("a<|endoftext|>b", {SPECIAL}) == [64, 50256, 65]
    assert 50256 not in tok.encode("a<|endoftext|>b")
    with pytest.raises(TypeError, match="takes a str"):
        parts.pretokenize(b"bytes")


# ------------------------------------------------------------------------------------------- train_bpe


def train_variant(mistake):
    def train_bpe(text, vocab_size, special_tokens=()):
        return reference_train(text, vocab_size, tuple(special_tokens), mistake)

    return train_bpe


def naive_train(text, vocab_size, special_tokens=()):
    """A correct alternative: the plain loop, recounting with count_pairs, the tie rule as max over a key."""
    if not isinstance(text, str) or vocab_size < 256 + len(special_tokens):
        raise ValueError("bad input")
    docs = regex.split("|".join(map(regex.escape, special_tokens)), text) if special_tokens else [text]
    words = Counter(tuple(p.encode()) for d in docs for p in regex.findall(GPT2_PATTERN, d))
    merges, vocab = [], {i: bytes([i]) for i in range(256)}
    for k in range(vocab_size - 256 - len(special_tokens)):
        counts = Counter()
        for word, n in words.items():
            for pair, c in parts.count_pairs(list(word)).items():
                counts[pair] += n * c
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        merges.append(best)
        vocab[256 + k] = vocab[best[0]] + vocab[best[1]]
        words = Counter({tuple(parts.merge_pair(list(w), best, 256 + k)): n for w, n in words.items()})
    for s in special_tokens:
        vocab[len(vocab)] = s.encode()
    return merges, vocab


def test_train_bpe_alternative_passes():
    tests.test_train_bpe(naive_train)


@pytest.mark.parametrize(("mistake", "keywords"), [
    ("across", ["across pre-token boundaries"]),
    ("chars", ["ord(c)", "195, 169"]),
    ("first_only", ["only the first occurrence"]),
    ("ties_other_way", ["ties are broken the other way", "smallest"]),
    ("one_short", ["one short"]),
    ("one_long", ["one too long"]),
    ("specials_uncounted", ["special tokens are not counted"]),
    ("specials_in_text", ["trained on like text"]),
])
def test_train_bpe_mistakes_are_named(mistake, keywords):
    fails(tests.test_train_bpe, train_variant(mistake), *keywords)


def test_train_bpe_other_mistakes_are_named():
    def dict_order(text, vocab_size, special_tokens=()):
        """max(counts, key=counts.get): ties go to whichever pair was counted first."""
        merges, vocab = naive_train(text, vocab_size, special_tokens)
        return merges[:1] + merges[2:3] + merges[1:2] + merges[3:], vocab

    fails(tests.test_train_bpe, dict_order, "merge 1", "Likely causes")

    def first_seen(text, vocab_size, special_tokens=()):
        """The plain loop with max(counts, key=counts.get)."""
        return reference_train(text, vocab_size, tuple(special_tokens), "ties_first_seen")

    fails(tests.test_train_bpe, first_seen, "order pairs were first seen", "min(counts, key=lambda p: (-counts[p], p))")
    fails(tests.test_train_bpe, lambda *a: parts.train_bpe(*a)[0], "(merges, vocab)")
    fails(tests.test_train_bpe, lambda *a: (parts.train_bpe(*a)[0], {**parts.train_bpe(*a)[1], 300: b"??"}),
          "vocabulary is not")

    def no_checks(text, vocab_size, special_tokens=()):
        return parts.train_bpe(text, max(vocab_size, 256), special_tokens)

    fails(tests.test_train_bpe, no_checks, "vocab_size below 256", "ValueError")

    def no_room_for_specials(text, vocab_size, special_tokens=()):
        if vocab_size < 256:
            raise ValueError("below 256")
        return parts.train_bpe(text, max(vocab_size, 256 + len(special_tokens)), special_tokens)

    fails(tests.test_train_bpe, no_room_for_specials, "vocab_size 256 with the special token", "256 + len(special_tokens)")


def test_solution_train_bpe_bad_input_messages():
    with pytest.raises(ValueError, match="below 256"):
        parts.train_bpe("text", 200)
    with pytest.raises(ValueError, match="below 256 bytes \\+ 1 special"):
        parts.train_bpe("text", 256, [SPECIAL])
    with pytest.raises(TypeError, match="takes a str"):
        parts.train_bpe(b"text", 300)


def test_train_bpe_matches_the_reference_on_a_larger_slice():
    """The incremental solution and the plain reference agree merge for merge on 60,000 characters."""
    from c1p1.data import load_text

    text = load_text()[:60_000]
    assert parts.train_bpe(text, 256 + 100, [SPECIAL]) == reference_train(text, 256 + 100, (SPECIAL,))
