"""`make exercises`: stubs replace solutions, the canonical parts are current, and a learner's edits survive."""

from __future__ import annotations

import json

import nbformat
import pytest

from c1p1 import build


def test_stub_keeps_indentation_and_the_rest():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    assert build.stub_solutions(source, "t") == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"


def test_unbalanced_markers_are_an_error():
    with pytest.raises(ValueError):
        build.stub_solutions("### BEGIN SOLUTION\nx = 1\n", "t")
    with pytest.raises(ValueError):
        build.stub_solutions("x = 1\n### END SOLUTION\n", "t")


def test_generated_files_are_current():
    assert build.check(build.generate()) == 0


def test_every_exercise_has_a_stub_and_no_solution():
    for path, data in build.generate().items():
        if path.suffix == ".ipynb":
            text = data.decode()
            assert "BEGIN SOLUTION" not in text and "# @export" not in text, path.name
            if not path.name.startswith("00_"):
                assert "raise NotImplementedError()" in text, f"{path.name} has no exercise"


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    notebooks, parts = tmp_path / "notebooks", tmp_path / "parts"
    notebooks.mkdir()
    monkeypatch.setattr(build, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(build, "PARTS", parts)
    monkeypatch.setattr(build, "MANIFEST", notebooks / ".generated.json")
    monkeypatch.setattr(build, "ROOT", tmp_path)
    return notebooks


def files_for(notebooks, text):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(text)])
    return {notebooks / "01_x.ipynb": build.dumps(nb)}


def test_a_learners_edited_notebook_is_never_overwritten(sandbox, capsys):
    build.write(files_for(sandbox, "x = 1"))
    target = sandbox / "01_x.ipynb"
    learner = target.read_bytes().replace(b"x = 1", b"x = 'my work'")
    target.write_bytes(learner)
    build.write(files_for(sandbox, "x = 2"))
    assert target.read_bytes() == learner
    assert b"x = 2" in (sandbox / "01_x.new.ipynb").read_bytes()
    assert "Kept" in capsys.readouterr().out


def test_an_untouched_notebook_is_updated(sandbox):
    build.write(files_for(sandbox, "x = 1"))
    build.write(files_for(sandbox, "x = 2"))
    assert b"x = 2" in (sandbox / "01_x.ipynb").read_bytes()
    assert not (sandbox / "01_x.new.ipynb").exists()
    manifest = json.loads((sandbox / ".generated.json").read_text())
    assert manifest["01_x.ipynb"] == build.sha((sandbox / "01_x.ipynb").read_bytes())


def test_a_notebook_with_no_record_is_kept(sandbox):
    target = sandbox / "01_x.ipynb"
    target.write_text("{}")
    build.write(files_for(sandbox, "x = 1"))
    assert target.read_text() == "{}"


def test_check_tells_an_edited_notebook_from_a_stale_one(sandbox, capsys):
    first, second = files_for(sandbox, "x = 1"), files_for(sandbox, "x = 2")
    build.write(first)
    assert build.check(first) == 0
    capsys.readouterr()
    assert build.check(second) == 1  # the solution changed: regenerate
    out = capsys.readouterr().out
    assert "stale; run `make exercises`" in out and "Edited since" not in out
    target = sandbox / "01_x.ipynb"
    target.write_bytes(target.read_bytes().replace(b"x = 1", b"x = 'my work'"))
    assert build.check(first) == 1  # a learner's work: make exercises would keep it
    out = capsys.readouterr().out
    assert "Edited since they were generated" in out and "notebooks/01_x.ipynb" in out
    assert "run `make exercises` and commit" not in out and "fresh clone" in out
