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


def code_fingerprint(*objects) -> str:
    """The code of functions and classes as Python sees it, docstrings and comments left out.

    A trained model's cache key includes the code that built and trained it, so that changed code retrains; a
    reworded docstring or comment changes nothing the code does, and must not cost a learner a retraining.
    """
    import ast
    import inspect
    import textwrap

    def strip(tree: ast.AST) -> ast.AST:
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        return tree

    return "\n".join(ast.unparse(strip(ast.parse(textwrap.dedent(inspect.getsource(obj))))) for obj in objects)
