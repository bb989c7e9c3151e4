"""The front service's side of the model call, and its GET routes (/health, /model/info)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from sentiment.api import now_iso
from sentiment.runtime import decode_embedding

logger = logging.getLogger("sentiment.front")

# BentoML's client to a dependency (aiohttp, _bentoml_impl/client/proxy2.py) replaces its session
# every `runner_connection.max_requests` requests (default 100) or `max_age` seconds and closes the
# old one at once, cutting off every request still in flight on it: the caller gets
# ServerDisconnectedError although the model service answered 200. service.py raises both limits
# far beyond any run; a retry still covers the rare replacement and an idle keep-alive connection
# closed by the server (uvicorn: 5 s) just as it is reused. Both failures happen before an answer
# is read, and classify has no side effects, so sending the texts again is safe.
RETRYABLE: tuple[type[BaseException], ...] = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientConnectionResetError,
    aiohttp.ClientOSError,
)
RETRIES = 2
# The model service's `runner_connection` setting: how long the front keeps one client session.
MODEL_CLIENT_SESSION = {"max_requests": 2**31 - 1, "max_age": 7 * 24 * 3600.0}


async def call_with_retry(
    call: Callable[[list[str]], Awaitable[list[dict[str, Any]]]], texts: list[str]
) -> list[dict[str, Any]]:
    for attempt in range(RETRIES + 1):
        try:
            return await call(texts)
        except RETRYABLE as exc:
            if attempt == RETRIES:
                raise
            logger.warning("model call cut off before an answer (%r); sending it again", exc)
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def decode_predictions(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Undo the model service's compact embedding encoding, in place."""
    for item in raw:
        if isinstance(item.get("embedding"), str):
            item["embedding"] = decode_embedding(item["embedding"])
    return raw


async def classify_remote(
    call: Callable[[list[str]], Awaitable[list[dict[str, Any]]]], texts: list[str]
) -> list[dict[str, Any]]:
    """The model service's classify with retries, embeddings decoded."""
    return decode_predictions(await call_with_retry(call, texts))


def health_payload(model_loaded: bool) -> dict[str, Any]:
    return {
        "status": "healthy" if model_loaded else "unhealthy",
        "model_loaded": model_loaded,
        "timestamp": now_iso(),
    }
