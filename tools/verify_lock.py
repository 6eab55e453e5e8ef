"""Check requirements.lock against the package index, platform by platform, without the platforms.

    .venv/bin/python tools/verify_lock.py          # make verify-lock (make lock runs it too)
    .venv/bin/python tools/verify_lock.py --json listing.json   # the same on a recorded listing, offline

For every pin of the lock, it reads the package index's listing of that release (PEP 691's JSON: every
file, its sha256 and the Python versions it supports). Then, for Linux x86_64 and aarch64, macOS arm64
and x86_64 and Windows amd64, each on CPython 3.11, 3.12 and 3.13, it asks what pip or uv would ask
there: which pins apply (their environment markers), and whether each has a file that installs on that
platform (a wheel whose tags it supports, or else a source archive) whose hash is in the lock. It prints
one row per platform and Python, and names every package that would fail. torch, installed in a step of
its own and not locked, gets a column of its own: does the index have a wheel of the pinned version there.

It needs the package index, so `make test` runs it only on a small recorded listing (tests/data/).
Runs with the course's .venv (it needs ``packaging``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
REQUIREMENTS = ROOT / "requirements.txt"
INDEX = "https://pypi.org/simple"
PYTHONS = ((3, 11), (3, 12), (3, 13))
# A glibc as new as the Linux laptops the course expects (Ubuntu 22.04 has 2.35); torch itself needs 2.28.
GLIBC_MINOR = 35


@dataclass(frozen=True)
class Platform:
    name: str
    tags: tuple[str, ...]  # platform tags it installs, most specific first
    markers: dict[str, str]  # the PEP 508 environment markers that differ between platforms


def _manylinux(arch: str) -> tuple[str, ...]:
    legacy = {17: f"manylinux2014_{arch}", 12: f"manylinux2010_{arch}", 5: f"manylinux1_{arch}"}
    tags = []
    for minor in range(GLIBC_MINOR, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(legacy[minor])
    return (*tags, f"linux_{arch}")


def _posix(system: str, machine: str) -> dict[str, str]:
    return {"sys_platform": system.lower(), "platform_system": system, "os_name": "posix", "platform_machine": machine}


PLATFORMS = (
    Platform("Linux x86_64", _manylinux("x86_64"), _posix("Linux", "x86_64")),
    Platform("Linux aarch64", _manylinux("aarch64"), _posix("Linux", "aarch64")),
    Platform("macOS arm64", tuple(mac_platforms((14, 0), "arm64")), _posix("Darwin", "arm64")),
    Platform("macOS x86_64", tuple(mac_platforms((13, 0), "x86_64")), _posix("Darwin", "x86_64")),
    Platform("Windows amd64", ("win_amd64",),
             {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"}),
)


@dataclass
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: set[str] = field(default_factory=set)


def parse_lock(text: str) -> list[Pin]:
    """Every ``name==version ; marker`` of a pip-style lock, with its ``--hash=sha256:`` lines."""
    pins: list[Pin] = []
    for line in text.splitlines():
        stripped = line.strip().rstrip("\\").strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*(.+))?$", stripped)
        if match:
            pins.append(Pin(canonicalize_name(match.group(1)), match.group(2), match.group(3)))
        elif stripped.startswith("--hash=sha256:") and pins:
            pins[-1].hashes.add(stripped.split(":", 1)[1])
    return pins


def environment(platform: Platform, python: tuple[int, int]) -> dict[str, str]:
    """The marker environment of CPython ``python`` on ``platform`` (a recent patch release)."""
    patch = {(3, 11): 9, (3, 12): 8, (3, 13): 1}.get(python, 0)
    return {"implementation_name": "cpython", "platform_python_implementation": "CPython", "platform_release": "",
            "platform_version": "", "python_version": f"{python[0]}.{python[1]}",
            "python_full_version": f"{python[0]}.{python[1]}.{patch}", "implementation_version": "", "extra": "",
            **platform.markers}


def supported_tags(platform: Platform, python: tuple[int, int]) -> set[Tag]:
    interpreter = f"cp{python[0]}{python[1]}"
    return {*cpython_tags(python, abis=[interpreter], platforms=platform.tags),
            *compatible_tags(python, interpreter=interpreter, platforms=platform.tags)}


def release_files(listing: dict, version: str) -> list[dict]:
    """The files of one release in a PEP 691 listing: ``{"filename", "hashes", "requires-python", "yanked"}``."""
    files = []
    for item in listing.get("files", []):
        filename = item["filename"]
        try:
            if filename.endswith(".whl"):
                found = parse_wheel_filename(filename)[1]
            elif filename.endswith((".tar.gz", ".zip")):
                found = parse_sdist_filename(filename)[1]
            else:
                continue
        except ValueError:
            continue
        if found == Version(version):
            files.append(item)
    return files


def installable(item: dict, tags: set[Tag], full_version: str) -> str | None:
    """``"wheel"`` or ``"sdist"`` when this file would install on that platform and Python, else None."""
    requires = item.get("requires-python")
    if requires:
        try:
            if Version(full_version) not in SpecifierSet(requires):
                return None
        except ValueError:
            pass
    filename = item["filename"]
    if filename.endswith(".whl"):
        return "wheel" if parse_wheel_filename(filename)[3] & tags else None
    return "sdist"


@dataclass
class Row:
    platform: str
    python: str
    checked: int = 0
    failures: list[str] = field(default_factory=list)  # "name==version: why"
    from_source: list[str] = field(default_factory=list)  # pins that would be built from a source archive
    torch: str = ""


def check(pins: list[Pin], listings: dict[str, dict], torch_version: str | None = None) -> list[Row]:
    """One row per platform and Python: which pins apply there, and which have no file the lock allows."""
    rows = []
    for platform in PLATFORMS:
        for python in PYTHONS:
            env = environment(platform, python)
            tags = supported_tags(platform, python)
            row = Row(platform.name, f"{python[0]}.{python[1]}")
            for pin in pins:
                if pin.marker and not Marker(pin.marker).evaluate(env):
                    continue
                row.checked += 1
                files = release_files(listings.get(pin.name, {}), pin.version)
                kinds = {f["filename"]: installable(f, tags, env["python_full_version"]) for f in files if not f.get("yanked")}
                usable = [name for name, kind in kinds.items() if kind]
                allowed = [f["filename"] for f in files
                           if kinds.get(f["filename"]) and f.get("hashes", {}).get("sha256") in pin.hashes]
                label = f"{pin.name}=={pin.version}"
                if not files:
                    row.failures.append(f"{label}: the index lists no file of this release")
                elif not usable:
                    row.failures.append(f"{label}: no file for this platform and Python")
                elif not allowed:
                    row.failures.append(f"{label}: its file here ({usable[0]}) has a hash the lock lacks")
                elif all(kinds[name] == "sdist" for name in allowed):
                    row.from_source.append(label)
            if torch_version:
                files = release_files(listings.get("torch", {}), torch_version)
                wheels = [f["filename"] for f in files if f["filename"].endswith(".whl")
                          and installable(f, tags, env["python_full_version"]) == "wheel"]
                row.torch = "wheel" if wheels else "NONE"
            rows.append(row)
    return rows


def report(rows: list[Row], torch_version: str | None) -> tuple[str, bool]:
    """The table, then every failure by name; and whether every row is OK."""
    head = f"{'platform':<15} {'python':<7} {'pins':>5}  {'lock':<6}"
    if torch_version:
        head += f" torch=={torch_version}"
    lines = [head, "-" * len(head)]
    for row in rows:
        status = "OK" if not row.failures else f"FAIL {len(row.failures)}"
        line = f"{row.platform:<15} {row.python:<7} {row.checked:>5}  {status:<6}"
        if torch_version:
            line += f" {row.torch}"
        lines.append(line)
    ok = all(not row.failures for row in rows)
    for row in rows:
        for failure in row.failures:
            lines.append(f"  {row.platform}, Python {row.python}: {failure}")
    built: dict[str, list[str]] = {}
    for row in rows:
        for label in row.from_source:
            built.setdefault(label, []).append(f"{row.platform} {row.python}")
    if built:
        where = [f"{label} ({'everywhere' if len(places) == len(rows) else ', '.join(places)})"
                 for label, places in built.items()]
        lines.append("Built from a source archive, where no wheel fits (pure Python, or needs a compiler): "
                     + "; ".join(where) + ".")
    missing_torch = [f"{row.platform} (Python {row.python})" for row in rows if row.torch == "NONE"]
    if missing_torch:
        lines.append(f"torch=={torch_version} has no wheel for: " + ", ".join(missing_torch)
                     + ". The set-up stops there with a message of its own (tools/bootstrap.py).")
    lines.append("Every platform can install the lock." if ok else "Some platforms cannot install the lock: "
                 "run `make lock` and commit requirements.lock.")
    return "\n".join(lines), ok


def fetch_listing(name: str, index: str = INDEX) -> dict:
    request = urllib.request.Request(f"{index}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (the package index, https)
        return json.load(response)


def fetch_all(names: Iterable[str], fetch: Callable[[str], dict] = fetch_listing) -> dict[str, dict]:
    names = sorted(set(names))
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(names, pool.map(fetch, names), strict=True))


def torch_pin(path: Path = REQUIREMENTS) -> str | None:
    match = re.search(r"^torch==([^\s;#]+)", path.read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--json", type=Path, help="a recorded {name: listing} file instead of the package index")
    parser.add_argument("--record", type=Path, help="write the listings fetched to this file")
    ns = parser.parse_args(argv)
    pins = parse_lock(ns.lock.read_text(encoding="utf-8"))
    torch_version = torch_pin()
    names = [pin.name for pin in pins] + (["torch"] if torch_version else [])
    if ns.json:
        listings = json.loads(ns.json.read_text(encoding="utf-8"))
    else:
        print(f"Reading {len(set(names))} listings from {INDEX} ...", flush=True)
        listings = fetch_all(names)
    if ns.record:
        ns.record.write_text(json.dumps(listings), encoding="utf-8")
    text, ok = report(check(pins, listings, torch_version if "torch" in listings else None),
                      torch_version if "torch" in listings else None)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
