"""Every exercise notebook runs top to bottom and fails only at its stubs; every notebook is stored stripped.

(The solution notebooks themselves run under nbval in the same `make test`.) Each notebook gets its own
test class so that `pytest -n 2 --dist loadscope` spreads them over both workers.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STUB_ERRORS = {"NotImplementedError", "NotDoneYet"}


def execute(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="c1p1-fork", allow_errors=True, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return nb


def errors(nb: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append((i, out.ename, out.evalue))
    return found


def check_exercise(path: Path) -> None:
    nb = execute(path)
    found = errors(nb)
    others = [e for e in found if e[1] not in STUB_ERRORS]
    assert not others, f"{path.name}: errors other than the stubs' NotImplementedError: {others}"
    has_stub = any("raise NotImplementedError()" in c.source for c in nb.cells if c.cell_type == "code")
    if has_stub:
        assert found, f"{path.name} has stubs, but no cell failed: a check passes on the stub"


def same_code_as_solution(path: Path) -> bool:
    """An exercise with no stub runs exactly the solution's code, which nbval already runs."""
    code = [[c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
            for p in (path, ROOT / "solutions" / path.name)]
    return code[0] == code[1]


for _path in [p for p in EXERCISES if not same_code_as_solution(p)]:
    _name = "TestExercise_" + _path.stem
    globals()[_name] = type(_name, (), {"test_runs_and_fails_only_at_stubs": lambda self, p=_path: check_exercise(p)})


@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*.ipynb")) + EXERCISES, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} was committed with outputs"


def test_every_solution_has_an_exercise():
    solutions = {p.name for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")}
    assert solutions == {p.name for p in EXERCISES}
