"""The GitHub Actions workflow a fork runs (.github/workflows/test.yml): audited by zizmor, and read as YAML.

It cannot run here, so two checks stand in: zizmor (pinned in the lock, run offline: its audits that ask GitHub
are skipped) must find nothing, at its pedantic level; and the workflow's structure must be what the README
promises: `make test` on Linux with Python 3.11, the course's cache and uv's kept between runs, read-only
permissions, every action pinned by commit SHA. (actionlint, the other usual linter, is not installed: its PyPI
package downloads a binary from GitHub when it is built.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "test.yml"
ZIZMOR = Path(sys.executable).parent / "zizmor"
PINNED = re.compile(r"^\s*(?:-\s*)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*v\d+(\.\d+)*\s*$")


def zizmor(path: Path) -> subprocess.CompletedProcess:
    if not ZIZMOR.exists():
        pytest.fail(f"{ZIZMOR} is missing: zizmor is pinned in requirements.lock; run `make venv`")
    return subprocess.run([str(ZIZMOR), "--offline", "--persona=pedantic", "--no-progress", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def test_zizmor_finds_nothing():
    result = zizmor(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


def test_zizmor_would_catch_an_unpinned_action_and_write_permissions(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("name: bad\non: [push]\npermissions: write-all\njobs:\n  t:\n    runs-on: ubuntu-24.04\n"
                   "    steps:\n      - uses: actions/checkout@v4\n      - run: make test\n", encoding="utf-8")
    result = zizmor(bad)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "unpinned-uses" in out and "excessive-permissions" in out and "artipacked" in out


def test_it_runs_make_test_on_linux_with_python_3_11(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers) and "pull_request_target" not in triggers
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-") and job["timeout-minutes"] <= 60
    steps = job["steps"]
    python = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
    assert len(python) == 1 and python[0]["with"]["python-version"] == "3.11"
    assert [s["run"] for s in steps if "run" in s] == ["make test"]
    assert job["env"]["UV_TORCH_BACKEND"] == "cpu"  # the CPU build of torch, not PyPI's CUDA one


def test_it_keeps_the_course_cache_and_uvs_between_runs(workflow):
    (job,) = workflow["jobs"].values()
    caches = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert len(caches) == 1
    assert set(caches[0]["with"]["path"].split()) == {"~/.cache/c1p1", "~/.cache/uv"}
    assert "hashFiles('requirements.lock'" in caches[0]["with"]["key"]


def test_permissions_are_read_only_and_credentials_are_not_kept(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert "write" not in str(job.get("permissions", "")).lower()
    checkout = [s for job in workflow["jobs"].values() for s in job["steps"]
                if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout and all(s["with"]["persist-credentials"] is False for s in checkout)


def test_every_action_is_pinned_by_commit_sha_with_its_version_beside_it():
    lines = [line for line in WORKFLOW.read_text(encoding="utf-8").splitlines() if re.match(r"^\s*(-\s*)?uses:", line)]
    assert len(lines) == 3
    for line in lines:
        assert PINNED.match(line), f"not pinned by SHA with a `# vX.Y.Z` comment: {line.strip()}"


def test_no_expression_is_expanded_inside_a_shell_command(workflow):
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step
