"""Grade a folder of learners' notebooks: run each one, record every check, print a table, write a CSV.

Usage::

    python -m c1p1.grade DIR [--timeout SECONDS] [--memory-gb GIB] [--csv FILE] [--jobs 1|2]
                             [--require CHECK,CHECK | --require-all]
    make grade SUBMISSIONS=DIR          # the same, with --timeout 300 --memory-gb 8 --csv grades.csv

Layouts of DIR that are understood (they can be mixed):

- ``DIR/<learner>/<NN_name>.ipynb``: one folder per learner (notebooks in sub-folders of it count
  too; ``.ipynb_checkpoints`` and hidden folders are ignored);
- ``DIR/<learner>__<NN_name>.ipynb``: flat, the learner and the notebook joined by two underscores;
- ``DIR/<anything>.ipynb``: flat, the file stem is the learner, and the checks are whatever the
  notebook calls.

Each notebook is run on a copy in a temporary folder (the learner's file is only read, never
written), in its own fresh kernel (forked from a process that has already imported torch and TransformerLens
and built the reference, ``c1p1/fork_kernel.py``; ``C1P1_FORK_KERNEL=0`` starts ordinary ones), with ``HF_HUB_OFFLINE=1 TQDM_DISABLE=1``, errors
allowed (a failing cell does not stop the next), and a time limit for the whole notebook: a
notebook that hangs or loops costs at most ``--timeout`` seconds, then its kernel is killed and its
remaining checks are "not run". A kernel that dies gives "not run" too. Each kernel may also use at most
``--memory-gb`` GiB (default 8; 0: no limit; ``c1p1.grade_probe.limit_memory``): a cell that goes past it stops
the notebook, its remaining checks "not run" with "out of memory". At most two notebooks run at
once (``--jobs``, default 2; use 1 on a busy machine).

A check cell is a code cell that calls ``tests.test_xxx(...)``. Before the learner's first cell the
grader wraps every check of ``C1P1_tests`` in the kernel (``c1p1.grade_probe``) so that each call
records its outcome:

- ``pass``: the check passed on the learner's own code;
- ``course code``: the check passed on the course's own code, not the learner's: what was passed was
  defined in the course's package (``from c1p1.parts import LayerNorm`` in the exercise cell), or it
  inherits or calls the course's answer to that check (``c1p1.grade_probe`` says how this is decided);
- ``fail``: the check found a mistake (its message says which), or the check cell raised before
  the check could run (e.g. a NameError because the class cell had a syntax error);
- ``not done``: the learner's code still raises NotImplementedError;
- ``not run``: the notebook timed out, ran out of memory or its kernel died before the check cell, the
  check cell is missing, or the notebook was not submitted.

A check is graded from the notebook that teaches it (``c1p1.catalog``). Calls in the course's other
notebooks (``NN_name``, e.g. the tour in 00_overview) do not count; calls in a notebook with any other
name (``DIR/<learner>.ipynb``) do. Within a notebook the last call counts.
The table shows one row per learner and one column per check; each "course code", "FAIL" or "not run" has a note
number, and the notes below the table give the first line of the check's message and its likely cause ("-" means the
notebook was not submitted). The CSV
(``--csv``) has one row per learner and check with the full message.

After the table and its notes come two summaries: by check (how many learners had each status, and how many
made each named mistake, from the "Likely cause" line of each FAIL message) and by learner (the required checks
passed out of all those graded; the optional ones, ``c1p1.catalog.OPTIONAL``, apart).

The exit code is 0 whenever grading ran, even if every learner failed (it is a report), and 2 for usage
errors (DIR missing, no notebook in it, a bad option). With ``--require test_a,test_b`` (or ``--require-all``:
every required check graded in the run) it is 1 unless every learner passed every one of them, for an
autograder; "course code" is not a pass.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from c1p1.catalog import CHECKS, checks_of
from c1p1.grade_probe import COURSE, FAIL, NOT_DONE, NOT_RUN, OUT_OF_MEMORY, PASS, STATUSES, is_out_of_memory, status_of

COURSE_NOTEBOOK = re.compile(r"^\d\d_")
CHECK_CALL = re.compile(r"\btests\s*\.\s*(test_\w+)\s*\(")
FLAT_SEPARATOR = "__"
MAX_OUTPUTS_PER_CELL = 200  # a cell that prints in a loop must not fill the grader's memory
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
KERNEL_ENV_DEFAULTS = {"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "TRANSFORMERS_OFFLINE": "1"}
LOG_NAME = "c1p1_grade_log.jsonl"
NOT_SUBMITTED = "not submitted"

DEFAULT_MEMORY_GB = 8.0  # per notebook: two at a time on a 24 GiB machine leave 8 GiB for the grader and the rest

# Run in the learner's kernel before their first cell: every check records how each call ends, and the kernel's
# memory is capped (c1p1.grade_probe.limit_memory).
INSTRUMENT = ("import c1p1.grade_probe as _c1p1_probe\n_c1p1_probe.install(%r)\n"
              "_c1p1_probe.limit_memory(%r)\ndel _c1p1_probe\n")


@dataclass
class Submission:
    learner: str
    path: Path
    notebook: str  # the notebook's stem, e.g. "05_attention" (for a flat "<learner>.ipynb", the learner)


@dataclass
class Outcome:
    check: str
    status: str
    message: str
    cell: int | None = None  # index of the cell that called the check


@dataclass
class NotebookReport:
    learner: str
    notebook: str
    path: str
    seconds: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    problem: str = ""  # why the notebook stopped early, if it did


# ------------------------------------------------------------------------------------- finding


def _visible(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return not any(p.startswith(".") or p == "__pycache__" for p in parts)


def discover(root: Path) -> list[Submission]:
    """Every learner notebook under ``root``, in a stable order (see the module docstring for layouts)."""
    found = []
    for entry in sorted(root.iterdir()):
        if not _visible(entry, root):
            continue
        if entry.is_dir():
            for nb in sorted(entry.rglob("*.ipynb")):
                if _visible(nb, root) and nb.is_file():
                    found.append(Submission(entry.name, nb, nb.stem))
        elif entry.suffix == ".ipynb" and entry.is_file():
            learner, sep, notebook = entry.stem.partition(FLAT_SEPARATOR)
            found.append(Submission(learner, entry, notebook if sep and notebook else entry.stem))
    return found


# ------------------------------------------------------------------------------------- running


def _client_class():
    from nbclient import NotebookClient

    class GradingClient(NotebookClient):
        """An nbclient that keeps at most MAX_OUTPUTS_PER_CELL outputs per cell (errors are always kept)."""

        def output(self, outs, msg, display_id, cell_index):
            if len(outs) >= MAX_OUTPUTS_PER_CELL and msg["msg_type"] != "error":
                return None
            return super().output(outs, msg, display_id, cell_index)

    return GradingClient


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _cell_error(cell) -> tuple[str, str] | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return out.get("ename", ""), out.get("evalue", "")
    return None


def _at(nb, index: int) -> str:
    """Where a notebook stopped: the cell's number (counting every cell from 1) and its first line."""
    if index >= len(nb.cells):
        return ""
    return f" (stopped in cell {index + 1}: `{_first_line(nb.cells[index].source)[:60]}`)"


