"""Every notebook keeps what it builds on the reference's device, read statically (CI has no GPU).

On a CUDA machine the reference's tensors live on the GPU; a module built in a notebook and fed them
without `.to(device)`, or a tensor made by `torch.zeros(...)` without `device=`, stops the notebook with
"Expected all tensors to be on the same device". The CPU never shows that mistake, so this test reads
every solution notebook (the exercise notebooks and `c1p1.parts` are generated from them) and asks:

- every module built outside a class (`LayerNorm(cfg)`, `parts.DemoTransformer(cfg)`, `nn.Linear(...)`)
  is moved in the same expression: `LayerNorm(cfg).to(device)`;
- every tensor factory (`torch.zeros`, `torch.arange`, `torch.randn`, ...) outside a module's `__init__`
  names its device (`device=...`) or is moved in the same expression (`torch.randn(..., generator=g).to(device)`),
  unless its line says it stays `on the host` (a table for a plot, seeded data moved by its caller);
- no code names a device by hand (`"cuda"`, `"cpu"`, `.cuda()`). Bringing a result back with `.cpu()` to print
  or plot it is fine, and `.numpy()` needs it: on CUDA `tensor.numpy()` raises, so it must read `.cpu().numpy()`.

Parameters made in `__init__` move with the module, so they are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from torch import nn

import c1p1.parts as parts

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
FACTORIES = {"zeros", "ones", "empty", "full", "arange", "linspace", "eye", "tensor", "randn", "rand", "randint",
             "randperm", "normal"}
PART_MODULES = {name for name in dir(parts) if isinstance(getattr(parts, name), type)
                and issubclass(getattr(parts, name), nn.Module)}


def module_classes(tree: ast.Module, imported: set[str]) -> set[str]:
    """Names that build an nn.Module: classes the notebook defines on nn.Module, and the course's parts."""
    names = set(PART_MODULES) | imported
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) in {"nn.Module", "torch.nn.Module"} | names
                                                  for b in node.bases):
            names.add(node.name)
    return names


def with_parents(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node  # type: ignore[attr-defined]
    return tree


def moved(call: ast.Call) -> bool:
    """Whether the call sits in a chain that ends in `.to(...)`, e.g. `X(cfg).eval().to(device)`."""
    node: ast.AST = call
    while isinstance(getattr(node, "parent", None), ast.Attribute | ast.Call):
        parent = node.parent  # type: ignore[attr-defined]
        if isinstance(parent, ast.Attribute) and parent.attr == "to":
            return True
        node = parent
    return False


def inside_init(node: ast.AST) -> bool:
    while (node := getattr(node, "parent", None)) is not None:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            return True
    return False


def inside_class(node: ast.AST) -> bool:
    while (node := getattr(node, "parent", None)) is not None:
        if isinstance(node, ast.ClassDef):
            return True
    return False


def problems_in(source: str, label: str, classes: set[str]) -> list[str]:
    found = []
    tree = with_parents(ast.parse(source))
    lines = source.splitlines()
    for node in ast.walk(tree):
        compared = isinstance(getattr(node, "parent", None), ast.Compare)  # `device.type == "cuda"` asks, it does not choose
        if isinstance(node, ast.Constant) and node.value in {"cuda", "cpu", "cuda:0"} and not compared:
            found.append(f"{label}: names the device {node.value!r} by hand; use `device` (reference.device)")
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        line = f"{label}, line {node.lineno}: {ast.unparse(node)[:80]}"
        if isinstance(node.func, ast.Attribute) and node.func.attr == "cuda" and not node.args:
            found.append(f"{line}: moves to a fixed device; use `.to(device)`")
        if isinstance(node.func, ast.Attribute) and node.func.attr == "numpy" and ".cpu()" not in ast.unparse(node.func.value):
            found.append(f"{line}: `.numpy()` without `.cpu()` first raises on CUDA; use `.cpu().numpy()`")
        leaf = func.rsplit(".", 1)[-1]
        is_module = leaf in classes and (func == leaf or func in {f"parts.{leaf}", f"nn.{leaf}"})
        if is_module and not inside_class(node) and not moved(node):
            found.append(f"{line}: a module built without `.to(device)`")
        is_factory = func in {f"torch.{name}" for name in FACTORIES}
        has_device = any(k.arg == "device" for k in node.keywords)
        on_host = "on the host" in lines[node.lineno - 1]
        if is_factory and not has_device and not moved(node) and not inside_init(node) and not on_host:
            found.append(f"{line}: a tensor made without `device=`")
    return found


def notebook_problems(path: Path) -> list[str]:
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    whole = ast.parse("\n".join(c.source for c in cells if not c.source.startswith(("%", "!"))))
    classes = module_classes(whole, {"Linear", "Embedding", "LayerNorm", "Sequential", "ModuleList"})
    found = []
    for i, cell in enumerate(cells):
        found += problems_in(cell.source, f"{path.name} code cell {i}", classes)
    return found


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_everything_goes_to_the_one_device(path):
    found = notebook_problems(path)
    assert not found, "\n".join(found)


def test_the_guard_sees_each_mistake():
    classes = {"LayerNorm", "Linear"}
    bad = (
        "ln = LayerNorm(cfg)\n"
        "lin = nn.Linear(4, 4)\n"
        "x = torch.zeros(3)\n"
        "y = torch.randn(3, generator=g)\n"
        "z = x.to('cuda')\n"
        "w = x.cuda()\n"
        "a = x.numpy()\n"
    )
    found = problems_in(bad, "cell", classes)
    assert len(found) == 7, found
    assert problems_in("values = probs.cpu().tolist()\n", "cell", classes) == []  # brought back to print
    assert problems_in("image = probs[0].detach().cpu().numpy()\n", "cell", classes) == []  # brought back to plot
    good = (
        "ln = LayerNorm(cfg).to(device)\n"
        "lin = nn.Linear(4, 4).eval().to(device)\n"
        "x = torch.zeros(3, device=device)\n"
        "y = torch.randn(3, generator=g).to(device)\n"
        "class A(nn.Module):\n"
        "    def __init__(self, cfg):\n"
        "        super().__init__()\n"
        "        self.w = nn.Parameter(torch.ones(3))\n"
        "        self.ln = LayerNorm(cfg)\n"
        "    def forward(self, x):\n"
        "        return x + torch.arange(3, device=x.device)\n"
    )
    assert problems_in(good, "cell", classes) == []
