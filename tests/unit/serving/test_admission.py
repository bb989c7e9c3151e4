"""The admission gate and the SIGTERM drain, on hand-built ASGI calls."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from types import FrameType, SimpleNamespace
from typing import Any

import pytest

from serving.admission import (
    LINGER_S,
    MIN_HANDOVER_S,
    AdmissionGate,
    AdmissionState,
    install_drain,
    with_retry_after,
)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> dict[str, Any]:
        return dict(json.loads(self.messages[1]["body"]))


def http(path: str = "/predict") -> dict[str, Any]:
    return {"type": "http", "path": path, "method": "POST", "headers": []}


async def never_receive() -> dict[str, Any]:
    raise AssertionError("the gate read the body of a request it refused")


class HeldApp:
    """An app that answers once `release` is set, so requests stay in progress."""

    def __init__(self, status: int = 200) -> None:
        self.release = asyncio.Event()
        self.status = status
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def test_over_the_limit_is_429_with_retry_after_and_the_body_is_never_read() -> None:
    async def scenario() -> tuple[list[Recorder], Recorder, AdmissionState]:
        app = HeldApp()
        state = AdmissionState()
        gate = AdmissionGate(app, limit=2, retry_after_s=3, state=state)
        held = [Recorder(), Recorder()]
        tasks = [asyncio.create_task(gate(http(), never_receive, r)) for r in held]
        await asyncio.sleep(0.01)
        assert state.in_flight == 2
        refused = Recorder()
        await gate(http(), never_receive, refused)
        app.release.set()
        await asyncio.gather(*tasks)
        return held, refused, state

    held, refused, state = asyncio.run(scenario())
    assert [r.status for r in held] == [200, 200]
    assert refused.status == 429
    assert refused.headers[b"retry-after"] == b"3"
    assert refused.body == {"error": "server busy: 2 requests in progress; retry"}
    assert state.in_flight == 0 and state.refused == 1


def test_probes_and_scrapes_pass_a_full_gate() -> None:
    async def scenario() -> list[int]:
        app = HeldApp()
        app.release.set()
        gate = AdmissionGate(app, limit=1, retry_after_s=1, state=AdmissionState(in_flight=1))
        statuses = []
        for path in ("/health", "/livez", "/readyz", "/metrics", "/predict"):
            rec = Recorder()
            await gate(http(path), never_receive, rec)
            statuses.append(rec.status)
        return statuses

    assert asyncio.run(scenario()) == [200, 200, 200, 200, 429]


def test_while_draining_new_requests_get_503_and_connection_close() -> None:
    rec = Recorder()
    gate = AdmissionGate(HeldApp(), limit=8, retry_after_s=2, state=AdmissionState(draining=True))
    asyncio.run(gate(http(), never_receive, rec))
    assert rec.status == 503
    assert rec.headers[b"connection"] == b"close"
    assert rec.headers[b"retry-after"] == b"2"


def test_the_apps_own_503_gets_retry_after_once() -> None:
    async def scenario(extra: list[tuple[bytes, bytes]]) -> Recorder:
        rec = Recorder()
        wrapped = with_retry_after(rec, b"5")
        await wrapped({"type": "http.response.start", "status": 503, "headers": extra})
        return rec

    assert asyncio.run(scenario([])).messages[0]["headers"] == [(b"retry-after", b"5")]
    kept = asyncio.run(scenario([(b"Retry-After", b"9")])).messages[0]["headers"]
    assert kept == [(b"Retry-After", b"9")]


def test_a_200_is_left_alone() -> None:
    rec = Recorder()
    asyncio.run(
        with_retry_after(rec, b"5")({"type": "http.response.start", "status": 200, "headers": []})
    )
    assert rec.messages[0]["headers"] == []


def test_a_request_cancelled_by_the_drain_timeout_is_answered_503_not_500() -> None:
    async def scenario() -> tuple[Recorder, AdmissionState]:
        state = AdmissionState()
        gate = AdmissionGate(HeldApp(), limit=4, retry_after_s=1, state=state)
        rec = Recorder()
        task = asyncio.create_task(gate(http(), never_receive, rec))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return rec, state

    rec, state = asyncio.run(scenario())
    assert rec.status == 503 and rec.headers[b"connection"] == b"close"
    assert state.in_flight == 0


class FakeServer:
    """What uvicorn's Server offers: a `config` with the graceful timeout, a signal handler."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(timeout_graceful_shutdown=None)
        self.signals: list[int] = []

    def handle_exit(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)