def _read_log(path: Path, seen: int) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for line in lines[seen:]:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            records.append({"check": "?", "status": FAIL, "message": "unreadable record"})
    return records


def run_notebook(learner: str, notebook: str, path: str, timeout: float,
                 memory_gb: float = DEFAULT_MEMORY_GB) -> NotebookReport:
    """Run one notebook (a copy of it) in a fresh kernel and record every check call; never raises.

    The kernel may use ``memory_gb`` GiB (0: no limit); a cell that goes past it stops the notebook, like a timeout.
    """
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from c1p1 import fork_kernel

    kernel = fork_kernel.use()
    report = NotebookReport(learner, notebook, path)
    env = {**KERNEL_ENV_DEFAULTS, **os.environ, **KERNEL_ENV}
    fork_kernel.warm(env)  # once per grading process, before the notebook's clock starts
    start = time.monotonic()
    deadline = start + timeout
    with tempfile.TemporaryDirectory(prefix="c1p1-grade-") as tmp:
        work = Path(tmp) / Path(path).name
        shutil.copyfile(path, work)
        try:
            nb = nbformat.read(work, as_version=4)
        except Exception as exc:  # a broken file is reported, not fatal
            report.problem = f"the notebook cannot be read: {type(exc).__name__}: {_first_line(str(exc))}"
            report.seconds = time.monotonic() - start
            return report
        log = Path(tmp) / LOG_NAME
        client = _client_class()(
            nb,
            timeout=max(1, int(timeout)),
            startup_timeout=max(1, int(min(60, timeout))),
            kernel_name=kernel,
            allow_errors=True,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": tmp}},
        )
        check_cells = {
            i: CHECK_CALL.findall(c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"
        }
        check_cells = {i: names for i, names in check_cells.items() if names}
        reached = -1  # the last cell whose execution finished
        first_error: str | None = None  # the first cell that raised, for a later NameError's message
        seen = 0
        try:
            with client.setup_kernel(env=env, stderr=subprocess.DEVNULL):
                # The instrumenting cell runs in cell 0's place, then makes way for the learner's cells.
                nb.cells.insert(0, nbformat.v4.new_code_cell(INSTRUMENT % (str(log), float(memory_gb))))
                try:
                    client.execute_cell(nb.cells[0], 0, store_history=False)
                finally:
                    nb.cells.pop(0)
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        reached = index
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise CellTimeoutError(f"no time left before cell {index}")
                    client.timeout = max(1, int(remaining + 0.999))
                    client.execute_cell(cell, index)
                    records = _read_log(log, seen)
                    seen += len(records)
                    called = {r["check"] for r in records}
                    report.outcomes += [Outcome(r["check"], r["status"], r["message"], index) for r in records]
                    error = _cell_error(cell)
                    for name in check_cells.get(index, []):
                        if name in called or error is None:
                            continue
                        ename, evalue = error
                        status = status_of(ename, evalue)
                        message = f"the check cell raised {ename}: {evalue}".rstrip(": ")
                        if first_error is not None and ename == "NameError":
                            message += f" (an earlier cell failed first: {first_error})"
                        report.outcomes.append(Outcome(name, status, message, index))
                        break  # the cell stopped at its first error
                    if error is not None and is_out_of_memory(*error):
                        # What the cell allocated may still be held: nothing after it would be graded fairly.
                        report.problem = (f"{OUT_OF_MEMORY}: the notebook went past its {memory_gb:g} GiB memory "
                                          f"limit{_at(nb, index)}")
                        reached = index - 1  # so that this cell's checks that were not recorded are "not run"
                        break
                    if error is not None and first_error is None:
                        first_error = f"cell {index + 1} raised {error[0]}: {_first_line(error[1])}".rstrip(": ")
                    reached = index
        except CellTimeoutError:
            report.problem = f"timeout: the notebook ran for more than {timeout:g} s{_at(nb, reached + 1)}"
        except DeadKernelError:
            limit = f"past the {memory_gb:g} GiB memory limit" if memory_gb > 0 else "out of memory"
            report.problem = f"the kernel died{_at(nb, reached + 1)} ({limit}, or the code crashed Python)"
        except Exception as exc:  # one notebook's trouble must not stop the others
            report.problem = f"the notebook could not be run: {type(exc).__name__}: {_first_line(str(exc))}"
        if report.problem:
            graded = {o.check for o in report.outcomes}
            for index, names in sorted(check_cells.items()):
                if index > reached:
                    report.outcomes += [Outcome(n, NOT_RUN, report.problem, index) for n in names if n not in graded]
    report.seconds = time.monotonic() - start
    return report


def _run_one(args: tuple[str, str, str, float, float]) -> NotebookReport:
    return run_notebook(*args)


# ------------------------------------------------------------------------------------- grading


@dataclass
class Grade:
    learner: str
    check: str
    notebook: str
    status: str
    message: str
    seconds: float


def _final(outcomes: list[Outcome], check: str) -> Outcome | None:
    done = [o for o in outcomes if o.check == check and o.status != NOT_RUN]
    if done:
        return done[-1]
    rest = [o for o in outcomes if o.check == check]
    return rest[-1] if rest else None


def counts_for(report: NotebookReport, check: str) -> bool:
    """Whether a call of ``check`` in this notebook grades it.

    A course notebook (``NN_name``) grades only the checks it teaches: the tour in 00_overview calls
    test_layer_norm on the course's own LayerNorm (and on a broken one, on purpose), which says
    nothing about the learner. A notebook with any other name grades every check it calls.
    """
    info = CHECKS.get(check)
    return info is None or report.notebook == info.stem or not COURSE_NOTEBOOK.match(report.notebook)


def grade(reports: list[NotebookReport]) -> tuple[list[Grade], list[str]]:
    """One grade per learner and check, and the checks that appear, in catalogue order."""
    learners = sorted({r.learner for r in reports})
    called = {o.check for r in reports for o in r.outcomes if counts_for(r, o.check)}
    submitted = {r.notebook for r in reports}
    columns = [c for c in CHECKS if c in called or CHECKS[c].stem in submitted]
    columns += sorted(called - set(columns))
    grades = []
    for learner in learners:
        mine = [r for r in reports if r.learner == learner]
        for check in columns:
            info = CHECKS.get(check)
            home = [r for r in mine if info is not None and r.notebook == info.stem]
            chosen: tuple[NotebookReport, Outcome] | None = None
            for report in home or [r for r in mine if counts_for(r, check)]:
                outcome = _final(report.outcomes, check)
                if outcome is not None and (chosen is None or chosen[1].status == NOT_RUN):
                    chosen = (report, outcome)
            if chosen is not None:
                report, outcome = chosen
                grades.append(Grade(learner, check, Path(report.path).name, outcome.status, outcome.message,
                                    round(report.seconds, 1)))
            elif home:
                report = home[0]
                why = report.problem or f"no cell calls tests.{check}(...)"
                grades.append(Grade(learner, check, Path(report.path).name, NOT_RUN, why, round(report.seconds, 1)))
            else:
                where = info.notebook if info is not None else "a notebook that calls it"
                grades.append(Grade(learner, check, "", NOT_RUN, f"{NOT_SUBMITTED} ({where})", 0.0))
    return grades, columns


def _short(status: str) -> str:
    return {PASS: "pass", COURSE: "course code", FAIL: "FAIL", NOT_DONE: "not done", NOT_RUN: "not run"}[status]


def table(grades: list[Grade], columns: list[str]) -> str:
    """The learner × check table, with numbered notes giving the first line of each message."""
    learners = sorted({g.learner for g in grades})
    by_key = {(g.learner, g.check): g for g in grades}
    headers = ["learner"] + [CHECKS[c].short if c in CHECKS else c for c in columns]
    rows, notes = [], []
    for learner in learners:
        row = [learner]
        for check in columns:
            g = by_key[(learner, check)]
            if g.status == PASS:
                row.append("pass")
            elif g.status == NOT_RUN and g.message.startswith(NOT_SUBMITTED):
                row.append("-")
            elif g.status == NOT_DONE:
                row.append("not done")  # the message only says to replace the stub: no note needed
            else:
                note = f"[{len(notes) + 1}] {learner} / {check}: {_first_line(g.message)}"
                cause = [line.strip() for line in g.message.splitlines() if line.startswith("Likely cause")]
                notes.append(note + (f"\n      {cause[0]}" if cause else ""))
                row.append(f"{_short(g.status)} [{len(notes)}]")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = {s: sum(g.status == s for g in grades) for s in STATUSES}
    lines.append("")
    if any(g.message.startswith(NOT_SUBMITTED) for g in grades):
        lines.append("- : the notebook with this check was not submitted.")
    missing = sum(g.message.startswith(NOT_SUBMITTED) for g in grades)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != COURSE)
    if missing:
        summary += f" ({missing} of them not submitted)"
    lines.append(summary + f"; {len(learners)} learners, {len(columns)} checks")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- summaries

