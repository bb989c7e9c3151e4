"""Prometheus metrics of the monitor, exported on the service's own `/metrics`.

BentoML starts every worker with PROMETHEUS_MULTIPROC_DIR set and serves `/metrics` from a
MultiProcessCollector over that folder, so metrics created here on prometheus_client's
default registry appear there next to BentoML's. prometheus_client picks its storage when it
is first imported, which is why it is imported only when the metrics are created (never at
module import time).

Across workers: counters and histograms are summed by the collector; drift gauges are
per-worker (`liveall` mode adds a `pid` label: each worker has its own window); active_models
takes the largest value among live workers.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from monitoring.drift import TEST_NAMES
from serving.batching import BatchRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONFIDENCE_BUCKETS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)


class MonitorMetrics:
    """The monitor's counters, histograms and gauges on one registry."""

    def __init__(self, registry: Any = None) -> None:
        import prometheus_client as prom

        kw: dict[str, Any] = {} if registry is None else {"registry": registry}
        self.predictions = prom.Counter(
            "prediction_total", "Predictions served, by predicted sentiment", ["sentiment"], **kw
        )
        self.duration = prom.Histogram(
            "prediction_duration_seconds",
            "Time to answer one /predict request (all its texts)",
            buckets=LATENCY_BUCKETS,
            **kw,
        )
        self.confidence = prom.Histogram(
            "model_confidence", "Confidence of each prediction", buckets=CONFIDENCE_BUCKETS, **kw
        )
        self.active_models = prom.Gauge(
            "active_models",
            "Models this process serves predictions from",
            multiprocess_mode="livemax",
            **kw,
        )
        self.dropped = prom.Counter(
            "monitoring_dropped_predictions_total",
            "Predictions not monitored because the monitoring thread fell behind",
            **kw,
        )
        per_worker: dict[str, Any] = {"multiprocess_mode": "liveall", **kw}
        self.drift_score = prom.Gauge(
            "drift_score", "1 - smallest Holm-corrected p-value (0 = no evidence)", **per_worker
        )
        self.drift_detected = prom.Gauge(
            "drift_detected", "1 when the window differs from the reference", **per_worker
        )
        self.window_size = prom.Gauge(
            "drift_window_size", "Predictions in the current drift window", **per_worker
        )
        self.test_statistic = prom.Gauge(
            "drift_test_statistic", "Statistic of each drift test", ["test"], **per_worker
        )
        self.test_p_value = prom.Gauge(
            "drift_test_p_value", "Uncorrected p-value of each drift test", ["test"], **per_worker
        )
        self.estimated_accuracy = prom.Gauge(
            "model_estimated_accuracy",
            "Accuracy estimated without labels over the current window (NaN: too few predictions)",
            **per_worker,
        )
        self.realized_accuracy = prom.Gauge(
            "model_realized_accuracy",
            "Share right among the window's labelled predictions of the served version "
            "(NaN: no labels)",
            **per_worker,
        )
        self.labelled = prom.Gauge(
            "model_labelled_predictions",
            "Labelled predictions behind model_realized_accuracy",
            **per_worker,
        )
        self.shadow_compared = prom.Gauge(
            "shadow_compared_predictions",
            "Predictions the challenger in shadow scored too (its comparison window)",
            **per_worker,
        )
        self.shadow_agreement = prom.Gauge(
            "shadow_agreement",
            "Share of shadowed predictions where the challenger agrees with the served model",
            **per_worker,
        )
        self.shadow_accuracy = prom.Gauge(
            "shadow_realized_accuracy",
            "Realized accuracy over the shadowed predictions that have a label, by model",
            ["model"],
            **per_worker,
        )
        self.accuracy_floor = prom.Gauge(
            "model_accuracy_floor",
            "The configured floor under which SentimentEstimatedAccuracyLow fires",
            **per_worker,
        )

    def observe(
        self, labels: list[str], confidences: list[float], latencies_s: Sequence[float]
    ) -> None:
        """Predictions of any number of requests, with the latency of each request."""
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        for label, n in counts.items():
            self.predictions.labels(sentiment=label).inc(n)
        for value in confidences:
            self.confidence.observe(value)
        for latency in latencies_s:
            self.duration.observe(latency)

    def set_drift(self, report: Mapping[str, Any]) -> None:
        self.drift_score.set(report["drift_score"])
        self.drift_detected.set(1 if report["drift_detected"] else 0)
        self.window_size.set(report["window_size"])
        for name in TEST_NAMES:
            test = report["tests"].get(name, {})
            # NaN, not 0, for a test that did not run: 0 would read as a p-value of certain drift.
            self.test_statistic.labels(test=name).set(test.get("statistic", float("nan")))
            self.test_p_value.labels(test=name).set(test.get("p_value", float("nan")))

    def set_performance(self, report: Mapping[str, Any]) -> None:
        """The `performance` block of the summary (monitoring.performance.performance_report)."""
        nan = float("nan")
        estimated, realized = report["estimated_accuracy"], report["realized_accuracy"]
        self.estimated_accuracy.set(nan if estimated is None else estimated)
        self.realized_accuracy.set(nan if realized is None else realized)
        self.labelled.set(report["labelled_count"])
        self.accuracy_floor.set(report["accuracy_floor"])

    def set_shadow(self, report: Mapping[str, Any]) -> None:
        """The `shadow` block of the summary (monitoring.performance.shadow_report)."""
        nan = float("nan")
        self.shadow_compared.set(report["compared"])
        agreement = report["agreement"]
        self.shadow_agreement.set(nan if agreement is None else agreement)
        for model in ("champion", "challenger"):
            value = report[f"{model}_realized_accuracy"]
            self.shadow_accuracy.labels(model=model).set(nan if value is None else value)


