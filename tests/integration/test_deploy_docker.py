"""Blue-green deploy with the real Docker engine and the service image.

Uses the service image the session builds (tests/integration/conftest.py), or the one
DEPLOY_TEST_IMAGE names. Three colours start in turn, so this takes minutes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.bluegreen import BlueGreen, Names
from deploy.config import EnvironmentSection, SmokeCase, SmokeSection
from deploy.docker import DockerCli
from deploy.smoke import SmokeReport, run_smoke
from loadtests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]
PROBES = ("I love it, a wonderful film.", "Terrible, a boring mess.")


@pytest.fixture(scope="module")
def image_name(request: pytest.FixtureRequest) -> str:
    """DEPLOY_TEST_IMAGE, else the image the session builds for the container test."""
    return os.environ.get("DEPLOY_TEST_IMAGE") or str(request.getfixturevalue("image")["name"])


@pytest.fixture(scope="module")
def docker(docker_engine: None, image_name: str) -> DockerCli:
    cli = DockerCli()
    assert cli.image_exists(image_name), f"no image {image_name}"
    return cli


class ModelAgnosticSmoke:
    """The real smoke tests, with the expected labels read from the image's own model first.

    `flip=True` expects the opposite labels: a deploy that must fail on /predict.
    """

    def __init__(self, flip: bool = False) -> None:
        self.flip = flip

    def __call__(self, url: str, cfg: SmokeSection, **kwargs: object) -> SmokeReport:
        if kwargs.get("health_only"):
            return run_smoke(url, cfg, **kwargs)  # type: ignore[arg-type]
        health = run_smoke(url, cfg, health_only=True, **kwargs)  # type: ignore[arg-type]
        if not health.passed:
            return health
        answer = httpx.post(f"{url}/predict", json={"texts": list(PROBES)}, timeout=60).json()
        labels = [p["sentiment"] for p in answer["predictions"]]
        if self.flip:
            labels = ["negative" if label == "positive" else "positive" for label in labels]
        cases = [SmokeCase(text=t, expected=lab) for t, lab in zip(PROBES, labels, strict=True)]  # type: ignore[arg-type]
        return run_smoke(url, cfg.model_copy(update={"cases": cases}), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def environment(docker: DockerCli) -> Iterator[tuple[str, EnvironmentSection]]:
    name = f"itest{os.getpid()}"
    ports = {free_port() for _ in range(3)}
    while len(ports) < 3:
        ports.add(free_port())
    port, blue, green = sorted(ports)
    section = EnvironmentSection(alias="candidate", port=port, blue_port=blue, green_port=green)
    try:
        yield name, section
    finally:
        names = Names(name)
        for container in (names.router, names.colour("blue"), names.colour("green")):
            docker.remove(container)
        subprocess.run(["docker", "network", "rm", names.network], capture_output=True)


def test_blue_green_deploy_failed_deploy_and_rollback(
    docker: DockerCli, environment: tuple[str, EnvironmentSection], image_name: str
) -> None:
    name, section = environment
    smoke_cfg = SmokeSection(
        startup_timeout_s=400, latency_requests=3, max_latency_ms=20_000, cases=[
            SmokeCase(text="placeholder", expected="positive")
        ]
    )  # fmt: skip
    lines: list[str] = []
    bg = BlueGreen(docker, name, section, smoke_cfg, smoke=ModelAgnosticSmoke(), log=lines.append)
    stable = f"http://127.0.0.1:{section.port}"

    first = bg.deploy(image_name, {"sentiment.model_version": "test"})
    assert first.ok, f"{first.message}\n{first.logs}"
    assert bg.live_colour() == "blue"
    reply = httpx.post(f"{stable}/predict", json={"texts": ["fine"]}, timeout=60)
    assert reply.status_code == 200 and reply.json()["predictions"][0]["sentiment"]

    second = bg.deploy(image_name)
    assert second.ok, second.message
    assert bg.live_colour() == "green"
    assert docker.inspect(Names(name).colour("blue")).running  # type: ignore[union-attr]

    back = bg.rollback()
    assert back.ok, back.message
    assert bg.live_colour() == "blue"
    assert httpx.get(f"{stable}/health", timeout=30).status_code == 200
    status = bg.status()
    assert status["live"] == "blue" and status["green"]["running"]  # type: ignore[index]

    # A colour whose smoke test fails never gets the stable port.
    bg.smoke = ModelAgnosticSmoke(flip=True)
    failed = bg.deploy(image_name)
    assert not failed.ok
    assert "smoke tests failed on green" in failed.message
    assert "blue keeps serving" in failed.message
    assert bg.live_colour() == "blue"
    assert docker.inspect(Names(name).colour("green")) is None
    assert httpx.get(f"{stable}/health", timeout=30).status_code == 200
