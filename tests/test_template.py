"""Every solution notebook follows the course template (../shared/COURSE_GUIDE.md), read statically.

Title and one paragraph; objectives and time; a set-up cell that loads the reference; then, for every
exercise: a section with a difficulty line, the reference's shapes printed before the exercise, a
jaxtyping signature, the check right after it and a hint under the check; a recap at the end. New
notebooks (sampling, the KV cache, ...) are held to the same shape without anyone re-reading the guide.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def exercises(cells: list) -> list[int]:
    return [i for i, c in enumerate(cells) if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]


def section_start(cells: list, i: int) -> int:
    """The index of the markdown cell with the last `## ` heading before cell i."""
    return max(j for j in range(i) if cells[j].cell_type == "markdown" and re.search(r"^## ", cells[j].source, re.M))


@pytest.fixture(params=SOLUTIONS, ids=lambda p: p.name)
def cells(request) -> list:
    return nbformat.read(request.param, as_version=4).cells


def test_title_objectives_and_time(cells):
    assert re.match(r"# \d\d · \S", cells[0].source), "the first cell is the title: '# NN · Name'"
    head = "\n".join(c.source for c in cells[:3] if c.cell_type == "markdown")
    assert "**You will be able to**" in head and "**Time:**" in head


def test_setup_cell_loads_the_reference(cells):
    code = [c.source for c in cells if c.cell_type == "code"][:3]
    # A notebook without GPT-2 (training, the course's own small models) names the one device instead.
    assert any("load_reference()" in src or "course_device()" in src for src in code), \
        "one of the first code cells calls load_reference() (or course_device(), in a notebook without GPT-2)"


def test_ends_with_a_recap(cells):
    assert any(c.cell_type == "markdown" and re.search(r"^## Recap", c.source, re.M) for c in cells[-3:])


def test_every_exercise_has_difficulty_shapes_signature_check_and_hint(cells):
    previous = 0
    for i in exercises(cells):
        section = cells[section_start(cells, i) : i]
        where = f"exercise in cell {i}"
        assert any("**Difficulty:**" in c.source for c in section if c.cell_type == "markdown"), f"{where}: no difficulty line"
        since_last = cells[previous:i]  # the shapes may be printed in an earlier section, but after the last exercise
        # A plain-Python exercise (no Tensor in it: a tokenizer's lists and dicts) shows its sizes as lengths.
        shown = (".shape",) if "Tensor" in cells[i].source else (".shape", "len(")
        assert any(any(w in c.source for w in shown) and "print(" in c.source for c in since_last if c.cell_type == "code"), \
            f"{where}: no cell prints the shapes before it"
        previous = i + 1
        if "Tensor" in cells[i].source:  # a function of plain numbers or of a whole model (lr_at, init_weights) has none
            assert re.search(r"\b(Float|Int|Bool)\[", cells[i].source), f"{where}: no jaxtyping signature"
        after = cells[i + 1 : i + 4]
        assert any(c.cell_type == "code" and "tests.test_" in c.source for c in after), f"{where}: no check after it"
        assert any(c.cell_type == "markdown" and "<details>" in c.source for c in cells[i + 1 : i + 5]), \
            f"{where}: no hint under its check"


def test_the_stub_less_overview_is_the_only_notebook_without_an_exercise():
    without = [p.name for p in SOLUTIONS if not exercises(nbformat.read(p, as_version=4).cells)]
    assert without == ["00_overview.ipynb"]
