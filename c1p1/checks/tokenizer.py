"""Notebook 15's checks: GPT-2's byte-level BPE tokenizer, token for token against GPT-2's own.

- test_bytes_to_unicode: GPT-2's table from the 256 bytes to printable characters.
- test_pretokenize: GPT-2's regular expression, on a set of hard strings.
- test_count_pairs, test_merge_pair: the two steps every BPE is made of.
- test_bpe_tokenizer: the learner's encoder built from GPT-2's ``encoder.json`` and ``vocab.bpe``; its
  ``encode`` against GPT-2's own tokenizer (tiktoken built offline from the same two files) on hard
  strings and on the whole Shakespeare corpus, ``<|endoftext|>`` only where allowed, and ``decode``.
- test_train_bpe: the learner's trainer against the course's plain reference trainer (recounting every
  pair at every merge) on small corpora and on a slice of Shakespeare, merge for merge.

Nothing here is a tensor, so nothing runs on the course's device. A mismatch is explained by running
the course's own implementation with each catalogued mistake switched on and naming the one whose
output equals the learner's (for a long text, on the lines around the first difference only, so that the
explanation takes well under a second however slow a mistake makes the course's plain encoder); an error the learner's code raises is shown with their line and, where
its type points at one, the likely cause.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import pairwise

import regex

from c1p1.checks import core

# GPT-2's pre-tokenizer (Radford et al. 2019, the released encoder.py): contractions, letters, numbers,
# other symbols, whitespace that is not followed by a non-space, and any other whitespace.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPECIAL = "<|endoftext|>"
SPECIAL_ID = 50256

# The same expression with one catalogued mistake each.
PATTERNS = {
    "no_ws_rule": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+""",
    "no_final_ws": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)""",
    "ignore_case": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "ascii_letters": r"""'s|'t|'re|'ve|'m|'ll|'d| ?[a-zA-Z]+| ?\p{N}+| ?[^\sa-zA-Z\p{N}]+|\s+(?!\S)|\s+""",
    "contractions_last": r""" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|'s|'t|'re|'ve|'m|'ll|'d|\s+(?!\S)|\s+""",
    "curly_apostrophe": r"""['’]s|['’]t|['’]re|['’]ve|['’]m|['’]ll|['’]d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
}

REGEX_ADVICE = {
    "no_ws_rule": r"the pattern lacks the alternative \s+(?!\S): in a run of spaces before a word, the last space "
                  r"must go with the word ('a   b' gives 'a', '  ', ' b'). Put \s+(?!\S) before the final \s+.",
    "no_final_ws": r"some whitespace is dropped: the pattern needs a final \s+ for the whitespace that \s+(?!\S) "
                   r"leaves behind (a newline before a word), or findall skips it.",
    "ignore_case": "contractions are matched in upper case too ('T, 'RE): GPT-2's pattern is case-sensitive, so "
                   "\"DON'T\" gives 'DON', \"'\", 'T'. Drop the IGNORECASE flag.",
    "ascii_letters": r"letters are matched as [a-zA-Z], so accented and non-Latin letters fall out of words: use "
                     r"\p{L} (any letter) and \p{N} (any number), which need the `regex` package.",
    "contractions_last": "the contractions come after the other alternatives, so ' ?[^\\s\\p{L}\\p{N}]+' takes the "
                         "apostrophe first and 's never matches (\"GPT-2's\" gives \"'\", 's'): the alternatives are "
                         "tried left to right, so put 's|'t|'re|'ve|'m|'ll|'d first, as in GPT-2's pattern exactly.",
    "curly_apostrophe": "contractions are matched with the curly apostrophe ’ as well: GPT-2's pattern exactly knows "
                        "only the straight ' (U+0027), so 'don’t' gives 'don', '’', 't'. Use ' alone.",
}

HARD_STRINGS = (
    ("plain English", "Hello world, this is GPT-2's tokenizer."),
    ("accents", "café, naïve, résumé, Ærøskøbing, São Paulo"),
    ("combining marks", "cafe\u0301 nai\u0308ve a\u0300\u0301 \u0928\u093f"),
    ("emoji", "I love 🤗 and 👩\u200d👩\u200d👧 and 🇫🇷!"),
    ("CJK", "東京は日本の首都です。中文测试，한국어"),
    ("runs of spaces", "a  b   c    d\t\te"),
    ("runs of newlines", "line one\n\n\nline two\r\n  indented\n\nend"),
    ("trailing whitespace", "ends with spaces   "),
    ("only whitespace", "   \n  "),
    ("digits", "In 1599, 12345678 and 3.14159 or 1,000,000 (x²)"),
    ("upper-case contractions", "I DON'T KNOW, YOU'RE RIGHT, HE'LL GO.\n'Too late, she's, we've, I'm, it'd"),
    ("curly-quote contractions", "don’t you’re ‘quoted’ “double” it’s"),
    ("<|endoftext|> inside text", "the end.<|endoftext|>A new start<|endoftext|>"),
    ("repeated letters", "hahahahahaha aaaaaaaaaaaaaaa mississippi ......!!!!"),
    ("code", "def f(x):\n    return x ** 2  # square\n"),
    ("the empty string", ""),
)
CORPUS_CHARS: int | None = None  # the whole corpus; tests may set a slice for slow correct variants
PROBE_CHARS = 20_000  # encoded first, and timed: it tells how long the whole corpus would take
SLOW_SECONDS = 30.0  # an encoder slower than this on the whole corpus is checked on SLICE_CHARS only
SLICE_CHARS = 200_000
DIAGNOSE_CHARS = 2_000  # a mismatch in a longer text is explained on the lines around it, in well under a second


# ----------------------------------------------------------------------------------- GPT-2's files


@functools.cache
def gpt2_files() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's ``encoder.json`` (token string -> id) and ``vocab.bpe`` (merges, in rank order), as shipped."""
    from c1p1.environment import bpe_files

    encoder_path, merges_path = bpe_files()
    encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").splitlines()[1:]  # the first line is a version comment
    return encoder, [tuple(line.split()) for line in lines if line.strip()]


