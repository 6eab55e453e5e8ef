"""Kernels forked from a warm process: how `make test` runs thirty notebooks without paying thirty start-ups.

A fresh kernel spends about 7.5 s of CPU before a notebook's first cell finishes: importing torch, transformers and
TransformerLens, then building the reference. `make test` starts some thirty kernels on two cores. This module is a
Jupyter kernel provisioner that starts, once per test process, a warm process (the "zygote") that has done that
work, and forks every new kernel from it. The forked kernel is an ordinary ipykernel with its own connection file,
working directory, environment and process group; `load_reference()` in it finds the reference already built (its
own copy-on-write copy).

The test suite and the grader use it through the kernel spec `c1p1-fork` (`c1p1/jupyter/kernels/c1p1-fork`, put
on `JUPYTER_PATH` by `use()`): `pytest --nbval-kernel-name c1p1-fork`, `make grade`. Learners and JupyterLab start
ordinary kernels. Any problem (no `fork` on this system, `C1P1_FORK_KERNEL=0`, a zygote that failed to start)
falls back to launching the kernel the ordinary way.

Safety of forking: the zygote never starts a thread and never initialises CUDA (on a CUDA build of torch it only
imports; the reference is built in each kernel). The environment each kernel asks for is compared with the
zygote's; when a variable that could have been read at import time differs, a new zygote is started for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

KERNEL_NAME = "c1p1-fork"
SPEC_DIR = Path(__file__).resolve().parent / "jupyter"  # holds kernels/c1p1-fork/kernel.json
SWITCH_ENV = "C1P1_FORK_KERNEL"  # "0" turns the forking off
DEBUG_ENV = "C1P1_FORK_DEBUG"  # a file: each new zygote and the variables that caused it are appended there
# Variables set per kernel (jupyter_client's), per test (pytest's), or by torch in the test process the first time
# something asks for its compile cache (a folder name, read only when compiling); every other variable must match
# the zygote's, since its imports may have read it.
PER_KERNEL_ENV = ("JPY_", "PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR")


def _import_key(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The part of an environment the zygote's imports may have read: all of it but the per-kernel variables."""
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith(PER_KERNEL_ENV)))


class ForkedProcess:
    """What jupyter_client needs of a `subprocess.Popen` for a kernel that is the zygote's child, not ours."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)  # the zygote reaps its children, so a finished kernel leaves no zombie
            except ProcessLookupError:
                self.returncode = 0  # the exit status went to the zygote; the kernel is gone either way
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The warm process of one test process and one environment, and the pipe that asks it for kernels."""

    _current: Zygote | None = None
    _failed: dict[tuple, str] = {}  # environments whose zygote could not start, and why: never retried
    _lock = threading.Lock()

    def __init__(self, env: dict[str, str]):
        self.key = _import_key(env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "c1p1.fork_kernel"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, text=True,
        )
        ready = json.loads(self.process.stdout.readline() or '{"error": "the zygote exited while starting"}')
        if "error" in ready:
            self.close()
            raise RuntimeError(ready["error"])

    def fork(self, argv: list[str], cwd: str, env: dict[str, str]) -> int:
        self.process.stdin.write(json.dumps({"argv": argv, "cwd": cwd, "env": env}) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline() or '{"error": "the zygote exited"}')
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["pid"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the zygote exits at the end of its input
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()

    @classmethod
    def for_env(cls, env: dict[str, str]) -> Zygote:
        with cls._lock:
            if _import_key(env) in cls._failed:  # one failed start (about 7 s) is enough; launch ordinary kernels
                raise RuntimeError(cls._failed[_import_key(env)])
            zygote = cls._current
            if zygote is None or zygote.key != _import_key(env) or zygote.process.poll() is not None:
                if os.environ.get(DEBUG_ENV):  # a file to append to: each new zygote and why
                    why = ("the first" if zygote is None else f"the last exited ({zygote.process.returncode})"
                           if zygote.process.poll() is not None else
                           f"the environment changed: {sorted(set(zygote.key) ^ set(_import_key(env)))}")
                    with open(os.environ[DEBUG_ENV], "a") as log:
                        print(f"pid {os.getpid()}: new zygote; {why}", file=log)
                if zygote is not None:
                    zygote.close()
                cls._current = None
                try:
                    cls._current = zygote = cls(env)
                except (OSError, RuntimeError, ValueError) as exc:
                    cls._failed[_import_key(env)] = f"the warm process could not start: {exc}"
                    raise
            return zygote


def use() -> str:
    """Make the kernel spec findable by this process and the ones it starts; return its name."""
    paths = os.environ.get("JUPYTER_PATH", "").split(os.pathsep)
    if str(SPEC_DIR) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(SPEC_DIR), *filter(None, paths)])
    return KERNEL_NAME


