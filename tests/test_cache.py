"""Trained models are cached under a key that includes their code: changed code retrains, changed words do not."""

from __future__ import annotations

import importlib.util
import sys

from c1p1.cache import code_fingerprint


def load(tmp_path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BASE = '''
def step(x):
    """Add one."""
    return x + 1


class Model:
    """A model."""

    def forward(self, x):
        return step(x) * 2
'''


def test_words_do_not_change_the_fingerprint_and_code_does(tmp_path):
    base = load(tmp_path, "fp_base", BASE)
    reworded = load(tmp_path, "fp_words", BASE.replace('"""Add one."""', '"""Add one, then return it."""\n    # a comment')
                    .replace('"""A model."""', '"""A better-described model."""'))
    changed = load(tmp_path, "fp_code", BASE.replace("x + 1", "x + 2"))
    fingerprint = code_fingerprint(base.step, base.Model)
    assert code_fingerprint(reworded.step, reworded.Model) == fingerprint
    assert code_fingerprint(changed.step, changed.Model) != fingerprint
    assert "x + 1" in fingerprint and "Add one" not in fingerprint
