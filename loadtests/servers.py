"""Start and stop real server processes on free loopback ports (tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What BentoML's server worker runs (`python -m ...`), as its command line shows.
BENTOML_WORKER_MODULE = "_bentoml_impl.worker.service"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def own_bentoml_home(env: dict[str, str], folder: Path) -> dict[str, str]:
    """`env` with a BENTOML_HOME of its own that sees the same model store. A second server on
    one home would empty the first one's Prometheus multiprocess folder at start (BentoML
    cleans it), and the first server's counters would vanish from its /metrics."""
    store = Path(env.get("BENTOML_HOME") or Path.home() / "bentoml")
    home = folder / "bentoml_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(store / "models")
    return {**env, "BENTOML_HOME": str(home)}


class ServerProcess:
    """A subprocess in its own process group, logging to a file, ready once ready_path is 200."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        log_path: Path,
        port: int,
        ready_path: str = "/readyz",
        cwd: Path = PROJECT_ROOT,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @classmethod
    def bentoml(
        cls,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        project: Path = PROJECT_ROOT,
    ) -> ServerProcess:
        """`bentoml serve` of the service in `project`: this checkout, or another one (an
        older commit's tree) run with this environment's packages."""
        port = port or free_port()
        argv = [sys.executable, "-m", "bentoml", "serve", "service:SentimentAPI"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        return cls(argv, env, log_path, port, cwd=project)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"server not ready after {timeout} s: {self.log_tail()}")

    def worker(self) -> psutil.Process:
        """BentoML's server worker under this `bentoml serve` (the process that runs the HTTP
        stack, the batcher and the monitoring hook; the model processes are its children)."""
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if BENTOML_WORKER_MODULE in " ".join(proc.cmdline()):
                    return proc
        raise RuntimeError(f"no {BENTOML_WORKER_MODULE} process under pid {self.proc.pid}")

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL to the server and every process under it, at once: what `kill -9` of a whole
        server does. The process group is not enough: BentoML's workers run in sessions of
        their own and would live on as orphans."""
        processes = [psutil.Process(self.proc.pid)]
        with contextlib.suppress(psutil.NoSuchProcess):
            processes += processes[0].children(recursive=True)
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(processes, timeout=30)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
