"""The grader's probe, unit by unit: how each way a check call ends is recorded, in one place."""

from __future__ import annotations

import json
import sys
import types

import pytest

from c1p1 import grade
from c1p1.checks.core import CheckFailed, NotDoneYet
from c1p1.grade_probe import (
    COURSE,
    FAIL,
    NOT_DONE,
    NOT_RUN,
    PASS,
    STATUSES,
    install,
    is_out_of_memory,
    status_of,
    wrap,
)


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
    assert STATUSES == (PASS, COURSE, FAIL, NOT_DONE, NOT_RUN) == ("pass", "course code", "fail", "not done", "not run")
    assert status_of(None) == PASS
    assert status_of(NotDoneYet("x")) == status_of(NotImplementedError()) == NOT_DONE
    assert status_of(CheckFailed("x")) == status_of(ValueError()) == FAIL
    # The grader reads a check cell's error by its class name only.
    assert status_of("NotDoneYet") == status_of("NotImplementedError") == NOT_DONE
    assert status_of("NameError") == status_of("CheckFailed") == FAIL


def test_the_kernel_runs_a_four_line_probe(tmp_path, monkeypatch):
    tests = facade()
    monkeypatch.setitem(sys.modules, "C1P1_tests", tests)  # what `import C1P1_tests` finds in the kernel
    code = grade.INSTRUMENT % (str(tmp_path / "log.jsonl"), 0.0)
    assert code.splitlines() == [
        "import c1p1.grade_probe as _c1p1_probe",
        f"_c1p1_probe.install({str(tmp_path / 'log.jsonl')!r})",
        "_c1p1_probe.limit_memory(0.0)",  # 0: no limit (the grader passes --memory-gb, default 8)
        "del _c1p1_probe",
    ]
    namespace: dict = {}
    exec(compile(code, "<probe>", "exec"), namespace)  # it runs, and leaves no name behind
    assert "_c1p1_probe" not in namespace
    assert all(getattr(tests, n)._c1p1_graded for n in dir(tests) if n.startswith("test_"))


# ------------------------------------------------------------------------------------- course code

COURSE_PART = '''
class Norm:
    def __init__(self, cfg=None):
        self.cfg = cfg

    def forward(self, x):
        return x + 1


def scale(x):
    return 2 * x
'''

# A check, written as the course's checks are: it runs what it is given, and also runs its own answer to compare.
COURSE_CHECK = '''
def test_norm(cls):
    from_course = __import__("c1p1.parts.p99_fake", fromlist=["Norm"]).Norm().forward(1)
    assert cls().forward(1) == from_course, "test_norm FAILED"
    print("test_norm passed")


def test_scale(fn):
    assert fn(3) == __import__("c1p1.parts.p99_fake", fromlist=["scale"]).scale(3), "test_scale FAILED"
    print("test_scale passed")
'''


