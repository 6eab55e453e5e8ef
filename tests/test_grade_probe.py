"""The grader's probe, unit by unit: how each way a check call ends is recorded, in one place."""

from __future__ import annotations

import json
import sys
import types

import pytest

from c1p1 import grade
from c1p1.checks.core import CheckFailed, NotDoneYet
from c1p1.grade_probe import FAIL, NOT_DONE, NOT_RUN, PASS, STATUSES, install, status_of


def facade() -> types.ModuleType:
    """A stand-in for C1P1_tests with one check per outcome."""
    module = types.ModuleType("fake_tests")
    module.CheckFailed, module.NotDoneYet = CheckFailed, NotDoneYet

    def test_pass(thing):
        print("warming up")
        print(f"test_pass passed: {thing} is right")

    def test_fail(thing):
        raise CheckFailed("test_fail FAILED on a case\nLikely cause: the bias")

    def test_stub(thing):
        raise NotDoneYet("test_stub: Embed.forward still raises NotImplementedError. # YOUR CODE HERE")

    def test_raw(thing):
        raise NotImplementedError("half written")

    def test_crash(thing):
        raise NameError("name 'Embed' is not defined")

    for fn in (test_pass, test_fail, test_stub, test_raw, test_crash):
        setattr(module, fn.__name__, fn)
    module.helper = lambda: None
    return module


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_outcome_is_recorded_and_the_call_behaves_as_before(tmp_path, capsys):
    tests, log = facade(), tmp_path / "log.jsonl"
    assert install(str(log), tests) == 5
    assert install(str(log), tests) == 0  # installing twice wraps nothing twice
    tests.test_pass("Embed")
    assert "test_pass passed: Embed is right" in capsys.readouterr().out  # still printed
    for name, error in (("test_fail", CheckFailed), ("test_stub", NotDoneYet), ("test_raw", NotImplementedError),
                        ("test_crash", NameError)):
        with pytest.raises(error):
            getattr(tests, name)("Embed")
    got = {r["check"]: (r["status"], r["message"]) for r in records(log)}
    assert got == {
        "test_pass": (PASS, "test_pass passed: Embed is right"),
        "test_fail": (FAIL, "test_fail FAILED on a case\nLikely cause: the bias"),
        "test_stub": (NOT_DONE, "test_stub: Embed.forward still raises NotImplementedError. # YOUR CODE HERE"),
        "test_raw": (NOT_DONE, "test_raw: NotImplementedError: half written"),
        "test_crash": (FAIL, "test_crash could not run: NameError: name 'Embed' is not defined"),
    }
    assert tests.test_pass.__name__ == "test_pass" and tests.helper() is None


def test_statuses_are_classified_in_one_place():
    assert STATUSES == (PASS, FAIL, NOT_DONE, NOT_RUN) == ("pass", "fail", "not done", "not run")
    assert status_of(None) == PASS
    assert status_of(NotDoneYet("x")) == status_of(NotImplementedError()) == NOT_DONE
    assert status_of(CheckFailed("x")) == status_of(ValueError()) == FAIL
    # The grader reads a check cell's error by its class name only.
    assert status_of("NotDoneYet") == status_of("NotImplementedError") == NOT_DONE
    assert status_of("NameError") == status_of("CheckFailed") == FAIL


def test_the_kernel_runs_a_three_line_probe(tmp_path, monkeypatch):
    tests = facade()
    monkeypatch.setitem(sys.modules, "C1P1_tests", tests)  # what `import C1P1_tests` finds in the kernel
    code = grade.INSTRUMENT % str(tmp_path / "log.jsonl")
    assert code.splitlines() == [
        "import c1p1.grade_probe as _c1p1_probe",
        f"_c1p1_probe.install({str(tmp_path / 'log.jsonl')!r})",
        "del _c1p1_probe",
    ]
    namespace: dict = {}
    exec(compile(code, "<probe>", "exec"), namespace)  # it runs, and leaves no name behind
    assert "_c1p1_probe" not in namespace
    assert all(getattr(tests, n)._c1p1_graded for n in dir(tests) if n.startswith("test_"))
