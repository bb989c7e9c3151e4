"""deploy: blue-green over a fake Docker, smoke checks over a mock HTTP transport,
the router's file protocol and a real proxied connection."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy import router
from deploy.__main__ import image_name
from deploy.bluegreen import BlueGreen, Names, other
from deploy.canary import Sample, ScrapeError
from deploy.config import (
    CanarySection,
    EnvironmentSection,
    SmokeCase,
    SmokeSection,
    load_deployment_config,
)
from deploy.docker import ContainerInfo, DockerError, RunSpec, run_args
from deploy.smoke import (
    SmokeCheck,
    SmokeReport,
    check_latency,
    check_predictions,
    check_ui,
    run_smoke,
    wait_healthy,
)
from sentiment.config import ConfigError

ENV = EnvironmentSection(alias="candidate", port=4100, blue_port=4101, green_port=4102)
SMOKE = SmokeSection(
    startup_timeout_s=5,
    latency_requests=3,
    max_latency_ms=1000,
    cases=[SmokeCase(text="I love it", expected="positive")],
)


# --- a fake Docker ----------------------------------------------------------------------------


@dataclass
class FakeContainer:
    spec: RunSpec
    running: bool = False
    files: dict[str, str] = field(default_factory=dict)


class FakeDocker:
    """Containers in a dict; `docker exec python /router.py ...` runs the real router script's
    main() on a file of the fake container's own (a router copied in as "old" answers only
    `get` and `set` HOST:PORT, as the first version did)."""

    def __init__(self) -> None:
        self.containers: dict[str, FakeContainer] = {}
        self.networks: set[str] = set()
        self.calls: list[str] = []
        self.images = {"img:1", "img:2"}
        self._dir = tempfile.TemporaryDirectory()

    def upstream_file(self, name: str) -> Path:
        return Path(self._dir.name) / f"{name}.upstream"

    def upstream(self, name: str = "sentiment-test-router") -> str:
        return self.upstream_file(name).read_text()

    def image_exists(self, image: str) -> bool:
        return image in self.images

    def inspect(self, name: str) -> ContainerInfo | None:
        c = self.containers.get(name)
        if c is None:
            return None
        return ContainerInfo(name, c.spec.image, c.running, dict(c.spec.labels))

    def ensure_network(self, name: str) -> None:
        self.networks.add(name)

    def create(self, spec: RunSpec) -> None:
        if spec.name in self.containers:
            raise DockerError(f"name {spec.name} in use")
        self.calls.append(f"create {spec.name} {spec.image}")
        self.containers[spec.name] = FakeContainer(spec)

    def start(self, name: str) -> None:
        self.calls.append(f"start {name}")
        self.containers[name].running = True

    def stop(self, name: str) -> None:
        self.calls.append(f"stop {name}")
        self.containers[name].running = False

    def remove(self, name: str) -> None:
        if self.containers.pop(name, None) is not None:
            self.calls.append(f"remove {name}")

    def copy_in(self, name: str, source: str, dest: str) -> None:
        self.containers[name].files[dest] = Path(source).read_text()

    def exec(self, name: str, command: Sequence[str]) -> tuple[int, str]:
        c = self.containers[name]
        assert c.running and list(command[:2]) == ["python", "/router.py"]
        args = list(command[2:])
        if c.files.get("/router.py") == "old" and (args[0] not in ("get", "set") or len(args) > 2):
            return 2, f"router.py: error: argument action: invalid choice: '{args[0]}'"
        if args[0] == "set":
            self.calls.append(f"switch {' '.join(args[1:])}")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = router.main([*args, "--upstream-file", str(self.upstream_file(name))])
        return code, (out.getvalue() or err.getvalue()).strip()

    def logs(self, name: str, tail: int = 40) -> str:
        return f"log of {name}"


class FakeSmoke:
    """Passes unless the URL is in `failing`; records each call."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.calls: list[str] = []

    def __call__(self, url: str, cfg: SmokeSection, **kwargs: object) -> SmokeReport:
        self.calls.append(url)
        ok = url not in self.failing
        detail = "fine" if ok else "expected positive, got negative"
        return SmokeReport(url, (SmokeCheck("predict", ok, detail),))


def make(docker: FakeDocker, smoke: FakeSmoke) -> BlueGreen:
    return BlueGreen(
        docker, "test", ENV, SMOKE, smoke=smoke, log=lambda _: None, sleep=lambda _: None
    )