def module_from(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


@pytest.fixture
def course(monkeypatch, tmp_path):
    """A fake course part (in c1p1.parts), its check (in c1p1.checks), and a notebook namespace (__main__)."""
    part = module_from("c1p1.parts.p99_fake", COURSE_PART)
    monkeypatch.setitem(sys.modules, "c1p1.parts.p99_fake", part)
    checks = module_from("c1p1.checks.p99_fake", COURSE_CHECK)
    log = tmp_path / "log.jsonl"
    answers = {"test_norm": part.Norm, "test_scale": part.scale}
    wrapped = {n: wrap(n, getattr(checks, n), str(log), canonical=answers.get) for n in answers}

    def notebook(source: str) -> dict:
        namespace = {"__name__": "__main__", "parts": part}
        exec(compile(source, "/tmp/ipykernel_1/cell.py", "exec"), namespace)
        return namespace

    return part, wrapped, notebook, log


def grade_of(wrapped, name, obj, log) -> tuple[str, str]:
    wrapped[name](obj)
    last = records(log)[-1]
    return last["status"], last["message"]


def test_the_learners_own_code_passes(course):
    part, wrapped, notebook, log = course
    nb = notebook(
        "class Norm:\n    def forward(self, x):\n        return x + 1\n"
        # Subclassing the course's *other* code is how the notebooks are built (05's Attention(MaskedAttention)).
        "class Other(parts.Norm):\n    pass\n"
        "def scale(x):\n    return x * 2\n"
    )
    assert grade_of(wrapped, "test_norm", nb["Norm"], log) == (PASS, "test_norm passed")
    assert grade_of(wrapped, "test_scale", nb["scale"], log) == (PASS, "test_scale passed")


@pytest.mark.parametrize(("source", "name", "why"), [
    ("Norm = parts.Norm", "test_norm", "Norm is the course's own c1p1.parts.p99_fake.Norm, not code written"),
    ("from functools import partial\nscale = partial(parts.scale)", "test_scale", "scale is the course's own"),
    ("class Norm(parts.Norm):\n    pass", "test_norm", "Norm inherits __init__, forward from the course's own"),
    ("class Norm(parts.Norm):\n    def __init__(self):\n        pass\n"
     "    def forward(self, x):\n        return super().forward(x)", "test_norm",
     "the notebook's Norm.forward calls the course's own c1p1.parts.p99_fake.Norm.forward"),
    ("class Norm:\n    def __init__(self):\n        self.inner = parts.Norm()\n"
     "    def forward(self, x):\n        return self.inner.forward(x)", "test_norm",
     "the notebook's Norm.__init__ calls the course's own c1p1.parts.p99_fake.Norm.__init__"),
    ("def scale(x):\n    return parts.scale(x)", "test_scale", "the notebook's scale calls the course's own"),
    ("scale = lambda x: parts.scale(x)", "test_scale", "the notebook's <lambda> calls the course's own"),
])
def test_the_courses_code_is_course_code_not_pass(course, source, name, why):
    part, wrapped, notebook, log = course
    thing = notebook(source)[name.removeprefix("test_").capitalize() if name == "test_norm" else "scale"]
    status, message = grade_of(wrapped, name, thing, log)
    assert status == COURSE == "course code"
    first = message.splitlines()[0]
    assert first.startswith("course code: ") and why in first, first
    assert first.endswith(f"{name} passed on the course's code, not on the learner's.")


def test_overriding_every_method_of_the_courses_class_is_the_learners_code(course):
    part, wrapped, notebook, log = course
    nb = notebook("class Norm(parts.Norm):\n    def __init__(self):\n        pass\n"
                  "    def forward(self, x):\n        return x + 1\n")
    assert grade_of(wrapped, "test_norm", nb["Norm"], log) == (PASS, "test_norm passed")


def test_course_code_that_fails_is_a_fail(course):
    part, wrapped, notebook, log = course
    nb = notebook("class Norm(parts.Norm):\n    def forward(self, x):\n        return super().forward(x) + 1\n")
    with pytest.raises(AssertionError):
        wrapped["test_norm"](nb["Norm"])
    assert records(log)[-1]["status"] == FAIL


def test_the_watch_leaves_no_trace_function_behind(course):
    part, wrapped, notebook, log = course
    nb = notebook("def scale(x):\n    return parts.scale(x)")
    wrapped["test_scale"](nb["scale"])
    assert sys.gettrace() is None or "coverage" in type(sys.gettrace()).__module__


def test_out_of_memory_is_not_run(tmp_path):
    assert is_out_of_memory(MemoryError()) and is_out_of_memory("MemoryError")
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 8000000000 bytes. Error code 12"))
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(None)
    assert status_of(MemoryError()) == status_of("MemoryError") == NOT_RUN
    assert status_of("RuntimeError", "CUDA out of memory") == NOT_RUN and status_of("RuntimeError", "boom") == FAIL
    log = tmp_path / "log.jsonl"

    def test_big(thing):
        raise MemoryError()

    with pytest.raises(MemoryError):
        wrap("test_big", test_big, str(log), canonical=lambda name: None)(None)
    got = records(log)[-1]
    assert got["status"] == NOT_RUN and got["message"].startswith("out of memory: test_big stopped at")


def test_the_memory_limit_is_set_in_a_child_and_an_allocation_past_it_is_a_memory_error():
    """In a child process (the limit cannot be lifted again): limit_memory caps the data segment."""
    import subprocess

    code = ("import c1p1.grade_probe as p, resource\n"
            "print(p.limit_memory(0))\n"
            "print(p.limit_memory(1.5))\n"
            "print(resource.getrlimit(resource.RLIMIT_DATA) == (3 << 29, 3 << 29))\n"
            "try:\n    bytearray(2 << 30)\nexcept MemoryError:\n    print('MemoryError')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:4] == ["no memory limit", "memory limit 1.5 GiB", "True", "MemoryError"], out.stderr
