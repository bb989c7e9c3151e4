"""SentimentMonitor: the project's `bentoml.monitoring.MonitorBase`, where metrics and drift run.

Named by the front service's `monitoring={"type": "monitoring.monitor.SentimentMonitor"}`,
so `bentoml.monitor(name)` in that process returns one instance of it (one per worker).

`export_data` runs on the request path and only appends the record to a bounded buffer. A
daemon thread drains the buffer every `refresh_interval_s`: it updates the Prometheus
metrics, the running summary and the drift window, and re-runs the drift tests when new
predictions arrived. `summary()` does the same on demand, so `GET /monitoring` is current.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bentoml.monitoring import MonitorBase
from threadpoolctl import threadpool_limits

from monitoring.config import MonitoringConfig, load_monitoring_config
from monitoring.drift import STATUS_NO_REFERENCE, DriftDetector
from monitoring.metrics import MonitorMetrics, default_metrics
from monitoring.performance import (
    ESTIMATOR_OBJECT_KEY,
    PerformanceEstimator,
    estimator_from_dict,
    performance_report,
)
from monitoring.reference import DriftReference, label_index, load_reference
from monitoring.stats import percentile_summary
from monitoring.window import PendingBuffer, RunningSummary
from sentiment.config import ConfigError, load_serving_config
from sentiment.labels import LABEL_NAMES

logger = logging.getLogger("monitoring.monitor")

# The latency of the request being logged: set by the hook around one monitor record and read
# by export_data in the same context (BentoML's own record state lives in context variables
# the same way).
REQUEST_LATENCY: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "REQUEST_LATENCY", default=None
)

# name -> instance, so the hook can read the summary without starting a monitor record.
ACTIVE: dict[str, SentimentMonitor] = {}

# window -> (predicted, true) label names of the served version's last labelled predictions.
LabelledSource = Callable[[int], list[tuple[str, str]]]


@dataclass
class RecordBatch:
    """Monitor records (one per request) merged column by column, so that a refresh converts
    and observes them once: record by record, the statistics thread spent about 55 us on each
    single-text request, most of it in numpy conversions of one-element lists."""

    labels: list[str] = field(default_factory=list)
    # Each label's index among the model's labels (the drift reference's order).
    label_ids: list[int] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    n_chars: list[int] = field(default_factory=list)
    n_tokens: list[int] = field(default_factory=list)
    # The rows of the records that carry one embedding per prediction (a separate ring of the
    # drift window, so they need not line up with the other columns).
    embeddings: list[Any] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def merge_records(
    records: Iterable[dict[str, Any]], known_labels: Sequence[str] = LABEL_NAMES
) -> tuple[RecordBatch, list[str]]:
    """The usable records as one batch, and why each of the others was skipped (a column
    missing, of another length, not a number, or a label the model does not have)."""
    batch = RecordBatch()
    problems: list[str] = []
    for record in records:
        try:
            labels = [str(v) for v in record["label"]]
            label_ids = [label_index(v, known_labels) for v in labels]
            confidences = [float(v) for v in record["confidence"]]
            n = len(labels)
            n_chars = [int(v) for v in record.get("n_chars", [0] * n)]
            n_tokens = [int(v) for v in record.get("n_tokens", [0] * n)]
            if not len(confidences) == len(n_chars) == len(n_tokens) == n:
                raise ValueError("columns of different lengths")
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
            continue
        batch.labels += labels
        batch.label_ids += label_ids
        batch.confidences += confidences
        batch.n_chars += n_chars
        batch.n_tokens += n_tokens
        embeddings = record.get("embedding")
        if embeddings and len(embeddings) == n and all(e is not None for e in embeddings):
            batch.embeddings += embeddings
        latency = record.get("_latency_s")
        if latency is not None:
            batch.latencies.append(float(latency))
    return batch, problems


class SentimentMonitor(MonitorBase[Any]):
    PRESERVED_COLUMNS = ()

    def __init__(
        self,
        name: str,
        config: str | None = None,
        *,
        settings: MonitoringConfig | None = None,
        metrics: MonitorMetrics | None = None,
        reference: DriftReference | None = None,
        estimator: PerformanceEstimator | None = None,
        background: bool = True,
        **_bentoml_defaults: Any,  # BentoML merges its default monitor's options in
    ) -> None:
        super().__init__(name)
        self.cfg = settings or load_monitoring_config(config)
        drift = self.cfg.drift
        self.detector = DriftDetector(
            drift.window_size,
            drift.threshold,
            reference,
            min_window=drift.min_window,
            length_feature=drift.length_feature,
            mmd_permutations=drift.mmd_permutations,
            mmd_max_samples=drift.mmd_max_samples,
            seed=drift.seed,
        )
        self.buffer = PendingBuffer(self.cfg.monitor.max_pending)
        self.totals = RunningSummary(self.cfg.monitor.latency_window)
        self.dropped = 0
        self._metrics = metrics
        self._lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._background = background
        # The tag the front reports for its model; the reference is (re)loaded when it changes.
        self._wanted_tag: str | None = None
        self._reference_tag: str | None = None if reference is None else "<given>"
        self._reference_error: str | None = None
        self._stale = True
        self._drift_at = float("-inf")
        self._report = self.detector.detect_drift()
        perf = self.cfg.performance
        # The estimate's window: (confidence, predicted label index) of the latest predictions.
        self.recent: collections.deque[tuple[float, int]] = collections.deque(
            maxlen=perf.window_size
        )
        self.estimator = estimator
        self.labelled_source: LabelledSource | None = None
        self.shadow_source: Callable[[], dict[str, Any] | None] | None = None
        self._shadow: dict[str, Any] | None = None
        self._performance = self._measure_performance()
        self.schema: dict[str, dict[str, str]] = {}
        ACTIVE[name] = self

    # --- request path -------------------------------------------------------------------------

    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        self.schema = dict(columns_schema)

    def export_data(self, datas: dict[str, collections.deque[Any]]) -> None:
        record: dict[str, Any] = {name: list(values) for name, values in datas.items()}
        self._buffer(record, REQUEST_LATENCY.get())

    def log_columns(self, columns: dict[str, list[Any]], latency_s: float | None) -> None:
        """One request's columns into the buffer: where a `bentoml.monitor` record ends
        (export_data), without the record's context manager and argument binding around it,
        which cost about 50 us a request in the server worker. The caller hands the lists
        over: the buffer keeps them as they are."""
        self._buffer(dict(columns), latency_s)

    def _buffer(self, record: dict[str, Any], latency_s: float | None) -> None:
        n = len(record.get("confidence", ()))
        if n == 0:
            return
        record["_latency_s"] = latency_s
        self.buffer.put(record, n)
        if self._background and self._thread is None:
            self._start_thread()

    def log_batch(self, data_batch: Iterable[Any], name: str, role: str, data_type: str) -> None:
        """One column at once.

        MonitorBase.log_batch calls log() per value, and on a monitor's first record log()
        warns "Column name ... is duplicated" for every value after the first.
        """
        from bentoml._internal.monitoring.base import MON_DATAS_VAR

        values = list(data_batch)
        if not values:
            return
        self.log(values[0], name, role, data_type)
        datas = MON_DATAS_VAR.get()
        if datas is not None:
            datas[name if name not in self.PRESERVED_COLUMNS else name + "_"].extend(values[1:])

    def set_model_tag(self, tag: str) -> None:
        if tag != self._wanted_tag:
            self._wanted_tag = tag

    # --- off the request path -----------------------------------------------------------------

    @property
    def metrics(self) -> MonitorMetrics:
        if self._metrics is None:
            self._metrics = default_metrics()
        return self._metrics

    def _start_thread(self) -> None:
        # Not self._lock: a request must never wait behind a drift computation.
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"monitor-{self.name}", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.monitor.refresh_interval_s):
            try:
                self.refresh(force_drift=False)
            except Exception:
                logger.exception("monitor refresh failed; will retry")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        ACTIVE.pop(self.name, None)

    def refresh(self, force_drift: bool = True) -> dict[str, Any]:
        """Take in waiting records; re-run the drift tests if anything changed.

        The background thread passes force_drift=False: it then re-runs them at most every
        `drift_interval_s`, because the embedding test costs a noticeable share of a core
        that the model needs under load. A summary (GET /monitoring) is always current.
        """
        # The drift tests' matrix products would otherwise run on every core through numpy's
        # BLAS, whose threads spin after each call: on 2 cores that halved the model's
        # multi-text throughput (README, Performance). One BLAS thread leaves cores to the model.
        with self._lock, threadpool_limits(limits=1, user_api="blas"):
            self._ensure_reference()
            records, dropped = self.buffer.drain()
            if dropped:
                self.dropped += dropped
                self.metrics.dropped.inc(dropped)
            known = self.detector.reference.labels if self.detector.reference else LABEL_NAMES
            batch, problems = merge_records(records, known)
            for problem in problems:
                logger.warning("skipped a monitoring record: %s", problem)
            if batch.labels:
                self._ingest(batch)
            self._stale = self._stale or bool(records)
            due = time.monotonic() - self._drift_at >= self.cfg.monitor.drift_interval_s
            if self._stale and (force_drift or due):
                self._report = self.detector.detect_drift()
                self.metrics.set_drift(self._report)
                self._stale = False
                self._drift_at = time.monotonic()
            self._performance = self._measure_performance()
            self.metrics.set_performance(self._performance)
            self._shadow = self._measure_shadow()
            if self._shadow is not None:
                self.metrics.set_shadow(self._shadow)
            return self._report

    def _measure_shadow(self) -> dict[str, Any] | None:
        if self.shadow_source is None:
            return None
        try:
            return self.shadow_source()
        except Exception as exc:  # a database that is away must not stop monitoring
            logger.warning("could not compare the shadow model: %s", exc)
            return None

    def _measure_performance(self) -> dict[str, Any]:
        """Both accuracies over the current window: estimated from the recent predictions'
        confidences, realized from the labels fed back (when a source is attached)."""
        perf = self.cfg.performance
        estimate = None
        if self.estimator is not None and len(self.recent) >= perf.min_window:
            confidences, predicted = zip(*self.recent, strict=True)
            estimate = self.estimator.estimate(confidences, predicted)
        labelled: list[tuple[str, str]] = []
        if self.labelled_source is not None:
            try:
                labelled = self.labelled_source(perf.window_size)
            except Exception as exc:  # a database that is away must not stop monitoring
                logger.warning("could not read labelled predictions: %s", exc)
        report = performance_report(estimate, labelled, perf.window_size)
        report["accuracy_floor"] = perf.accuracy_floor
        report["estimator"] = None if self.estimator is None else self.estimator.calibration.method
        return report

    def _ingest(self, batch: RecordBatch) -> None:
        label_ids = batch.label_ids
        positive = sum(1 for v in batch.labels if v == "positive")
        self.totals.add(np.asarray(batch.confidences), positive, batch.latencies)
        self.recent.extend(zip(batch.confidences, label_ids, strict=True))
        self.metrics.observe(batch.labels, batch.confidences, batch.latencies)
        self.metrics.active_models.set(1)
        self.detector.add(batch.confidences, label_ids, batch.n_chars, batch.n_tokens)
        if batch.embeddings:
            try:
                self.detector.add_embeddings(batch.embeddings)
            except ValueError as exc:  # rows of different lengths
                logger.warning("skipped %d embeddings: %s", len(batch.embeddings), exc)

    def _ensure_reference(self) -> None:
        wanted = self._wanted_tag or _configured_model_tag()
        if self._reference_tag in (wanted, "<given>") or wanted is None:
            return
        try:
            import bentoml

            resolved = str(bentoml.models.get(wanted).tag)
            if resolved == self._reference_tag:
                self._wanted_tag = resolved
                return
            reference = load_reference(resolved)
            self.estimator = load_estimator(resolved)
        except Exception as exc:
            self._reference_error = f"cannot load the drift reference of {wanted}: {exc}"
            logger.warning(self._reference_error)
            self._reference_tag = self._wanted_tag = wanted
            return
        if reference is None:
            self._reference_error = (
                f"model {resolved} has no drift reference: re-import it "
                "(`bentoml models delete <tag>` then `make import-model`)"
            )
            logger.warning(self._reference_error)
        else:
            self._reference_error = None
        self.detector.set_reference(reference)
        self._reference_tag = resolved
        self._wanted_tag = resolved
        self._stale = True

    def summary(self) -> dict[str, Any]:
        report = self.refresh()
        with self._lock:
            latencies = list(self.totals.latencies)
            totals = self.totals
            reference = self.detector.reference
            drift_status = dict(report)
            if report["status"] == STATUS_NO_REFERENCE and self._reference_error:
                drift_status["reason"] = self._reference_error
            quantiles = percentile_summary(latencies, (50, 95, 99))
            return {
                "total_predictions": totals.total,
                "average_confidence": _rounded(totals.average_confidence),
                "positive_ratio": _rounded(totals.positive_ratio),
                "latency_p50": _rounded(quantiles["p50"]),
                "latency_p95": _rounded(quantiles["p95"]),
                "latency_p99": _rounded(quantiles["p99"]),
                "latency_requests": len(latencies),
                "dropped_predictions": self.dropped,
                "drift_status": drift_status,
                "performance": dict(self._performance),
                "shadow": self._shadow,
                "reference": None if reference is None else reference.describe(),
                "model_tag": self._reference_tag if self._reference_tag != "<given>" else None,
                "worker_pid": os.getpid(),
            }


def load_estimator(tag: str) -> PerformanceEstimator | None:
    """The accuracy estimator stored in Bento model `tag`, or None when it has none (imported
    before the import step fitted one)."""
    import bentoml

    raw = bentoml.models.get(tag).custom_objects.get(ESTIMATOR_OBJECT_KEY)
    return None if raw is None else estimator_from_dict(raw)


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _configured_model_tag() -> str | None:
    try:
        return load_serving_config().model.tag
    except ConfigError:
        return None