def test_first_deploy_goes_blue_behind_a_new_router() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    result = make(docker, smoke).deploy("img:1", {"sentiment.model_version": "1"})
    assert result.ok, result.message
    assert (result.live_before, result.live_after) == (None, "blue")
    assert docker.networks == {"sentiment-test"}
    blue = docker.containers["sentiment-test-blue"]
    assert blue.running and blue.spec.ports == {4101: 3000}
    assert blue.spec.labels["sentiment.model_version"] == "1"
    router_c = docker.containers["sentiment-test-router"]
    assert router_c.spec.ports == {4100: 3000} and "/router.py" in router_c.files
    assert docker.upstream() == "sentiment-test-blue:3000\n"
    # Smoke tests on the preview port first, then health through the stable port.
    assert smoke.calls == ["http://127.0.0.1:4101", "http://127.0.0.1:4100"]


def test_second_deploy_switches_to_green_and_keeps_blue() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    bg = make(docker, smoke)
    bg.deploy("img:1")
    result = bg.deploy("img:2")
    assert result.ok and (result.live_before, result.live_after) == ("blue", "green")
    assert docker.containers["sentiment-test-blue"].running
    assert docker.containers["sentiment-test-green"].spec.image == "img:2"
    assert bg.live_colour() == "green"
    # The switch comes after green passed, never before.
    calls = docker.calls
    assert calls.index("start sentiment-test-green") < calls.index(
        "switch sentiment-test-green:3000"
    )
    assert "blue kept running" in result.message
    status = bg.status()
    assert status["live"] == "green"
    assert status["blue"]["image"] == "img:1"  # type: ignore[index]


def test_a_failed_smoke_test_leaves_the_old_colour_serving() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    bg = make(docker, smoke)
    bg.deploy("img:1")
    smoke.failing.add("http://127.0.0.1:4102")
    result = bg.deploy("img:2")
    assert not result.ok
    assert bg.live_colour() == "blue"
    assert "sentiment-test-green" not in docker.containers
    assert "expected positive, got negative" in result.message
    assert "blue keeps serving" in result.message
    assert result.logs == "log of sentiment-test-green"


def test_when_the_stable_port_fails_after_the_switch_traffic_goes_back() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    bg = make(docker, smoke)
    bg.deploy("img:1")
    smoke.failing.add("http://127.0.0.1:4100")
    result = bg.deploy("img:2")
    assert not result.ok and bg.live_colour() == "blue"
    assert "did not answer through the router" in result.message


def test_rollback_switches_to_the_previous_colour() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    bg = make(docker, smoke)
    bg.deploy("img:1")
    bg.deploy("img:2")
    docker.containers["sentiment-test-blue"].running = False
    result = bg.rollback()
    assert result.ok, result.message
    assert (result.live_before, result.live_after) == ("green", "blue")
    assert docker.containers["sentiment-test-blue"].running
    assert bg.live_colour() == "blue"
    # A third deploy replaces green (not live), never blue.
    bg.deploy("img:1")
    assert bg.live_colour() == "green"


def test_rollback_refuses_without_something_to_go_back_to() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    bg = make(docker, smoke)
    assert "nothing is deployed" in bg.rollback().message
    bg.deploy("img:1")
    result = bg.rollback()
    assert not result.ok and "no previous container" in result.message
    bg.deploy("img:2")
    smoke.failing.add("http://127.0.0.1:4101")
    result = bg.rollback()
    assert not result.ok and bg.live_colour() == "green"


def test_teardown_removes_router_and_both_colours() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    bg = make(docker, smoke)
    assert bg.teardown() == []
    bg.deploy("img:1")
    bg.deploy("img:2")
    assert bg.teardown() == [
        "sentiment-test-router",
        "sentiment-test-blue",
        "sentiment-test-green",
    ]
    assert docker.containers == {} and bg.live_colour() is None


# --- canary releases --------------------------------------------------------------------------

CANARY = CanarySection(window_s=30, check_interval_s=10, min_requests=20)
BLUE_URL, GREEN_URL = "http://127.0.0.1:4101", "http://127.0.0.1:4102"


def requests(n: float, errors: float = 0) -> Sample:
    """Cumulative counters of n requests, every one answered within 50 ms."""
    return Sample(n, errors, ((0.05, n), (float("inf"), n)))


class Scraper:
    """Each colour's scrapes in turn, and a clock the controller's sleeps move."""

    def __init__(self, answers: dict[str, list[Sample | str]]) -> None:
        self.answers = {url: iter(items) for url, items in answers.items()}
        self.now = 0.0

    def __call__(self, url: str) -> Sample:
        answer = next(self.answers[url])
        if isinstance(answer, str):
            raise ScrapeError(answer)
        return answer

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def canary_bg(
    docker: FakeDocker, smoke: FakeSmoke, scraper: Scraper, lines: list[str]
) -> BlueGreen:
    return BlueGreen(
        docker, "test", ENV, SMOKE, smoke=smoke, log=lines.append, canary_cfg=CANARY,
        scrape=scraper, clock=lambda: scraper.now, sleep=scraper.sleep,
    )  # fmt: skip


