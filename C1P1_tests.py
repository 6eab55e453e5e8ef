"""The course's checks. In a notebook: ``import C1P1_tests as tests`` then e.g. ``tests.test_layer_norm(LayerNorm)``.

Each check builds your class with the course Config, loads GPT-2's parameters into it strictly, runs
it on the reference's own activations (the reference sentence and a batch of two prompts), then again
with random parameters, and compares every value (atol 1e-4, rtol 1e-3). When something is off it
says how much, where, and the most likely cause. The checks live in ``c1p1/checks/``, one module per
notebook; this module gathers them under one name.
"""

from __future__ import annotations

import importlib
import pkgutil

import c1p1.checks as _checks
from c1p1.checks.core import CheckFailed, NotDoneYet

__all__ = ["CheckFailed", "NotDoneYet"]

for _info in sorted(pkgutil.iter_modules(_checks.__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"c1p1.checks.{_info.name}")
    for _name in dir(_module):
        if _name.startswith("test_") and callable(getattr(_module, _name)):
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
