"""Admission: how many requests one worker takes on at once, and the drain on SIGTERM.

Overload. BentoML's own limiter (`traffic.max_concurrency`) sits outside every user middleware
and answers 429 without `Retry-After`. Clients that retry at once then turn the server worker
into a refusal loop: measured with 128 closed-loop clients against a limit of 64 on 2 cores,
24,854 refusals against 1,528 answers in 12 s, and accepted throughput fell to 0.52 × that of
32 clients. `AdmissionGate` is the first user middleware: it counts requests in progress,
refuses one over the limit before its body is read, and puts `Retry-After` on every 429 and
503 that leaves the service (the batcher's 503s included), so a well-behaved client waits
instead of hammering. BentoML's limiter stays configured above it as a backstop only.

Drain. On SIGTERM, `bentoml serve`'s process manager signals the worker and the worker's own
children at once; the model processes died mid-batch and half the requests in flight got 500
(16 of 32 measured). Model processes now ignore SIGTERM (serving/replicas.py) and are stopped
by the worker once it has drained. The worker's HTTP server (uvicorn) already stops accepting
and waits for connections in flight on SIGTERM, but without a bound: `install_drain` gives it
the configured `drain_timeout_s` and marks the gate as draining, so a request that still
arrives on an open connection is answered 503 with `Connection: close`.

Keep-alive connections. Handed SIGTERM at once, uvicorn closes every idle connection right away,
and a client that had just sent its next request on one read "connection reset", a POST it
cannot know was not run. Measured with `python -m loadtests.drain` (32 clients of 16 texts that
honour Retry-After): all 32 requests in flight were answered 200, then the 32 next requests got
32 resets (another run: 24 resets, 8 × 503). The drain now first waits, with the listener open,
until the requests in flight are answered and `LINGER_S` more, so each next request meets the
gate's 503 with `Connection: close` (32 of 32, three runs); only then does uvicorn get the signal,
with what is left of the timeout. Left as it was: `bentoml serve`'s parent process holds the
listening socket too, so a connection made after the worker stopped accepting waits in its
backlog and is reset when that process exits (each client's retry a second later, before and
after). Shutting the shared socket for reading at the hand-over turned those into refusals,
but `bentoml serve --reload` restarts the worker on the same socket, and a socket shut so
cannot listen again (checked: `listen()` after `SHUT_RD` still refuses): not done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from serving.http import (
    METRICS_PATH,
    PROBE_PATHS,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    reply_json,
)

logger = logging.getLogger(__name__)

# Probes and scrapes are never refused: an overloaded worker must still say it is alive.
OPEN_PATHS = PROBE_PATHS | {METRICS_PATH}
RETRY_STATUSES = frozenset({429, 503})


@dataclass
class AdmissionState:
    """What the gate knows: requests in progress, and whether the worker is draining."""

    in_flight: int = 0
    draining: bool = False
    refused: int = 0


def with_retry_after(send: Send, retry_after: bytes) -> Send:
    """`send`, adding `Retry-After` to a 429 or 503 response start that has none."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] in RETRY_STATUSES:
            headers = list(message.get("headers", ()))
            if not any(name.lower() == b"retry-after" for name, _ in headers):
                headers.append((b"retry-after", retry_after))
                message = {**message, "headers": headers}
        await send(message)

    return wrapped


class AdmissionGate:
    """ASGI middleware: at most `limit` requests in progress (probes and scrapes aside)."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        retry_after_s: int,
        state: AdmissionState,
        open_paths: Sequence[str] = tuple(OPEN_PATHS),
    ) -> None:
        self.app = app
        self.limit = limit
        self.state = state
        self.open_paths = frozenset(open_paths)
        self.retry_after = str(retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_retry_after(send, self.retry_after)
        if scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        state = self.state
        if state.draining:
            state.refused += 1
            await reply_json(
                send, 503, "server is shutting down; retry", [(b"connection", b"close")]
            )
            return
        if state.in_flight >= self.limit:
            state.refused += 1
            await reply_json(send, 429, f"server busy: {self.limit} requests in progress; retry")
            return
        state.in_flight += 1
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            # Past the drain timeout the server cancels what is left: say so with a 503 that
            # can be retried elsewhere, not the 500 the server would write for a cancelled task.
            if not started:
                with contextlib.suppress(Exception):
                    await reply_json(
                        send,
                        503,
                        "server shut down before answering; retry",
                        [(b"connection", b"close")],
                    )
            raise
        finally:
            state.in_flight -= 1


Handler = Callable[[int, FrameType | None], Any]


# After the last request in flight is answered, how long the listener stays open so that
# keep-alive clients' next requests get a 503 with `Connection: close`, not a reset connection.
# Clients on the same host sent their next request within milliseconds of an answer.
LINGER_S = 0.25
# How often the drain looks at the requests in flight.
DRAIN_POLL_S = 0.05
# The least time the server is given to cancel what still runs at the deadline (each such
# request is then answered 503 by the gate).
MIN_HANDOVER_S = 0.5


def install_drain(state: AdmissionState, drain_timeout_s: float) -> bool:
    """Chain onto the HTTP server's SIGTERM handler: mark the gate as draining, let the
    requests in flight finish with the listener still open, then hand the signal to the
    server, all within `drain_timeout_s`.

    Call it from the main thread once the server runs (the service's `__init__`). The server
    is found through its handler, a bound method whose owner has a uvicorn-style `config`
    with `timeout_graceful_shutdown`; an unknown handler is only chained. False when there is
    no handler to chain (no server, or not the main thread): nothing is changed then. A
    second SIGTERM hands over at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return False
    config = getattr(getattr(previous, "__self__", None), "config", None)
    if config is None or not hasattr(config, "timeout_graceful_shutdown"):
        config = None
    else:
        config.timeout_graceful_shutdown = drain_timeout_s
    chained: Handler = previous

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if state.draining:
            chained(signum, frame)
            return
        state.draining = True
        logger.info(
            "SIGTERM: draining %d request(s) in progress (at most %g s)",
            state.in_flight,
            drain_timeout_s,
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to wait in
            chained(signum, frame)
            return
        deadline = loop.time() + drain_timeout_s

        def hand_over() -> None:
            if config is not None:
                config.timeout_graceful_shutdown = max(deadline - loop.time(), MIN_HANDOVER_S)
            chained(signum, frame)

        if state.in_flight == 0:
            hand_over()
        else:
            when_drained(loop, state, deadline, hand_over)

    signal.signal(signal.SIGTERM, on_sigterm)
    return True


def when_drained(
    loop: asyncio.AbstractEventLoop,
    state: AdmissionState,
    deadline: float,
    then: Callable[[], None],
) -> None:
    """Call `then` in `loop` once no request is in flight and `LINGER_S` more has passed, or at
    `deadline` (loop time), whichever comes first. While draining the gate takes no new
    request, so the count only falls."""

    def check(idle_since: float | None) -> None:
        now = loop.time()
        if now >= deadline:
            then()
            return
        if state.in_flight > 0:
            loop.call_later(DRAIN_POLL_S, check, None)
            return
        idle_since = now if idle_since is None else idle_since
        if now - idle_since >= LINGER_S:
            then()
            return
        loop.call_later(DRAIN_POLL_S, check, idle_since)

    loop.call_later(DRAIN_POLL_S, check, None)
