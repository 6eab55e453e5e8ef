"""The grader's probe: run in a learner's kernel before their first cell, it records how every check call ends.

`c1p1.grade` runs ``import c1p1.grade_probe as p; p.install(LOG)`` in the kernel. From then on each
``tests.test_xxx(...)`` call appends one JSON line to ``LOG``: the check, its status and its message.
The statuses, and how an exception maps to one, are defined here and nowhere else:

- ``pass``: the check passed (the message is the last line it printed that says "passed");
- ``fail``: the check found a mistake (CheckFailed), or the call raised anything else before the
  check could judge (the message says it could not run);
- ``not done``: the learner's code still raises NotImplementedError (NotDoneYet);
- ``course code``: the check passed, but on the course's own code rather than the learner's: the object
  passed was defined in the course's package (``from c1p1.parts import LayerNorm``), or is a class that
  inherits the check's answer from it (``class LayerNorm(c1p1.parts.LayerNorm)`` without overriding its
  methods), or is the learner's code calling the course's answer to this same check while the check runs
  (a wrapper, or ``super().forward``). Using the course's *other* parts is how the notebooks are built
  (notebook 07's block calls ``c1p1.parts.LayerNorm``), so only the answer of the check being run counts;
- ``not run``: the grader's own status for a check cell never reached (a timeout, a dead kernel, the
  notebook's memory limit), or a check call that ran out of memory.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import re
import sys
from collections.abc import Callable
from types import CodeType, FrameType, ModuleType

PASS, COURSE, FAIL, NOT_DONE, NOT_RUN = "pass", "course code", "fail", "not done", "not run"
STATUSES = (PASS, COURSE, FAIL, NOT_DONE, NOT_RUN)
# An exception of one of these classes (by name, as a notebook's error output gives it) means "not done".
NOT_DONE_ERRORS = ("NotImplementedError", "NotDoneYet")
OUT_OF_MEMORY = "out of memory"
# How torch, numpy and Python say an allocation failed (the first two raise RuntimeError or their own class).
_OOM_TEXT = re.compile(r"can't allocate memory|cannot allocate memory|out of memory|bad_alloc|Unable to allocate", re.I)
# Modules whose code is the course's, not the learner's.
COURSE_MODULES = ("c1p1", "C1P1_tests")


def is_out_of_memory(error: BaseException | str | None, text: str = "") -> bool:
    """Whether ``error`` (an exception, or its class name with its message in ``text``) is an allocation failure."""
    if error is None:
        return False
    name = error if isinstance(error, str) else type(error).__name__
    text = text if isinstance(error, str) else str(error)
    return name == "MemoryError" or (name in ("RuntimeError", "OutOfMemoryError") and bool(_OOM_TEXT.search(text)))


def status_of(error: BaseException | str | None, text: str = "") -> str:
    """The status of a check call that raised ``error`` (an exception, or its class name); None is a pass."""
    if error is None:
        return PASS
    if is_out_of_memory(error, text):
        return NOT_RUN
    if isinstance(error, str):
        return NOT_DONE if error in NOT_DONE_ERRORS else FAIL
    return NOT_DONE if isinstance(error, NotImplementedError) else FAIL


def message_of(check: str, error: BaseException, own: tuple[type[BaseException], ...] = ()) -> str:
    """What the grade records for a call that raised ``error``; the checks' ``own`` errors speak for themselves."""
    if is_out_of_memory(error):
        return f"{OUT_OF_MEMORY}: {check} stopped at the notebook's memory limit ({type(error).__name__}: {error})"
    if isinstance(error, own):
        return str(error)
    if isinstance(error, NotImplementedError):
        return f"{check}: NotImplementedError: {error}"
    return f"{check} could not run: {type(error).__name__}: {error}"


# ------------------------------------------------------------------------------------- course code


def _is_course_module(module: str | None) -> bool:
    return (module or "").split(".")[0] in COURSE_MODULES


def _unwrap(obj: object) -> object:
    """The function or class behind a bound method, a functools.partial or a decorator."""
    for _ in range(32):
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif inspect.ismethod(obj):
            obj = obj.__func__
        elif inspect.isfunction(obj) and hasattr(obj, "__wrapped__"):
            obj = obj.__wrapped__
        else:
            break
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        obj = type(obj)  # an instance: what matters is where its class was written
    return obj


