"""Fixtures shared by the Docker tests: the engine, and the service image built once a session
(the container test and the blue-green deploy test both use it)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from loadtests.postgres import PostgresServer, PostgresUnavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
BIN = Path(sys.executable).parent
LOCAL_BASE_IMAGE = "sentiment-base:bookworm-py3.11"


@contextlib.contextmanager
def running_postgres(user: str, database: str) -> Iterator[PostgresServer]:
    """Debian's PostgreSQL in a temporary folder, for one test module: a failure that says what
    to install (never a skip) where its binaries are missing."""
    try:
        server = PostgresServer(user=user, database=database)
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL: {exc} (.ci/run installs Debian's postgresql)", pytrace=False)
    started = time.monotonic()
    try:
        server.start(timeout=60)
        print(f"PostgreSQL up in {time.monotonic() - started:.1f} s on port {server.port}")
        yield server
    finally:
        server.stop()


def run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def json_answer(conn: socket.socket) -> bytes:
    """A raw HTTP answer read until its JSON body has arrived (the status line and the body
    can come in separate segments), or until the server closes."""
    answer = b""
    while b"}" not in answer.partition(b"\r\n\r\n")[2]:
        chunk = conn.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def model_processes(server_pid: int) -> list[psutil.Process]:
    """The server's model replicas: the processes it spawned with multiprocessing at the
    server's own priority (the explaining and shadow processes run niced, beside them)."""
    server = psutil.Process(server_pid)
    found = []
    for proc in server.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "spawn_main" in " ".join(proc.cmdline()) and proc.nice() == server.nice():
                found.append(proc)
    return found


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], timeout=timeout)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    result = run([str(SCRIPTS / "docker_engine.sh"), "start"], timeout=120)
    if result.returncode != 0:
        pytest.fail(f"no Docker engine: {last_line(result.stderr)}", pytrace=False)


@pytest.fixture(scope="session")
def image(docker_engine: None, bento_env: dict[str, str]) -> Iterator[dict[str, object]]:
    env = {**bento_env, "PY": sys.executable, "BENTOML": str(BIN / "bentoml")}
    started = time.monotonic()
    base = run([str(SCRIPTS / "build_base_image.sh")], env={**env, "BASE_IMAGE": LOCAL_BASE_IMAGE})
    assert base.returncode == 0, base.stdout[-2000:] + base.stderr[-2000:]
    base_s = time.monotonic() - started

    built = run([str(SCRIPTS / "build_bento.sh")], env={**env, "BASE_IMAGE": LOCAL_BASE_IMAGE})
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    bento_tag = last_line(built.stdout)
    name = f"sentiment-api-test:{bento_tag.split(':', 1)[1]}"

    started = time.monotonic()
    result = run([str(SCRIPTS / "containerize.sh"), bento_tag, name], env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    build_s = time.monotonic() - started
    size = int(docker("image", "inspect", name, "--format", "{{.Size}}").stdout.strip())
    print(
        f"\n{name}: base image step {base_s:.0f} s, "
        f"containerize {build_s:.0f} s, {size / 1e6:.0f} MB"
    )
    try:
        yield {"name": name, "bento": bento_tag, "size": size, "build_s": build_s}
    finally:
        docker("image", "rm", "-f", name)
        run([str(BIN / "bentoml"), "delete", "-y", bento_tag], env=env, timeout=120)