@functools.cache
def gpt2_encoding():
    """GPT-2's own tokenizer: tiktoken built offline from the same two files and GPT-2's pattern."""
    import tiktoken
    import tiktoken.load

    from c1p1.environment import bpe_files

    encoder_path, merges_path = bpe_files()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(merges_path), str(encoder_path))
    return tiktoken.Encoding("gpt2-offline", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={SPECIAL: SPECIAL_ID})


def byte_table() -> dict[int, str]:
    """The reference table: a byte whose character is printable (and not a space) keeps it; the others, in
    byte order, get the characters 256, 257, ...."""
    kept = [b for b in range(256) if chr(b).isprintable() and b != 32]
    table = {b: chr(b) for b in kept}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


@functools.cache
def _tables() -> tuple[dict[bytes, int], dict[tuple[bytes, bytes], int]]:
    """GPT-2's vocabulary as bytes -> id and its merges as (bytes, bytes) -> rank."""
    encoder, merges = gpt2_files()
    back = {c: b for b, c in byte_table().items()}

    def raw(token: str) -> bytes:
        return bytes(back[c] for c in token)

    ids = {raw(t): i for t, i in encoder.items() if t != SPECIAL}
    return ids, {(raw(a), raw(b)): rank for rank, (a, b) in enumerate(merges)}


def _bpe(word: bytes, ranks: dict[tuple[bytes, bytes], int], most_frequent: bool = False) -> list[bytes]:
    parts = [word[i : i + 1] for i in range(len(word))]
    while len(parts) > 1:
        pairs = [p for p in pairwise(parts) if p in ranks]
        if not pairs:
            break
        if most_frequent:
            seen = Counter(pairs)
            best = min(seen, key=lambda p: (-seen[p], ranks[p]))
        else:
            best = min(pairs, key=ranks.__getitem__)
        merged, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


@functools.cache
def _id_ranks() -> dict[tuple[int, int], tuple[int, int]]:
    """GPT-2's merges as (id, id) -> (rank, the id it makes)."""
    ids_of, ranks = _tables()
    return {(ids_of[a], ids_of[b]): (rank, ids_of[a + b]) for (a, b), rank in ranks.items()}


def _bpe_ids(ids: list[int], merge_mistake: str = "") -> list[int]:
    """BPE in id space (as a learner writes it), with merge_pair's catalogued mistake switched on."""
    id_ranks = _id_ranks()
    while len(ids) > 1:
        pairs = [p for p in pairwise(ids) if p in id_ranks]
        if not pairs:
            break
        best = min(pairs, key=lambda p: id_ranks[p][0])
        ids = _merge_reference(ids, best, id_ranks[best][1], merge_mistake)
    return ids


def oracle_encode(text: str, allowed: bool = False, mistake: str = "") -> list[int] | None:
    """The course's plain encoder, with one catalogued mistake switched on (None: that mistake raises here)."""
    ids_of, ranks = _tables()
    special = (allowed and mistake != "special_never") or mistake == "special_always"
    chunks = regex.split(f"({regex.escape(SPECIAL)})", text) if special else [text]
    out: list[int] = []
    for k, chunk in enumerate(chunks):
        if k % 2:
            out.append(SPECIAL_ID)
            continue
        pieces = [chunk] if mistake == "across" else regex.findall(PATTERNS.get(mistake, GPT2_PATTERN), chunk)
        for piece in pieces:
            if mistake == "chars":
                if any(ord(c) > 255 for c in piece):
                    return None
                word = bytes(ord(c) for c in piece)
            else:
                word = piece.encode("utf-8")
            if mistake == "byte_values":
                out.extend(_bpe_ids(list(word)))
            elif mistake == "overlap_merge":
                out.extend(_bpe_ids([ids_of[word[i : i + 1]] for i in range(len(word))], "overlap"))
            else:
                out.extend(ids_of[t] for t in _bpe(word, ranks, most_frequent=mistake == "most_frequent"))
    return out


ENCODE_ADVICE = {
    "chars": "the characters are used as bytes (ord(c)), so 'é' is one id instead of its two UTF-8 bytes: start "
             "each pre-token from piece.encode('utf-8').",
    "byte_values": "a byte's id in GPT-2 is not its value: ',' (byte 44) is id 11 and the space (byte 32) is id 220. "
                   "Map each byte through the byte table, then encoder.json: encoder[byte_encoder[b]].",
    "overlap_merge": "the merge inside encode lets the second id of a merged pair start another pair, so a run like "
                     "'aaa' gives two merged tokens instead of one and an 'a': after a merge move on by 2, as "
                     "merge_pair does (run test_merge_pair on the merge you use).",
    "most_frequent": "each step merges the pair that occurs most often in the word; GPT-2 merges the pair of lowest "
                     "rank (earliest in vocab.bpe) present, whatever its count.",
    "across": "the merges run across pre-token boundaries: split the text with pretokenize first, then run BPE "
              "inside each piece on its own.",
    **REGEX_ADVICE,
    "special_always": f"'{SPECIAL}' became token {SPECIAL_ID} although the caller did not allow special tokens: "
                      "treat it as ordinary text unless it is in allowed_special.",
    "special_never": f"'{SPECIAL}' was encoded as ordinary text although the caller allowed it: split the text on "
                     f"the allowed special tokens first and give each its own id ({SPECIAL_ID}).",
}


