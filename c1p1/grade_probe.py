"""The grader's probe: run in a learner's kernel before their first cell, it records how every check call ends.

`c1p1.grade` runs ``import c1p1.grade_probe as p; p.install(LOG)`` in the kernel. From then on each
``tests.test_xxx(...)`` call appends one JSON line to ``LOG``: the check, its status and its message.
The statuses, and how an exception maps to one, are defined here and nowhere else:

- ``pass``: the check passed (the message is the last line it printed that says "passed");
- ``fail``: the check found a mistake (CheckFailed), or the call raised anything else before the
  check could judge (the message says it could not run);
- ``not done``: the learner's code still raises NotImplementedError (NotDoneYet);
- ``not run``: the grader's own status for a check cell never reached (a timeout, a dead kernel).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import sys
from collections.abc import Callable
from types import ModuleType

PASS, FAIL, NOT_DONE, NOT_RUN = "pass", "fail", "not done", "not run"
STATUSES = (PASS, FAIL, NOT_DONE, NOT_RUN)
# An exception of one of these classes (by name, as a notebook's error output gives it) means "not done".
NOT_DONE_ERRORS = ("NotImplementedError", "NotDoneYet")


def status_of(error: BaseException | str | None) -> str:
    """The status of a check call that raised ``error`` (an exception, or its class name); None is a pass."""
    if error is None:
        return PASS
    if isinstance(error, str):
        return NOT_DONE if error in NOT_DONE_ERRORS else FAIL
    return NOT_DONE if isinstance(error, NotImplementedError) else FAIL


def message_of(check: str, error: BaseException, own: tuple[type[BaseException], ...] = ()) -> str:
    """What the grade records for a call that raised ``error``; the checks' ``own`` errors speak for themselves."""
    if isinstance(error, own):
        return str(error)
    if isinstance(error, NotImplementedError):
        return f"{check}: NotImplementedError: {error}"
    return f"{check} could not run: {type(error).__name__}: {error}"


def passed_line(printed: str) -> str:
    """The message of a pass: the last printed line that says "passed", else everything printed."""
    lines = [line for line in printed.splitlines() if "passed" in line]
    return lines[-1] if lines else printed.strip()


def record(log_path: str, check: str, status: str, message: str) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps({"check": check, "status": status, "message": message}) + "\n")


def wrap(name: str, check: Callable, log_path: str, own: tuple[type[BaseException], ...] = ()) -> Callable:
    """``check`` recording each call's outcome in ``log_path``; it prints and raises as before."""

    @functools.wraps(check)
    def recorded(*args, **kwargs):
        buffer = io.StringIO()
        error: BaseException | None = None
        try:
            with contextlib.redirect_stdout(buffer):
                return check(*args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            printed = buffer.getvalue()
            sys.stdout.write(printed)
            status = status_of(error)
            message = passed_line(printed) if error is None else message_of(name, error, own)
            record(log_path, name, status, message)

    recorded._c1p1_graded = True
    return recorded


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
