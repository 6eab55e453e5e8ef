"""Diagrams: drawn deterministically from c1p1/diagrams.py, committed current, and every image link in the notebooks works.

The checks on image links cover all of them, not only diagrams: an image a notebook shows must exist next to the
notebook (relative path) and carry alt text, and every diagram must be shown somewhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

from c1p1 import diagrams

ROOT = diagrams.ROOT
NOTEBOOK_DIRS = ("solutions", "notebooks")
MARKDOWN_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\(\s*<?(?P<src>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_IMAGE = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
HTML_ATTR = re.compile(r"""\b(?P<name>src|alt)\s*=\s*(?P<q>["'])(?P<value>.*?)(?P=q)""", re.IGNORECASE | re.DOTALL)


def notebooks(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).glob("*.ipynb") if not p.name.endswith(".new.ipynb"))


def images_in(markdown: str) -> list[tuple[str, str]]:
    """Every (alt text, source) of a markdown `![alt](src)` or an HTML `<img src=... alt=...>`."""
    found = [(m["alt"], m["src"]) for m in MARKDOWN_IMAGE.finditer(markdown)]
    for tag in HTML_IMAGE.finditer(markdown):
        attrs = {m["name"].lower(): m["value"] for m in HTML_ATTR.finditer(tag.group(0))}
        found.append((attrs.get("alt", ""), attrs.get("src", "")))
    return found


def images_of(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".ipynb":
        cells = nbformat.read(path, as_version=4).cells
        return [image for cell in cells if cell.cell_type == "markdown" for image in images_in(cell.source)]
    return images_in(path.read_text(encoding="utf-8"))


def is_remote(src: str) -> bool:
    return re.match(r"^(https?:|data:|attachment:)", src) is not None


def target(document: Path, src: str) -> Path:
    return (document.parent / unquote(src.split("#")[0].split("?")[0])).resolve()


@pytest.fixture(scope="module")
def fresh() -> dict[Path, bytes]:
    return diagrams.generate()


def test_every_diagram_is_drawn(fresh):
    assert sorted(p.name for p in fresh) == sorted(diagrams.DIAGRAMS)
    for path, data in fresh.items():
        assert data.startswith(b"<?xml") and b"<svg" in data, path.name
        assert b"<dc:date>" not in data and b"Matplotlib v" not in data, f"{path.name} carries a date or version"


def test_committed_diagrams_are_current(fresh):
    """A different process drew the committed files; equal bytes also prove the drawing is deterministic."""
    assert diagrams.check(fresh) == 0, "run `make diagrams` and commit diagrams/"


def test_drawing_twice_gives_the_same_bytes(fresh):
    name = "hook_map.svg"
    with diagrams.matplotlib.rc_context(diagrams.RC):
        again = diagrams.render(diagrams.DIAGRAMS[name]())
    assert again == fresh[diagrams.OUT / name]


def test_check_reports_a_stale_file_and_writes_nothing(tmp_path, capsys):
    stale = tmp_path / "old.svg"
    stale.write_bytes(b"old")
    assert diagrams.check({stale: b"new", tmp_path / "missing.svg": b"new"}) == 1
    out = capsys.readouterr().out
    assert "old.svg" in out and "missing.svg" in out
    assert stale.read_bytes() == b"old" and not (tmp_path / "missing.svg").exists()


def test_check_cli_writes_nothing(capsys):
    before = {p: p.stat().st_mtime_ns for p in diagrams.OUT.glob("*.svg")}
    assert diagrams.main(["--check"]) == 0
    assert "current" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in diagrams.OUT.glob("*.svg")} == before


@pytest.mark.parametrize("notebook", notebooks(*NOTEBOOK_DIRS), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_images_exist_and_have_alt_text(notebook):
    for alt, src in images_of(notebook):
        assert src, f"{notebook.name}: an <img> without src"
        assert alt.strip(), f"{notebook.name}: image {src} has no alt text"
        if not is_remote(src):
            assert target(notebook, src).is_file(), f"{notebook.name}: image {src} does not exist"


def test_every_diagram_is_shown_somewhere():
    documents = [*notebooks("solutions"), ROOT / "README.md"]
    shown = {target(doc, src) for doc in documents for _, src in images_of(doc) if not is_remote(src)}
    unused = sorted(p.name for p in diagrams.OUT.glob("*.svg") if p.resolve() not in shown)
    assert not unused, f"diagrams no solution notebook or README.md shows: {', '.join(unused)}"


def test_image_parser():
    markdown = '![a cat](../diagrams/x.svg) and ![](y.png "t") <img alt="dog" src=\'z.svg\' width=400> <img src="w.svg">'
    assert images_in(markdown) == [("a cat", "../diagrams/x.svg"), ("", "y.png"), ("dog", "z.svg"), ("", "w.svg")]
