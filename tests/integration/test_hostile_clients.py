"""A hostile client against a real `bentoml serve` on 127.0.0.1: malformed input, a fuzzed
OpenAPI document, API keys, overload, a killed model process and SIGTERM under load.

Every request is bounded (timeouts, counts); the load phases last seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtests.servers import PROJECT_ROOT, ServerProcess, own_bentoml_home
from tests.integration.conftest import json_answer, model_processes

KEY = "test-key-0123456789abcdef"
SECOND_KEY = "second-key-0123456789abcdef"
METRICS_KEY = "metrics-key-0123456789abcdef"
LEAKS = (str(PROJECT_ROOT), "/tmp/", "Traceback", 'File "')

JSON = {"content-type": "application/json"}
ONE_TEXT = b'{"texts": ["a fine film"]}'

# (method, path, body, headers, expected status or None for "any 4xx")
CORPUS: list[tuple[str, str, bytes, dict[str, str], int | None]] = [
    ("POST", "/predict", b'{"texts": ["a\\u0000b"]}', JSON, 200),
    ("POST", "/predict", b'{"texts": ["\xff\xfe broken"]}', JSON, 400),
    ("POST", "/predict", b'{"texts": ["\\ud800 lone"]}', JSON, None),
    ("POST", "/predict", b"\xef\xbb\xbf" + ONE_TEXT, JSON, 400),
    ("POST", "/predict", b'{"texts": NaN}', JSON, 400),
    ("POST", "/predict", b'{"texts": ["a"], "texts": 1}', JSON, 400),
    ("POST", "/predict", b"null", JSON, 400),
    ("POST", "/predict", b"", JSON, 400),
    ("POST", "/predict", json.dumps({"texts": ["x"] * 64}).encode(), JSON, 200),
    ("POST", "/predict", json.dumps({"texts": ["x"] * 2049}).encode(), JSON, 413),
    ("POST", "/predict", json.dumps({"texts": ["a" * 20_000]}).encode(), JSON, 200),
    ("POST", "/predict", json.dumps({"texts": ["a" * 20_001]}).encode(), JSON, 413),
    ("POST", "/predict", b'{"texts": ["' + b"a" * 4_000_100 + b'"]}', JSON, 413),
    ("POST", "/predict", b'{"texts": [' + b"1" * 5000 + b"]}", JSON, 400),
    ("POST", "/predict", b"[" * 100_000 + b"]" * 100_000, JSON, 400),
    ("POST", "/predict", b'{"texts": ' + b"{" * 50_000, JSON, 400),
    ("POST", "/predict", ONE_TEXT, {"content-type": "text/plain"}, 415),
    ("POST", "/predict", b"texts=a", {"content-type": "application/x-www-form-urlencoded"}, 415),
    (
        "POST",
        "/predict",
        b"--x\r\n\r\n--x--",
        {"content-type": "multipart/form-data; boundary=x"},
        415,
    ),
    ("GET", "/predict", b"", {}, 405),
    ("PUT", "/predict", ONE_TEXT, JSON, 405),
    ("POST", "/predict?texts=a&%ff=%00", ONE_TEXT, JSON, 200),
    ("POST", "/model/info", b"{}", JSON, None),
    ("DELETE", "/health", b"", {}, None),
    ("GET", "/static_content/../../../../etc/passwd", b"", {}, None),
    ("GET", "/%2e%2e/%2e%2e/etc/passwd", b"", {}, None),
    ("GET", "/docs.json/..%2f..%2fservice.py", b"", {}, None),
    ("GET", "/no/such/route", b"", {}, 404),
]


def assert_clean(resp: httpx.Response, elapsed_s: float) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    assert elapsed_s < 2.0, elapsed_s
    for leak in LEAKS:
        assert leak not in resp.text, (leak, resp.text[:300])


@pytest.mark.parametrize(("method", "path", "body", "headers", "status"), CORPUS)
def test_hostile_input_gets_a_quick_clean_answer(
    served_url: str,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int | None,
) -> None:
    started = time.perf_counter()
    resp = httpx.request(method, f"{served_url}{path}", content=body, headers=headers, timeout=10)
    assert_clean(resp, time.perf_counter() - started)
    if status is None:
        assert 400 <= resp.status_code < 500, resp.text[:300]
    else:
        assert resp.status_code == status, resp.text[:300]


def test_schemathesis_finds_no_server_error_in_the_public_api(
    served_url: str, tmp_path: Path
) -> None:
    """Every operation of the public OpenAPI document, fuzzed within a fixed budget."""
    report = tmp_path / "report.json"
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{served_url}/docs.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "30",
        "--seed",
        "1",
        "--request-timeout",
        "10",
        "--workers",
        "1",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=420, env={**os.environ, "NO_COLOR": "1"}
    )
    assert result.returncode == 0, result.stdout[-4000:]
    operations = json.loads(httpx.get(f"{served_url}/docs.json", timeout=10).text)["paths"]
    assert "/predict" in operations
    assert not [p for p in operations if p.startswith("/ui")], sorted(operations)


# --- API keys ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(bento_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with API keys, a metrics key, and room for only 4 requests at once."""
    keys_file = tmp_path_factory.mktemp("secrets") / "api-keys"
    keys_file.write_text(f"# one key per line\n{SECOND_KEY}\n")
    env = {
        **own_bentoml_home(bento_env, tmp_path_factory.mktemp("guarded_home")),
        "SENTIMENT_API_KEYS": KEY,
        "SENTIMENT_API_KEYS_FILE": str(keys_file),
        "SENTIMENT_METRICS_KEY": METRICS_KEY,
        "SENTIMENT_MAX_CONCURRENCY": "4",
        "SENTIMENT_RETRY_AFTER_S": "2",
        "SENTIMENT_READ_TIMEOUT_S": "5",
    }
    proc = ServerProcess.bentoml(env, tmp_path_factory.mktemp("guarded") / "bentoml.log")
    try:
        proc.wait_ready()
        yield proc.url
    finally:
        log = proc.log_tail(200_000)
        proc.stop()
        for secret in (KEY, SECOND_KEY, METRICS_KEY):
            assert secret not in log, "a key was written to the server log"