MAX_CAUSE = 72  # characters of a mistake's name in the class summary


def is_optional(check: str) -> bool:
    info = CHECKS.get(check)
    return info is not None and info.optional


def cause_of(message: str) -> str:
    """A short name for the mistake a FAIL message names: the first clause of its "Likely cause" line.

    "Likely cause: eps is added outside the square root. It belongs inside: ..." gives "eps is added outside
    the square root" (the clause ends at ". ", ": ", "; " or " ("); ranked causes ("Likely causes, most likely first: 1) ..., 2) ...") give the first, marked
    "(or others)"; a message without that line gives "could not run (NameError)" or its first line's start.
    """
    for line in message.splitlines():
        found = re.match(r"\s*Likely (cause|causes)\b[^:]*:\s*(.*)", line)
        if found:
            plural, text = found.group(1) == "causes", found.group(2)
            text = re.sub(r"^\(?1\)\s*", "", text)
            text = re.split(r"\.\s|:\s|;\s|\s\(|,?\s2\)\s", text, maxsplit=1)[0].rstrip(" .,;:")
            if len(text) > MAX_CAUSE:
                text = text[: MAX_CAUSE - 3].rstrip() + "..."
            return text + (" (or others)" if plural else "")
    first = _first_line(message)
    could_not = re.search(r"could not run: (\w+)", first)
    if could_not:
        return f"could not run ({could_not.group(1)})"
    raised = re.search(r"raised (\w+)", first)
    if raised:
        return f"the check cell raised {raised.group(1)}"
    return "no cause named: " + (first[: MAX_CAUSE - 20] + "..." if len(first) > MAX_CAUSE - 17 else first)