# ----------------------------------------------------------------------------------- calling the learner


def _call(test: str, fn: Callable, args: tuple, what: str, hint: Callable[[BaseException], str] = lambda e: "") -> object:
    """Run the learner's code on copies of its arguments; their error with their line, a changed input named."""
    __tracebackhide__ = True
    copies = copy.deepcopy(args)
    try:
        out = fn(*copies)
    except Exception as exc:  # the learner's error, shown with their line
        core.learner_raised(test, what, exc, hint(exc))
    for arg, copied in zip(args, copies, strict=True):
        if isinstance(arg, list | dict) and arg != copied:
            core.fail(f"{test}: {what} changed its input {type(arg).__name__} in place.\n"
                      "Likely cause: build a new list (out = [] ... out.append(...)) instead of editing the caller's.")
    return out


def _show(items: Iterable, n: int = 12) -> str:
    items = list(items)
    text = ", ".join(repr(x) for x in items[:n])
    return f"[{text}{', ...' if len(items) > n else ''}] ({len(items)} items)"


def _first_difference(out: list, expected: list) -> int:
    return next((i for i, (a, b) in enumerate(zip(out, expected, strict=False)) if a != b), min(len(out), len(expected)))


def _expect_function(obj: object, name: str, test: str) -> Callable:
    __tracebackhide__ = True
    if isinstance(obj, bytes | str | int | list | dict | tuple):
        core.fail(f"{test}: you passed {core.describe(obj)}, but the check wants the function {name} itself.\n"
                  f"Call it as tests.{test}({name}), without calling {name} first.")
    return core.expect_function(obj, name, test)


# ----------------------------------------------------------------------------------- bytes_to_unicode


def test_bytes_to_unicode(bytes_to_unicode) -> None:
    """Check bytes_to_unicode(): a dict from each byte 0..255 to GPT-2's printable character for it."""
    __tracebackhide__ = True
    test = "test_bytes_to_unicode"
    fn = _expect_function(bytes_to_unicode, "bytes_to_unicode", test)
    out = _call(test, fn, (), "bytes_to_unicode()")
    expected = byte_table()
    if not isinstance(out, dict):
        core.fail(f"{test}: bytes_to_unicode() returned {core.describe(out)}; it should return a dict from each "
                  "byte value (int 0..255) to one character (str).")
    if out and all(isinstance(k, str) for k in out) and all(isinstance(v, int) for v in out.values()):
        core.fail(f"{test}: bytes_to_unicode() returned a dict from characters to bytes: it is the other way round, "
                  "byte (int) -> character (str). Return {b: c ...}; the decoder is its inverse.")
    if sorted(out) != list(range(256)):
        core.fail(f"{test}: bytes_to_unicode() has {len(out)} keys; it should have exactly the 256 byte values "
                  f"0..255 (missing: {sorted(set(range(256)) - set(out))[:8]}).")
    wrong = [b for b in range(256) if out[b] != expected[b]]
    if not wrong:
        core.passed(test, "all 256 bytes map to GPT-2's characters (printable bytes keep their own character, "
                    "the 68 others get chr(256), chr(257), ... in byte order).")
        return
    b = wrong[0]
    first = (f"{test} FAILED: {len(wrong)} of 256 bytes map to the wrong character; byte {b} maps to {out[b]!r}, "
             f"expected {expected[b]!r}.")
    if all(out[b] == chr(b) for b in range(256)):
        cause = ("every byte maps to chr(b), so the space, the newline and the control bytes stay invisible or "
                 "break vocab.bpe's space-separated lines: keep only the printable ones, move the others to "
                 "chr(256 + n) with n counting them.")
    elif all(out[b] == chr(256 + b) for b in wrong):
        cause = "a moved byte gets chr(256 + b); it should get chr(256 + n), where n counts the bytes moved so far."
    elif all(ord(expected[b]) >= 256 for b in wrong) and (
            sorted(out[b] for b in wrong) == sorted(expected[b] for b in wrong)):
        cause = ("the printable bytes are right, and the moved bytes get the right characters in the wrong order: "
                 "they take chr(256), chr(257), ... in byte order (byte 0 gets chr(256) = 'Ā', byte 1 chr(257), "
                 "..., byte 173 chr(323)). Number them n = 0, 1, ... while walking b from 0 up to 255.")
    elif len(set(out.values())) < 256:
        cause = "two bytes share a character, so the table cannot be inverted: every byte needs its own."
    elif 32 in wrong or any(160 <= b <= 173 for b in wrong) or 127 in wrong:
        cause = ("the printable ranges are not GPT-2's: '!'..'~' (33-126), '¡'..'¬' (161-172) and '®'..'ÿ' "
                 "(174-255) keep their characters; the space, 127-160 and 173 are moved.")
    else:
        cause = "1) keep bytes 33-126, 161-172 and 174-255 as chr(b); 2) give the others chr(256 + n), n = 0, 1, ... in byte order."
    core.fail(first + "\nLikely cause: " + cause)


# ----------------------------------------------------------------------------------- pretokenize


def _regex_hint(exc: BaseException) -> str:
    text = str(exc)
    if "bad escape" in text and "p" in text:
        return r"Likely cause: Python's `re` module has no \p{L}: use the `regex` package (import regex; regex.findall)."
    return ""


