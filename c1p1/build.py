"""Generate everything that comes from the solution notebooks, or check that it is current.

The solution notebooks in ``solutions/`` are the only source:

- ``notebooks/NN_name.ipynb``: the learner's version. Code between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` becomes ``# YOUR CODE HERE`` / ``raise NotImplementedError()``; outputs are cleared.
- ``c1p1/parts/pNN_name.py``: the course's canonical implementation. Every code cell whose first line is
  ``# @export`` is saved here, so a later notebook imports ``from c1p1.parts import LayerNorm`` and runs
  even when the learner has not finished the earlier one.

A learner's notebook is never overwritten. ``notebooks/.generated.json`` records a hash of each file as
it was generated; a notebook whose bytes differ from that record was edited (or saved) by someone, so it
is kept and the new version is written beside it as ``NN_name.new.ipynb``.

    python -m c1p1.build            # write (safely)
    python -m c1p1.build --check    # exit 1 if anything generated is stale; writes nothing
"""

from __future__ import annotations

import ast
import builtins
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

from c1p1.cli import generated_cli

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
PARTS = ROOT / "c1p1" / "parts"
MANIFEST = NOTEBOOKS / ".generated.json"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
EXPORT = "# @export"
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]

# The imports an exported cell may rely on, by the name it uses.
KNOWN_IMPORTS = {
    "math": "import math",
    "einops": "import einops",
    "torch": "import torch",
    "nn": "from torch import nn",
    "Tensor": "from torch import Tensor",
    "F": "import torch.nn.functional as F",
    "Float": "from jaxtyping import Float",
    "Int": "from jaxtyping import Int",
    "Config": "from c1p1.config import Config",
    "ModernConfig": "from c1p1.modern import ModernConfig",
    "tqdm": "from tqdm.auto import tqdm",
    "copy": "import copy",
    "replace": "from dataclasses import replace",
    "regex": "import regex",
    "json": "import json",
    "heapq": "import heapq",
    "Counter": "from collections import Counter",
    "defaultdict": "from collections import defaultdict",
    "Iterable": "from collections.abc import Iterable",
    "pairwise": "from itertools import pairwise",
}
BUILTINS = set(dir(builtins))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumps(nb: nbformat.NotebookNode) -> bytes:
    text = nbformat.writes(nb)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def stub_solutions(source: str, where: str) -> str:
    """Replace each BEGIN/END SOLUTION region with a stub at the same indentation."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}: nested {BEGIN}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in STUB)
        elif stripped == END:
            if not inside:
                raise ValueError(f"{where}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} without {END}")
    return "\n".join(out)


def is_export(cell) -> bool:
    return cell.cell_type == "code" and cell.source.split("\n", 1)[0].strip() == EXPORT


def strip_export(source: str) -> str:
    first, _, rest = source.partition("\n")
    return rest if first.strip() == EXPORT else source


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.pop("id", None)
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in {"tags"}}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def exercise(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    nb = clean(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source = stub_solutions(strip_export(cell.source), f"{name} cell {i}")
    return nb


def defined_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def used_names(tree: ast.Module) -> set[str]:
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.arg | ast.FunctionDef | ast.ClassDef):
            for expr in (getattr(node, "annotation", None), getattr(node, "returns", None)):
                if expr is not None:
                    used |= {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
    return used


def part_module(stem: str, code: str, earlier: dict[str, str], notebook: str) -> tuple[str, list[str]]:
    """The source of c1p1/parts/<stem>.py and the names it defines."""
    tree = ast.parse(code)
    mine = defined_names(tree)
    needed = sorted(used_names(tree) - set(mine) - BUILTINS - {"self", "cls"})
    plain, first_party, from_parts = [], [], []
    for name in needed:
        if name in earlier:
            from_parts.append(f"from c1p1.parts.{earlier[name]} import {name}")
        elif name in KNOWN_IMPORTS:
            line = KNOWN_IMPORTS[name]
            (first_party if "c1p1" in line else plain).append(line)
        else:
            local = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            local |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
            # A name imported inside a function (a heavy package loaded only when that function runs).
            local |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree)
                      if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
            if name not in local:
                raise ValueError(f"{notebook}: exported code uses {name!r}; add it to KNOWN_IMPORTS in c1p1/build.py")
    header = [
        f'"""Generated from solutions/{notebook} by `make exercises`. Do not edit: edit the notebook."""',
        "",
        "from __future__ import annotations",
        "",
        *sorted(set(plain)),
        *sorted(set(first_party + from_parts)),
        "",
        f"__all__ = {mine!r}",
        "",
        "",
    ]
    return "\n".join(header) + code.strip() + "\n", mine


def generate() -> dict[Path, bytes]:
    """Every generated file, path -> bytes, without touching the disk."""
    files: dict[Path, bytes] = {}
    earlier: dict[str, str] = {}
    exports: list[tuple[str, list[str]]] = []
    for path in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        files[NOTEBOOKS / path.name] = dumps(exercise(nb, path.name))
        code_cells = [strip_export(c.source).strip() for c in nb.cells if is_export(c)]
        if code_cells:
            stem = "p" + re.sub(r"[^0-9a-zA-Z_]", "_", path.stem)
            source, names = part_module(stem, "\n\n\n".join(code_cells), earlier, path.name)
            files[PARTS / f"{stem}.py"] = source.encode()
            exports.append((stem, names))
            earlier.update({n: stem for n in names})
    lines = ['"""The course\'s canonical components, generated from the solution notebooks by `make exercises`."""', ""]
    final = {}
    for stem, names in exports:
        for n in names:
            final[n] = stem
    for stem, _ in exports:
        mine = sorted(n for n, s in final.items() if s == stem)
        if mine:
            lines.append(f"from c1p1.parts.{stem} import {', '.join(mine)}")
    lines += ["", f"__all__ = {sorted(final)!r}", ""]
    files[PARTS / "__init__.py"] = "\n".join(lines).encode()
    return files


