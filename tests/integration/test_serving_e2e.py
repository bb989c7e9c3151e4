"""End to end: tiny model trained -> MLflow -> BentoML store -> `bentoml serve` -> /predict."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from loadtests.servers import ServerProcess
from tests.integration.conftest import json_answer, model_processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def scrape_batch_histogram(metrics_text: str) -> tuple[float, float]:
    """(number of model calls, requests merged into them) from the batcher's histogram."""
    count = total = 0.0
    for line in metrics_text.splitlines():
        value = line.rsplit(" ", 1)[-1]
        if line.startswith("sentiment_batch_requests_count"):
            count += float(value)
        elif line.startswith("sentiment_batch_requests_sum"):
            total += float(value)
    return count, total


def test_predict_contract(served_url: str) -> None:
    resp = httpx.post(
        f"{served_url}/predict",
        json={
            "texts": ["a wonderful, moving film", "dull and lifeless"],
            "return_probabilities": True,
        },
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"predictions", "model_version", "timestamp"}
    assert re.match(r"\d{4}-\d\d-\d\dT", body["timestamp"])
    assert len(body["predictions"]) == 2
    for item in body["predictions"]:
        assert item["sentiment"] in ("positive", "negative")
        probs = item["probabilities"]
        assert abs(probs["positive"] + probs["negative"] - 1) < 1e-4
        assert item["confidence"] == pytest.approx(max(probs.values()), abs=1e-6)
    plain = httpx.post(f"{served_url}/predict", json={"texts": ["fine"]}, timeout=60).json()
    assert "probabilities" not in plain["predictions"][0]