def test_a_healthy_canary_is_promoted_to_all_traffic() -> None:
    docker, smoke, lines = FakeDocker(), FakeSmoke(), []
    scraper = Scraper(
        {
            GREEN_URL: [requests(14), requests(24), requests(34), requests(44)],
            BLUE_URL: [requests(100), requests(190), requests(280), requests(370)],
        }
    )
    bg = canary_bg(docker, smoke, scraper, lines)
    bg.deploy("img:1")
    splits: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if "canary check" in line:
            splits.append(docker.upstream())

    bg.log = log
    result = bg.deploy("img:2", canary=10)
    assert result.ok, result.message
    assert (result.live_before, result.live_after) == ("blue", "green")
    assert result.canary is not None and result.canary.action == "promote"
    # While the controller watched, the router sent 10 % of new connections to green.
    assert len(splits) == 3 and json.loads(splits[2]) == {
        "live": "sentiment-test-blue:3000", "canary": "sentiment-test-green:3000", "share": 10.0
    }  # fmt: skip
    assert docker.upstream() == "sentiment-test-green:3000\n"  # then 100 %, plain format
    checks = [line for line in lines if "canary check" in line]
    assert len(checks) == 3 and checks[-1].startswith("[test] canary check 3 at 30/30 s: green")
    assert "-> PROMOTE: healthy over 30 s" in checks[-1]
    assert docker.containers["sentiment-test-blue"].running  # kept for rollback-deploy
    assert "canary green promoted after 3 checks" in result.message
    status = bg.status()
    assert status["live"] == "green"
    run = status["canary"]["last_run"]  # type: ignore[index]
    assert status["canary"]["colour"] is None  # type: ignore[index]
    assert run["decision"] == "promote" and run["checks_total"] == 3
    assert run["outcome"] == "promoted: green serves 100 %"
    assert run["colour"] == "green" and run["stable"] == "blue" and run["share"] == 10
    assert [c["n"] for c in run["checks"]] == [1, 2, 3]


def test_a_failing_canary_is_rolled_back_and_removed() -> None:
    docker, smoke, lines = FakeDocker(), FakeSmoke(), []
    scraper = Scraper(
        {
            GREEN_URL: [requests(14), requests(40, errors=9)],
            BLUE_URL: [requests(100), requests(300)],
        }
    )
    bg = canary_bg(docker, smoke, scraper, lines)
    bg.deploy("img:1")
    result = bg.deploy("img:2", canary=25)
    assert not result.ok
    assert result.canary is not None and result.canary.action == "rollback"
    assert result.canary.reason == "5xx_rate: 9/26 = 34.6% 5xx (max 2.0%)"
    assert docker.upstream() == "sentiment-test-blue:3000\n"
    assert "sentiment-test-green" not in docker.containers
    assert result.logs == "log of sentiment-test-green"
    assert "canary green rolled back (5xx_rate: 9/26" in result.message
    assert "blue serves all of http://127.0.0.1:4100" in result.message
    run = bg.status()["canary"]["last_run"]  # type: ignore[index]
    assert run["decision"] == "rollback" and run["checks_total"] == 1
    assert run["outcome"] == "rolled back: blue serves 100 %, green removed"


def test_a_canary_without_a_live_colour_is_a_plain_switch() -> None:
    docker, smoke, lines = FakeDocker(), FakeSmoke(), []
    bg = canary_bg(docker, smoke, Scraper({}), lines)
    result = bg.deploy("img:1", canary=10)
    assert result.ok and result.live_after == "blue" and result.canary is None
    assert any("nothing is live" in line for line in lines)


def test_rollback_deploy_ends_a_canary_in_progress() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    bg = make(docker, smoke)
    bg.deploy("img:1")
    bg.deploy("img:2")  # green live, blue previous
    # A canary of blue left behind by a deploy process that died.
    bg._split("green", "blue", 10)
    assert bg.status()["canary"]["colour"] == "blue"  # type: ignore[index]
    result = bg.rollback()
    assert result.ok and "ended the canary of blue" in result.message
    assert docker.upstream() == "sentiment-test-green:3000\n"
    assert "sentiment-test-blue" not in docker.containers
    assert bg.status()["canary"]["last_run"]["reason"] == "make rollback-deploy"  # type: ignore[index]