PROTECTED = [
    ("POST", "/predict", ONE_TEXT),
    ("GET", "/monitoring", b""),
    ("GET", "/model/info", b""),
    ("GET", "/docs.json", b""),
    ("GET", "/ui/config", b""),
]
OPEN = ["/health", "/livez", "/readyz"]


def send(url: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(
        method, f"{url}{path}", content=body, headers={**JSON, **headers}, timeout=30
    )


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_auth_matrix_with_keys_set(guarded: str, method: str, path: str, body: bytes) -> None:
    refused = [
        send(guarded, method, path, body, {}),
        send(guarded, method, path, body, {"Authorization": "Bearer not-the-key-at-all"}),
        send(guarded, method, path, body, {"X-API-Key": KEY[:-1]}),
        send(guarded, method, path, body, {"Authorization": f"Bearer {METRICS_KEY}"}),
    ]
    for resp in refused:
        assert resp.status_code == 401, (path, resp.status_code)
        assert resp.json()["error"].startswith("missing or invalid API key")
        assert "\n" not in resp.text.strip()
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": SECOND_KEY}):
        resp = send(guarded, method, path, body, headers)
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:200])


def test_probes_stay_open_and_metrics_needs_its_own_key(guarded: str) -> None:
    for path in OPEN:
        assert httpx.get(f"{guarded}{path}", timeout=30).status_code == 200, path
    assert httpx.get(f"{guarded}/metrics", timeout=30).status_code == 401
    api_key = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{guarded}/metrics", headers=api_key, timeout=30).status_code == 401
    scrape = httpx.get(
        f"{guarded}/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}, timeout=30
    )
    assert scrape.status_code == 200 and "sentiment_model_processes_alive" in scrape.text