def test_health_and_model_info(served_url: str) -> None:
    health = httpx.get(f"{served_url}/health", timeout=30).json()
    assert health["status"] == "healthy" and health["model_loaded"] is True
    info = httpx.get(f"{served_url}/model/info", timeout=30).json()
    assert info["name"] == "sentiment"
    assert info["labels"] == ["negative", "positive"]
    assert info["mlflow"]["model_name"] == "sentiment"
    assert info["mlflow"]["alias"] == "candidate"
    assert 0.0 <= info["validation_metrics"]["accuracy"] <= 1.0
    for path in ("/livez", "/readyz", "/metrics", "/", "/docs.json"):
        assert httpx.get(f"{served_url}{path}", timeout=30).status_code == 200, path


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"texts": []}', 400, "empty"),
        (b"{}", 400, "missing field 'texts'"),
        (b'{"texts": ["ok", 3]}', 400, "texts[1] is int"),
        (b'{"texts": ["ok", "   "]}', 400, "texts[1] is empty"),
        (b'{"texts": "not a list"}', 400, "must be a list"),
        (b'{"texts": ["ok"], "return_probabilities": "yes"}', 400, "true or false"),
        (b'{"texts": ["unterminated"', 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"texts": [' + b'"x",' * 2048 + b'"x"]}', 413, "more than the limit"),
        (b'{"texts": ["' + b"a" * 4_100_000 + b'"]}', 413, "request body over"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    served_url: str, body: bytes, status: int, fragment: str
) -> None:
    resp = httpx.post(
        f"{served_url}/predict",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["error"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"texts": ["a"], "return_probabilities": ' + b"9" * 5000 + b"}", "too long"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
        (b'{"texts": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nested deeper than"),
    ],
)
def test_bodies_the_json_parser_fails_on_get_a_400_at_once(
    served_url: str, body: bytes, fragment: str
) -> None:
    started = time.perf_counter()
    resp = httpx.post(
        f"{served_url}/predict",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert time.perf_counter() - started < 2.0
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json()["error"]


def test_a_body_that_stops_arriving_gets_408(served_url: str) -> None:
    """The server under test reads bodies for at most 2 s (tests/conftest.py)."""
    host, port = served_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"texts": ['
        )
        started = time.perf_counter()
        answer = json_answer(conn)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request body not received within 2 s" in answer
    assert time.perf_counter() - started < 6.0


def test_overlong_text_is_truncated_not_rejected(served_url: str) -> None:
    text = "a truly great film. " * 400
    resp = httpx.post(f"{served_url}/predict", json={"texts": [text]}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"][0]["sentiment"] in ("positive", "negative")


def test_health_stays_200_while_one_replica_is_killed(
    served_url: str, server: ServerProcess
) -> None:
    replicas = model_processes(server.proc.pid)
    assert len(replicas) == 2, [p.cmdline() for p in replicas]
    replicas[0].kill()
    # /health reads each replica's exit from its pipe: it says "degraded" as soon as the kernel
    # has ended the process, and stays 200 throughout.
    answers = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = httpx.get(f"{served_url}/health", timeout=30)
        answers.append(
            (health.status_code, health.json()["status"], health.json()["replicas_alive"])
        )
        if answers[-1][1] == "degraded":
            break
        time.sleep(0.05)
    assert answers[-1] == (200, "degraded", 1), answers
    assert {code for code, _, _ in answers} == {200}
    # The dead replica is replaced on the batch it is handed; no request gets a 5xx meanwhile.
    deadline = time.monotonic() + 60
    statuses = []
    while time.monotonic() < deadline:
        statuses.append(
            httpx.post(f"{served_url}/predict", json={"texts": ["fine"]}, timeout=60).status_code
        )
        if httpx.get(f"{served_url}/health", timeout=30).json()["status"] == "healthy":
            break
    assert set(statuses) == {200}
    assert httpx.get(f"{served_url}/health", timeout=30).json()["replicas_alive"] == 2


def main_thread_wakeups(pid: int) -> int:
    """Voluntary context switches of a process's main thread (its event loop's thread): one
    per sleep it wakes from, so its rate is how often the idle loop wakes up."""
    status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
    return int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))


def test_the_idle_server_worker_sleeps(served_url: str, server: ServerProcess) -> None:
    """Gradio's queue polls every 1 ms unless told otherwise (`ui.queue_poll_s`), and BentoML
    replaces the queue at startup: with the setting lost, the idle worker's event loop woke
    about 880 times a second here (`SENTIMENT_UI_QUEUE_POLL_S=0.001`); with it, about 120.
    The quietest of three 1-s windows, so that the tail of an earlier test's traffic (a
    replaced replica, a monitoring refresh) does not count."""
    assert httpx.get(f"{served_url}/health", timeout=30).status_code == 200
    worker = server.worker()
    rates = []
    for _ in range(3):
        before, started = main_thread_wakeups(worker.pid), time.monotonic()
        time.sleep(1)
        rates.append((main_thread_wakeups(worker.pid) - before) / (time.monotonic() - started))
    assert min(rates) < 300, f"the idle worker's event loop woke {rates} times a second"


def test_concurrent_requests_share_batches(served_url: str) -> None:
    sentences = [
        f"the {i}th scene is wonderful" if i % 2 else f"scene {i} is awful" for i in range(64)
    ]
    before = scrape_batch_histogram(httpx.get(f"{served_url}/metrics", timeout=30).text)

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=served_url, timeout=120, limits=limits) as client:
            return await asyncio.gather(
                *(client.post("/predict", json={"texts": [s]}) for s in sentences)
            )

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 64
    for resp in responses:
        (item,) = resp.json()["predictions"]
        assert item["sentiment"] in ("positive", "negative")
        assert 0.5 <= item["confidence"] <= 1.0
    after = scrape_batch_histogram(httpx.get(f"{served_url}/metrics", timeout=30).text)
    batches = after[0] - before[0]
    requests_batched = after[1] - before[1]
    assert requests_batched >= 64
    # Merged: fewer model calls than requests.
    assert batches < requests_batched, (batches, requests_batched)


def test_empty_store_stops_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "empty"), "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("SENTIMENT_MODEL_TAG", None)
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "service:SentimentAPI", "--port", "0"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: no model 'sentiment:latest' in the BentoML store ({tmp_path / 'empty'}); "
        "run `make train import-model` (or `make serve`, which does both when the store is empty)"
    ]
