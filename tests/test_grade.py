"""The grader: it runs a folder of submissions and reports pass, not done, fail (with the cause) and timeouts.

One grading run (a module fixture) covers seven learners: a complete notebook, the exercise with its
stubs, a wrong implementation (the bias dropped), one that hangs before its check (abe), one whose
kernel dies at its first cell, one whose LayerNorm runs the course's forward (dora), and one
that allocates without bound before its check (hugo). The learners' files must be byte-identical afterwards.
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from c1p1.grade import discover

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 12
CORRECT_LINE = "return normalised * self.w + self.b"


def solution() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / "01_layernorm.ipynb", as_version=4)


def check_cell_index(nb: nbformat.NotebookNode) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "tests.test_layer_norm(" in c.source)


def with_cell_before_check(source: str) -> nbformat.NotebookNode:
    nb = solution()
    nb.cells.insert(check_cell_index(nb), nbformat.v4.new_code_cell(source))
    return nb


def without_bias() -> nbformat.NotebookNode:
    nb = solution()
    cells = [c for c in nb.cells if c.cell_type == "code" and CORRECT_LINE in c.source]
    assert len(cells) == 1, "the LayerNorm solution's last line changed: update CORRECT_LINE"
    cells[0].source = cells[0].source.replace(CORRECT_LINE, "return normalised * self.w")
    return nb


# A class of the learner's own whose forward is the course's: only running it shows whose code computes the output.
WRAPPER = """from c1p1 import parts


class LayerNorm(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, residual):
        return parts.LayerNorm.forward(self, residual)