def test_pretokenize(pretokenize) -> None:
    """Check pretokenize(text) against GPT-2's pattern on hard strings and a slice of Shakespeare."""
    __tracebackhide__ = True
    test = "test_pretokenize"
    fn = _expect_function(pretokenize, "pretokenize", test)
    from c1p1.data import load_text

    cases = [*HARD_STRINGS, ("the first 20,000 characters of Shakespeare", load_text()[:20_000])]
    for label, text in cases:
        out = _call(test, fn, (text,), f"pretokenize on {label}", _regex_hint)
        if not isinstance(out, list | tuple) or not all(isinstance(p, str) for p in out):
            core.fail(f"{test}: pretokenize returned {core.describe(out)}; it should return a list of str, the pieces "
                      "of the text in order (regex.findall gives exactly that).")
        expected = regex.findall(GPT2_PATTERN, text)
        if list(out) == expected:
            continue
        i = _first_difference(list(out), expected)
        first = (f"{test} FAILED on {label} ({text[:60]!r}): piece {i} is {out[i] if i < len(out) else 'missing'!r}, "
                 f"expected {expected[i] if i < len(expected) else 'nothing'!r}.\n  yours:    {_show(out)}\n"
                 f"  expected: {_show(expected)}")
        for mistake, advice in REGEX_ADVICE.items():
            if list(out) == regex.findall(PATTERNS[mistake], text):
                core.fail(first + "\nLikely cause: " + advice)
        if "".join(out) != text:
            core.fail(first + "\nLikely cause: the pieces do not join back to the text (characters dropped or added): "
                      "every character must land in exactly one piece.")
        core.fail(first + "\nLikely causes, most likely first: 1) use GPT-2's pattern exactly, alternatives in its "
                  r"order ('s|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+); 2) a space goes with "
                  "the word after it, never before.")
    for bad in (b"some bytes", None):
        try:
            out = fn(bad)
        except Exception:  # noqa: BLE001 - regex.findall's own TypeError is fine too
            continue
        core.fail(f"{test}: pretokenize({bad!r}) returned {core.describe(out)} without an error.\nLikely cause: no "
                  "check of its input: raise a TypeError for anything but a str (regex.findall with a str pattern "
                  "raises one by itself; do not decode bytes or return [] for them).")
    core.passed(test, f"{len(cases)} texts split exactly as GPT-2's pattern splits them, and a non-str raises: " +
                ", ".join(label for label, _ in cases) + ".")


# ----------------------------------------------------------------------------------- count_pairs, merge_pair

PAIR_CASES = (
    ("a short list", [1, 2, 3, 1, 2]),
    ("a run of one id", [7, 7, 7, 7]),
    ("one id", [5]),
    ("an empty list", []),
    ("bytes of 'hello hello'", list(b"hello hello")),
)


def _pairs_reference(ids: list[int], mistake: str = "") -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    step = 2 if mistake == "stride" else 1
    stop = len(ids) - 2 if mistake == "last" else len(ids) - 1
    for i in range(0, max(stop, 0), step):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    if mistake == "wrap" and len(ids) > 1:
        counts[(ids[-1], ids[0])] = counts.get((ids[-1], ids[0]), 0) + 1
    if mistake == "seen":
        counts = dict.fromkeys(counts, 1)
    return counts


PAIR_ADVICE = {
    "stride": "the loop steps two ids at a time, so overlapping pairs are missed: every position i starts a pair "
              "(ids[i], ids[i + 1]).",
    "last": "the last pair is missing: i runs up to len(ids) - 2 inclusive (pairwise(ids) does it for you).",
    "wrap": "an extra pair (last id, first id) is counted, as if the list wrapped around (zip(ids, ids[1:] + ids[:1]) "
            "does that): it does not; the pairs are (ids[i], ids[i + 1]) for i up to len(ids) - 2, or pairwise(ids).",
    "seen": "each pair is counted once however often it occurs: add 1 per occurrence.",
}


def test_count_pairs(count_pairs) -> None:
    """Check count_pairs(ids): how often each adjacent pair occurs."""
    __tracebackhide__ = True
    test = "test_count_pairs"
    fn = _expect_function(count_pairs, "count_pairs", test)
    for label, ids in PAIR_CASES:
        out = _call(test, fn, (ids,), f"count_pairs on {label}")
        if not hasattr(out, "items"):
            core.fail(f"{test}: count_pairs returned {core.describe(out)}; it should return a dict (or Counter) "
                      "from each pair (a, b) to its count.")
        got = {k: v for k, v in out.items() if v}
        expected = _pairs_reference(ids)
        if got == expected:
            continue
        first = f"{test} FAILED on {label} {ids}: got {got}, expected {expected}."
        if any(not (isinstance(k, tuple) and len(k) == 2) for k in got):
            core.fail(first + "\nLikely cause: the keys should be pairs as tuples (a, b); a list cannot be a dict key "
                      "and a string of the two ids is not a pair.")
        if len(ids) > 1 and Counter(got) - Counter(expected) == Counter({(ids[-1], ids[0]): 1}):
            core.fail(first + "\nLikely cause: " + PAIR_ADVICE["wrap"])
        outputs = [dict(_call(test, fn, (case,), f"count_pairs on {name}")) for name, case in PAIR_CASES]
        for mistake, advice in PAIR_ADVICE.items():  # the mistake that gives the learner's counts on every case
            if all({k: v for k, v in o.items() if v} == _pairs_reference(case, mistake)
                   for o, (_, case) in zip(outputs, PAIR_CASES, strict=True)):
                core.fail(first + "\nLikely cause: " + advice)
        core.fail(first + "\nLikely cause: count every adjacent pair (ids[i], ids[i + 1]), overlapping ones included.")
    core.passed(test, f"{len(PAIR_CASES)} lists: every adjacent pair counted, overlapping ones too.")


MERGE_CASES = (
    ("a pair that occurs twice", [1, 2, 3, 1, 2], (1, 2), 256),
    ("a run of three equal ids (left to right: (7 7) 7)", [7, 7, 7], (7, 7), 300),
    ("a run of four equal ids", [7, 7, 7, 7], (7, 7), 300),
    ("a pair at the very end", [4, 5, 6], (5, 6), 99),
    ("a pair that is not there", [4, 5, 6], (6, 4), 99),
    ("the reversed pair only", [2, 1, 2, 1], (1, 2), 256),
)


