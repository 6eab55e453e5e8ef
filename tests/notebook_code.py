"""Take the definitions out of a notebook, as a learner's kernel would have them.

`definitions("notebooks/01_layernorm.ipynb")` executes, in order, every import, class and function
definition of the notebook's code cells (and nothing else), and returns the resulting namespace. On an
exercise notebook that gives the learner's stubs; on a solution notebook, the solutions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
KEEP = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef)


def definitions(relative: str) -> dict[str, object]:
    nb = nbformat.read(ROOT / relative, as_version=4)
    namespace: dict[str, object] = {"__name__": "notebook"}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        tree.body = [node for node in tree.body if isinstance(node, KEEP)]
        exec(compile(tree, f"{relative}[cell {i}]", "exec"), namespace)  # the course's own notebook
    return namespace
