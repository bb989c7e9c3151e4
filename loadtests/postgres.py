"""A throw-away PostgreSQL server for tests: `initdb` + `pg_ctl` into a temporary folder.

Debian's `postgresql` package installs the server binaries under /usr/lib/postgresql/<major>/bin
(not on PATH). PostgreSQL refuses to run as root, so when this process is root the cluster
belongs to the `postgres` system user (created by that package) and every server command runs
through `runuser -u postgres`; otherwise it runs as the current user. Clients connect over TCP
on 127.0.0.1 with `trust` authentication, as the database user `mlflow` by default.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from loadtests.servers import free_port

SYSTEM_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or no non-root user to run them as."""


def server_bin_dir() -> Path:
    """The newest installed PostgreSQL's server binaries (initdb, pg_ctl)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).resolve().parent / "pg_ctl").exists():
        return Path(on_path).resolve().parent
    raise PostgresUnavailable("no initdb: install Debian's postgresql package")


class PostgresServer:
    """A private cluster on a free port; `start()` returns once it accepts connections."""

    def __init__(self, user: str = "mlflow", database: str = "mlflow") -> None:
        self.bin = server_bin_dir()
        self.user = user
        self.database = database
        self.port = free_port()
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise PostgresUnavailable(
                    "running as root and there is no 'postgres' user to run the server as"
                ) from None
            self.run_as = SYSTEM_USER
        # Not under pytest's tmp_path: its parents are private to root, and the server's user
        # must reach the folder.
        self.root = Path(tempfile.mkdtemp(prefix="sentiment-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        """A SQLAlchemy URL (psycopg2 driver)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {(result.stderr or result.stdout)[-2000:]}")
        return result

    def start(self, timeout: float = 60) -> PostgresServer:
        deadline = time.monotonic() + timeout
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            timeout=timeout,
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off"
        )
        remaining = max(5, int(deadline - time.monotonic()))
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(remaining),
            "start",
            timeout=remaining + 5,
        )
        self._run(
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            self.database,
        )
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"
