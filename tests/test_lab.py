"""`make lab`, the README's first command: it serves JupyterLab on notebooks/ and starts a working kernel.

The server runs on a free port with a known token. The test talks to it as the browser does: the lab
page, notebook 00 and a diagram are served, and a kernel started there runs notebook 00's environment
check through the kernel's websocket. Clicking through the page itself was checked by hand in headless
Chromium; that needs a browser driver this suite does not install.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "c1p1-lab-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(base: str, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def lab():
    port = free_port()
    args = f"--port={port} --ip=127.0.0.1 --IdentityProvider.token={TOKEN} --ServerApp.open_browser=False"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(ROOT / ".pytest_cache" / f"jupyter-runtime-{port}")}
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"make lab exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                if request(base, "/api/status")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 90 s")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_lab_page_opens_on_the_notebooks(lab):
    status, page = request(lab, "/lab/tree/notebooks/00_overview.ipynb")
    assert status == 200 and b"JupyterLab" in page


def test_notebook_00_and_the_diagrams_are_served(lab):
    status, body = request(lab, "/api/contents/notebooks/00_overview.ipynb")
    assert status == 200
    cells = json.loads(body)["content"]["cells"]
    assert any("load_reference()" in "".join(c["source"]) for c in cells)
    assert request(lab, "/files/diagrams/architecture.svg")[0] == 200  # ../diagrams/ renders from notebooks/


async def execute(ws_url: str, code: str, seconds: float) -> tuple[str, str]:
    """Send one execute_request over the kernel's websocket, as JupyterLab does; return (status, stdout)."""
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(ws_url)
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "date": "", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    stdout, status = [], ""
    deadline = time.monotonic() + seconds
    while not status and time.monotonic() < deadline:
        raw = await asyncio.wait_for(ws.read_message(), timeout=max(0.1, deadline - time.monotonic()))
        if raw is None:
            break
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream" and msg["content"]["name"] == "stdout":
            stdout.append(msg["content"]["text"])
        elif kind == "error":
            stdout.append("\n".join(msg["content"]["traceback"]))
        elif kind == "execute_reply":
            status = msg["content"]["status"]
    ws.close()
    return status, "".join(stdout)


def test_notebook_00_environment_check_runs_in_a_lab_kernel(lab):
    status, body = request(lab, "/api/kernels", "POST", {"name": "python3"})
    assert status == 201, body
    kernel = json.loads(body)["id"]
    nb = json.loads((ROOT / "notebooks" / "00_overview.ipynb").read_text(encoding="utf-8"))
    code_cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    setup = code_cells[0]  # the environment check: is the kernel the course's Python, with the pinned packages?
    assert "check_environment()" in setup  # (the rest of notebook 00 runs under nbval)
    ws_url = lab.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels?token={TOKEN}"
    try:
        status, out = asyncio.run(execute(ws_url, f"import os\nos.chdir('notebooks')\n{setup}", seconds=120))
    finally:
        request(lab, f"/api/kernels/{kernel}", "DELETE")
    assert status == "ok", out
    assert "FAIL" not in out and "OK." in out
    assert str(ROOT / ".venv") in out  # the kernel runs on the course's own Python
