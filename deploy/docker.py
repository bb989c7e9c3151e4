"""The few Docker operations a deploy needs, behind a Protocol so tests can use a fake."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class DockerError(RuntimeError):
    """A docker command failed; the message is its one-line reason."""


@dataclass(frozen=True)
class RunSpec:
    name: str
    image: str
    network: str
    # host port -> container port, published on 127.0.0.1 unless public.
    ports: Mapping[int, int] = field(default_factory=dict)
    public_ports: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory: str | None = None
    entrypoint: str | None = None
    command: Sequence[str] = ()


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    image: str
    running: bool
    labels: Mapping[str, str]


class Docker(Protocol):
    def image_exists(self, image: str) -> bool: ...

    def inspect(self, name: str) -> ContainerInfo | None: ...

    def ensure_network(self, name: str) -> None: ...

    def create(self, spec: RunSpec) -> None: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str) -> None: ...

    def remove(self, name: str) -> None: ...

    def copy_in(self, name: str, source: str, dest: str) -> None: ...

    def exec(self, name: str, command: Sequence[str]) -> tuple[int, str]: ...

    def logs(self, name: str, tail: int = 40) -> str: ...


def run_args(spec: RunSpec) -> list[str]:
    """`docker create` arguments for a spec (pure: unit-tested)."""
    args = ["create", "--name", spec.name, "--network", spec.network, "--restart", "unless-stopped"]
    bind = "" if spec.public_ports else "127.0.0.1:"
    for host, inside in sorted(spec.ports.items()):
        args += ["-p", f"{bind}{host}:{inside}"]
    for key, value in sorted(spec.env.items()):
        args += ["-e", f"{key}={value}"]
    for key, value in sorted(spec.labels.items()):
        args += ["--label", f"{key}={value}"]
    if spec.cpus:
        args += ["--cpus", str(spec.cpus)]
    if spec.memory:
        args += ["--memory", spec.memory]
    if spec.entrypoint:
        args += ["--entrypoint", spec.entrypoint]
    return [*args, spec.image, *spec.command]


class DockerCli:
    """Docker through its command-line client."""

    def __init__(self, binary: str = "docker", timeout_s: float = 120) -> None:
        self.binary = binary
        self.timeout_s = timeout_s

    def _run(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                [self.binary, *args],
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except FileNotFoundError:
            raise DockerError(
                f"no '{self.binary}' CLI on PATH (apt-get install docker.io)"
            ) from None
        except subprocess.TimeoutExpired:
            raise DockerError(f"docker {args[0]} took over {self.timeout_s:.0f} s") from None
        if check and done.returncode != 0:
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise DockerError(
                f"docker {args[0]} failed: {reason[-1] if reason else done.returncode}"
            )
        return done

    def available(self) -> str | None:
        """None when an engine answers, else why not."""
        try:
            done = self._run(["info", "--format", "{{.ServerVersion}}"], check=False)
        except DockerError as exc:
            return str(exc)
        if done.returncode != 0:
            return "no Docker engine answers (scripts/docker_engine.sh start)"
        return None

    def image_exists(self, image: str) -> bool:
        return self._run(["image", "inspect", image], check=False).returncode == 0

    def inspect(self, name: str) -> ContainerInfo | None:
        done = self._run(["container", "inspect", name], check=False)
        if done.returncode != 0:
            return None
        data = json.loads(done.stdout)[0]
        return ContainerInfo(
            name=name,
            image=data["Config"]["Image"],
            running=bool(data["State"]["Running"]),
            labels=data["Config"].get("Labels") or {},
        )

    def ensure_network(self, name: str) -> None:
        if self._run(["network", "inspect", name], check=False).returncode != 0:
            self._run(["network", "create", name])

    def create(self, spec: RunSpec) -> None:
        self._run(run_args(spec))

    def start(self, name: str) -> None:
        self._run(["start", name])

    def stop(self, name: str) -> None:
        self._run(["stop", "--time", "20", name], check=False)

    def remove(self, name: str) -> None:
        self._run(["rm", "--force", name], check=False)

    def copy_in(self, name: str, source: str, dest: str) -> None:
        self._run(["cp", source, f"{name}:{dest}"])

    def exec(self, name: str, command: Sequence[str]) -> tuple[int, str]:
        done = self._run(["exec", name, *command], check=False)
        return done.returncode, (done.stdout or done.stderr).strip()

    def logs(self, name: str, tail: int = 40) -> str:
        done = self._run(["logs", "--tail", str(tail), name], check=False)
        return (done.stdout + done.stderr).strip()