def _merge_reference(ids: list[int], pair: tuple[int, int], new_id: int, mistake: str = "") -> list[int]:
    if mistake == "right_to_left":
        return _merge_reference(ids[::-1], pair[::-1], new_id)[::-1]
    if mistake == "overlap":  # after a merge, the pair's second id starts the next pair too
        return [new_id if (a, b) == tuple(pair) else a
                for k, (a, b) in enumerate(zip(ids, [*ids[1:], None], strict=True))
                if (a, b) == tuple(pair) or not (k > 0 and (ids[k - 1], a) == tuple(pair))]
    out, i, done = [], 0, False
    while i < len(ids) - (mistake == "drops_last"):
        last = i + 1 >= len(ids) - (mistake == "skip_last")
        if not last and not done and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
            done = mistake == "first_only"
        else:
            out.append(ids[i])
            i += 1
    return out


MERGE_ADVICE = {
    "first_only": "only the first occurrence is replaced: walk the whole list and replace every occurrence, left to right.",
    "skip_last": "a pair ending at the last id is never merged: test i + 1 < len(ids), not i + 1 < len(ids) - 1.",
    "drops_last": "the last id is lost when it is not part of a merge: the loop stops at i < len(ids) - 1, so "
                  "ids[-1] is never appended. Loop while i < len(ids), and look at the pair only if i + 1 < len(ids).",
    "overlap": "after a merge the loop moves on by 1, so the merged pair's second id starts another pair "
               "([7, 7, 7] gives [300, 300]): each id belongs to one merge at most; move on by 2 after a merge.",
    "right_to_left": "the list is scanned from the right, so (7, 7, 7) gives (7, X); GPT-2 scans left to right and "
                     "gives (X, 7).",
}


def test_merge_pair(merge_pair) -> None:
    """Check merge_pair(ids, pair, new_id): every occurrence of pair, left to right, becomes new_id."""
    __tracebackhide__ = True
    test = "test_merge_pair"
    fn = _expect_function(merge_pair, "merge_pair", test)
    for label, ids, pair, new_id in MERGE_CASES:
        out = _call(test, fn, (ids, pair, new_id), f"merge_pair on {label}")
        if not isinstance(out, list | tuple):
            core.fail(f"{test}: merge_pair returned {core.describe(out)}; it should return the new list of ids. "
                      "Did you forget `return`?")
        expected = _merge_reference(ids, pair, new_id)
        if list(out) == expected:
            continue
        first = f"{test} FAILED on {label}: merge_pair({ids}, {pair}, {new_id}) gave {list(out)}, expected {expected}."
        outputs = [_call(test, fn, case[1:], f"merge_pair on {case[0]}") for case in MERGE_CASES]
        for mistake, advice in MERGE_ADVICE.items():  # the mistake that gives the learner's lists on every case
            if all(isinstance(o, list | tuple) and list(o) == _merge_reference(*case[1:], mistake)
                   for o, case in zip(outputs, MERGE_CASES, strict=True)):
                core.fail(first + "\nLikely cause: " + advice)
        core.fail(first + "\nLikely cause: when ids[i], ids[i + 1] is the pair, append new_id and move on by 2; "
                  "otherwise append ids[i] and move on by 1.")
    core.passed(test, f"{len(MERGE_CASES)} cases: every occurrence merged, left to right, overlapping runs included.")


# ----------------------------------------------------------------------------------- the tokenizer


