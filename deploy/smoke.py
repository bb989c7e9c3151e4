"""Smoke tests of a running service: health, known predictions, the UI, latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from deploy.config import SmokeCase, SmokeSection


@dataclass(frozen=True)
class SmokeCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class SmokeReport:
    base_url: str
    checks: tuple[SmokeCheck, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def failures(self) -> list[SmokeCheck]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        return "; ".join(f"{c.name}: {c.detail}" for c in (self.failures() or self.checks))


def wait_healthy(
    client: httpx.Client,
    timeout_s: float,
    *,
    is_alive: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SmokeCheck:
    """Poll GET /health until it answers 200, the container dies, or time runs out."""
    deadline = clock() + timeout_s
    last = "no answer yet"
    while True:
        try:
            response = client.get("/health")
            if response.status_code == 200:
                return SmokeCheck("health", True, "200 healthy")
            last = f"{response.status_code} {response.text[:120]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        if not is_alive():
            return SmokeCheck("health", False, f"the container stopped (last answer: {last})")
        if clock() >= deadline:
            return SmokeCheck("health", False, f"not healthy within {timeout_s:.0f} s ({last})")
        sleep(2.0)


def check_predictions(client: httpx.Client, cases: Sequence[SmokeCase]) -> SmokeCheck:
    try:
        response = client.post("/predict", json={"texts": [c.text for c in cases]})
    except httpx.HTTPError as exc:
        return SmokeCheck("predict", False, f"request failed: {type(exc).__name__}")
    if response.status_code != 200:
        return SmokeCheck("predict", False, f"{response.status_code} {response.text[:200]}")
    try:
        got = [p["sentiment"] for p in response.json()["predictions"]]
    except (ValueError, KeyError, TypeError):
        return SmokeCheck("predict", False, f"unexpected body: {response.text[:200]}")
    wrong = [
        f"{c.text!r}: expected {c.expected}, got {g}"
        for c, g in zip(cases, got, strict=False)
        if g != c.expected
    ]
    if len(got) != len(cases):
        wrong.append(f"{len(got)} predictions for {len(cases)} texts")
    if wrong:
        return SmokeCheck("predict", False, "; ".join(wrong))
    return SmokeCheck("predict", True, f"{len(cases)} known sentences labelled as expected")


def check_ui(client: httpx.Client, path: str) -> SmokeCheck:
    try:
        response = client.get(path, follow_redirects=True)
    except httpx.HTTPError as exc:
        return SmokeCheck("ui", False, f"request failed: {type(exc).__name__}")
    ok = response.status_code == 200 and "<html" in response.text[:5000].lower()
    return SmokeCheck("ui", ok, f"GET {path}: {response.status_code}")


def check_latency(client: httpx.Client, text: str, requests: int, max_ms: float) -> SmokeCheck:
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        try:
            response = client.post("/predict", json={"texts": [text]})
        except httpx.HTTPError as exc:
            return SmokeCheck("latency", False, f"request failed: {type(exc).__name__}")
        if response.status_code != 200:
            return SmokeCheck("latency", False, f"/predict answered {response.status_code}")
        timings.append((time.perf_counter() - started) * 1000)
    median = statistics.median(timings)
    return SmokeCheck(
        "latency",
        median <= max_ms,
        f"median {median:.0f} ms over {requests} requests (limit {max_ms:.0f} ms)",
    )


def run_smoke(
    base_url: str,
    cfg: SmokeSection,
    *,
    is_alive: Callable[[], bool] = lambda: True,
    transport: httpx.BaseTransport | None = None,
    health_only: bool = False,
) -> SmokeReport:
    """Every check in order; after a failed health check the others are not tried."""
    with httpx.Client(
        base_url=base_url, timeout=cfg.request_timeout_s, transport=transport
    ) as client:
        checks = [wait_healthy(client, cfg.startup_timeout_s, is_alive=is_alive)]
        if checks[0].passed and not health_only:
            checks.append(check_predictions(client, cfg.cases))
            checks.append(check_ui(client, cfg.ui_path))
            checks.append(
                check_latency(client, cfg.cases[0].text, cfg.latency_requests, cfg.max_latency_ms)
            )
    return SmokeReport(base_url, tuple(checks))