def test_the_ui_logs_in_with_a_key(guarded: str) -> None:
    with httpx.Client(base_url=guarded, timeout=30) as browser:
        page = browser.get("/ui/", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/ui/login"
        assert browser.get("/ui/login").status_code == 200
        wrong = browser.post("/ui/login", data={"key": "guess-guess-guess-guess"})
        assert wrong.status_code == 401
        assert browser.get("/ui/config").status_code == 401
        login = browser.post("/ui/login", data={"key": KEY})
        assert login.status_code == 303 and KEY not in login.headers["set-cookie"]
        assert browser.get("/ui/config").status_code == 200
        assert browser.get("/ui/", headers={"Accept": "text/html"}).status_code == 200


def test_without_keys_every_route_is_open(served_url: str) -> None:
    for method, path, body in PROTECTED:
        assert send(served_url, method, path, body, {}).status_code == 200, path
    assert httpx.get(f"{served_url}/metrics", timeout=30).status_code == 200


# --- overload ------------------------------------------------------------------------------


def test_a_full_server_refuses_with_retry_after_before_reading_the_body(guarded: str) -> None:
    """4 requests hold the 4 slots by sending their bodies slowly; the 5th, sent without a
    body at all, is refused at once: the refusal did not wait for the body."""
    host, port = guarded.removeprefix("http://").split(":")
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    ).encode()
    holders = []
    try:
        for _ in range(4):
            conn = socket.create_connection((host, int(port)), timeout=10)
            conn.sendall(head + b'{"texts": [')
            holders.append(conn)
        time.sleep(0.5)
        started = time.perf_counter()
        with socket.create_connection((host, int(port)), timeout=10) as probe:
            probe.sendall(head)
            answer = json_answer(probe)
        elapsed = time.perf_counter() - started
    finally:
        for conn in holders:
            conn.close()
    assert answer.startswith(b"HTTP/1.1 429"), answer[:300]
    assert b"retry-after: 2" in answer.lower()
    assert b"4 requests in progress" in answer
    assert elapsed < 1.0


# --- faults: a killed model process, then SIGTERM, under load -------------------------------


class Load:
    """`clients` threads posting one SST-2-like text each in a loop until stopped."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.statuses: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def client(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    status = str(
                        client.post(
                            f"{self.url}/predict", json={"texts": ["a moving film"]}
                        ).status_code
                    )
                except httpx.HTTPError as exc:  # the listener closed: refused, not answered
                    status = type(exc).__name__
                    time.sleep(0.05)
                with self.lock:
                    self.statuses[status] += 1

    def finish(self) -> Counter[str]:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)
        return self.statuses


@pytest.mark.slow
def test_kill_a_model_process_then_sigterm_under_load(
    bento_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**own_bentoml_home(bento_env, tmp_path), "SENTIMENT_DRAIN_TIMEOUT_S": "15"}
    server = ServerProcess.bentoml(env, tmp_path / "bentoml.log")
    try:
        server.wait_ready()
        load = Load(server.url, clients=8)
        time.sleep(2)
        model_processes(server.proc.pid)[0].kill()
        health_codes = []
        degraded_metric = False
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            health_codes.append(httpx.get(f"{server.url}/health", timeout=10).status_code)
            metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
            degraded_metric = degraded_metric or "sentiment_degraded 1.0" in metrics
            time.sleep(0.1)
        before_sigterm = dict(load.statuses)
        os.kill(server.proc.pid, signal.SIGTERM)
        sent_at = time.monotonic()
        exit_code = server.proc.wait(timeout=60)
        exit_after = time.monotonic() - sent_at
        statuses = load.finish()
    finally:
        server.stop()
    assert set(health_codes) == {200}, health_codes
    assert degraded_metric, "sentiment_degraded never showed the killed process"
    assert before_sigterm.get("200", 0) > 20 and set(before_sigterm) == {"200"}, before_sigterm
    assert "500" not in statuses, statuses
    assert exit_code == 0
    assert exit_after < 15 + 10
    log = server.log_path.read_text(errors="replace")
    assert "timeout graceful shutdown exceeded" not in log, "the drain timed out"


@pytest.mark.slow
def test_after_sigterm_a_keep_alive_clients_next_request_is_answered_503_not_reset(
    bento_env: dict[str, str],
) -> None:
    """Every request in flight at SIGTERM is answered 200, and each client's next request on
    its open connection gets an answer rather than a reset: the drain's 503 (with Connection:
    close), or a 200 when it reached the worker before the signal did (the parent forwards it)."""
    from loadtests.drain import run_drain

    result = run_drain(clients=8, texts=16, signal_after_s=3.0, seconds=7.0, env=bento_env)
    assert result.exit_code == 0
    assert sum(result.in_flight.values()) >= 1 and set(result.in_flight) == {"200"}, result
    assert sum(result.next_request.values()) == 8, result
    assert set(result.next_request) <= {"200", "503"} and result.next_request["503"] >= 1, result