BATCH_TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 128)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class BatchMetrics:
    """What the batcher merged: per model call, its requests and texts, and the queue wait."""

    def __init__(self, registry: Any = None) -> None:
        import prometheus_client as prom

        kw: dict[str, Any] = {} if registry is None else {"registry": registry}
        self.requests = prom.Histogram(
            "sentiment_batch_requests",
            "Requests merged into one model call",
            buckets=BATCH_REQUEST_BUCKETS,
            **kw,
        )
        self.texts = prom.Histogram(
            "sentiment_batch_texts", "Texts in one model call", buckets=BATCH_TEXT_BUCKETS, **kw
        )
        self.wait = prom.Histogram(
            "sentiment_batch_wait_seconds",
            "Time the oldest request of a model call waited in the queue",
            buckets=LATENCY_BUCKETS,
            **kw,
        )

    def observe(self, record: BatchRecord) -> None:
        self.requests.observe(record.requests)
        self.texts.observe(record.texts)
        self.wait.observe(record.oldest_wait_s)


class ReplicaMetrics:
    """Model processes running against configured: a process that died shows here at once
    (`/health` says "degraded" too), before the next batch replaces it."""

    def __init__(self, registry: Any = None) -> None:
        import prometheus_client as prom

        kw: dict[str, Any] = {"multiprocess_mode": "livesum"}
        if registry is not None:
            kw["registry"] = registry
        self.alive = prom.Gauge("sentiment_model_processes_alive", "Model processes running", **kw)
        self.configured = prom.Gauge(
            "sentiment_model_processes", "Model processes configured", **kw
        )
        self.degraded = prom.Gauge(
            "sentiment_degraded",
            "1 while some model process of a worker is down (it still serves with the rest)",
            **{**kw, "multiprocess_mode": "livemax"},
        )

    def observe(self, alive: int, configured: int) -> None:
        self.alive.set(alive)
        self.configured.set(configured)
        self.degraded.set(1 if alive < configured else 0)


_DEFAULT: MonitorMetrics | None = None
_BATCH: BatchMetrics | None = None
_REPLICAS: ReplicaMetrics | None = None
_LOCK = threading.Lock()


def default_metrics() -> MonitorMetrics:
    """The process's metrics on the default registry, created once (a second registration of
    the same names would raise)."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = MonitorMetrics()
        return _DEFAULT


def observe_batch(record: BatchRecord) -> None:
    """The batcher's hook: record one model call on the default registry."""
    global _BATCH
    with _LOCK:
        if _BATCH is None:
            _BATCH = BatchMetrics()
    _BATCH.observe(record)


def observe_replicas(alive: int, configured: int) -> None:
    """The replica watch's hook: model processes running and configured, on the default
    registry."""
    global _REPLICAS
    with _LOCK:
        if _REPLICAS is None:
            _REPLICAS = ReplicaMetrics()
    _REPLICAS.observe(alive, configured)