def _label(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def static_origin(obj: object, canonical: object | None) -> str | None:
    """Why ``obj`` is the course's code rather than the notebook's, judged from the object alone; None if it is not.

    ``canonical`` is the course's answer to the check being run (``c1p1.parts.LayerNorm``), or None.
    """
    obj = _unwrap(obj)
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", "it"))
    if _is_course_module(getattr(obj, "__module__", None)):
        return f"{name} is the course's own {_label(obj)}, not code written in the notebook"
    if inspect.isclass(obj) and inspect.isclass(canonical) and issubclass(obj, canonical):
        own = [n for n, v in vars(canonical).items() if inspect.isfunction(v)]
        inherited = [n for n in own if inspect.getattr_static(obj, n, None) is vars(canonical)[n]]
        if inherited:
            return f"{name} inherits {', '.join(inherited)} from the course's own {_label(canonical)}"
    return None


def _code_objects(canonical: object | None) -> set[CodeType]:
    """The code that runs when the course's answer runs: its function, or every method its class defines."""
    if canonical is None:
        return set()
    if inspect.isclass(canonical):
        functions = [v for v in vars(canonical).values() if inspect.isfunction(v)]
    else:
        functions = [_unwrap(canonical)]
    return {f.__code__ for f in functions if hasattr(f, "__code__")}


class CourseCallWatch:
    """A trace function that notes the first call of the course's answer made from the learner's code.

    The learner's code is code run in ``__main__`` (a notebook cell). From each call of a watched code object it
    walks up the stack, past torch's and the course answer's own frames: if it meets ``__main__`` first, the
    learner called the course's answer (a wrapper, ``super().forward``); if it meets the course's other code first
    (the check itself, which may call its answer to compare), it does not count.
    """

    def __init__(self, codes: set[CodeType]):
        self.codes = codes
        self.hit: str | None = None

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and self.hit is None and frame.f_code in self.codes:
            caller = frame.f_back
            while caller is not None:
                module = caller.f_globals.get("__name__", "")
                if module == "__main__":
                    self.hit = (f"the notebook's {caller.f_code.co_qualname} calls the course's own "
                                f"{frame.f_globals.get('__name__', '?')}.{frame.f_code.co_qualname}")
                    break
                if _is_course_module(module) and not module.startswith("c1p1.parts"):
                    break
                caller = caller.f_back
        return None


def _canonical(check: str) -> object | None:
    """The course's answer to ``check`` (``c1p1.catalog``), or None when there is none to be had."""
    try:
        from c1p1.catalog import CHECKS

        info = CHECKS.get(check)
        return None if info is None else info.canonical()
    except Exception:  # no parts built yet, or a check outside the catalogue: nothing to compare with
        return None


def course_message(check: str, why: str, printed: str) -> str:
    """The message of a check that passed on the course's code: that first, then what the check said."""
    return f"{COURSE}: {why}; {check} passed on the course's code, not on the learner's.\n{passed_line(printed)}"


def passed_line(printed: str) -> str:
    """The message of a pass: the last printed line that says "passed", else everything printed."""
    lines = [line for line in printed.splitlines() if "passed" in line]
    return lines[-1] if lines else printed.strip()


def record(log_path: str, check: str, status: str, message: str) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps({"check": check, "status": status, "message": message}) + "\n")


def wrap(name: str, check: Callable, log_path: str, own: tuple[type[BaseException], ...] = (),
         canonical: Callable[[str], object | None] = _canonical) -> Callable:
    """``check`` recording each call's outcome in ``log_path``; it prints and raises as before.

    ``canonical(name)`` gives the course's answer to the check, to tell the learner's code from the course's.
    """

    @functools.wraps(check)
    def recorded(*args, **kwargs):
        buffer = io.StringIO()
        error: BaseException | None = None
        answer = canonical(name)
        passed = args[0] if args else next(iter(kwargs.values()), None)
        why = static_origin(passed, answer)
        watch = CourseCallWatch(_code_objects(answer))
        tracing = why is None and bool(watch.codes) and sys.gettrace() is None  # never displace a debugger
        try:
            with contextlib.redirect_stdout(buffer):
                if tracing:
                    sys.settrace(watch)
                try:
                    return check(*args, **kwargs)
                finally:
                    if tracing:
                        sys.settrace(None)
        except BaseException as exc:
            error = exc
            raise
        finally:
            printed = buffer.getvalue()
            sys.stdout.write(printed)
            status = status_of(error)
            message = passed_line(printed) if error is None else message_of(name, error, own)
            why = why or watch.hit
            if status == PASS and why:
                status, message = COURSE, course_message(name, why, printed)
            record(log_path, name, status, message)

    recorded._c1p1_graded = True
    return recorded


def limit_memory(gib: float) -> str:
    """Cap this process's memory at ``gib`` GiB (0: no cap); return what was done, in words.

    The cap is ``RLIMIT_DATA``: the memory a process can write to (its heap and private anonymous mappings), which
    is where a runaway allocation goes. Unlike ``RLIMIT_AS`` it leaves out shared libraries, thread stacks and
    reserved but unused address space (torch's CPU kernel maps 3 to 5 GB of address space for about 1 GB in use,
    and CUDA reserves far more), so the number means memory. An allocation past it raises MemoryError (torch:
    RuntimeError "can't allocate memory"). Soft and hard limits are both set, so the notebook cannot lift it
    unless it runs as root. Linux enforces it for mmap since 4.7; elsewhere it may be ignored.
    """
    import resource

    if gib <= 0:
        return "no memory limit"
    limit = int(gib * (1 << 30))
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    if hard != resource.RLIM_INFINITY and hard < limit:
        limit = hard
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ValueError, OSError) as exc:
        return f"no memory limit ({exc})"
    return f"memory limit {limit / (1 << 30):g} GiB"


def install(log_path: str, facade: ModuleType | None = None) -> int:
    """Wrap every check of ``facade`` (default: ``C1P1_tests``) once; return how many were wrapped."""
    if facade is None:
        try:
            import C1P1_tests as facade
        except Exception:  # a kernel without the course: its checks cannot be called either
            return 0
    own = tuple(getattr(facade, n) for n in ("CheckFailed", "NotDoneYet") if hasattr(facade, n))
    count = 0
    for name in dir(facade):
        check = getattr(facade, name)
        if name.startswith("test_") and callable(check) and not getattr(check, "_c1p1_graded", False):
            setattr(facade, name, wrap(name, check, log_path, own))
            count += 1
    return count
