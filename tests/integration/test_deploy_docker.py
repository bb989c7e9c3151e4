"""Blue-green and canary deploys with the real Docker engine and the service image.

Uses the service image the session builds (tests/integration/conftest.py), or the one
DEPLOY_TEST_IMAGE names. Three colours start in turn in each test, so this takes minutes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from deploy.bluegreen import BlueGreen, Names
from deploy.config import CanarySection, EnvironmentSection, SmokeCase, SmokeSection
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


# --- canary releases --------------------------------------------------------------------------


class Traffic:
    """Threads posting /predict to the stable port, each request on a new connection (the
    router splits connections), until the block ends; counts the answers."""

    def __init__(self, url: str, threads: int = 3, pause_s: float = 0.02) -> None:
        self.url = url
        self.pause_s = pause_s
        self.answers: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.lock = threading.Lock()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                status = str(
                    httpx.post(self.url, json={"texts": ["a fine film"]}, timeout=60).status_code
                )
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            with self.lock:
                self.answers[status] += 1
            time.sleep(self.pause_s)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(90)


class SlowAfterSmoke(ModelAgnosticSmoke):
    """Passes the real smoke tests, then caps the new container at a sliver of a core
    (`docker update --cpus`): a canary that answers correctly but slowly, with no fault
    injected into the service."""

    def __init__(self, container: str, cpus: str = "0.03") -> None:
        super().__init__()
        self.container = container
        self.cpus = cpus

    def __call__(self, url: str, cfg: SmokeSection, **kwargs: object) -> SmokeReport:
        report = super().__call__(url, cfg, **kwargs)
        if report.passed and not kwargs.get("health_only"):
            subprocess.run(
                ["docker", "update", "--cpus", self.cpus, self.container],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        return report


def test_canary_promoted_then_a_slow_canary_rolled_back(
    docker: DockerCli, environment: tuple[str, EnvironmentSection], image_name: str
) -> None:
    name, section = environment
    names = Names(name)
    smoke_cfg = SmokeSection(
        startup_timeout_s=400, latency_requests=3, max_latency_ms=20_000, cases=[
            SmokeCase(text="placeholder", expected="positive")
        ]
    )  # fmt: skip
    canary_cfg = CanarySection(
        window_s=20,
        check_interval_s=5,
        min_requests=15,
        p95_slack_ms=200,
        max_failed_scrapes=3,
        max_p95_ms=1000,
    )
    lines: list[str] = []
    bg = BlueGreen(
        docker, name, section, smoke_cfg, smoke=ModelAgnosticSmoke(), log=lines.append,
        canary_cfg=canary_cfg,
    )  # fmt: skip
    stable = f"http://127.0.0.1:{section.port}"
    timings: dict[str, float] = {}

    started = time.monotonic()
    assert bg.deploy(image_name).ok
    timings["blue"] = time.monotonic() - started
    with Traffic(f"{stable}/predict") as traffic:
        started = time.monotonic()
        promoted = bg.deploy(image_name, canary=50)
        timings["canary promoted"] = time.monotonic() - started
        assert promoted.ok, f"{promoted.message}\n" + "\n".join(lines)
        assert promoted.canary is not None and promoted.canary.action == "promote"
        assert bg.live_colour() == "green"
        assert docker.inspect(names.colour("blue")).running  # type: ignore[union-attr]
        run = bg.status()["canary"]["last_run"]  # type: ignore[index]
        assert run["decision"] == "promote" and 2 <= run["checks_total"] <= 4, run
        # Both colours answered real traffic during the window, each seen in its own /metrics.
        last = run["last"]
        assert last["canary"]["requests"] >= 15 and last["stable"]["requests"] >= 15, last

        bg.smoke = SlowAfterSmoke(names.colour("blue"))
        started = time.monotonic()
        rolled = bg.deploy(image_name, canary=50)
        timings["canary rolled back"] = time.monotonic() - started
        assert not rolled.ok
        assert rolled.canary is not None and rolled.canary.action == "rollback"
        assert rolled.canary.reason.startswith("p95: "), "\n".join(lines)
        assert "canary blue rolled back" in rolled.message
        assert bg.live_colour() == "green"
        assert docker.inspect(names.colour("blue")) is None
        time.sleep(2)  # a few more requests, all on green
    status = bg.status()
    assert status["canary"]["colour"] is None  # type: ignore[index]
    assert status["canary"]["last_run"]["decision"] == "rollback"  # type: ignore[index]
    assert httpx.get(f"{stable}/health", timeout=30).status_code == 200
    # Through both canaries, the promotion and the rollback, no client saw an error.
    assert set(traffic.answers) == {"200"}, traffic.answers
    checks = [line for line in lines if "canary check" in line]
    print("\n".join(checks))
    print(f"timings (s): {timings}; answers through the stable port: {dict(traffic.answers)}")