def load_manifest() -> dict[str, str]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def write(files: dict[Path, bytes]) -> int:
    manifest = load_manifest()
    PARTS.mkdir(parents=True, exist_ok=True)
    kept = []
    for path, data in files.items():
        if path.parent == NOTEBOOKS and path.exists():
            current = path.read_bytes()
            if current == data:
                manifest[path.name] = sha(data)
                continue
            if manifest.get(path.name) != sha(current):
                beside = path.with_suffix(".new.ipynb")
                beside.write_bytes(data)
                kept.append((path, beside))
                continue
        path.write_bytes(data)
        if path.parent == NOTEBOOKS:
            manifest[path.name] = sha(data)
    for stale in PARTS.glob("p[0-9][0-9]_*.py"):
        if stale not in files:
            stale.unlink()
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    for path, beside in kept:
        print(
            f"Kept {path.relative_to(ROOT)}: it was changed since it was generated (your work?). "
            f"The new version is beside it: {beside.relative_to(ROOT)}"
        )
    print(f"Generated {len(files)} files from solutions/.")
    return 0


def check(files: dict[Path, bytes]) -> int:
    stale = [p for p, data in files.items() if not p.exists() or p.read_bytes() != data]
    extra = [p for p in PARTS.glob("p[0-9][0-9]_*.py") if p not in files]
    manifest = load_manifest()
    wrong_hash = [p for p in files if p.parent == NOTEBOOKS and manifest.get(p.name) != sha(files[p])]
    # A notebook whose bytes no longer match the manifest was edited by hand after generation: most
    # likely a learner's work. make exercises would keep it, so "run make exercises" is the wrong advice.
    edited = [p for p in stale if p.parent == NOTEBOOKS and p.exists() and manifest.get(p.name) != sha(p.read_bytes())]
    problems = [p for p in stale if p not in edited] + extra + [MANIFEST] * bool(wrong_hash)
    if problems:
        print("Generated files are stale; run `make exercises` and commit the result:")
        for p in dict.fromkeys(problems):
            print("  " + str(p.relative_to(ROOT)))
    if edited:
        print("Edited since they were generated (a learner's work, or a hand edit):")
        for p in edited:
            print("  " + str(p.relative_to(ROOT)))
        print("The course's own tests need notebooks/ exactly as solutions/ generates it. Course authors: edit "
              "solutions/ and run `make exercises`. Learners: keep your work, and run `make test` in a fresh clone.")
    if problems or edited:
        return 1
    print(f"Generated files are current ({len(files)} files).")
    return 0


def main(argv: list[str] | None = None) -> int:
    return generated_cli(__doc__, generate, write, check, argv)

if __name__ == "__main__":
    sys.exit(main())