@pytest.fixture
def restore_sigterm() -> Iterator[None]:
    original = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, original)


def test_drain_bounds_the_servers_wait_and_chains_its_handler(restore_sigterm: None) -> None:
    server = FakeServer()
    signal.signal(signal.SIGTERM, server.handle_exit)
    state = AdmissionState(in_flight=3)
    assert install_drain(state, 12.5)
    assert server.config.timeout_graceful_shutdown == 12.5
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    handler(signal.SIGTERM, None)
    assert state.draining
    assert server.signals == [signal.SIGTERM]


def installed(state: AdmissionState, drain_timeout_s: float) -> tuple[FakeServer, Any]:
    """A fake server with the drain installed over its SIGTERM handler, and the new handler."""
    server = FakeServer()
    signal.signal(signal.SIGTERM, server.handle_exit)
    assert install_drain(state, drain_timeout_s)
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    return server, handler


def sigterm_in_loop(state: AdmissionState, drain_timeout_s: float, watch_s: float) -> FakeServer:
    """Install the drain over a fake server, call its SIGTERM handler inside a running event
    loop, and return the server as it is `watch_s` seconds later."""
    server, handler = installed(state, drain_timeout_s)

    async def main() -> None:
        handler(signal.SIGTERM, None)
        await asyncio.sleep(watch_s)

    asyncio.run(main())
    return server


def test_the_listener_stays_open_until_requests_in_flight_are_answered(
    restore_sigterm: None,
) -> None:
    """Keep-alive clients' next requests must meet the gate's 503 + close, not a connection
    uvicorn closed under them: the server gets the signal only after the last answer and
    LINGER_S more, with what is left of the drain timeout."""
    state = AdmissionState(in_flight=2)
    server, handler = installed(state, 10.0)
    seen: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler(signal.SIGTERM, None)
        assert state.draining
        await asyncio.sleep(0.3)
        seen["while_busy"] = list(server.signals)
        state.in_flight = 0
        idle_at = loop.time()
        while not server.signals and loop.time() - idle_at < 5:
            await asyncio.sleep(0.01)
        seen["after_idle_s"] = loop.time() - idle_at

    asyncio.run(main())
    assert seen["while_busy"] == []
    assert server.signals == [signal.SIGTERM]
    assert LINGER_S <= seen["after_idle_s"] < LINGER_S + 0.5
    timeout = server.config.timeout_graceful_shutdown
    assert 10.0 - 0.3 - LINGER_S - 0.5 < timeout < 10.0 - 0.3


def test_an_idle_server_hands_over_at_once(restore_sigterm: None) -> None:
    server = sigterm_in_loop(AdmissionState(in_flight=0), 10.0, watch_s=0)
    assert server.signals == [signal.SIGTERM]


def test_the_drain_hands_over_at_its_deadline_with_requests_still_running(
    restore_sigterm: None,
) -> None:
    server = sigterm_in_loop(AdmissionState(in_flight=1), 0.2, watch_s=0.5)
    assert server.signals == [signal.SIGTERM]
    assert server.config.timeout_graceful_shutdown == MIN_HANDOVER_S


def test_a_second_sigterm_hands_over_at_once(restore_sigterm: None) -> None:
    state = AdmissionState(in_flight=1)
    server, handler = installed(state, 30.0)

    async def main() -> None:
        handler(signal.SIGTERM, None)
        await asyncio.sleep(0.1)
        assert server.signals == []
        handler(signal.SIGTERM, None)

    asyncio.run(main())
    assert server.signals == [signal.SIGTERM]


def test_drain_changes_nothing_without_a_handler_to_chain(restore_sigterm: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    state = AdmissionState()
    assert not install_drain(state, 5)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
