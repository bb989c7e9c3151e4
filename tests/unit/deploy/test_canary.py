"""deploy/canary.py and the router's canary split: metrics parsing, the p95 from buckets, the
window arithmetic, the decision rules on hand-built figures, the controller over a scripted
scraper and clock, and the weighted choice per connection with a seeded RNG."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy import router
from deploy.canary import (
    CanaryController,
    Sample,
    ScrapeError,
    WindowStats,
    http_scraper,
    judge,
    parse_metrics,
    quantile,
    window,
)
from deploy.config import CanarySection

INF = float("inf")

# As BentoML 1.4.40's /metrics writes it (copied from the service image's own /metrics, cut short;
# the buckets are its DEFAULT_BUCKET), with one of the service's own metrics beside.
METRICS_TEXT = """\
# HELP bentoml_service_request_total Total number of HTTP requests
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{endpoint="/predict",http_response_code="200",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 90.0
bentoml_service_request_total{endpoint="/predict",http_response_code="500",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 6.0
bentoml_service_request_total{endpoint="/predict",http_response_code="400",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 4.0
bentoml_service_request_total{endpoint="/feedback",http_response_code="503",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 2.0
bentoml_service_request_total{endpoint="/health",http_response_code="200",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 40.0
bentoml_service_request_total{endpoint="/monitoring",http_response_code="500",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 3.0
# HELP bentoml_service_request_duration_seconds API HTTP request duration in seconds
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.05",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 0.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.1",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 50.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.25",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 86.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.5",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 90.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="+Inf",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 90.0
bentoml_service_request_duration_seconds_count{endpoint="/predict",http_response_code="200",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 90.0
bentoml_service_request_duration_seconds_sum{endpoint="/predict",http_response_code="200",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 9.5
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="500",le="0.05",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 4.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="500",le="0.1",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 4.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="500",le="0.25",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 4.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="500",le="0.5",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 6.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="500",le="+Inf",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 6.0
bentoml_service_request_duration_seconds_bucket{endpoint="/health",http_response_code="200",le="0.05",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 40.0
bentoml_service_request_duration_seconds_bucket{endpoint="/health",http_response_code="200",le="+Inf",runner_name="sentiment_api",service_name="sentiment_api",service_version="abc"} 40.0
# HELP prediction_total Predictions served
# TYPE prediction_total counter
prediction_total{label="positive"} 55.0
"""  # noqa: E501

CFG = CanarySection(
    window_s=60,
    check_interval_s=10,
    min_requests=20,
    max_5xx_rate=0.05,
    max_p95_ratio=1.5,
    p95_slack_ms=50,
    max_accuracy_drop=0.05,
    max_failed_scrapes=2,
)


def stats(
    requests: float = 100,
    errors: float = 0,
    p95_s: float | None = 0.1,
    accuracy: float | None = None,
    latency_count: float | None = None,
) -> WindowStats:
    return WindowStats(
        requests, errors, requests if latency_count is None else latency_count, p95_s, accuracy
    )


# --- parsing and arithmetic -------------------------------------------------------------------


def test_parse_metrics_sums_the_named_endpoints_only() -> None:
    sample = parse_metrics(METRICS_TEXT, ["/predict", "/feedback"], ["/predict"])
    # /predict 90 + 6 + 4, /feedback 2; /health and /monitoring are not counted.
    assert sample.requests == 102
    assert sample.errors == 8  # 6 x 500 on /predict, 2 x 503 on /feedback; 400 is no 5xx
    assert sample.buckets == ((0.05, 4.0), (0.1, 54.0), (0.25, 90.0), (0.5, 96.0), (INF, 96.0))
    assert sample.estimated_accuracy is None
    nothing = parse_metrics(METRICS_TEXT, ["/explain"], ["/explain"])
    assert nothing == Sample(0.0, 0.0, ())


def test_parse_metrics_refuses_garbage() -> None:
    with pytest.raises(ScrapeError, match="unparsable"):
        parse_metrics("bentoml_service_request_total{endpoint=", ["/predict"], ["/predict"])


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile() -> None:
    buckets = ((0.05, 0.0), (0.1, 50.0), (0.25, 90.0), (0.5, 100.0), (INF, 100.0))
    assert quantile(0.95, buckets) == pytest.approx(0.375)  # 0.25 + 0.25 * 5/10
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.95, ((0.1, 100.0), (INF, 100.0))) == pytest.approx(0.095)
    # In the +Inf bucket: the highest finite bound.
    assert quantile(0.95, ((0.1, 10.0), (INF, 100.0))) == 0.1
    assert quantile(0.95, ()) is None
    assert quantile(0.95, ((0.1, 0.0), (INF, 0.0))) is None


def test_window_is_the_difference_and_survives_a_restart() -> None:
    start = Sample(10, 1, ((0.1, 8.0), (0.5, 10.0), (INF, 10.0)))
    end = Sample(110, 6, ((0.1, 58.0), (0.5, 110.0), (INF, 110.0)), 0.91)
    got = window(start, end)
    assert (got.requests, got.errors, got.latency_count) == (100, 5, 100)
    assert got.error_rate == pytest.approx(0.05)
    # Rank 95 of 100: in (0.1, 0.5] holding 50 -> 0.1 + 0.4 * 45/50.
    assert got.p95_s == pytest.approx(0.46)
    assert got.estimated_accuracy == 0.91
    assert got.to_dict() == {
        "requests": 100, "errors_5xx": 5, "p95_ms": 460.0, "estimated_accuracy": 0.91
    }  # fmt: skip
    # The counters went down: the container restarted, everything since is the window.
    restarted = window(end, start)
    assert (restarted.requests, restarted.errors, restarted.latency_count) == (10, 1, 10)
    assert window(start, start).p95_s is None and window(start, start).error_rate is None


# --- the decision rules -----------------------------------------------------------------------


def test_no_rule_judges_before_min_requests() -> None:
    verdict = judge(stats(requests=19, errors=19, p95_s=9.0), stats(), 30, 0, CFG)
    assert verdict.action == "continue"
    assert [(r.name, r.passed) for r in verdict.rules] == [
        ("5xx_rate", None), ("p95", None), ("accuracy", None)
    ]  # fmt: skip
    assert verdict.rules[0].detail == "19 of 20 requests so far"


def test_the_5xx_limit_is_inclusive() -> None:
    at_limit = judge(stats(requests=20, errors=1), stats(), 30, 0, CFG)
    assert at_limit.action == "continue" and at_limit.rules[0].passed is True
    over = judge(stats(requests=20, errors=2), stats(), 30, 0, CFG)
    assert over.action == "rollback"
    assert over.reason == "5xx_rate: 2/20 = 10.0% 5xx (max 5.0%)"


def test_p95_against_the_stable_colour() -> None:
    # limit = 0.100 * 1.5 + 0.050 = 0.200 s
    assert judge(stats(p95_s=0.2), stats(p95_s=0.1), 30, 0, CFG).action == "continue"
    slow = judge(stats(p95_s=0.21), stats(p95_s=0.1), 30, 0, CFG)
    assert slow.action == "rollback"
    assert slow.reason == "p95: 210 ms vs stable 100 ms (max 200 ms)"
    # Too few timed requests on the stable colour: no evidence, no failure...
    quiet = judge(stats(p95_s=1.5), stats(requests=5, p95_s=0.1), 30, 0, CFG)
    assert quiet.action == "continue" and quiet.rules[1].passed is None
    assert quiet.rules[1].detail == "1500 ms, no stable p95 to compare with"
    assert judge(stats(p95_s=1.5), None, 30, 0, CFG).rules[1].passed is None
    assert judge(stats(p95_s=1.5), None, 60, 0, CFG).action == "promote"


def test_p95_ceiling_needs_no_stable_colour() -> None:
    # ...unless the canary is over the absolute ceiling (2000 ms by default), which once let a
    # CPU-starved canary through a window that left the stable colour few timed requests.
    for stable in (None, stats(requests=5, p95_s=0.1), stats(p95_s=10.0)):
        slow = judge(stats(p95_s=2.5), stable, 30, 0, CFG)
        assert slow.action == "rollback"
        assert slow.reason == "p95: 2500 ms over the 2000 ms ceiling"
    assert judge(stats(p95_s=2.0), None, 30, 0, CFG).action == "continue"


def test_estimated_accuracy_drop_and_null_as_no_evidence() -> None:
    ok = judge(stats(accuracy=0.85), stats(accuracy=0.90), 30, 0, CFG)
    assert ok.action == "continue" and ok.rules[2].passed is True
    worse = judge(stats(accuracy=0.849), stats(accuracy=0.90), 30, 0, CFG)
    assert worse.action == "rollback"
    assert worse.reason == "accuracy: estimated 0.849 vs stable 0.900 (min 0.850)"
    unknown = judge(stats(accuracy=None), stats(accuracy=0.90), 30, 0, CFG)
    assert unknown.rules[2].passed is None
    assert unknown.rules[2].detail == "estimated - vs stable 0.900 (no evidence)"
    # At the end of the window, no accuracy evidence does not block the promotion.
    assert judge(stats(accuracy=None), stats(accuracy=None), 60, 0, CFG).action == "promote"


def test_the_end_of_the_window() -> None:
    promoted = judge(stats(requests=20), stats(), 60, 0, CFG)
    assert promoted.action == "promote"
    assert promoted.reason.startswith("healthy over 60 s: 5xx_rate ok: 0/20 = 0.0% 5xx")
    quiet = judge(stats(requests=5), stats(), 60, 0, CFG)
    assert quiet.action == "rollback"
    assert quiet.reason == (
        "only 5 requests reached the canary in 60 s (min 20; insufficient_traffic: rollback)"
    )
    lenient = CFG.model_copy(update={"insufficient_traffic": "promote"})
    assert judge(stats(requests=5), stats(), 60, 0, lenient).action == "promote"
    # A failing rule wins over the end of the window.
    assert judge(stats(requests=20, errors=5), stats(), 60, 0, CFG).action == "rollback"


def test_an_unreachable_canary_rolls_back() -> None:
    assert judge(None, stats(), 10, 1, CFG).action == "continue"
    gone = judge(None, stats(), 20, 2, CFG)
    assert gone.action == "rollback"
    assert gone.reason == "the canary's /metrics did not answer on 2 checks in a row"
    assert judge(None, None, 60, 0, CFG).reason == "no sample of the canary in the whole window"


# --- the controller ---------------------------------------------------------------------------


class Script:
    """A scraper that answers each URL from its own list of samples (or errors), in turn, and
    a clock that the controller's sleep moves."""

    def __init__(self, answers: dict[str, list[Sample | str]]) -> None:
        self.answers = {url: iter(items) for url, items in answers.items()}
        self.now = 0.0
        self.sleeps: list[float] = []

    def scrape(self, url: str) -> Sample:
        answer = next(self.answers[url])
        if isinstance(answer, str):
            raise ScrapeError(answer)
        return answer

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def traffic(requests: float, errors: float = 0, fast: bool = True, acc: float | None = None):  # type: ignore[no-untyped-def]
    """Cumulative counters: every request timed at 0.05 s (fast) or 1.0 s."""
    buckets = ((0.05, requests if fast else 0.0), (1.0, requests), (INF, requests))
    return Sample(requests, errors, buckets, acc)


def controller(script: Script, **kwargs: object) -> tuple[CanaryController, list[str], list]:  # type: ignore[type-arg]
    lines: list[str] = []
    records: list[dict[str, object]] = []
    ctl = CanaryController(
        CFG.model_copy(update={"window_s": 30}),
        "http://canary",
        "http://stable",
        script.scrape,
        canary_name="green",
        stable_name="blue",
        prefix="[t] ",
        log=lines.append,
        record=lambda r: records.append(json.loads(json.dumps(r))),
        clock=script.clock,
        sleep=script.sleep,
        **kwargs,  # type: ignore[arg-type]
    )
    return ctl, lines, records


def test_controller_promotes_a_healthy_canary_at_the_end_of_the_window() -> None:
    script = Script(
        {
            # The baseline holds the smoke tests' 14 requests: they do not count.
            "http://canary": [traffic(14), traffic(24), traffic(34), traffic(44, acc=0.9)],
            "http://stable": [traffic(500), traffic(590), traffic(680), traffic(770, acc=0.91)],
        }
    )
    ctl, lines, records = controller(script)
    verdict = ctl.run()
    assert verdict.action == "promote"
    assert script.sleeps == [10, 10, 10]
    assert len(lines) == 3
    assert lines[0] == (
        "[t] canary check 1 at 10/30 s: green 10 requests, blue 90 requests; "
        "5xx_rate n/a: 10 of 20 requests so far; p95 n/a: 10 timed requests so far; "
        "accuracy n/a: estimated - vs stable - (no evidence) -> continue"
    )
    assert lines[2].endswith(
        "-> PROMOTE: healthy over 30 s: 5xx_rate ok: 0/30 = 0.0% 5xx (max 5.0%); "
        "p95 ok: 48 ms vs stable 48 ms (max 121 ms); "
        "accuracy ok: estimated 0.900 vs stable 0.910 (min 0.860)"
    )
    final = records[-1]
    assert final["decision"] == "promote" and final["checks_total"] == 3
    assert [c["n"] for c in final["checks"]] == [1, 2, 3]  # type: ignore[index]
    assert final["last"]["canary"]["requests"] == 30  # type: ignore[index]
    assert records[0]["state"] == "watching" and records[0]["checks"] == []


def test_controller_rolls_back_a_failing_canary_before_the_window_ends() -> None:
    script = Script(
        {
            "http://canary": [traffic(14), traffic(24, errors=0), traffic(40, errors=5)],
            "http://stable": [traffic(500), traffic(590), traffic(680)],
        }
    )
    ctl, lines, records = controller(script)
    verdict = ctl.run()
    assert verdict.action == "rollback"
    assert verdict.reason == "5xx_rate: 5/26 = 19.2% 5xx (max 5.0%)"
    assert len(lines) == 2 and lines[1].endswith("-> ROLLBACK: " + verdict.reason)
    assert records[-1]["decision"] == "rollback" and records[-1]["reason"] == verdict.reason


def test_controller_rolls_back_a_slow_canary() -> None:
    script = Script(
        {
            "http://canary": [traffic(0), traffic(25, fast=False)],
            "http://stable": [traffic(0), traffic(200)],
        }
    )
    verdict = controller(script)[0].run()
    assert (
        verdict.action == "rollback"
        and verdict.reason == "p95: 952 ms vs stable 48 ms (max 121 ms)"
    )


def test_controller_rolls_back_when_the_canary_stops_answering() -> None:
    script = Script(
        {
            "http://canary": [traffic(0), "GET /metrics: ConnectError", "GET /metrics: 502"],
            "http://stable": [traffic(0), traffic(10), traffic(20)],
        }
    )
    ctl, lines, _ = controller(script)
    verdict = ctl.run()
    assert verdict.action == "rollback"
    assert lines[0] == (
        "[t] canary check 1 at 10/30 s: green - requests, blue 10 requests -> "
        "continue (no sample of the canary: GET /metrics: ConnectError)"
    )
    assert verdict.reason == "the canary's /metrics did not answer on 2 checks in a row"


def test_controller_stops_when_the_split_was_ended_from_outside() -> None:
    script = Script({"http://canary": [traffic(0)], "http://stable": [traffic(0)]})
    ctl, lines, records = controller(script, is_current=lambda: False)
    verdict = ctl.run()
    assert verdict.action == "aborted"
    assert records[-1]["decision"] == "aborted" and len(lines) == 1


def test_controller_is_bounded_by_the_window_without_traffic() -> None:
    script = Script(
        {"http://canary": [traffic(0)] * 10, "http://stable": [traffic(0)] * 10}
    )  # fmt: skip
    verdict = controller(script)[0].run()
    assert verdict.action == "rollback" and "only 0 requests" in verdict.reason
    assert sum(script.sleeps) == 30 and len(script.sleeps) == 3


def test_http_scraper_reads_metrics_and_the_estimated_accuracy() -> None:
    accuracy: dict[str, object] = {"estimated_accuracy": 0.875}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            return httpx.Response(200, text=METRICS_TEXT)
        if request.url.path == "/monitoring":
            return httpx.Response(200, json={"performance": accuracy})
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        scrape = http_scraper(CFG, client)
        sample = scrape("http://svc")
        assert (sample.requests, sample.errors, sample.estimated_accuracy) == (102, 8, 0.875)
        accuracy["estimated_accuracy"] = None
        assert scrape("http://svc").estimated_accuracy is None
    refused = httpx.MockTransport(lambda request: httpx.Response(401))
    with httpx.Client(transport=refused) as client, pytest.raises(ScrapeError, match="401"):
        http_scraper(CFG, client)("http://svc")


# --- the router's split -----------------------------------------------------------------------


def test_weighted_choice_per_connection_with_a_seeded_rng() -> None:
    blue, green = ("sentiment-e-blue", 3000), ("sentiment-e-green", 3000)
    split = router.RouteState(blue, green, 10.0)
    rng = random.Random(1234)
    picks = [router.choose(split, rng) for _ in range(10_000)]
    # Python's Mersenne Twister with seed 1234: exactly these, about 10 % as asked.
    assert picks.count(green) == 943
    assert [i for i, p in enumerate(picks[:40]) if p == green] == [2, 7, 10, 18, 21, 25, 36, 38]
    assert router.choose(router.RouteState(blue, green, 0.0), rng) == blue
    assert all(
        router.choose(router.RouteState(blue, green, 100.0), rng) == green for _ in range(50)
    )
    assert all(router.choose(router.RouteState(blue), rng) == blue for _ in range(50))


def test_state_file_round_trip_and_the_original_format(tmp_path: Path) -> None:
    path = str(tmp_path / "upstream")
    state = router.RouteState(("b", 3000), ("g", 3000), 12.5)
    router.write_state(path, state)
    assert router.read_state(path) == state
    assert json.loads(Path(path).read_text()) == {
        "live": "b:3000",
        "canary": "g:3000",
        "share": 12.5,
    }
    assert router.read_upstream(path) == ("b", 3000)
    # A plain switch writes the original one-line format, which every router version reads.
    router.write_state(path, router.RouteState(("g", 3000)))
    assert Path(path).read_text() == "g:3000\n"
    assert router.read_state(path) == router.RouteState(("g", 3000))
    # A file written by the first router version.
    Path(path).write_text("sentiment-production-blue:3000\n")
    assert router.read_state(path) == router.RouteState(("sentiment-production-blue", 3000))
    for bad in (
        '{"live": "b:3000", "canary": "g:3000", "share": 101}',
        '{"live": "b", "canary": null}',
        '{"live": "b:3000", "canary": "g:3000", "share": true}',
        "[1, 2]",
        "{not json",
    ):
        assert router.parse_state(bad) is None, bad
    assert router.parse_state('{"live": "b:1", "canary": null, "share": 30}') == (
        router.RouteState(("b", 1))
    )


def test_router_cli_split_state_and_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "upstream")
    opt = ["--upstream-file", path]
    assert router.main(["version"]) == 0 and capsys.readouterr().out.strip() == router.VERSION
    assert router.main(["state", *opt]) == 1
    assert router.main(["set", "b:3000", "--canary", "g:3000", "--share", "10", *opt]) == 0
    assert router.main(["get", *opt]) == 0 and capsys.readouterr().out.strip() == "b:3000"
    assert router.main(["record", '{"decision": null, "checks_total": 2}', *opt]) == 0
    assert router.main(["state", *opt]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "live": "b:3000", "canary": "g:3000", "share": 10.0,
        "canary_run": {"decision": None, "checks_total": 2},
    }  # fmt: skip
    assert router.main(["set", "b:3000", "--canary", "g:3000", "--share", "120", *opt]) == 2
    assert router.main(["set", "b:3000", "--canary", "nope", *opt]) == 2
    assert router.main(["record", "[1]", *opt]) == 2
    assert router.main(["record", "{bad", *opt]) == 2
    assert router.read_state(path) == router.RouteState(("b", 3000), ("g", 3000), 10.0)


@pytest.fixture
def echo_servers() -> Iterator[dict[str, int]]:
    socks = []
    ports = {}
    for name in ("blue", "green"):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        socks.append(sock)
        ports[name] = sock.getsockname()[1]

        def serve(sock: socket.socket = sock, prefix: bytes = name.encode() + b":") -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(prefix + conn.recv(1024))

        threading.Thread(target=serve, daemon=True).start()
    try:
        yield ports
    finally:
        for sock in socks:
            sock.close()


def _through_router(path: str, connections: int, rng: random.Random) -> list[bytes]:
    async def scenario() -> list[bytes]:
        server = await asyncio.start_server(
            lambda r, w: router._handle(path, r, w, rng), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        answers = []
        for _ in range(connections):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            await writer.drain()
            answers.append(await asyncio.wait_for(reader.read(100), 5))
            writer.close()
        server.close()
        return answers

    return asyncio.run(scenario())


def test_router_splits_real_connections_and_spares_clients_a_dead_canary(
    tmp_path: Path, echo_servers: dict[str, int]
) -> None:
    path = str(tmp_path / "upstream")
    blue = ("127.0.0.1", echo_servers["blue"])
    green = ("127.0.0.1", echo_servers["green"])
    router.write_state(path, router.RouteState(blue, green, 50.0))
    answers = _through_router(path, 20, random.Random(5))
    assert answers[0] == b"blue:ping"  # the first draw of seed 5 is 0.62: above 50 %
    assert set(answers) == {b"blue:ping", b"green:ping"}
    # A canary that refuses connections: its share goes to the live colour.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead = ("127.0.0.1", free.getsockname()[1])
    router.write_state(path, router.RouteState(blue, dead, 100.0))
    assert _through_router(path, 3, random.Random(5)) == [b"blue:ping"] * 3