def _encode_hint(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return ("Likely cause: a token that is not in the vocabulary. Map the text's UTF-8 bytes through "
                "bytes_to_unicode before looking tokens up in encoder.json (a space is 'Ġ' there), or keep the "
                "vocabulary as bytes; never look up the text's own characters.")
    return _regex_hint(exc)


def _decode_hint(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return ("Likely cause: the bytes are decoded strictly, token by token or as a whole; a token can end in the "
                "middle of a character. Join all the bytes first, then decode once with errors='replace'.")
    return ""


def _encode(test: str, tok: object, label: str, text: str, allowed: bool) -> tuple[list[int], list[int]]:
    """The learner's ids for text, and GPT-2's."""
    __tracebackhide__ = True
    if allowed:
        out = _call(test, tok.encode, (text, {SPECIAL}), f"encode on {label} with allowed_special={{{SPECIAL!r}}}",
                    _encode_hint)
        expected = gpt2_encoding().encode(text, allowed_special={SPECIAL})
    else:
        out = _call(test, tok.encode, (text,), f"encode on {label}", _encode_hint)
        expected = gpt2_encoding().encode_ordinary(text)
    if not isinstance(out, list | tuple) or not all(isinstance(i, int) for i in out):
        core.fail(f"{test}: encode returned {core.describe(out)}; it should return a list of int token ids.")
    return list(out), expected


def _lines_around(text: str, expected: list[int], i: int) -> str:
    """The line holding GPT-2's token i of text and the line before it (at most DIAGNOSE_CHARS characters)."""
    enc = gpt2_encoding()
    offset = sum(len(enc.decode_single_token_bytes(t)) for t in expected[:i])
    pos = len(text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))
    start = text.rfind("\n", 0, max(text.rfind("\n", 0, pos), 0)) + 1
    end = text.find("\n", pos + 1)
    end = len(text) if end < 0 else end + 1
    if end - start > DIAGNOSE_CHARS:
        start, end = max(pos - DIAGNOSE_CHARS // 2, 0), min(pos + DIAGNOSE_CHARS // 2, len(text))
    return text[start:end]


def _check_encode(test: str, tok: object, label: str, text: str, allowed: bool) -> None:
    __tracebackhide__ = True
    out, expected = _encode(test, tok, label, text, allowed)
    if out == expected:
        return
    i = _first_difference(out, expected)
    ids_of = {v: k for k, v in _tables()[0].items()} | {SPECIAL_ID: SPECIAL.encode()}

    def show(ids: list[int]) -> str:
        window = ids[max(i - 2, 0) : i + 4]
        return " ".join(f"{t}={ids_of.get(t, b'?')!r}" if isinstance(t, int) else repr(t) for t in window)

    first = (f"{test} FAILED on {label} ({text[:50]!r}{'...' if len(text) > 50 else ''}"
             f"{', special tokens allowed' if allowed else ''}): {len(out)} tokens where GPT-2 gives {len(expected)}; "
             f"the first difference is at token {i}.\n  yours:  ... {show(out)}\n  GPT-2:  ... {show(expected)}")
    if len(text) > DIAGNOSE_CHARS:  # explain on the lines around the difference: the course's encoder is slow
        lines = _lines_around(text, expected, i)
        out, expected = _encode(test, tok, f"the lines around token {i} of {label}", lines, allowed)
        if out == expected:
            core.fail(first + f"\nLikely cause: those lines alone ({lines[:120]!r}) encode right, so something carried "
                      "over from the text before changes the result: a cache keyed by something other than the "
                      "pre-token, or state kept on self between pieces.")
        text = lines
        first += f"\n  The same lines on their own ({lines[:120]!r}) differ too."
    for mistake, advice in ENCODE_ADVICE.items():
        if out == oracle_encode(text, allowed, mistake):
            core.fail(first + "\nLikely cause: " + advice)
    core.fail(first + "\nLikely causes, most likely first: 1) always merge the pair of lowest rank present, until no "
              "pair of the word is in vocab.bpe; 2) run BPE inside each pre-token on its UTF-8 bytes; 3) map merged "
              "bytes to ids through encoder.json.")


def _check_decode(test: str, tok: object, label: str, ids: list[int], expected: str) -> None:
    __tracebackhide__ = True
    out = _call(test, tok.decode, (ids,), f"decode on {label}", _decode_hint)
    if not isinstance(out, str):
        hint = " Decode the joined bytes with .decode('utf-8', errors='replace')." if isinstance(out, bytes) else ""
        core.fail(f"{test}: decode returned {core.describe(out)}; it should return a str.{hint}")
    if out == expected:
        return
    first = f"{test} FAILED: decode on {label} gave {out[:60]!r}, expected {expected[:60]!r}."
    vocab = {v: k for k, v in _tables()[0].items()} | {SPECIAL_ID: SPECIAL.encode()}
    piecewise = "".join(vocab[t].decode("utf-8", errors="replace") for t in ids)
    if out == piecewise:
        core.fail(first + "\nLikely cause: each token is decoded on its own, so a character split across two tokens "
                  "becomes two '�': join all the bytes first, then decode once with errors='replace'.")
    if out == b"".join(vocab[t] for t in ids).decode("utf-8", errors="ignore"):
        core.fail(first + "\nLikely cause: errors='ignore' drops the broken bytes; use errors='replace', which shows "
                  "them as '�' like GPT-2's tokenizer.")
    core.fail(first + "\nLikely cause: decode maps each id to its bytes (not to encoder.json's characters), joins "
              "them, then decodes the bytes as UTF-8 with errors='replace'.")


def _check_bad_input(test: str, tok: object) -> None:
    __tracebackhide__ = True
    for label, args, advice in (
        ("bytes instead of a str", (b"some bytes",),
         "raise a TypeError: encode takes a str (bytes.decode('utf-8') first)."),
        ("an unknown special token", ("hi", {"<|unknown|>"}),
         f"raise a ValueError naming it: this vocabulary's only special token is {SPECIAL}."),
    ):
        try:
            tok.encode(*args)
        except Exception:  # noqa: BLE001 - any clear error is fine
            continue
        core.fail(f"{test}: encode accepted {label} without an error.\nLikely cause: no check of its input: {advice}")


def corpus_slice() -> tuple[str, str]:
    """The text the tokenizer check encodes in full, and how a message names it."""
    from c1p1.data import load_text

    text = load_text()
    if CORPUS_CHARS is None or CORPUS_CHARS >= len(text):
        return text, f"the whole Shakespeare corpus ({len(text):,} characters)"
    return text[:CORPUS_CHARS], f"the first {CORPUS_CHARS:,} characters of the Shakespeare corpus"


@functools.cache
def _expected_corpus(n: int) -> list[int]:
    from c1p1.data import load_text

    return gpt2_encoding().encode_ordinary(load_text()[:n])


def test_bpe_tokenizer(BPETokenizer) -> None:
    """Check BPETokenizer(encoder, merges): encode against GPT-2's own tokenizer, decode, special tokens."""
    __tracebackhide__ = True
    test = "test_bpe_tokenizer"
    if not isinstance(BPETokenizer, type):
        core.fail(f"{test}: you passed {core.describe(BPETokenizer)}, but the check wants the class BPETokenizer "
                  "itself. Call it as tests.test_bpe_tokenizer(BPETokenizer): the check builds its own.")
    encoder, merges = gpt2_files()
    try:
        inspect.signature(BPETokenizer).bind(encoder, merges)
    except TypeError:
        core.fail(f"{test}: the check builds BPETokenizer(encoder, merges), but its __init__ is "
                  f"{inspect.signature(BPETokenizer)}. Keep `def __init__(self, encoder, merges)`.")
    tok = _call(test, BPETokenizer, (encoder, merges), "BPETokenizer(encoder, merges)", _encode_hint)
    for method in ("encode", "decode"):
        if not callable(getattr(tok, method, None)):
            core.fail(f"{test}: BPETokenizer has no method {method}.")
    for label, text in HARD_STRINGS:
        _check_encode(test, tok, label, text, allowed=False)
    for label, text in HARD_STRINGS[-4:-2]:
        _check_encode(test, tok, label, text, allowed=True)
    for label, text in HARD_STRINGS:
        _check_decode(test, tok, f"the ids of {label}", gpt2_encoding().encode(text, allowed_special={SPECIAL}), text)
    emoji = gpt2_encoding().encode_ordinary("🤗")
    _check_decode(test, tok, f"{emoji[:1]}, the first of the {len(emoji)} tokens of '🤗' (part of a character)",
                  emoji[:1], b"".join(gpt2_encoding().decode_single_token_bytes(t) for t in emoji[:1]).decode(
                      "utf-8", errors="replace"))
    _check_bad_input(test, tok)
    text, where = corpus_slice()
    probe = text[:PROBE_CHARS]
    start = time.perf_counter()
    _check_encode(test, tok, f"the first {len(probe):,} characters of the corpus", probe, allowed=False)
    estimate = (time.perf_counter() - start) * len(text) / max(len(probe), 1)
    note = ""
    if estimate > SLOW_SECONDS and len(text) > SLICE_CHARS:
        text, where = text[:SLICE_CHARS], f"the first {SLICE_CHARS:,} characters of the corpus"
        note = (f" Your encode would take about {estimate:.0f} s on the whole corpus, so the check stopped there: a "
                "dict of the pre-tokens already encoded (far fewer distinct ones than pre-tokens) makes it about a second.")
    _check_encode(test, tok, where, text, allowed=False)
    n = len(_expected_corpus(len(text)))
    core.passed(test, f"encode gives GPT-2's tokens on {len(HARD_STRINGS)} hard strings and on {where}: {n:,} tokens, "
                f"identical; {SPECIAL} is token {SPECIAL_ID} only when allowed; decode(encode(s)) == s, and decode "
                "survives a token that ends inside a character." + note)


# ----------------------------------------------------------------------------------- train_bpe


def reference_train(text: str, vocab_size: int, special_tokens: tuple[str, ...] = (), mistake: str = "") -> tuple[list[tuple[int, int]], dict[int, bytes]]:
    """The course's plain trainer, recounting every pair at every merge; with one catalogued mistake switched on.

    Ids 0..255 are the bytes; merge k makes id 256 + k; the special tokens take the last ids. Pairs are counted
    within pre-tokens (GPT-2's pattern), weighted by how often each pre-token occurs. Ties: among the most
    frequent pairs, the smallest (first id, second id).
    """
    specials = list(special_tokens)
    if mistake != "specials_in_text" and specials:
        chunks = regex.split("|".join(regex.escape(s) for s in specials), text)
    else:
        chunks = [text]
    if mistake == "across":
        pieces = Counter(chunks)
    else:
        pieces = Counter(p for chunk in chunks for p in regex.findall(GPT2_PATTERN, chunk))
    if mistake == "chars":
        words = {tuple(ord(c) for c in p): n for p, n in pieces.items()}
    else:
        words = {tuple(p.encode("utf-8")): n for p, n in pieces.items()}
    n_merges = vocab_size - 256 - len(specials) + {"one_short": -1, "one_long": 1, "specials_uncounted": len(specials)}.get(mistake, 0)
    merges: list[tuple[int, int]] = []
    vocab = {i: bytes([i]) for i in range(256)}
    for k in range(n_merges):
        counts: Counter = Counter()
        for ids, n in words.items():
            for pair in pairwise(ids):
                counts[pair] += n
        if not counts:
            break
        sign = -1 if mistake == "ties_other_way" else 1
        if mistake == "ties_first_seen":  # max(counts, key=counts.get): the first pair counted wins a tie
            best = max(counts, key=counts.__getitem__)
        else:
            best = min(counts, key=lambda p: (-counts[p], sign * p[0], sign * p[1]))
        new_id = 256 + k
        merges.append(best)
        vocab[new_id] = vocab.get(best[0], b"?") + vocab.get(best[1], b"?")
        merged: Counter = Counter()
        for ids, n in words.items():
            merged[tuple(_merge_reference(list(ids), best, new_id, "first_only" if mistake == "first_only" else ""))] += n
        words = dict(merged)
    for token in specials:
        vocab[len(vocab)] = token.encode("utf-8")
    return merges, vocab


TRAIN_ADVICE = {
    "across": "pairs are counted across pre-token boundaries (over the whole text): pre-tokenize first and count "
              "pairs only inside each piece, so that no merge joins the end of one word to the next.",
    "chars": "the ids start from the characters (ord(c)), not from the UTF-8 bytes: 'é' must start as its two "
             "bytes 195, 169 (text.encode('utf-8')).",
    "first_only": "a merge replaces only the first occurrence of the pair in each word: replace every occurrence, "
                  "or the counts drift from the text.",
    "ties_other_way": "ties are broken the other way: among pairs with the same count, take the smallest (first id, "
                      "second id), e.g. min(counts, key=lambda p: (-counts[p], p)).",
    "ties_first_seen": "ties are broken by the order pairs were first seen (max(counts, key=counts.get) and "
                       "most_common(1) both do that); take the smallest pair: "
                       "min(counts, key=lambda p: (-counts[p], p)).",
    "specials_uncounted": "the special tokens are not counted in vocab_size: make vocab_size - 256 - "
                          "len(special_tokens) merges, so that the whole vocabulary has vocab_size entries.",
    "one_short": "the vocabulary is one short: make vocab_size - 256 - len(special_tokens) merges.",
    "one_long": "the vocabulary is one too long: make vocab_size - 256 - len(special_tokens) merges.",
    "specials_in_text": "the special tokens are trained on like text (merges inside '<|endoftext|>'): split the text "
                        "on them first, and count pairs only in the pieces between them.",
}

TRAIN_CORPORA = (
    ("a short text with accents", "le café est très bon, très très bon; un café crème, et encore un café. " * 6 +
     "naïve résumé déjà vu à la carte, à la française. ", 256 + 40, ()),
    ("a text with <|endoftext|> between documents", "the cat sat on the mat.<|endoftext|>the dog sat on the log."
     "<|endoftext|>a cat and a dog sat on the mat and the log.<|endoftext|>" * 3, 256 + 20 + 1, (SPECIAL,)),
    ("a text full of ties", "ab cd ef gh ab cd ef gh ba dc fe hg xy yx zz zz", 256 + 12, ()),
    ("a repetitive text", "aaaaaaa aaaa aaaaaaaaaa banana bandana " * 4, 256 + 15, ()),
)


def _vocab_line(vocab: dict[int, bytes], pair: tuple[int, int]) -> str:
    return f"{pair} = {vocab.get(pair[0], b'?')!r} + {vocab.get(pair[1], b'?')!r}"


def _merge_difference(merges: list, vocab: dict, expected_merges: list, expected_vocab: dict) -> str:
    """Where two lists of merges first differ, each merge shown with the bytes it joins."""
    i = _first_difference(merges, expected_merges)
    yours = _vocab_line(vocab, merges[i]) if i < len(merges) else "missing"
    theirs = _vocab_line(expected_vocab, expected_merges[i]) if i < len(expected_merges) else "nothing"
    return f"merge {i} (new id {256 + i}) is {yours}, expected {theirs}"


def test_train_bpe(train_bpe) -> None:
    """Check train_bpe(text, vocab_size, special_tokens): merges and vocabulary equal the reference trainer's."""
    __tracebackhide__ = True
    test = "test_train_bpe"
    fn = _expect_function(train_bpe, "train_bpe", test)
    from c1p1.data import load_text

    corpora = [*TRAIN_CORPORA, ("the first 20,000 characters of Shakespeare", load_text()[:20_000], 256 + 50, (SPECIAL,))]
    for label, text, vocab_size, specials in corpora:
        args = (text, vocab_size, list(specials))
        out = _call(test, fn, args, f"train_bpe on {label} (vocab_size {vocab_size})")
        if not (isinstance(out, tuple | list) and len(out) == 2 and isinstance(out[0], list) and isinstance(out[1], dict)):
            core.fail(f"{test}: train_bpe returned {core.describe(out)}; it should return (merges, vocab): a list of "
                      "pairs of ids, in the order they were made, and a dict from id to bytes.")
        merges, vocab = [tuple(m) for m in out[0]], out[1]
        expected_merges, expected_vocab = reference_train(text, vocab_size, specials)
        if merges == expected_merges and vocab == expected_vocab:
            continue
        for mistake, advice in TRAIN_ADVICE.items():
            wrong_merges, wrong_vocab = reference_train(text, vocab_size, specials, mistake)
            sizes = mistake in ("one_long", "one_short", "specials_uncounted") and len(vocab) == len(wrong_vocab)
            if merges == wrong_merges != expected_merges and (vocab == wrong_vocab or sizes):
                core.fail(f"{test} FAILED on {label} (vocab_size {vocab_size}, special tokens {list(specials)}): "
                          f"{len(merges)} merges and a vocabulary of {len(vocab)}, expected {len(expected_merges)} "
                          f"and {vocab_size}; {_merge_difference(merges, vocab, expected_merges, expected_vocab)}."
                          f"\nLikely cause: {advice}")
        if merges == expected_merges:
            wrong = [k for k in expected_vocab if vocab.get(k) != expected_vocab[k]][:3] or sorted(set(vocab) - set(expected_vocab))[:3]
            core.fail(f"{test} FAILED on {label}: the merges are right but the vocabulary is not (ids {wrong}: "
                      f"{[vocab.get(k) for k in wrong]}, expected {[expected_vocab.get(k) for k in wrong]}).\nLikely "
                      "cause: vocab[256 + k] is the bytes of merge k's two ids joined; the special tokens' bytes "
                      "(token.encode('utf-8')) take the last ids, after the merges.")
        core.fail(f"{test} FAILED on {label} (vocab_size {vocab_size}): "
                  f"{_merge_difference(merges, vocab, expected_merges, expected_vocab)}.\nLikely causes, most likely first: 1) after each merge, the counts of the "
                  "pairs around every merged occurrence change: update them (or recount); 2) count each pre-token's "
                  "pairs times how often the pre-token occurs; 3) take the most frequent pair, ties to the "
                  "smallest (first id, second id).")
    for label, args, advice in (
        ("a vocab_size below 256", ("some text", 200, []), "raise a ValueError: the 256 bytes alone need 256 ids."),
        (f"vocab_size 256 with the special token {SPECIAL}", ("some text", 256, [SPECIAL]),
         "raise a ValueError: vocab_size must leave room for the 256 bytes and every special token "
         "(vocab_size < 256 + len(special_tokens) is an error)."),
        ("bytes instead of a str", (b"some text", 300, []), "raise a TypeError: train_bpe takes a str."),
    ):
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - any clear error is fine
            continue
        core.fail(f"{test}: train_bpe accepted {label} without an error.\nLikely cause: no check of its input: {advice}")
    core.passed(test, f"{len(corpora)} corpora give exactly the reference trainer's merges and vocabulary "
                "(ties to the smallest pair, special tokens last): " + "; ".join(c[0] for c in corpora) + ".")
