"""Every check in c1p1.catalog: it passes the canonical answer, refuses the exercise stub, and is never vacuous.

The catalogue is the one registry: every check defined in c1p1/checks/ must be in it, and C1P1_tests
offers exactly the catalogued checks. While a check or its canonical part is still being written, its
tests skip and say which piece is missing.
"""

from __future__ import annotations

import functools
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

import C1P1_tests
from c1p1.catalog import CHECKS, CheckInfo, PartMissing, defined_checks
from c1p1.checks.core import CheckFailed, NotDoneYet
from tests.notebook_code import definitions

ROOT = Path(__file__).resolve().parent.parent


def collected() -> set[str]:
    return {name for name in dir(C1P1_tests) if name.startswith("test_") and callable(getattr(C1P1_tests, name))}


def check_of(info: CheckInfo):
    fn = getattr(C1P1_tests, info.name, None)
    if fn is None:
        pytest.skip(f"{info.name} is not in C1P1_tests yet (no module in c1p1/checks/ defines it)")
    return fn


def canonical_of(info: CheckInfo) -> object:
    try:
        return info.canonical()
    except PartMissing as exc:
        pytest.skip(f"{info.name}: {exc}")


def resolve(namespace: dict, dotted: str) -> object:
    head, *rest = dotted.split(".")
    obj = namespace[head]
    for attr in rest:
        obj = getattr(obj, attr)
    return obj


def stub_of(info: CheckInfo) -> object:
    path = ROOT / "notebooks" / info.notebook
    if not path.exists():
        pytest.skip(f"{info.name}: notebooks/{info.notebook} does not exist yet (run `make exercises`)")
    namespace = definitions(f"notebooks/{info.notebook}")
    try:
        return resolve(namespace, info.thing)
    except (KeyError, AttributeError):
        pytest.skip(f"{info.name}: notebooks/{info.notebook} defines no {info.thing} yet")


def perturb(out: object) -> object:
    """A wrong answer of the same shape and dtype: no correct check can accept it."""
    if isinstance(out, torch.Tensor):
        if out.is_floating_point():
            return out * 1.5 + 0.5
        return out + 1
    if isinstance(out, tuple | list):
        return type(out)(perturb(o) for o in out)
    if isinstance(out, nn.Module):
        return _Perturbed(out)
    if type(out).__name__ == "FactoredMatrix":
        return type(out)(perturb(out.A), out.B)
    if isinstance(out, float):
        return out * 1.5 + 0.5
    if isinstance(out, int) and not isinstance(out, bool):  # a token id, a count (notebook 15)
        return out + 1
    if isinstance(out, str):
        return out + "?"
    if isinstance(out, bytes):
        return out + b"?"
    if isinstance(out, dict):
        return {key: perturb(value) for key, value in out.items()}
    if isinstance(out, torch.optim.Optimizer):
        for group in out.param_groups:
            group["weight_decay"] = group["weight_decay"] * 1.5 + 0.5
    return out


class _Perturbed(nn.Module):
    """A returned model (e.g. an ablated copy) whose every output is perturbed."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return perturb(self.inner(*args, **kwargs))


def wrong_version(obj: object) -> object:
    """The canonical answer with every output perturbed, under the same name."""
    if isinstance(obj, type) and issubclass(obj, nn.Module):

        def forward(self, *args, **kwargs):
            return perturb(obj.forward(self, *args, **kwargs))

        return type(obj.__name__, (obj,), {"forward": forward, "__module__": "notebook"})

    @functools.wraps(obj)
    def wrong(*args, **kwargs):
        out = obj(*args, **kwargs)
        if out is None:  # a function that works in place (an initialiser): perturb what it wrote
            with torch.no_grad():
                for module in (a for a in args if isinstance(a, nn.Module)):
                    for p in module.parameters():
                        p.mul_(1.5).add_(0.5)
        return perturb(out)

    return wrong


def test_catalogue_names_every_check():
    extra = set(defined_checks()) - set(CHECKS)
    assert not extra, f"checks defined in c1p1/checks/ but not in c1p1/catalog.py: {sorted(extra)}"
    assert collected() == set(CHECKS) & set(defined_checks())
    missing = set(CHECKS) - collected()
    if missing:
        pytest.skip(f"in the catalogue but not written yet: {sorted(missing)}")


def test_catalogue_notebooks_exist():
    missing = sorted({c.notebook for c in CHECKS.values() if not (ROOT / "solutions" / c.notebook).exists()})
    if missing:
        pytest.skip(f"solution notebooks not written yet: {missing}")


@pytest.mark.parametrize("name", list(CHECKS))
def test_passes_the_canonical_answer(name, reference, capsys):
    info = CHECKS[name]
    check = check_of(info)
    check(canonical_of(info))
    assert f"{name} passed" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(CHECKS))
def test_stub_is_not_done(name, reference):
    info = CHECKS[name]
    check = check_of(info)
    stub = stub_of(info)
    with pytest.raises(NotDoneYet) as caught:
        check(stub)
    assert isinstance(caught.value, NotImplementedError)
    assert "YOUR CODE HERE" in str(caught.value)


@pytest.mark.parametrize("name", list(CHECKS))
def test_is_not_vacuous(name, reference):
    """A check must run the learner's code and compare it: a perturbed canonical answer fails."""
    info = CHECKS[name]
    check = check_of(info)
    with pytest.raises(CheckFailed) as caught:
        check(wrong_version(canonical_of(info)))
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_notebook_has_the_check_cell(name):
    """The catalogue agrees with the notebooks: the solution calls tests.<check>(<thing>) in a code cell."""
    info = CHECKS[name]
    path = ROOT / "solutions" / info.notebook
    if not path.exists():
        pytest.skip(f"{name}: solutions/{info.notebook} does not exist yet")
    nb = nbformat.read(path, as_version=4)
    call = f"tests.{name}({info.thing})"
    assert any(call in c.source for c in nb.cells if c.cell_type == "code"), f"no cell in {info.notebook} runs {call}"
