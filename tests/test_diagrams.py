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


# ---------------------------------------------------------------------------------------------------------------
# Layout: matplotlib reports where every text landed after a draw, so overlaps are tested, not eyeballed.

PIXELS_OF_SLACK = 1.0  # a text's extent includes a little padding; shrink it so that touching is not overlapping


def drawn_layout(name: str):
    """(labels, strokes) of one diagram after a draw, in display pixels.

    labels: (text, Bbox, cover) for every visible non-empty text, where cover is the drawing order (zorder, then
    position among the axes' children) of the last opaque patch that contains the whole label (a node's circle
    hides the stream under its "+"), or None; strokes: (description, Path, order) for every line and every patch
    edge that is actually drawn (a patch with no edge colour or zero width draws no line).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with diagrams.matplotlib.rc_context(diagrams.RC):
        fig = diagrams.DIAGRAMS[name]()
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        labels, strokes = [], []
        for ax in fig.axes:
            children = ax.get_children()

            def order(artist, children=children):
                return (artist.get_zorder(), children.index(artist))

            opaque = [(p.get_transform().transform_path(p.get_path()), order(p)) for p in ax.patches
                      if p.get_fill() and p.get_facecolor()[3] == 1]
            for t in ax.texts:
                if t.get_visible() and t.get_text().strip():
                    bbox = t.get_window_extent(renderer).padded(-PIXELS_OF_SLACK)
                    cover = max((z for path, z in opaque if path.contains_points(bbox.corners()).all()), default=None)
                    labels.append((t.get_text(), bbox, cover))
            for line in ax.lines:
                xy = line.get_transform().transform(line.get_xydata())
                strokes.append((f"a line from {tuple(xy[0].round())} to {tuple(xy[-1].round())}", diagrams.MplPath(xy),
                                order(line)))
            for patch in ax.patches:
                if patch.get_linewidth() == 0 or patch.get_edgecolor()[3] == 0:
                    continue
                path = patch.get_transform().transform_path(patch.get_path())
                for polygon in path.to_polygons(closed_only=False):
                    where = tuple(int(v) for v in polygon.mean(0).round())
                    strokes.append((f"the edge of a {type(patch).__name__} around pixel {where}",
                                    diagrams.MplPath(polygon), order(patch)))
    return labels, strokes


def test_layout_helper_sees_crossings():
    """The helper itself: a line through a label is found, a box around it is not, and two stacked labels overlap."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 2)
    ax.text(2, 1, "label", ha="center", va="center")
    ax.text(2, 1.05, "other", ha="center", va="center")
    ax.plot([0.5, 3.5], [1, 1])
    ax.add_patch(diagrams.Rectangle((1, 0.5), 2, 1, fill=False))
    diagrams.DIAGRAMS["_probe"] = lambda: fig
    try:
        labels, strokes = drawn_layout("_probe")
    finally:
        del diagrams.DIAGRAMS["_probe"]
    assert labels[0][1].overlaps(labels[1][1])
    crossing = [what for what, path, _ in strokes if path.intersects_bbox(labels[0][1], filled=False)]
    assert len(crossing) == 1 and crossing[0].startswith("a line")


@pytest.mark.parametrize("name", sorted(diagrams.DIAGRAMS))
def test_no_label_overlaps_another_or_is_crossed_by_a_line(name):
    labels, strokes = drawn_layout(name)
    problems = []
    for i, (a, box_a, _) in enumerate(labels):
        for b, box_b, _ in labels[i + 1:]:
            if box_a.overlaps(box_b):
                problems.append(f"labels {a!r} and {b!r} overlap")
    for label, bbox, cover in labels:
        for what, path, z in strokes:
            if cover is not None and z < cover:
                continue  # hidden under an opaque patch that holds the whole label
            if path.intersects_bbox(bbox, filled=False):
                problems.append(f"{what} crosses the label {label!r}")
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)