def test_the_controller_stops_when_the_split_is_ended_from_outside() -> None:
    docker, smoke, lines = FakeDocker(), FakeSmoke(), []
    bg = canary_bg(docker, smoke, Scraper({}), lines)
    bg.deploy("img:1")
    bg._canary_is_current = lambda canary: lambda: False  # type: ignore[method-assign]
    scraper = Scraper({GREEN_URL: [requests(0)], BLUE_URL: [requests(0)]})
    bg.scrape = scraper
    result = bg.deploy("img:2", canary=10)
    assert not result.ok and result.canary is not None and result.canary.action == "aborted"
    assert "the canary of green was ended" in result.message


def test_an_old_router_is_upgraded_before_a_deploy() -> None:
    docker, smoke = FakeDocker(), FakeSmoke()
    bg = make(docker, smoke)
    bg.deploy("img:1")
    router_c = docker.containers["sentiment-test-router"]
    router_c.files["/router.py"] = "old"
    docker.upstream_file("sentiment-test-router").write_text("sentiment-test-blue:3000\n")
    # The first version's router still answers get: status and live colour keep working.
    assert bg.status()["live"] == "blue" and bg.live_colour() == "blue"
    docker.calls.clear()
    assert bg.deploy("img:2").ok
    assert docker.calls.index("stop sentiment-test-router") < docker.calls.index(
        "start sentiment-test-router"
    )
    assert router_c.files["/router.py"] == ROUTER_SOURCE
    assert bg.live_colour() == "green"


ROUTER_SOURCE = Path(router.__file__).read_text()


def test_names_and_colours() -> None:
    names = Names("staging")
    assert names.colour_of("sentiment-staging-green:3000") == "green"
    assert names.colour_of("sentiment-production-green:3000") is None
    assert names.colour_of("") is None
    assert other(None) == "blue" and other("blue") == "green" and other("green") == "blue"
    assert image_name("sentiment-api", "sentiment:v3-1a2b3c4d") == "sentiment-api:v3-1a2b3c4d"


def test_run_args_bind_preview_ports_to_loopback() -> None:
    spec = RunSpec(
        name="n",
        image="img:1",
        network="net",
        ports={4101: 3000},
        env={"B": "2", "A": "1"},
        labels={"k": "v"},
        cpus=1.5,
        memory="2g",
        entrypoint="python",
        command=("/router.py", "serve"),
    )
    assert run_args(spec) == [
        "create", "--name", "n", "--network", "net", "--restart", "unless-stopped",
        "-p", "127.0.0.1:4101:3000", "-e", "A=1", "-e", "B=2", "--label", "k=v",
        "--cpus", "1.5", "--memory", "2g", "--entrypoint", "python",
        "img:1", "/router.py", "serve",
    ]  # fmt: skip
    assert "0.0.0.0" not in " ".join(run_args(spec))
    assert "4101:3000" in run_args(RunSpec("n", "i", "net", {4101: 3000}, public_ports=True))


# --- smoke checks -----------------------------------------------------------------------------


def service(handler_overrides: dict[str, httpx.Response] | None = None) -> httpx.MockTransport:
    overrides = handler_overrides or {}

    def handler(request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url.path}"
        if key in overrides:
            return overrides[key]
        if key == "GET /health":
            return httpx.Response(200, json={"status": "healthy"})
        if key == "POST /predict":
            texts = json.loads(request.content)["texts"]
            labels = ["negative" if "hate" in t else "positive" for t in texts]
            return httpx.Response(200, json={"predictions": [{"sentiment": s} for s in labels]})
        if key == "GET /ui/":
            return httpx.Response(200, text="<!doctype html><html><body>ui</body></html>")
        return httpx.Response(404)

    return httpx.MockTransport(handler)


def test_run_smoke_passes_a_healthy_service() -> None:
    report = run_smoke("http://svc", SMOKE, transport=service())
    assert report.passed
    assert [c.name for c in report.checks] == ["health", "predict", "ui", "latency"]


def test_wrong_labels_fail_the_predict_check() -> None:
    cases = [SmokeCase(text="I hate it", expected="positive")]
    with httpx.Client(base_url="http://svc", transport=service()) as client:
        check = check_predictions(client, cases)
    assert not check.passed
    assert check.detail == "'I hate it': expected positive, got negative"