"""


def wrapping_the_course() -> nbformat.NotebookNode:
    """The exercise cell replaced by a wrapper of the course's class: the check passes, on the course's code."""
    nb = solution()
    cells = [c for c in nb.cells if c.cell_type == "code" and "\nclass LayerNorm(" in "\n" + c.source]
    assert len(cells) == 1, "the LayerNorm solution's class cell changed"
    cells[0].source = WRAPPER
    return nb


# Address space, never touched: it reaches the memory limit at once without using the machine's memory.
UNBOUNDED = "import torch\nhoard = []\nwhile True:\n    hoard.append(torch.empty(1 << 28))"


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_grade(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "c1p1.grade", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    subs = tmp_path_factory.mktemp("submissions")
    (subs / "alice").mkdir()
    (subs / "bob").mkdir()
    (subs / "carol").mkdir()
    nbformat.write(solution(), subs / "alice" / "01_layernorm.ipynb")
    (subs / "bob" / "01_layernorm.ipynb").write_bytes((ROOT / "notebooks" / "01_layernorm.ipynb").read_bytes())
    nbformat.write(without_bias(), subs / "carol" / "01_layernorm.ipynb")
    # The hang sorts first, so it runs beside the others rather than after them (two notebooks at a time).
    # A sleeping loop: the grader treats it like a busy one, and it leaves the CPU to the other notebooks.
    nbformat.write(with_cell_before_check('while True:\n    __import__("time").sleep(1)'), subs / "abe__01_layernorm.ipynb")
    crash = solution()
    crash.cells.insert(0, nbformat.v4.new_code_cell("import os\nos._exit(1)"))  # dies at once: keeps the test short
    nbformat.write(crash, subs / "erin__01_layernorm.ipynb")
    nbformat.write(wrapping_the_course(), subs / "dora__01_layernorm.ipynb")
    nbformat.write(with_cell_before_check(UNBOUNDED), subs / "hugo__01_layernorm.ipynb")
    before = digest(subs)
    out_csv = tmp_path_factory.mktemp("out") / "grades.csv"
    start = time.monotonic()
    result = run_grade(str(subs), "--timeout", str(TIMEOUT), "--csv", str(out_csv))
    elapsed = time.monotonic() - start
    rows = {}
    if out_csv.exists():
        with out_csv.open(newline="", encoding="utf-8") as f:
            rows = {(r["learner"], r["check"]): r for r in csv.DictReader(f)}
    return {"result": result, "rows": rows, "before": before, "after": digest(subs), "elapsed": elapsed}


def test_exit_code_is_zero_although_learners_fail(graded):
    result = graded["result"]
    assert result.returncode == 0, result.stderr


def test_complete_notebook_passes(graded):
    assert graded["rows"][("alice", "test_layer_norm")]["status"] == "pass"
    assert "test_layer_norm passed" in graded["rows"][("alice", "test_layer_norm")]["message"]


def test_stub_is_not_done(graded):
    row = graded["rows"][("bob", "test_layer_norm")]
    assert row["status"] == "not done"
    assert "YOUR CODE HERE" in row["message"]


def test_wrong_implementation_fails_with_its_cause(graded):
    row = graded["rows"][("carol", "test_layer_norm")]
    assert row["status"] == "fail"
    assert "FAILED" in row["message"] and "self.b" in row["message"]


def test_hang_is_a_timeout_and_costs_at_most_the_timeout(graded):
    row = graded["rows"][("abe", "test_layer_norm")]
    assert row["status"] == "not run"
    assert "timeout" in row["message"] and "while True:" in row["message"]
    assert float(row["notebook_seconds"]) < TIMEOUT + 10


def test_kernel_death_is_not_run(graded):
    row = graded["rows"][("erin", "test_layer_norm")]
    assert row["status"] == "not run"
    assert "kernel died" in row["message"] and "stopped in cell 1:" in row["message"]


def test_wrapping_the_courses_class_is_course_code_not_pass(graded):
    # The unit tests of c1p1.grade_probe cover the other ways (an import, a subclass); this one needs a real kernel.
    row = graded["rows"][("dora", "test_layer_norm")]
    assert row["status"] == "course code"
    assert row["message"].startswith("course code: the notebook's LayerNorm.forward calls the course's own "
                                     "c1p1.parts.p01_layernorm.LayerNorm.forward")
    assert "test_layer_norm passed" in row["message"]


def test_unbounded_allocation_is_not_run_out_of_memory(graded):
    row = graded["rows"][("hugo", "test_layer_norm")]
    assert row["status"] == "not run"
    assert row["message"].startswith("out of memory: the notebook went past its 8 GiB memory limit")
    assert "hoard = []" in row["message"] or "import torch" in row["message"]
    assert float(row["notebook_seconds"]) < TIMEOUT


def test_table_shows_every_learner_and_the_first_line_of_each_message(graded):
    out = graded["result"].stdout
    lines = out.splitlines()
    assert lines[0].split() == ["learner", "layer_norm"]
    table = {line.split()[0]: line.split(None, 1)[1] for line in lines[2:9]}
    assert sorted(table) == ["abe", "alice", "bob", "carol", "dora", "erin", "hugo"]
    assert table["alice"] == "pass"
    assert table["bob"] == "not done"
    assert table["carol"].startswith("FAIL [")
    assert table["dora"].startswith("course code [")
    assert table["abe"].startswith("not run [")
    assert table["erin"].startswith("not run [")
    assert table["hugo"].startswith("not run [")
    assert "1 pass, 1 course code, 1 fail, 1 not done, 3 not run; 7 learners, 1 checks" in out
    assert "carol / test_layer_norm: test_layer_norm FAILED" in out
    assert "Traceback" not in out


def test_learners_files_are_unchanged(graded):
    assert graded["after"] == graded["before"]


def test_whole_run_is_bounded(graded):
    # Two notebooks at a time: the hang costs TIMEOUT, the other six about 5 s each.
    assert graded["elapsed"] < 120, graded["result"].stderr


def test_missing_folder_is_a_usage_error(tmp_path):
    result = run_grade(str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "is not a folder" in result.stderr


def test_empty_folder_is_a_usage_error(tmp_path):
    result = run_grade(str(tmp_path))
    assert result.returncode == 2
    assert "no .ipynb notebooks" in result.stderr


def test_layouts(tmp_path):
    for rel in ("ann/01_layernorm.ipynb", "ann/week2/05_attention.ipynb", "ann/.ipynb_checkpoints/01_layernorm.ipynb",
                "ben__02_embed.ipynb", "cleo.ipynb", ".hidden.ipynb"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    found = [(s.learner, s.notebook) for s in discover(tmp_path)]
    assert found == [("ann", "01_layernorm"), ("ann", "05_attention"), ("ben", "02_embed"), ("cleo", "cleo")]


def test_which_call_grades_a_check():
    from c1p1.grade import NotebookReport, Outcome, grade

    def report(learner, notebook, *outcomes):
        return NotebookReport(learner, notebook, f"{learner}/{notebook}.ipynb", 1.0, list(outcomes))

    tour = ("00_overview", Outcome("test_layer_norm", "pass", "ok"), Outcome("test_layer_norm", "fail", "demo"))
    reports = [
        report("ann", *tour),  # the tour alone grades nothing
        report("ben", *tour),
        report("ben", "01_layernorm", Outcome("test_layer_norm", "not done", "stub")),
        report("cat", "cat", Outcome("test_layer_norm", "fail", "first"), Outcome("test_layer_norm", "pass", "then")),
        report("dan", "01_layernorm"),  # submitted, but the check cell was deleted
    ]
    grades, columns = grade(reports)
    assert columns == ["test_layer_norm"]
    by = {g.learner: (g.status, g.message) for g in grades}
    assert by["ann"] == ("not run", "not submitted (01_layernorm.ipynb)")
    assert by["ben"] == ("not done", "stub")
    assert by["cat"] == ("pass", "then")  # any other name: its own calls count, the last one wins
    assert by["dan"] == ("not run", "no cell calls tests.test_layer_norm(...)")


def test_the_summaries_follow_the_table(graded):
    out = graded["result"].stdout
    by_check = out[out.index("By check:"):]
    assert "layer_norm  1 pass, 1 course code, 1 fail, 1 not done, 3 not run" in by_check
    assert "1 x the bias self.b is never added" in by_check
    assert "By learner: required checks passed, of 1" in out
    assert "  alice  1 of 1 passed" in out
    assert "  dora   0 of 1 passed (1 course code)" in out


# ------------------------------------------------------------------------------------- summaries, no kernel


def reports_of_a_class():
    from c1p1.grade import NotebookReport, Outcome

    scale = ("test_attention FAILED on the reference sentence: 3.0% of the output values match.\n"
             "Likely cause: the attention scores are not scaled. Divide them by sqrt(d_head) = 8.")
    after = ("test_attention FAILED on the reference sentence: 50% of the output values match.\n"
             "Likely cause: the mask is applied after the softmax: mask the scores, then take the softmax.")

    def nb(learner, *outcomes):  # flat layout, DIR/<learner>.ipynb: the checks are those it calls
        return NotebookReport(learner, learner, f"{learner}.ipynb", 1.0, [Outcome(c, s, m) for c, s, m in outcomes])

    return [
        nb("ann", ("test_attention", "pass", "ok"), ("test_top_token_pairs", "pass", "ok"),
           ("test_generate", "pass", "ok"), ("test_beam_search", "not done", "stub")),
        nb("ben", ("test_attention", "fail", scale), ("test_top_token_pairs", "pass", "ok"),
           ("test_generate", "pass", "ok"), ("test_beam_search", "pass", "ok")),
        nb("cat", ("test_attention", "fail", scale), ("test_top_token_pairs", "course code", "c")),
        nb("dan", ("test_attention", "fail", after),
           ("test_top_token_pairs", "fail", "test_top_token_pairs could not run: NameError: name 'x' is not defined")),
    ]


def test_cause_of_names_each_mistake_by_its_likely_cause_line():
    from c1p1.grade import cause_of

    assert cause_of("x FAILED\nLikely cause: eps is added outside the square root. It belongs inside.") == \
        "eps is added outside the square root"
    assert cause_of("x FAILED\nLikely cause: the bias self.b is never added: the last step is ...") == \
        "the bias self.b is never added"
    assert cause_of("x FAILED\nLikely causes, most likely first: 1) the softmax is missing, 2) a NaN") == \
        "the softmax is missing (or others)"
    assert cause_of("x FAILED\nLikely causes, most likely first: 1) the softmax is missing, so the -inf reaches the "
                    "values (use the softmax of the masked scores); 2) the softmax is over the wrong dimension") == \
        "the softmax is missing, so the -inf reaches the values (or others)"
    assert cause_of("test_x could not run: NameError: name 'X' is not defined") == "could not run (NameError)"
    assert cause_of("the check cell raised SyntaxError: invalid syntax") == "the check cell raised SyntaxError"
    assert cause_of("x FAILED\nLikely cause: " + "word " * 40).endswith("...")


def test_class_and_learner_summaries():
    from c1p1.grade import class_summary, grade, learner_summary

    grades, columns = grade(reports_of_a_class())
    summary = class_summary(grades, columns)
    assert summary.splitlines()[1:] == [
        "  attention        1 pass, 3 fail",
        "                     2 x the attention scores are not scaled",
        "                     1 x the mask is applied after the softmax",
        "  top_token_pairs  2 pass, 1 course code, 1 fail",
        "                     1 x could not run (NameError)",
        "  generate         2 pass, 2 not run (2 not submitted)",
        "  beam_search      1 pass, 1 not done, 2 not run (2 not submitted) (optional)",
    ]
    learners = learner_summary(grades, columns)
    assert learners.splitlines()[0] == "By learner: required checks passed, of 3; optional (beam_search) apart"
    assert "  ann  3 of 3 passed; optional: 0 of 1 passed" in learners
    assert "  ben  2 of 3 passed (1 fail); optional: 1 of 1 passed" in learners
    assert "  cat  0 of 3 passed (1 course code, 1 fail, 1 not run); optional: 0 of 1 passed" in learners


def test_require_sets_the_exit_code(tmp_path, monkeypatch, capsys):
    from c1p1 import catalog, grade

    assert catalog.CHECKS["test_beam_search"].optional and not catalog.CHECKS["test_generate"].optional
    (tmp_path / "ann.ipynb").write_text("{}")  # discover() needs one notebook; the reports are made up
    monkeypatch.setattr(grade, "run_all", lambda *args, **kwargs: reports_of_a_class())
    assert grade.main([str(tmp_path)]) == 0  # a report: 0 however the learners did
    assert grade.main([str(tmp_path), "--require", "generate"]) == 1  # cat and dan never submitted 12
    out = capsys.readouterr().out
    assert "Required (generate): 2 of 4 learners passed every one" in out and "  cat did not pass: generate" in out
    assert grade.main([str(tmp_path), "--require", "test_attention,top_token_pairs"]) == 1
    assert "  cat did not pass: attention, top_token_pairs" in capsys.readouterr().out  # course code is no pass
    assert grade.main([str(tmp_path), "--require-all"]) == 1
    monkeypatch.setattr(grade, "run_all", lambda *args, **kwargs: reports_of_a_class()[:1])
    assert grade.main([str(tmp_path), "--require-all"]) == 0  # ann's optional beam_search is not required
    assert "Required (attention, top_token_pairs, generate): 1 of 1 learners passed every one" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        grade.main([str(tmp_path), "--require", "test_nothing"])
    assert usage.value.code == 2 and "unknown check(s) test_nothing" in capsys.readouterr().err


def test_make_grade_passes_memory_and_require():
    # Without the MAKEFLAGS of a `make test` around this test, which would add "make[1]: Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def command(*variables: str) -> str:
        out = subprocess.run(["make", "--no-print-directory", "-n", "grade", "SUBMISSIONS=subs", *variables],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
        (line,) = [line for line in out.stdout.splitlines() if "-m c1p1.grade " in line]
        return line

    assert command().endswith('-m c1p1.grade "subs" --timeout 300 --memory-gb 8 --csv grades.csv')
    assert command("MEMORY=4", "REQUIRE=all").endswith("--memory-gb 4 --csv grades.csv --require-all")
    assert command("REQUIRE=attention,mlp").endswith("--csv grades.csv --require attention,mlp")


def test_the_optional_checks_are_those_their_notebook_calls_optional():
    import re

    from c1p1.catalog import CHECKS, OPTIONAL

    marked = set()
    for info in CHECKS.values():
        nb = nbformat.read(ROOT / "solutions" / info.notebook, as_version=4)
        for cell in nb.cells:
            heading = cell.source.splitlines()[0] if cell.cell_type == "markdown" and cell.source else ""
            if re.match(r"#+ .*\boptional\b", heading, re.I) and f"`{info.thing}`" in heading:
                marked.add(info.name)
    assert marked == set(OPTIONAL) == {"test_beam_search"}
