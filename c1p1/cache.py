"""The course's cache folder, found without importing torch (the set-up uses it before any kernel runs)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "C1P1_CACHE_DIR"


def cache_dir() -> Path:
    """The course's cache (stand-in weights, the corpus, trained models): ``$C1P1_CACHE_DIR``, else ``~/.cache/c1p1``."""
    folder = os.environ.get(CACHE_ENV, "").strip()
    if not folder:
        folder = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "c1p1")
    return Path(folder)
