"""Create .venv and install the pinned requirements, once.

Run by `make` with the system python3 (standard library only). A stamp file in
.venv records a hash of requirements.txt and pyproject.toml; when neither has
changed, nothing is reinstalled, so a second `make lab` or `make test` starts at once.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".c1p1-installed"
INPUTS = [ROOT / "requirements.txt", ROOT / "pyproject.toml", ROOT / "jupyter" / "overrides.json"]


def wanted_hash() -> str:
    digest = hashlib.sha256()
    for path in INPUTS:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def venv_python() -> Path:
    return VENV / "bin" / "python"


def run(*args: str | Path) -> None:
    """Run a command, passing its output on except pip's notes about local package mirrors."""
    print("+", " ".join(str(a) for a in args), flush=True)
    proc = subprocess.Popen([str(a) for a in args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith("WARNING: Location "):
            print(line, end="", flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"Set-up failed: {' '.join(str(a) for a in args)} exited with {proc.returncode}")


def main() -> int:
    want = wanted_hash()
    if STAMP.exists() and STAMP.read_text().strip() == want and venv_python().exists():
        return 0
    if not venv_python().exists():
        print(f"Creating {VENV.relative_to(ROOT)} with {sys.executable}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    py = venv_python()
    run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt")
    run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "-e", ".")
    # A classroom install should not ask every learner whether to fetch JupyterLab news.
    settings = VENV / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "jupyter" / "overrides.json", settings / "overrides.json")
    STAMP.write_text(want + "\n")
    print("Environment ready: .venv", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
