"""Generated from solutions/15_tokenizer.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from collections import Counter
from collections import defaultdict
from collections.abc import Iterable
from itertools import pairwise
import heapq
import json
import regex

__all__ = ['bytes_to_unicode', 'pretokenize', 'count_pairs', 'merge_pair', 'load_gpt2_bpe', 'BPETokenizer', 'train_bpe']

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: each byte 0..255 -> one printable character (printable bytes keep their own, the rest get chr(256 + n))."""
    ### BEGIN SOLUTION
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    moved = 0  # how many bytes have been given a character above 255 so far
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + moved)
            moved += 1
    return dict(sorted(table.items()))
    ### END SOLUTION


def pretokenize(text: str) -> list[str]:
    """The pieces of text under GPT-2's pre-tokenizing expression, in order (they join back to text)."""
    ### BEGIN SOLUTION
    if not isinstance(text, str):
        raise TypeError(f"pretokenize takes a str, got {type(text).__name__}")
    pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return regex.findall(pattern, text)
    ### END SOLUTION


def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """How many times each adjacent pair (ids[i], ids[i + 1]) occurs in ids."""
    ### BEGIN SOLUTION
    counts: dict[tuple[int, int], int] = {}
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts
    ### END SOLUTION


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """A new list with every occurrence of pair in ids, left to right, replaced by new_id."""
    ### BEGIN SOLUTION
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
    ### END SOLUTION


def load_gpt2_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's encoder.json (token string -> id) and vocab.bpe (pairs of token strings, in rank order)."""
    from c1p1.environment import bpe_files

    encoder_file, merges_file = bpe_files()
    encoder = json.loads(encoder_file.read_text(encoding="utf-8"))
    lines = merges_file.read_text(encoding="utf-8").splitlines()[1:]  # the first line is a version comment
    return encoder, [tuple(line.split()) for line in lines if line.strip()]


class BPETokenizer:
    """GPT-2's byte-level BPE from its encoder.json (token string -> id) and vocab.bpe merges (in rank order)."""

    def __init__(self, encoder: dict[str, int], merges: list[tuple[str, str]]):
        ### BEGIN SOLUTION
        byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        self.special = {"<|endoftext|>": encoder["<|endoftext|>"]}
        self.vocab = {i: bytes(byte_decoder[c] for c in token) for token, i in encoder.items() if token not in self.special}
        self.vocab |= {i: token.encode("utf-8") for token, i in self.special.items()}
        id_of = {raw: i for i, raw in self.vocab.items() if i not in self.special.values()}
        self.byte_ids = [id_of[bytes([b])] for b in range(256)]  # GPT-2's id of each single byte
        self.ranks: dict[tuple[int, int], int] = {}  # (left id, right id) -> rank: lower merges first
        self.merged: dict[tuple[int, int], int] = {}  # (left id, right id) -> the id of the merged token
        for rank, (left, right) in enumerate(merges):
            a, b = (id_of[bytes(byte_decoder[c] for c in token)] for token in (left, right))
            self.ranks[(a, b)] = rank
            self.merged[(a, b)] = id_of[self.vocab[a] + self.vocab[b]]
        self.cache: dict[str, list[int]] = {}  # pre-token -> its ids
        ### END SOLUTION

    def encode(self, text: str, allowed_special: Iterable[str] = ()) -> list[int]:
        """GPT-2's ids for text; a special token in allowed_special becomes its own id, otherwise it is ordinary text."""
        ### BEGIN SOLUTION
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}: decode bytes first with .decode('utf-8')")
        allowed = set(allowed_special)
        unknown = allowed - set(self.special)
        if unknown:
            raise ValueError(f"unknown special tokens {sorted(unknown)}: this vocabulary has only {sorted(self.special)}")
        chunks = regex.split("(" + "|".join(regex.escape(s) for s in sorted(allowed)) + ")", text) if allowed else [text]
        ids: list[int] = []
        for k, chunk in enumerate(chunks):
            if k % 2 == 1:  # the split keeps each special token at the odd positions
                ids.append(self.special[chunk])
                continue
            for piece in pretokenize(chunk):
                if piece not in self.cache:
                    self.cache[piece] = self.bpe(piece)
                ids.extend(self.cache[piece])
        return ids
        ### END SOLUTION

    def decode(self, ids: list[int]) -> str:
        """The text of ids: their bytes joined, decoded once (a character split across tokens survives)."""
        ### BEGIN SOLUTION
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")
        ### END SOLUTION

    def bpe(self, piece: str) -> list[int]:
        """The ids of one pre-token: its bytes, merged lowest rank first until no pair of it has a rank."""
        ### BEGIN SOLUTION
        ids = [self.byte_ids[b] for b in piece.encode("utf-8")]
        while len(ids) > 1:
            pair = min(pairwise(ids), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            ids = merge_pair(ids, pair, self.merged[pair])
        return ids
        ### END SOLUTION


def train_bpe(text: str, vocab_size: int, special_tokens: Iterable[str] = ()) -> tuple[list[tuple[int, int]], dict[int, bytes]]:
    """Byte-level BPE: (merges in order, id -> bytes). Pairs are counted within GPT-2's pre-tokens only.

    Ties: among the most frequent pairs, the smallest (first id, second id) wins. Ids 0..255 are the bytes,
    merge k makes id 256 + k, and the special tokens take the last ids; len(vocab) == vocab_size (fewer if the
    text runs out of pairs to merge).
    """
    ### BEGIN SOLUTION
    if not isinstance(text, str):
        raise TypeError(f"train_bpe takes a str, got {type(text).__name__}")
    special_tokens = list(special_tokens)
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size {vocab_size} is below 256 bytes + {len(special_tokens)} special tokens")
    documents = regex.split("|".join(regex.escape(s) for s in special_tokens), text) if special_tokens else [text]
    word_counts = Counter(piece for doc in documents for piece in pretokenize(doc))
    words = [list(piece.encode("utf-8")) for piece in word_counts]  # each distinct pre-token, as ids
    counts = list(word_counts.values())  # how often each occurs
    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> the words it occurs in
    for w, (word, n) in enumerate(zip(words, counts, strict=True)):
        for pair in pairwise(word):
            pair_counts[pair] += n
            where[pair].add(w)
    heap = [(-n, pair) for pair, n in pair_counts.items()]  # smallest first: highest count, then smallest pair
    heapq.heapify(heap)
    vocab = {i: bytes([i]) for i in range(256)}
    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges and heap:
        negative, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative:
            continue  # a stale entry: the count changed after it was pushed
        new_id = 256 + len(merges)
        merges.append(pair)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        touched = set()
        for w in where.pop(pair):
            old, n = words[w], counts[w]
            new = merge_pair(old, pair, new_id)
            for p in pairwise(old):
                pair_counts[p] -= n
                touched.add(p)
            for p in pairwise(new):
                pair_counts[p] += n
                where[p].add(w)
                touched.add(p)
            words[w] = new
        del pair_counts[pair]
        for p in touched - {pair}:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
    for token in special_tokens:
        vocab[len(vocab)] = token.encode("utf-8")
    return merges, vocab
    ### END SOLUTION