def _label(check: str) -> str:
    return CHECKS[check].short if check in CHECKS else check


def class_summary(grades: list[Grade], columns: list[str]) -> str:
    """For each check: how many learners had each status, and how many made each named mistake."""
    lines = ["By check: how many learners passed, and which mistakes the failures name"]
    width = max((len(_label(c)) for c in columns), default=0)
    for check in columns:
        mine = [g for g in grades if g.check == check]
        counts = ", ".join(f"{n} {s}" for s in STATUSES if (n := sum(g.status == s for g in mine)))
        missing = sum(g.message.startswith(NOT_SUBMITTED) for g in mine)
        if missing:
            counts += f" ({missing} not submitted)"
        tag = " (optional)" if is_optional(check) else ""
        lines.append(f"  {_label(check).ljust(width)}  {counts}{tag}")
        causes: dict[str, int] = {}
        for g in mine:
            if g.status == FAIL:
                cause = cause_of(g.message)
                causes[cause] = causes.get(cause, 0) + 1
        for cause, n in sorted(causes.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {'':{width}}    {n} x {cause}")
    return "\n".join(lines)


def learner_summary(grades: list[Grade], columns: list[str]) -> str:
    """For each learner: the required checks passed out of all of them, the rest by status, the optional apart."""
    required = [c for c in columns if not is_optional(c)]
    optional = [c for c in columns if is_optional(c)]
    by_key = {(g.learner, g.check): g for g in grades}
    learners = sorted({g.learner for g in grades})
    width = max((len(n) for n in learners), default=0)
    lines = [f"By learner: required checks passed, of {len(required)}"
             + (f"; optional ({', '.join(_label(c) for c in optional)}) apart" if optional else "")]
    for learner in learners:
        mine = [by_key[(learner, c)].status for c in required]
        rest = ", ".join(f"{mine.count(s)} {s}" for s in STATUSES if s != PASS and mine.count(s))
        line = f"  {learner.ljust(width)}  {mine.count(PASS)} of {len(required)} passed" + (f" ({rest})" if rest else "")
        if optional:
            extra = [by_key[(learner, c)].status for c in optional]
            line += f"; optional: {extra.count(PASS)} of {len(optional)} passed"
        lines.append(line)
    return "\n".join(lines)


def unmet(grades: list[Grade], required: list[str]) -> dict[str, list[str]]:
    """For each learner, the checks of ``required`` they did not pass (a check nobody was graded on counts)."""
    by_key = {(g.learner, g.check): g.status for g in grades}
    learners = sorted({g.learner for g in grades})
    return {learner: [c for c in required if by_key.get((learner, c)) != PASS] for learner in learners}


def requirement_report(grades: list[Grade], required: list[str]) -> tuple[str, bool]:
    """The verdict of ``--require``: one line per learner who missed a required check, and whether all passed."""
    missed = {learner: checks for learner, checks in unmet(grades, required).items() if checks}
    total = len({g.learner for g in grades})
    names = ", ".join(_label(c) for c in required)
    lines = [f"Required ({names}): {total - len(missed)} of {total} learners passed every one"]
    lines += [f"  {learner} did not pass: {', '.join(_label(c) for c in checks)}" for learner, checks in missed.items()]
    return "\n".join(lines), not missed


def write_csv(grades: list[Grade], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["learner", "check", "notebook", "status", "message", "notebook_seconds", "optional"])
        for g in grades:
            writer.writerow([g.learner, g.check, g.notebook, g.status, g.message, g.seconds,
                             "yes" if is_optional(g.check) else ""])


def run_all(submissions: list[Submission], timeout: float, jobs: int,
            memory_gb: float = DEFAULT_MEMORY_GB) -> list[NotebookReport]:
    tasks = [(s.learner, s.notebook, str(s.path), timeout, memory_gb) for s in submissions]
    reports: list[NotebookReport] = []

    def progress(report: NotebookReport) -> None:
        statuses = [o.status for o in report.outcomes if counts_for(report, o.check)]  # not 00's tour of a check
        summary = ", ".join(f"{statuses.count(s)} {s}" for s in STATUSES if statuses.count(s)) or "no graded check"
        extra = f"; {report.problem}" if report.problem else ""
        print(f"  {report.learner} / {Path(report.path).name}: {summary} ({report.seconds:.1f} s{extra})",
              file=sys.stderr, flush=True)

    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            reports.append(_run_one(task))
            progress(reports[-1])
        return reports
    import multiprocessing

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures: list[tuple[tuple, Future]] = [(task, pool.submit(_run_one, task)) for task in tasks]
        for task, future in futures:
            try:
                report = future.result()
            except Exception as exc:  # a crashed worker costs one notebook, not the run
                report = NotebookReport(task[0], task[1], task[2], problem=f"the grader's worker failed: {exc}")
                names = [c.name for c in checks_of(task[1])]
                report.outcomes = [Outcome(n, NOT_RUN, report.problem) for n in names]
            reports.append(report)
            progress(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m c1p1.grade",
        description="Run every learner notebook in DIR and report each check: pass, fail, not done, not run.",
    )
    parser.add_argument("dir", metavar="DIR", type=Path, help="the submissions folder (layouts below)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per notebook (default 300)")
    parser.add_argument("--csv", type=Path, default=None, help="also write the grades to this CSV file")
    parser.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="notebooks run at once (default 2)")
    parser.add_argument("--memory-gb", type=float, default=DEFAULT_MEMORY_GB, metavar="GIB",
                        help=f"memory each notebook's kernel may use, in GiB (default {DEFAULT_MEMORY_GB:g}; 0: no limit)")
    needs = parser.add_mutually_exclusive_group()
    needs.add_argument("--require", metavar="CHECKS", default=None,
                       help="comma-separated checks (test_attention,test_mlp or attention,mlp): exit 1 unless every "
                            "learner passed every one (course code does not count as a pass)")
    needs.add_argument("--require-all", action="store_true",
                       help="the same for every required (not optional) check graded in this run")
    parser.epilog = "Layouts: DIR/<learner>/<NN_name>.ipynb, DIR/<learner>__<NN_name>.ipynb, or DIR/<learner>.ipynb."
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"{args.dir} is not a folder")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.memory_gb < 0:
        parser.error("--memory-gb must be 0 (no limit) or positive")
    required: list[str] | None = None
    if args.require is not None:
        required = [n.strip() if n.strip().startswith("test_") else f"test_{n.strip()}"
                    for n in args.require.split(",") if n.strip()]
        unknown = [n for n in required if n not in CHECKS]
        if unknown or not required:
            parser.error(f"--require: unknown check(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(CHECKS)}")
    submissions = discover(args.dir)
    if not submissions:
        parser.error(f"no .ipynb notebooks found in {args.dir}")
    learners = len({s.learner for s in submissions})
    memory = f"{args.memory_gb:g} GiB" if args.memory_gb > 0 else "no memory limit"
    print(f"Grading {len(submissions)} notebooks of {learners} learners in {args.dir} "
          f"(timeout {args.timeout:g} s and {memory} per notebook, {args.jobs} at a time)", file=sys.stderr, flush=True)
    reports = run_all(submissions, args.timeout, args.jobs, args.memory_gb)
    grades, columns = grade(reports)
    print(table(grades, columns))
    print("\n" + class_summary(grades, columns))
    print("\n" + learner_summary(grades, columns))
    if args.csv is not None:
        write_csv(grades, args.csv)
        print(f"\nWrote {args.csv} ({len(grades)} rows).")
    if args.require_all:
        required = [c for c in columns if not is_optional(c)]
    if required is not None:
        verdict, everyone = requirement_report(grades, required)
        print("\n" + verdict)
        return 0 if everyone else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
