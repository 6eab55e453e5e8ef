"""The command line shared by the generators (`c1p1.build`, `c1p1.diagrams`): write, or --check."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def generated_cli(
    doc: str | None,
    generate: Callable[[], dict[Path, bytes]],
    write: Callable[[dict[Path, bytes]], int],
    check: Callable[[dict[Path, bytes]], int],
    argv: list[str] | None = None,
) -> int:
    """Generate every file in memory, then either write them or, with --check, compare (exit 1 if stale)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file on disk is stale; write nothing")
    args = parser.parse_args(argv)
    files = generate()
    return check(files) if args.check else write(files)
