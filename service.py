"""BentoML services: the HTTP contract and the wiring, nothing else.

SentimentModel owns the model and one batchable method, so requests from many clients share
forward passes. SentimentAPI is the public front: `/predict`'s JSON contract, the GET routes,
monitoring and the UI, calling the model service through `bentoml.depends`.
"""

from __future__ import annotations

import time
from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitoring.hook import (
    SERVICE_MONITORING,
    log_predictions,
    mark_model_loaded,
    monitoring_endpoint,
)
from sentiment.api import Limits, PredictGuard, predict_response
from sentiment.config import load_serving_config
from sentiment.engine import ModelEngine, require_model
from sentiment.front import MODEL_CLIENT_SESSION, classify_remote, health_payload
from ui.app import mount_ui

CONFIG = load_serving_config()
LIMITS = Limits(
    max_texts=CONFIG.api.max_texts_per_request,
    max_text_chars=CONFIG.api.max_text_chars,
    max_request_bytes=CONFIG.api.max_request_bytes,
)


@bentoml.service(
    name="sentiment_model",
    workers=1,
    traffic={"timeout": CONFIG.api.timeout_s},
    runner_connection=MODEL_CLIENT_SESSION,
    logging={"access": {"enabled": CONFIG.model.access_log}},
)
class SentimentModel:
    @bentoml.on_deployment
    def check_model() -> None:  # a deployment hook: called on the class, without self
        require_model(load_serving_config().model.tag)

    def __init__(self) -> None:
        self.engine = ModelEngine.load(load_serving_config())

    @bentoml.api(
        batchable=True,
        max_batch_size=CONFIG.batching.max_batch_size,
        max_latency_ms=CONFIG.batching.max_latency_ms,
    )
    def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.engine.classify(texts)

    @bentoml.api
    def info(self) -> dict[str, Any]:
        return self.engine.info()


async def health(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    loaded = await service.model_loaded()
    return JSONResponse(health_payload(loaded), status_code=200 if loaded else 503)


async def model_info(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    return JSONResponse(await service.model_info())


routes = Starlette(
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/model/info", model_info, methods=["GET"]),
        Route("/monitoring", monitoring_endpoint, methods=["GET"]),
    ]
)


@mount_ui(CONFIG.batching.max_batch_size)
@bentoml.asgi_app(routes, path="/")
@bentoml.service(
    name="sentiment_api",
    workers=1,
    traffic={"timeout": CONFIG.api.timeout_s, "max_concurrency": CONFIG.api.max_concurrency},
    monitoring=SERVICE_MONITORING,
)
class SentimentAPI:
    model = bentoml.depends(SentimentModel)

    def __init__(self) -> None:
        self._info: dict[str, Any] | None = None

    async def model_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = await self.model.to_async.info()
            mark_model_loaded(self._info["tag"])
        return self._info

    @bentoml.on_startup
    async def reach_model(self) -> None:
        # Best effort: /health retries until the model service answers.
        await self.model_loaded()

    async def model_loaded(self) -> bool:
        try:
            await self.model_info()
        except Exception:
            return False
        return True

    async def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        return await classify_remote(self.model.to_async.classify, texts)

    @bentoml.api(route="/predict")
    async def predict(self, texts: list[str], return_probabilities: bool = False) -> dict[str, Any]:
        started = time.perf_counter()
        raw = await self.classify(texts)
        info = await self.model_info()
        log_predictions(texts, raw, time.perf_counter() - started, info["tag"])
        return predict_response(raw, return_probabilities, info["version"])


# bentoml.service returns a Service object; its stubs still type the decorated name as the class.
SentimentAPI.add_asgi_middleware(PredictGuard, limits=LIMITS)  # type: ignore[attr-defined]
