"""The BentoML service: the HTTP contract and the wiring, nothing else.

One service: `/predict`'s JSON contract, the GET routes, monitoring and the UI at `/ui`, in
front of an adaptive batcher (serving/batching.py) that feeds the model, which runs in model
processes beside the worker on CPU (serving/replicas.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitoring.hook import SERVICE_MONITORING, log_predictions, mark_model_loaded, summary
from monitoring.hook import monitoring_endpoint as monitoring_route
from monitoring.metrics import observe_batch, observe_replicas
from monitoring.performance import shadow_report
from monitoring.prediction_store import (
    FeedbackItem,
    PredictionRecord,
    PredictionStore,
    ShadowRecord,
    database_url,
)
from monitoring.system import start_system_metrics
from sentiment.config import FeedbackSection, load_access_keys, load_serving_config
from serving.admission import AdmissionGate, AdmissionState, install_drain
from serving.auth import ApiKeyGuard
from serving.batching import AdaptiveBatcher, Overloaded
from serving.files import FileJobs, read_rows, score_rows
from serving.http import (
    ExplainResponse,
    FeedbackIn,
    FeedbackResponse,
    JsonMetrics,
    Limits,
    PredictGuard,
    PredictResponse,
    RequestError,
    TaskControl,
    UploadLimit,
    explain_response,
    health_payload,
    model_info_payload,
    now_iso,
    predict_response,
    prediction_ids,
    service_options,
    validate_feedback_payload,
)
from serving.replicas import ReplicaProcess, start_replicas, start_side_process, watch_replicas
from serving.shadow import ShadowScorer, resolve_shadow_model
from serving.store import bentoml_store_path, require_model
from ui.app import mount_ui
from ui.config import load_ui_config

logger = logging.getLogger("service")

CONFIG = load_serving_config()
KEYS = load_access_keys()
ADMISSION = AdmissionState()
LIMITS = Limits(
    max_texts=CONFIG.api.max_texts_per_request,
    max_text_chars=CONFIG.api.max_text_chars,
    max_request_bytes=CONFIG.api.max_request_bytes,
    read_timeout_s=CONFIG.api.read_timeout_s,
    max_feedback_items=CONFIG.feedback.max_items_per_request,
    max_explain_texts=CONFIG.explain.max_texts,
)


async def health(request: Request) -> JSONResponse:
    payload, status = health_payload(*bentoml.get_current_service().replicas_alive())
    return JSONResponse(payload, status_code=status)


async def model_info(request: Request) -> JSONResponse:
    return JSONResponse(await bentoml.get_current_service().model_info())


async def file_progress(request: Request) -> JSONResponse:
    progress = bentoml.get_current_service().files.progress(request.query_params.get("task_id", ""))
    if progress is None:
        return JSONResponse({"error": "no file task with that task_id"}, status_code=404)
    return JSONResponse(progress)


routes = Starlette(
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/model/info", model_info, methods=["GET"]),
        Route("/monitoring", monitoring_route, methods=["GET"]),
        Route("/predict_file/progress", file_progress, methods=["GET"]),
    ]
)


def open_prediction_store(cfg: FeedbackSection) -> PredictionStore | None:
    """The store of predictions and feedback labels, started; None when feedback is off."""
    if not cfg.enabled:
        return None
    store = PredictionStore(
        database_url(cfg.database, Path(bentoml_store_path()) / "feedback"),
        store_texts=cfg.store_texts,
        flush_interval_s=cfg.flush_interval_s,
        max_pending=cfg.max_pending,
        max_age_days=cfg.max_age_days,
        max_rows=cfg.max_rows,
    )
    store.start()
    return store


def task_error(exc: RequestError) -> BentoMLException:
    """A RequestError as the exception BentoML turns into that status for a task."""
    error = BentoMLException(str(exc))
    error.error_code = HTTPStatus(exc.status)
    return error


@mount_ui(CONFIG.batching.max_batch_size, CONFIG.api)
@bentoml.asgi_app(routes, path="/")
@bentoml.service(
    name="sentiment_api",
    monitoring=SERVICE_MONITORING if CONFIG.api.metrics_enabled else {"enabled": False},
    **service_options(CONFIG),
)
class SentimentAPI:
    @bentoml.on_deployment
    def check_model() -> None:  # a deployment hook: called on the class, without self
        require_model(load_serving_config().model.tag)

    def __init__(self) -> None:
        self.model = start_replicas(CONFIG)
        self.info = model_info_payload(self.model.info())
        self.batcher = AdaptiveBatcher(
            self.model.aclassify,
            max_batch_size=CONFIG.batching.max_batch_size,
            max_latency_ms=CONFIG.batching.max_latency_ms,
            on_batch=observe_batch if CONFIG.api.metrics_enabled else None,
            concurrency=self.model.concurrency,
        )
        self.files = FileJobs(CONFIG.api.max_file_tasks)
        self.store = open_prediction_store(CONFIG.feedback)
        self.feedback_enabled = self.store is not None
        self.explain_enabled = CONFIG.explain.enabled
        # Requests explaining or waiting to: bounded, the rest are refused with 429.
        self.explaining = 0
        self.shadow: ShadowScorer | None = None
        self.shadow_process: ReplicaProcess | None = None
        # What the challenger's replica says about itself (Replica.info: tag, version, ...).
        self.shadow_info: dict[str, Any] | None = None
        self.start_shadow()
        self.stopping = threading.Event()
        if CONFIG.api.metrics_enabled:
            watch_replicas(self.model, observe_replicas, self.stopping)
            start_system_metrics(self.process_ids, self.stopping)
        install_drain(ADMISSION, CONFIG.api.drain_timeout_s)

    @bentoml.on_startup
    def announce_model(self) -> None:
        if CONFIG.api.metrics_enabled:
            mark_model_loaded(
                self.info["tag"],
                self.labelled if self.store else None,
                self.shadow_summary if self.shadow else None,
            )

    @bentoml.on_shutdown
    async def stop_model(self) -> None:
        self.stopping.set()
        await self.batcher.aclose()
        self.model.close()
        if self.shadow is not None and self.shadow_process is not None:
            self.shadow.close()
            self.shadow_process.stop()
        if self.store is not None:
            self.store.close()  # writes what is pending

    def process_ids(self) -> dict[str, int]:
        """Role -> pid of the processes whose CPU and memory /metrics shows."""
        pids = {"worker": os.getpid()}
        for index, pid in enumerate(self.model.pids()):
            pids[f"model-{index}"] = pid
        explainer = self.model.explainer_pid()
        if explainer is not None:
            pids["explainer"] = explainer
        return pids

    def replicas_alive(self) -> tuple[int, int]:
        """(running, configured) model replicas."""
        return self.model.replicas_alive(), self.model.concurrency

    async def model_info(self) -> dict[str, Any]:
        return self.info

    async def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per-text predictions through the shared batcher (also the UI's backend). A request
        above one batch goes in batch-sized parts, one after another: the requests of other
        clients queue between them instead of behind all of it."""
        size = CONFIG.batching.max_batch_size
        try:
            if len(texts) <= size:
                return await self.batcher.submit(texts)
            # At most one part per model process at a time: a part joins the queue only when
            # one of this request's parts has finished, behind what other clients sent meanwhile.
            window = asyncio.Semaphore(self.model.concurrency)

            async def part(chunk: list[str]) -> list[dict[str, Any]]:
                async with window:
                    return await self.batcher.submit(chunk)

            parts = [texts[i : i + size] for i in range(0, len(texts), size)]
            return [item for done in await asyncio.gather(*map(part, parts)) for item in done]
        except Overloaded as exc:
            raise ServiceUnavailable(str(exc)) from None

    def remember(self, texts: list[str], raw: list[dict[str, Any]]) -> list[str]:
        """One new id per prediction; each is queued for the prediction store (when feedback
        is on), which writes it off the request path."""
        ids = prediction_ids(len(raw))
        if self.store is not None:
            now, version = time.time(), self.info["version"]
            self.store.record(
                [
                    PredictionRecord(i, now, version, r["label"], r["confidence"], len(t), t)
                    for i, r, t in zip(ids, raw, texts, strict=True)
                ]
            )
        return ids

    def start_shadow(self) -> None:
        """The challenger of `shadow.model` in a model process of its own, fed a sample of the
        answered predictions by a thread; off (with a warning) when it cannot run."""
        spec = CONFIG.shadow.model
        if not spec:
            return
        if self.store is None:
            logger.warning("shadow scoring needs the feedback store (feedback.enabled): no shadow")
            return
        tag = resolve_shadow_model(spec, bentoml.models.list())
        if tag is None:
            logger.warning("no model in the store for shadow.model %r: no shadow", spec)
            return
        self.shadow_process, self.shadow_info = start_side_process(
            CONFIG, tag, "shadow", CONFIG.shadow.niceness
        )
        version = str(self.shadow_info["version"])
        store = self.store

        def on_scored(ids: list[str], raw: list[dict[str, Any]]) -> None:
            now = time.time()
            store.add_shadow(
                [
                    ShadowRecord(i, version, r["label"], r["confidence"], now)
                    for i, r in zip(ids, raw, strict=True)
                ]
            )

        self.shadow = ShadowScorer(
            self.shadow_process.call,
            on_scored,
            CONFIG.shadow.sample_rate,
            max_pending=CONFIG.shadow.max_pending,
            batch_size=CONFIG.batching.max_batch_size,
        )
        self.shadow.start()
        logger.info(
            "shadow: %s scores %.0f%% of predictions",
            self.shadow_info["tag"],
            100 * CONFIG.shadow.sample_rate,
        )

    def shadow_summary(self) -> dict[str, Any] | None:
        """GET /monitoring's `shadow` block: the challenger against the served model over the
        last `shadow.window` shadowed predictions."""
        if self.store is None or self.shadow_info is None:
            return None
        pairs = self.store.shadow_pairs(str(self.shadow_info["version"]), CONFIG.shadow.window)
        tag = str(self.shadow_info["tag"])
        return shadow_report(tag, [(p.champion, p.challenger, p.true) for p in pairs])

    def labelled(self, window: int) -> list[tuple[str, str]]:
        """(predicted, true) labels of the served version's latest `window` labelled predictions."""
        return [] if self.store is None else self.store.labelled(self.info["version"], window)

    async def accept_feedback(self, items: list[dict[str, Any]]) -> dict[str, int]:
        """Labels for earlier predictions, committed before this returns (also the UI's).
        RequestError (one line) for a bad item, or when feedback is off."""
        if self.store is None:
            raise RequestError("feedback is off on this server (feedback.enabled: false)", 404)
        labels = validate_feedback_payload({"feedback": items}, LIMITS)
        store_items = [FeedbackItem(f.label, f.prediction_id, f.text) for f in labels]
        try:
            result = await asyncio.to_thread(self.store.add_feedback, store_items)
        except Exception as exc:  # the database is away: nothing was committed
            logger.warning("feedback not stored: %s", exc)
            raise RequestError(
                "the feedback store is unavailable; nothing was stored", 503
            ) from None
        return {"accepted": result.accepted, "unknown": result.unknown}

    async def explanations(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per text the prediction and its words' attributions, from the explaining model
        process (also the UI's). RequestError when explanations are off or too many wait."""
        if not self.explain_enabled:
            raise RequestError("explanations are off on this server (explain.enabled: false)", 404)
        if len(texts) > CONFIG.explain.max_texts:
            raise RequestError(
                f"{len(texts)} texts is more than the limit of {CONFIG.explain.max_texts}", 413
            )
        if self.explaining >= CONFIG.explain.max_queued:
            raise RequestError("too many explanations in progress; try again shortly", 429)
        self.explaining += 1
        try:
            return await asyncio.to_thread(self.model.explain, texts)
        finally:
            self.explaining -= 1

    @bentoml.api(route="/explain", output_spec=ExplainResponse)
    async def explain(self, texts: list[str]) -> JSONResponse:
        """Which words made the model say what it said: per text the prediction as /predict
        gives it and every word with its attribution towards the predicted label (at most
        `explain.max_texts` texts; slower than /predict, and never in its way)."""
        try:
            raw = await self.explanations(texts)
        except RequestError as exc:
            headers = {"Retry-After": str(CONFIG.api.retry_after_s)} if exc.status == 429 else None
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)
        except Exception as exc:  # the explaining process failed: not the client's fault
            logger.warning("explanation failed: %s", exc)
            return JSONResponse(
                {"error": "the explanation failed; try again shortly"},
                status_code=503,
                headers={"Retry-After": str(CONFIG.api.retry_after_s)},
            )
        return JSONResponse(explain_response(raw, self.info["version"]))

    @bentoml.api(route="/predict", output_spec=PredictResponse)
    async def predict(self, texts: list[str], return_probabilities: bool = False) -> JSONResponse:
        started = time.perf_counter()
        raw = await self.classify(texts)
        if CONFIG.api.metrics_enabled:
            log_predictions(texts, raw, time.perf_counter() - started, self.info["tag"])
        ids = self.remember(texts, raw)
        if self.shadow is not None:
            self.shadow.offer(ids, texts)
        # A ready response: BentoML's own output path derives a JSON schema per response.
        return JSONResponse(predict_response(raw, return_probabilities, self.info["version"], ids))

    @bentoml.api(route="/feedback", output_spec=FeedbackResponse)
    async def feedback(self, feedback: list[FeedbackIn]) -> JSONResponse:
        """Labels for predictions made earlier: each item `{"id", "label"}` with an id from
        /predict, or `{"text", "label"}` for the latest prediction of that text. Answers
        `{"accepted", "unknown"}` once the labels are committed."""
        try:
            result = await self.accept_feedback(
                [item.model_dump(exclude_none=True) for item in feedback]
            )
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)

    @bentoml.task(route="/predict_file")
    async def predict_file(
        self, ctx: bentoml.Context, file: Path, text_column: str = ""
    ) -> dict[str, Any]:
        """Score a CSV (a text column: `text`, `review`, … or text_column) or JSON-lines file
        (`{"text": ...}` per line): submit, poll `/predict_file/status` and
        `/predict_file/progress`, fetch with `/predict_file/get`. Bad rows are listed with
        their reason beside the predictions of the others."""
        # Set by BentoML for a submitted task; a direct POST /predict_file has none.
        task_id = str(getattr(ctx.request.state, "task_id", "") or f"direct-{id(file)}")
        try:
            data = file.read_bytes()
        finally:
            file.unlink(missing_ok=True)
        try:
            return await self.score_file(task_id, data, file.suffix, text_column or None)
        except RequestError as exc:
            raise task_error(exc) from None

    async def score_file(
        self,
        job_id: str,
        data: bytes,
        suffix: str,
        text_column: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """The file task's work, also the UI's for large files: rows checked, scored a batch
        at a time with progress (`/predict_file/progress`, and `on_progress(done, rows)`).
        RequestError for a file that cannot be used as a whole."""
        # Parsing 100,000 rows takes about 0.4 s: off the event loop.
        rows = await asyncio.to_thread(
            read_rows,
            data,
            suffix,
            text_column,
            CONFIG.api.max_file_rows,
            CONFIG.api.max_text_chars,
        )
        self.files.start(job_id, rows.rows)

        def advance(done: int) -> None:
            self.files.advance(job_id, done)
            if on_progress is not None:
                on_progress(done, rows.rows)

        try:
            result = await score_rows(rows, self.classify, CONFIG.batching.max_batch_size, advance)
        finally:
            self.files.finish(job_id)
        return {**result, "model_version": self.info["version"], "timestamp": now_iso()}


# The first middleware added sees a request first: keys (when configured), then admission
# (before any body is read), then the /predict body check.
# bentoml.service returns a Service object; its stubs still type the decorated name as the class.
if KEYS.enabled:
    SentimentAPI.add_asgi_middleware(  # type: ignore[attr-defined]
        ApiKeyGuard, keys=KEYS, ui_path=load_ui_config().path
    )
SentimentAPI.add_asgi_middleware(  # type: ignore[attr-defined]
    AdmissionGate,
    limit=CONFIG.api.max_concurrency,
    retry_after_s=CONFIG.api.retry_after_s,
    state=ADMISSION,
)
SentimentAPI.add_asgi_middleware(PredictGuard, limits=LIMITS)  # type: ignore[attr-defined]
SentimentAPI.add_asgi_middleware(  # type: ignore[attr-defined]
    UploadLimit,
    max_bytes=CONFIG.api.max_file_bytes,
    paths=("/predict_file", "/predict_file/submit"),
)
SentimentAPI.add_asgi_middleware(TaskControl, task_routes=("/predict_file",))  # type: ignore[attr-defined]
SentimentAPI.add_asgi_middleware(JsonMetrics, summary=summary)  # type: ignore[attr-defined]
