"""The front service's side of the model call, and its GET routes (/health, /model/info)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from sentiment.api import now_iso

logger = logging.getLogger("sentiment.front")

# The dependency's uvicorn closes idle keep-alive connections after 5 s, and httpx keeps idle
# connections for 5 s as well: a request sent on a connection at the moment the server drops it
# fails with "Server disconnected without sending a response" although the server never saw it.
# Such a failure, and only such a one, is safe to send again.
RETRYABLE = (httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError)
RETRIES = 2


async def call_with_retry(
    call: Callable[[list[str]], Awaitable[list[dict[str, Any]]]], texts: list[str]
) -> list[dict[str, Any]]:
    for attempt in range(RETRIES + 1):
        try:
            return await call(texts)
        except RETRYABLE as exc:
            if attempt == RETRIES:
                raise
            logger.warning("model call failed before an answer (%s); retrying", exc)
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def shorten_keepalive(proxy: Any, seconds: float = 2.0) -> None:
    """Let the front drop idle connections well before the model service does.

    BentoML starts dependency workers without --timeout-keep-alive (uvicorn's 5 s) while
    its httpx client pool keeps idle connections for the same 5 s.
    """
    try:
        pool = proxy.to_async.client._transport._pool
        pool._keepalive_expiry = seconds
    except AttributeError:
        logger.warning("could not shorten the model client's keep-alive; relying on retries")


def health_payload(model_loaded: bool) -> dict[str, Any]:
    return {
        "status": "healthy" if model_loaded else "unhealthy",
        "model_loaded": model_loaded,
        "timestamp": now_iso(),
    }
