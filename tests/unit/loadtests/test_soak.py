"""The soak's pure parts with hand-built numbers, and its load loop against a tiny local server."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiohttp import web

from loadtests.servers import free_port
from loadtests.soak import (
    DEFAULT_CLIENTS,
    DEFAULT_REQUESTS,
    Growth,
    LoadOutcome,
    ProcInfo,
    Sample,
    SoakSettings,
    TreeSampler,
    _load,
    format_report,
    non_200,
    percentiles_ms,
    process_roles,
    role_order,
    rss_growth,
    warmup_requests,
)


@pytest.mark.parametrize(
    ("total", "warmup"), [(20_000, 2_000), (1_000, 100), (15, 2), (5, 1), (1, 1), (0, 0)]
)
def test_warmup_is_the_first_tenth(total: int, warmup: int) -> None:
    assert warmup_requests(total) == warmup


def test_rss_growth_after_warmup() -> None:
    samples = [
        Sample(0.0, 0, {1: 100.0, 2: 200.0}),
        Sample(1.0, 5, {1: 110.0, 2: 205.0, 3: 50.0, 5: 70.0}),  # 5 is gone before warm-up
        Sample(2.0, 10, {1: 120.0, 2: 210.0, 3: 55.0}),  # warm-up (10 answers) reached
        Sample(3.0, 20, {1: 130.5, 2: 209.0, 4: 60.0}),  # 3 died, 4 replaced it
        Sample(4.0, 30, {1: 125.0, 2: 212.3, 4: 61.5}),
    ]
    assert rss_growth(samples, warmup=10) == {
        1: Growth(1, 100.0, 120.0, 125.0, 130.5, 5.0, 3),
        2: Growth(2, 200.0, 210.0, 212.3, 212.3, 2.3, 3),
        3: Growth(3, 50.0, 55.0, 55.0, 55.0, 0.0, 1),
        4: Growth(4, 60.0, 60.0, 61.5, 61.5, 1.5, 2),
    }


def test_rss_growth_can_be_negative_and_needs_a_reading_after_warmup() -> None:
    samples = [Sample(0.0, 0, {7: 300.0}), Sample(1.0, 4, {7: 320.0}), Sample(2.0, 8, {7: 310.4})]
    assert rss_growth(samples, warmup=4) == {7: Growth(7, 300.0, 320.0, 310.4, 320.0, -9.6, 2)}
    assert rss_growth(samples, warmup=9) == {}


def test_non_200_counts_errors_too() -> None:
    assert non_200({"200": 10, "503": 2, "error": 1}) == 3
    assert non_200({"200": 5}) == 0
    assert non_200({}) == 0


def test_process_roles() -> None:
    spawn = "python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)"
    procs = [
        ProcInfo(100, 1, "python -m bentoml serve service:SentimentAPI"),
        ProcInfo(130, 100, "python -m _bentoml_impl.worker.service --worker-id 2"),
        ProcInfo(120, 100, "python -m _bentoml_impl.worker.service --worker-id 1"),
        ProcInfo(150, 120, "python -c from multiprocessing.resource_tracker import main;main(4)"),
        ProcInfo(152, 120, spawn),
        ProcInfo(151, 120, spawn),
        ProcInfo(160, 130, spawn),
        ProcInfo(170, 100, "/usr/bin/prometheus --config x"),
    ]
    assert process_roles(procs, root_pid=100, worker_pid=120) == {
        100: "supervisor (bentoml serve)",
        120: "server worker",
        130: "server worker 2",
        150: "resource tracker",
        151: "model process 1",
        152: "model process 2",
        160: "model process 3",
        170: "other (prometheus)",
    }
    roles = ["other (x)", "model process 2", "server worker", "model process 1", "supervisor"]
    assert sorted(roles, key=lambda r: role_order(r, 0)) == [
        "supervisor",
        "server worker",
        "model process 1",
        "model process 2",
        "other (x)",
    ]


def test_percentiles_ms() -> None:
    assert percentiles_ms([0.01, 0.02, 0.03, 0.04, 0.05]) == {"p50": 30.0, "p95": 48.0, "p99": 49.6}
    assert percentiles_ms([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0}


def test_settings_from_the_environment() -> None:
    assert SoakSettings.from_env({"SOAK_REQUESTS": "1000", "SOAK_CLIENTS": "8"}) == SoakSettings(
        requests=1000, clients=8
    )
    assert SoakSettings.from_env({}) == SoakSettings(DEFAULT_REQUESTS, DEFAULT_CLIENTS)
    assert (DEFAULT_REQUESTS, DEFAULT_CLIENTS) == (20_000, 16)


def test_format_report() -> None:
    report = {
        "requests": 100,
        "clients": 4,
        "seconds": 2.0,
        "requests_per_s": 50.0,
        "latency_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0},
        "non_200": 0,
        "warmup_requests": 10,
        "total_growth_mb": 1.5,
        "processes": [
            {
                "role": "server worker",
                "pid": 42,
                "start_mb": 400.0,
                "after_warmup_mb": 410.0,
                "end_mb": 411.5,
                "peak_mb": 412.0,
                "growth_mb": 1.5,
                "growth_second_half_mb": 0.4,
            },
            {
                "role": "model process 1",
                "pid": 43,
                "start_mb": 480.0,
                "after_warmup_mb": 500.0,
                "end_mb": 500.0,
                "peak_mb": 500.0,
                "growth_mb": 0.0,
                "growth_second_half_mb": None,
            },
        ],
    }
    text = format_report(report)
    assert "100 predictions at 4 clients" in text
    assert "non-200 answers: 0" in text
    rows = text.splitlines()[3:5]
    expected = "server worker 42 400.0 410.0 411.5 412.0 +1.5 +0.4"
    assert rows[0].split() == expected.split()
    assert rows[1].split()[-2:] == ["+0.0", "-"]


def test_the_load_loop_counts_every_answer() -> None:
    """50 requests from 4 clients to a server that answers every 7th with a 503."""
    answered = 0

    async def predict(request: web.Request) -> web.Response:
        nonlocal answered
        body = await request.json()
        assert len(body["texts"]) == 1
        answered += 1
        return web.json_response({}, status=503 if answered % 7 == 0 else 200)

    async def scenario() -> tuple[LoadOutcome, TreeSampler]:
        app = web.Application()
        app.router.add_post("/predict", predict)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        sampler = TreeSampler(os.getpid())
        try:
            settings = SoakSettings(requests=50, clients=4, interval_s=0.05)
            outcome = await _load(f"http://127.0.0.1:{port}", ["a", "b"], settings, sampler, 5)
        finally:
            await runner.cleanup()
        return outcome, sampler

    outcome, sampler = asyncio.run(scenario())
    assert outcome.statuses == {"200": 43, "503": 7}
    assert outcome.errors == {}
    assert len(outcome.latencies_s) == 43
    done = [s.done for s in sampler.samples]
    assert done[0] == 0 and done[-1] == 50 and 5 in done
    assert all(os.getpid() in s.rss_mb for s in sampler.samples)
