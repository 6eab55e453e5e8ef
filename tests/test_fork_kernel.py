"""The test suite's forked kernels (c1p1/fork_kernel.py) behave like ordinary kernels, only warm.

The notebooks themselves run on them under `make test`; these tests pin what a notebook relies on: a kernel that
starts warm, in its own working directory and environment, that an interrupt reaches, that shuts down without a
trace, and the ordinary launch when forking is switched off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from jupyter_client.manager import start_new_kernel

from c1p1.fork_kernel import ForkedProcess, ForkProvisioner, Zygote, _import_key

KERNEL = "c1p1-fork"


def run(kc, code: str, timeout: float = 60) -> str:
    """Run code in the kernel and return what it printed (raising if the cell raised)."""
    printed, errors = [], []

    def collect(msg):
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(msg["content"]["ename"])

    kc.execute_interactive(code, timeout=timeout, output_hook=collect)
    if errors:
        raise RuntimeError(f"the cell raised {errors}")
    return "".join(printed)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kernel_cwd")
    km, kc = start_new_kernel(kernel_name=KERNEL, cwd=str(cwd), startup_timeout=120)
    yield km, kc, cwd
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def test_the_kernel_is_forked_warm(kernel):
    km, kc, _ = kernel
    assert isinstance(km.provisioner, ForkProvisioner)
    out = run(kc, f"import os, sys\nprint(os.getppid() != {os.getpid()}, 'transformer_lens' in sys.modules)")
    assert out.split() == ["True", "True"], out


def test_the_kernel_has_its_cwd_env_and_process_group(kernel):
    km, kc, cwd = kernel
    out = run(kc, "import os\nprint(os.getcwd()); print(os.environ.get('JUPYTER_PATH', '')); print(os.getpgid(0) == os.getpid())")
    where, jupyter_path, leads_group = out.splitlines()
    assert os.path.samefile(where, cwd)
    assert jupyter_path == os.environ["JUPYTER_PATH"]
    assert leads_group == "True" and km.provisioner.pgid == km.provisioner.pid


def test_a_load_reference_in_the_kernel_prints_its_line(kernel):
    _, kc, _ = kernel
    assert "Reference:" in run(kc, "from c1p1 import load_reference\nreference = load_reference()")


def test_an_interrupt_reaches_a_running_cell(kernel):
    km, kc, _ = kernel
    msg_id = kc.execute("import time\nfor _ in range(600): time.sleep(0.1)")
    time.sleep(1.0)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    after = kc.execute_interactive("answer = 6 * 7", user_expressions={"answer": "answer"}, timeout=30)
    assert after["content"]["status"] == "ok", after["content"]  # the kernel is still usable
    assert after["content"]["user_expressions"]["answer"]["data"]["text/plain"] == "42"


def test_a_second_kernel_comes_from_the_same_zygote_and_shutdown_leaves_no_process(kernel, tmp_path):
    zygote = Zygote._current.process.pid  # the fixture's kernel, started during another test
    km, kc = start_new_kernel(kernel_name=KERNEL, cwd=str(tmp_path), startup_timeout=120)
    assert Zygote._current.process.pid == zygote, "a new zygote for each test: the saving is lost"
    pid = km.provisioner.pid
    kc.stop_channels()
    km.shutdown_kernel()
    assert not km.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_switched_off_it_launches_an_ordinary_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("C1P1_FORK_KERNEL", "0")
    km, kc = start_new_kernel(kernel_name=KERNEL, cwd=str(tmp_path), startup_timeout=120)
    try:
        assert run(kc, "import os\nprint(os.getppid())").strip() == str(os.getpid())
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_forked_process_polls_waits_and_kills():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process = ForkedProcess(child.pid)
    assert process.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.1)
    process.send_signal(signal.SIGKILL)
    child.wait()  # ours to reap here; in the suite the zygote reaps its kernels
    assert process.wait(timeout=5) == 0 and process.poll() == 0


def test_only_per_kernel_variables_may_differ_from_the_zygote():
    base = {"PATH": "/bin", "C1P1_QUICK": "1"}
    assert _import_key({**base, "JPY_PARENT_PID": "1", "PYTEST_CURRENT_TEST": "t.py::test (call)"}) == _import_key(base)
    assert _import_key({**base, "C1P1_QUICK": "0"}) != _import_key(base)
    assert _import_key({**base, "TQDM_DISABLE": "1"}) != _import_key(base)


def test_a_zygote_that_cannot_start_is_not_retried(monkeypatch):
    starts = []

    class Broken:
        def __init__(self, *args, **kwargs):
            starts.append(args)
            self.stdout = type("Out", (), {"readline": staticmethod(lambda: '{"error": "ImportError: no torch"}\n')})()
            self.stdin = type("In", (), {"close": staticmethod(lambda: None)})()

        def poll(self):
            return 1

    monkeypatch.setattr("c1p1.fork_kernel.subprocess.Popen", Broken)
    monkeypatch.setattr(Zygote, "_current", None)
    monkeypatch.setattr(Zygote, "_failed", {})
    env = {"PATH": "/bin", "C1P1_TEST_ONLY": "broken"}
    for _ in range(2):
        with pytest.raises(RuntimeError, match="no torch"):
            Zygote.for_env(env)
    assert len(starts) == 1, "a zygote that failed to start was started again"
