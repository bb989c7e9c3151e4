"""What the service and the UI call: log predictions, read the summary, serve GET /monitoring.

Everything here is safe on the request path: logging only hands the columns to the monitor
(which buffers them), and a failure in monitoring is logged, never raised to the caller.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

logger = logging.getLogger("monitoring.hook")

MONITOR_TYPE = "monitoring.monitor.SentimentMonitor"
# For the service's decorator: @bentoml.service(..., monitoring=SERVICE_MONITORING).
SERVICE_MONITORING: dict[str, Any] = {"enabled": True, "type": MONITOR_TYPE}

# (column, role, data type) of each per-text field logged with log_batch.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("label", "prediction", "categorical"),
    ("confidence", "prediction", "numerical"),
    ("n_tokens", "feature", "numerical"),
    ("n_chars", "feature", "numerical"),
    ("subword_ratio", "feature", "numerical"),
    ("unk_ratio", "feature", "numerical"),
)


@functools.cache
def monitor_name() -> str:
    from monitoring.config import load_monitoring_config

    return load_monitoring_config().monitor.name


def _monitor_kwargs() -> dict[str, Any]:
    """Which monitor class bentoml.monitor should use.

    Inside the service the decorator's config names SentimentMonitor. Elsewhere (tests,
    a stand-alone UI) BentoML's default monitor would be used, which writes log files under
    ./monitoring; our class is asked for explicitly instead.
    """
    from bentoml._internal.configuration.containers import BentoMLContainer

    configured = BentoMLContainer.config.monitoring.type.get()
    if configured in (None, "default"):
        from monitoring.monitor import SentimentMonitor

        return {"monitor_class": SentimentMonitor, "monitor_options": {}}
    return {}


def columns_of(raw_predictions: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The per-text fields as columns; embeddings only when every prediction has one."""
    columns = {name: [p[name] for p in raw_predictions] for name, _, _ in COLUMNS}
    embeddings = [p.get("embedding") for p in raw_predictions]
    if all(e is not None for e in embeddings):
        columns["embedding"] = embeddings
    return columns


def log_predictions(
    texts: Sequence[str],
    raw_predictions: Sequence[Mapping[str, Any]],
    latency_s: float | None,
    model_tag: str | None = None,
) -> None:
    """Log one request's predictions (Replica.classify's dicts) to the monitor.

    The texts themselves are not kept (privacy, memory); their lengths are in the raw dicts.
    """
    if not raw_predictions:
        return
    if len(texts) != len(raw_predictions):
        logger.warning(
            "monitoring skipped: %d texts but %d predictions", len(texts), len(raw_predictions)
        )
        return
    try:
        _log(raw_predictions, latency_s, model_tag)
    except Exception as exc:
        logger.warning("monitoring failed for one request: %s", exc)


def _log(
    raw_predictions: Sequence[Mapping[str, Any]], latency_s: float | None, model_tag: str | None
) -> None:
    from monitoring.monitor import ACTIVE

    columns = columns_of(raw_predictions)
    monitor = ACTIVE.get(monitor_name())
    if monitor is None:
        # A fresh context: BentoML keeps a record's state in context variables and leaves
        # them set if a record fails half-way, which would break the next record on this
        # thread or task. Only a record through bentoml.monitor sets them.
        contextvars.copy_context().run(_first_record, columns, latency_s, model_tag)
        return
    if model_tag:
        monitor.set_model_tag(model_tag)
    monitor.log_columns(columns, latency_s)


def _first_record(
    columns: dict[str, list[Any]], latency_s: float | None, model_tag: str | None
) -> None:
    """A record through `bentoml.monitor`, which creates this process's monitor (the class the
    service's `monitoring` setting names) and gives it the columns' schema; later records go
    to that monitor directly (SentimentMonitor.log_columns)."""
    import bentoml

    from monitoring.monitor import REQUEST_LATENCY, SentimentMonitor

    REQUEST_LATENCY.set(latency_s)
    with bentoml.monitor(monitor_name(), **_monitor_kwargs()) as mon:
        if model_tag and isinstance(mon, SentimentMonitor):
            mon.set_model_tag(model_tag)
        for name, role, data_type in COLUMNS:
            mon.log_batch(columns[name], name, role, data_type)
        if "embedding" in columns:
            mon.log_batch(columns["embedding"], "embedding", "feature", "numerical_sequence")


def mark_model_loaded(
    model_tag: str,
    labelled: Callable[[int], list[tuple[str, str]]] | None = None,
    shadow: Callable[[], dict[str, Any] | None] | None = None,
) -> None:
    """Set active_models as soon as the worker has loaded its model, before any prediction,
    so that the "model not loaded" alert does not fire on a new service without traffic.

    `labelled(window)` gives the served version's latest labelled predictions as (predicted,
    true) pairs: the realized accuracy of GET /monitoring and the gauges. `shadow()` gives the
    `shadow` block (a challenger against the served model), when one runs."""
    import bentoml

    from monitoring.monitor import SentimentMonitor

    try:
        with bentoml.monitor(monitor_name(), **_monitor_kwargs()) as mon:
            if isinstance(mon, SentimentMonitor):
                mon.set_model_tag(model_tag)
                mon.labelled_source = labelled
                mon.shadow_source = shadow
                mon.metrics.active_models.set(1)
    except Exception:
        logger.exception("could not mark the model as loaded in monitoring")


def empty_summary() -> dict[str, Any]:
    """The summary before this worker has logged any prediction."""
    return {
        "total_predictions": 0,
        "average_confidence": None,
        "positive_ratio": None,
        "latency_p50": None,
        "latency_p95": None,
        "latency_p99": None,
        "latency_requests": 0,
        "dropped_predictions": 0,
        "drift_status": {
            "status": "insufficient data",
            "drift_detected": False,
            "drift_score": 0.0,
            "window_size": 0,
            "tests": {},
        },
        "performance": None,
        "shadow": None,
        "reference": None,
        "model_tag": None,
    }


def summary() -> dict[str, Any]:
    """The same dict as GET /monitoring: totals, latency percentiles, drift_status."""
    from monitoring.monitor import ACTIVE

    monitor = ACTIVE.get(monitor_name())
    return empty_summary() if monitor is None else monitor.summary()


def monitoring_endpoint(request: Any) -> Any:
    """Starlette handler for GET /monitoring.

    A plain function, so Starlette runs it in its thread pool: the drift tests it may trigger
    never block the event loop.
    """
    from starlette.responses import JSONResponse

    try:
        return JSONResponse(summary())
    except Exception as exc:
        logger.exception("monitoring summary failed")
        return JSONResponse({"error": f"monitoring summary unavailable: {exc}"}, status_code=503)