def warm(env: dict[str, str] | None = None) -> None:
    """Start the zygote for this environment now (about 7 s), so that it does not count against a kernel's clock."""
    if forking_available():
        try:
            Zygote.for_env(dict(env or os.environ))
        except (OSError, RuntimeError, ValueError):
            pass  # the first launch falls back to an ordinary kernel and says why


def forking_available() -> bool:
    return hasattr(os, "fork") and sys.platform == "linux" and os.environ.get(SWITCH_ENV, "1") != "0"


class ForkProvisioner(LocalProvisioner):
    """A LocalProvisioner whose kernels are forked from the zygote; it launches the ordinary way when it cannot."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        launcher = "ipykernel_launcher"
        env = dict(kwargs.get("env") or os.environ)
        if not (forking_available() and launcher in cmd):
            return await super().launch_kernel(cmd, **kwargs)
        try:
            pid = Zygote.for_env(env).fork(cmd[cmd.index(launcher) + 1:], str(kwargs.get("cwd") or os.getcwd()), env)
        except (OSError, RuntimeError, ValueError) as exc:
            self.log.warning("c1p1-fork: starting an ordinary kernel instead (%s)", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedProcess(pid)
        self.pid = self.pgid = pid  # the kernel leads its own process group, as an ordinary one does
        self.cwd = kwargs.get("cwd")
        return self.connection_info


# ---------------------------------------------------------------------------------------------------------------
# The zygote itself: `python -m c1p1.fork_kernel`, talking JSON lines over its stdin and stdout.

def _warm_up() -> None:
    """Do once what every notebook's first cell does: the imports, and the reference on a CPU-only machine."""
    import torch  # noqa: F401
    import transformer_lens  # noqa: F401
    from ipykernel import kernelapp  # noqa: F401

    import C1P1_tests  # noqa: F401
    from c1p1 import parts  # noqa: F401

    if os.environ.get("MPLBACKEND"):  # matplotlib reads it at import; without it, ipykernel chooses in the kernel
        import matplotlib.pyplot  # noqa: F401
    if torch.version.cuda is None and torch.version.hip is None:  # never initialise a GPU before forking
        from c1p1.reference import load_reference

        load_reference(verbose=False)
    if threading.active_count() != 1:
        raise RuntimeError("the warm-up started a thread, so forking it would not be safe")


def _run_kernel(request: dict) -> None:
    """In the forked child: become an ordinary kernel for the request, and never return to the zygote's loop."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote ignores it to reap kernels; a kernel must not
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["JPY_PARENT_PID"] = str(os.getppid())  # the kernel lives as long as the zygote does
        if sys.path and sys.path[0] == _START_DIR:
            sys.path[0] = request["cwd"]
        sys.argv = [sys.executable, *request["argv"]]
        from ipykernel.kernelapp import IPKernelApp

        IPKernelApp.launch_instance(argv=request["argv"])
    finally:
        os._exit(0)


_START_DIR = os.getcwd()


def main() -> None:
    replies = os.fdopen(os.dup(1), "w")  # the protocol's channel; anything the imports print goes to stderr
    os.dup2(2, 1)
    try:
        _warm_up()
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), file=replies, flush=True)
        return
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished kernels are reaped at once
    print(json.dumps({"ready": os.getpid()}), file=replies, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            pid = os.fork()
        except OSError as exc:
            print(json.dumps({"error": f"fork failed: {exc}"}), file=replies, flush=True)
            continue
        if pid == 0:
            replies.close()
            _run_kernel(request)
        print(json.dumps({"pid": pid}), file=replies, flush=True)


if __name__ == "__main__":
    main()