def test_a_500_or_odd_body_fails_the_predict_check() -> None:
    broken = service({"POST /predict": httpx.Response(500, text="boom")})
    with httpx.Client(base_url="http://svc", transport=broken) as client:
        assert check_predictions(client, SMOKE.cases).detail == "500 boom"
    odd = service({"POST /predict": httpx.Response(200, json={"nope": 1})})
    with httpx.Client(base_url="http://svc", transport=odd) as client:
        assert "unexpected body" in check_predictions(client, SMOKE.cases).detail


def test_ui_check_wants_an_html_page() -> None:
    plain = service({"GET /ui/": httpx.Response(200, text="ok")})
    with httpx.Client(base_url="http://svc", transport=plain) as client:
        assert not check_ui(client, "/ui/").passed
    with httpx.Client(base_url="http://svc", transport=service()) as client:
        assert check_ui(client, "/ui/").passed


def test_latency_check_compares_the_median() -> None:
    with httpx.Client(base_url="http://svc", transport=service()) as client:
        assert check_latency(client, "x", 3, 10_000).passed
        slow = check_latency(client, "x", 3, 0.0)
    assert not slow.passed and "limit 0 ms" in slow.detail


def test_wait_healthy_gives_up_at_the_deadline_or_when_the_container_dies() -> None:
    starting = service({"GET /health": httpx.Response(503, text="loading")})
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with httpx.Client(base_url="http://svc", transport=starting) as client:
        late = wait_healthy(client, 10, sleep=sleep, clock=lambda: now[0])
        dead = wait_healthy(client, 10, is_alive=lambda: False, sleep=sleep, clock=lambda: now[0])
    assert not late.passed and late.detail == "not healthy within 10 s (503 loading)"
    assert now[0] == pytest.approx(10.0)
    assert not dead.passed and "the container stopped" in dead.detail


def test_after_a_failed_health_check_nothing_else_is_tried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503)

    cfg = SMOKE.model_copy(update={"startup_timeout_s": 0.01})
    report = run_smoke("http://svc", cfg, transport=httpx.MockTransport(handler))
    assert not report.passed and [c.name for c in report.checks] == ["health"]
    assert set(calls) == {"/health"}


# --- settings ---------------------------------------------------------------------------------


def test_the_shipped_deployment_config_loads() -> None:
    cfg = load_deployment_config(env={})
    assert set(cfg.environments) >= {"staging", "production"}
    assert cfg.environment("production").alias == "production"
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        cfg.environment("qa")
    ports = [p for e in cfg.environments.values() for p in (e.port, e.blue_port, e.green_port)]
    assert len(ports) == len(set(ports))


def test_deployment_config_refuses_shared_ports(tmp_path: Path) -> None:
    bad = tmp_path / "d.yaml"
    bad.write_text(
        "environments:\n  s: {alias: a, port: 1, blue_port: 1, green_port: 2}\n"
        "smoke:\n  cases: [{text: x, expected: positive}]\n"
    )
    with pytest.raises(ConfigError, match="must differ"):
        load_deployment_config(bad, env={})


# --- the router -------------------------------------------------------------------------------


def test_router_file_protocol(tmp_path: Path) -> None:
    path = str(tmp_path / "upstream")
    assert router.read_upstream(path) is None
    router.write_upstream(path, "sentiment-s-blue:3000")
    assert router.read_upstream(path) == ("sentiment-s-blue", 3000)
    with pytest.raises(ValueError):
        router.write_upstream(path, "no-port")
    assert router.read_upstream(path) == ("sentiment-s-blue", 3000)
    assert router.parse_upstream("h:0") is None and router.parse_upstream("h:x") is None
    assert router.main(["set", "a:1", "--upstream-file", path]) == 0
    assert router.main(["set", "bad", "--upstream-file", path]) == 2


def _echo_server(prefix: bytes) -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(prefix + conn.recv(1024))

    threading.Thread(target=serve, daemon=True).start()
    return sock, sock.getsockname()[1]


def test_router_sends_new_connections_to_the_current_upstream(tmp_path: Path) -> None:
    blue, blue_port = _echo_server(b"blue:")
    green, green_port = _echo_server(b"green:")
    path = str(tmp_path / "upstream")
    router.write_upstream(path, f"127.0.0.1:{blue_port}")

    async def scenario() -> list[bytes]:
        server = await asyncio.start_server(lambda r, w: router._handle(path, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        answers = []
        for switch_to in (None, green_port):
            if switch_to:
                router.write_upstream(path, f"127.0.0.1:{switch_to}")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            await writer.drain()
            answers.append(await asyncio.wait_for(reader.read(100), 5))
            writer.close()
        server.close()
        return answers

    try:
        assert asyncio.run(scenario()) == [b"blue:ping", b"green:ping"]
    finally:
        blue.close()
        green.close()
