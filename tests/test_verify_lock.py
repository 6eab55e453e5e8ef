"""tools/verify_lock.py on a recorded listing of the package index (a few packages, offline)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = json.loads((ROOT / "tests" / "data" / "pypi_listing_sample.json").read_text(encoding="utf-8"))


def _load():
    spec = importlib.util.spec_from_file_location("verify_lock", ROOT / "tools" / "verify_lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


vl = _load()


@pytest.fixture()
def pins():
    """The real lock's pins of the recorded packages (cffi, soupsieve twice, appnope, future)."""
    return [pin for pin in vl.parse_lock((ROOT / "requirements.lock").read_text(encoding="utf-8")) if pin.name in SAMPLE]


def by_place(rows):
    return {(row.platform, row.python): row for row in rows}


def test_the_lock_installs_everywhere(pins):
    assert sorted(p.name for p in pins) == ["appnope", "cffi", "future", "soupsieve", "soupsieve"]
    rows = vl.check(pins, SAMPLE, "2.13.0")
    assert len(rows) == 15 and all(not row.failures for row in rows)
    places = by_place(rows)
    # appnope applies on macOS only; one of the two soupsieve pins applies, by its marker
    assert places[("macOS arm64", "3.12")].checked == 4 and places[("Linux x86_64", "3.12")].checked == 3
    # torch 2.13.0 publishes no Intel-Mac wheel
    assert {row.platform for row in rows if row.torch == "NONE"} == {"macOS x86_64"}
    text, ok = vl.report(rows, "2.13.0")
    assert ok and "Every platform can install the lock." in text
    assert "future==0.18.3 (everywhere)" in text
    assert "torch==2.13.0 has no wheel for: macOS x86_64 (Python 3.11)" in text


def test_a_lock_with_one_machines_hash_fails_elsewhere(pins):
    """The bug of the old lock: cffi with only the hash of the Linux CPython 3.11 wheel."""
    linux_311 = next(f for f in SAMPLE["cffi"]["files"]
                     if "cp311-cp311-manylinux2014_x86_64" in f["filename"])["hashes"]["sha256"]
    for pin in pins:
        if pin.name == "cffi":
            pin.hashes = {linux_311}
    rows = by_place(vl.check(pins, SAMPLE))
    assert not rows[("Linux x86_64", "3.11")].failures
    for place in [("Linux x86_64", "3.12"), ("macOS arm64", "3.11"), ("Windows amd64", "3.13")]:
        assert len(rows[place].failures) == 1 and rows[place].failures[0].startswith("cffi==2.1.1: its file here (")
        assert rows[place].failures[0].endswith("has a hash the lock lacks")
    text, ok = vl.report(list(rows.values()), None)
    assert not ok and "FAIL 1" in text and "Windows amd64, Python 3.13: cffi==2.1.1" in text


def test_missing_wheels_and_missing_releases(pins):
    listing = json.loads(json.dumps(SAMPLE))
    listing["cffi"]["files"] = [f for f in listing["cffi"]["files"] if "win_amd64" not in f["filename"]]
    rows = by_place(vl.check(pins, listing))
    assert "cffi==2.1.1" in rows[("Windows amd64", "3.12")].from_source  # the source archive is the fallback
    assert "cffi==2.1.1" not in rows[("Linux x86_64", "3.12")].from_source
    listing["cffi"]["files"] = [f for f in listing["cffi"]["files"] if f["filename"].endswith(".whl")]
    rows = by_place(vl.check(pins, listing))
    assert rows[("Windows amd64", "3.12")].failures == ["cffi==2.1.1: no file for this platform and Python"]
    del listing["future"]
    rows = by_place(vl.check(pins, listing))
    assert "future==0.18.3: the index lists no file of this release" in rows[("Linux x86_64", "3.11")].failures


def test_requires_python_is_read_per_file():
    """soupsieve 4.1.2 needs Python >= 3.11.5: a pin of it without a marker fails on 3.11.0-3.11.4 only."""
    item = next(f for f in SAMPLE["soupsieve"]["files"] if f["filename"].endswith("4.1.2-py3-none-any.whl"))
    tags = vl.supported_tags(vl.PLATFORMS[0], (3, 11))
    assert vl.installable(item, tags, "3.11.9") == "wheel"
    assert vl.installable(item, tags, "3.11.4") is None


def test_parse_lock_reads_markers_and_hashes():
    text = ("appnope==1.0.0 ; sys_platform == 'darwin' \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
            "    # via ipykernel\nzizmor==1.33.1 \\\n    --hash=sha256:cc\n")
    pins = vl.parse_lock(text)
    assert [(p.name, p.version, p.marker, p.hashes) for p in pins] == [
        ("appnope", "1.0.0", "sys_platform == 'darwin'", {"aa", "bb"}), ("zizmor", "1.33.1", None, {"cc"})]
