"""SentimentMonitor and the hook: buffering, metrics, summary, and never failing a request."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitoring import hook
from monitoring.config import MONITORING_ENV, MonitoringConfig, load_monitoring_config
from monitoring.metrics import MonitorMetrics
from monitoring.monitor import ACTIVE, REQUEST_LATENCY, SentimentMonitor, merge_records
from monitoring.performance import IdentityCalibration, PerformanceEstimator
from monitoring.reference import DriftReference

DIM = 4


def raw_prediction(i: int, shift: float = 0.0) -> dict[str, Any]:
    rng = np.random.default_rng(i)
    return {
        "label": "positive" if i % 2 else "negative",
        "confidence": 0.5 + (i % 50) / 100,
        "probabilities": {"negative": 0.5, "positive": 0.5},
        "n_tokens": 5 + i % 20,
        "n_chars": 20 + (i * 7) % 150 + int(shift * 100),
        "subword_ratio": 0.1,
        "unk_ratio": 0.0,
        "embedding": (rng.normal(size=DIM) + shift).tolist(),
    }


def reference_from(raw: list[dict[str, Any]]) -> DriftReference:
    return DriftReference(
        confidence=np.array([p["confidence"] for p in raw], np.float32),
        label=np.array([1 if p["label"] == "positive" else 0 for p in raw], np.int8),
        n_chars=np.array([p["n_chars"] for p in raw], np.int32),
        n_tokens=np.array([p["n_tokens"] for p in raw], np.int32),
        embeddings=np.array([p["embedding"] for p in raw], np.float32),
    )


def settings(**drift: Any) -> MonitoringConfig:
    base = {"window_size": 200, "min_window": 50, "mmd_permutations": 50}
    return MonitoringConfig.model_validate({"drift": {**base, **drift}})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def monitor(
    request: pytest.FixtureRequest, registry: CollectorRegistry
) -> Iterator[SentimentMonitor]:
    reference = reference_from([raw_prediction(i) for i in range(300)])
    mon = SentimentMonitor(
        f"test-{request.node.name}",
        settings=settings(),
        metrics=MonitorMetrics(registry),
        reference=reference,
        background=False,
    )
    yield mon
    mon.close()


def log_through_bentoml(mon: SentimentMonitor, raw: list[dict[str, Any]], latency: float) -> None:
    """What bentoml.monitor(...) and the hook do, against a given monitor instance."""
    REQUEST_LATENCY.set(latency)
    columns = hook.columns_of(raw)
    mon.start_record()
    for name, role, data_type in hook.COLUMNS:
        mon.log_batch(columns[name], name, role, data_type)
    mon.log_batch(columns["embedding"], "embedding", "feature", "numerical_sequence")
    mon.stop_record()


def sample(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    value = registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


def test_export_data_only_buffers(monitor: SentimentMonitor, registry: CollectorRegistry) -> None:
    monitor.start_record()
    monitor.log_batch([0.9, 0.8], "confidence", "prediction", "numerical")
    monitor.log_batch(["positive", "negative"], "label", "prediction", "categorical")
    monitor.stop_record()
    assert len(monitor.buffer) == 2
    assert monitor.totals.total == 0
    assert registry.get_sample_value("prediction_total", {"sentiment": "positive"}) is None


def test_background_refresh_reruns_drift_tests_at_most_every_drift_interval(
    registry: CollectorRegistry,
) -> None:
    cfg = settings()
    cfg.monitor.drift_interval_s = 3600
    mon = SentimentMonitor(
        "test-drift-interval",
        settings=cfg,
        metrics=MonitorMetrics(registry),
        reference=reference_from([raw_prediction(i) for i in range(300)]),
        background=False,
    )
    try:
        log_through_bentoml(mon, [raw_prediction(i) for i in range(60)], latency=0.1)
        first = mon.refresh(force_drift=False)  # never ran: due
        assert first["window_size"] == 60
        log_through_bentoml(mon, [raw_prediction(i) for i in range(60, 80)], latency=0.1)
        assert mon.refresh(force_drift=False)["window_size"] == 60  # not due: counters only
        assert mon.totals.total == 80
        assert mon.summary()["drift_status"]["window_size"] == 80  # a summary is current
    finally:
        mon.close()


def test_refresh_updates_metrics_summary_and_window(
    monitor: SentimentMonitor, registry: CollectorRegistry
) -> None:
    raw = [raw_prediction(i) for i in range(10)]
    log_through_bentoml(monitor, raw, latency=0.2)
    log_through_bentoml(monitor, raw[:4], latency=0.4)
    summary = monitor.summary()
    assert summary["total_predictions"] == 14
    assert summary["positive_ratio"] == pytest.approx(7 / 14)
    expected_conf = (sum(p["confidence"] for p in raw) + sum(p["confidence"] for p in raw[:4])) / 14
    assert summary["average_confidence"] == pytest.approx(expected_conf, abs=1e-6)
    assert summary["latency_p50"] == pytest.approx(0.3)
    assert summary["latency_requests"] == 2
    assert summary["drift_status"]["status"] == "insufficient data"
    assert summary["drift_status"]["window_size"] == 14
    assert sample(registry, "prediction_total", {"sentiment": "positive"}) == 7
    assert sample(registry, "prediction_total", {"sentiment": "negative"}) == 7
    assert sample(registry, "prediction_duration_seconds_count") == 2
    assert sample(registry, "prediction_duration_seconds_sum") == pytest.approx(0.6)
    assert sample(registry, "model_confidence_count") == 14
    assert sample(registry, "active_models") == 1
    assert sample(registry, "drift_window_size") == 14
    assert sample(registry, "drift_detected") == 0
    assert np.isnan(sample(registry, "drift_test_p_value", {"test": "embedding_mmd"}))


def test_merge_records_joins_columns_and_names_what_it_skips() -> None:
    records = [
        {
            "label": ["positive"],
            "confidence": [0.9],
            "n_chars": [10],
            "n_tokens": [3],
            "embedding": [[1.0, 0.0]],
            "_latency_s": 0.2,
        },
        {"label": ["negative", "positive"], "confidence": [0.6, "0.7"], "_latency_s": None},
        {"label": ["positive"], "confidence": [0.8, 0.9]},  # one label, two confidences
        {"confidence": [0.5]},  # no label column
        {"label": ["negative"], "confidence": ["high"]},
        {"label": ["neutral"], "confidence": [0.5]},  # not one of the model's labels
        {
            "label": ["Negative"],
            "confidence": [0.55],
            "n_chars": [4],
            "n_tokens": [2],
            "embedding": [[0.0, 1.0]],
            "_latency_s": 0.4,
        },
    ]
    batch, problems = merge_records(records)
    assert batch.labels == ["positive", "negative", "positive", "Negative"]
    assert batch.label_ids == [1, 0, 1, 0]
    assert batch.confidences == [0.9, 0.6, 0.7, 0.55]
    assert batch.n_chars == [10, 0, 0, 4]
    assert batch.n_tokens == [3, 0, 0, 2]
    assert batch.embeddings == [[1.0, 0.0], [0.0, 1.0]]
    assert batch.latencies == [0.2, 0.4]
    assert problems == [
        "ValueError: columns of different lengths",
        "KeyError: 'label'",
        "ValueError: could not convert string to float: 'high'",
        "ValueError: unknown label 'neutral'; expected one of ['negative', 'positive']",
    ]
    # The reference's order decides the index.
    assert merge_records(records[:1], ("positive", "negative"))[0].label_ids == [0]


def test_a_bad_record_costs_only_itself(
    monitor: SentimentMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    monitor.log_columns(hook.columns_of([raw_prediction(1)]), 0.1)
    monitor.log_columns({"label": ["neutral"], "confidence": [0.5]}, 0.1)
    monitor.log_columns(hook.columns_of([raw_prediction(2)]), 0.1)
    with caplog.at_level(logging.WARNING):
        monitor.refresh()
    assert "unknown label 'neutral'" in caplog.text
    assert monitor.summary()["total_predictions"] == 2


def test_one_refresh_takes_in_many_records_as_recorded_one_by_one(
    monitor: SentimentMonitor, registry: CollectorRegistry
) -> None:
    raw = [raw_prediction(i) for i in range(60)]
    for i, prediction in enumerate(raw):
        monitor.log_columns(hook.columns_of([prediction]), 0.01 * (i + 1))
    monitor.refresh()
    window = monitor.detector.window.snapshot()
    assert window.confidence.tolist() == pytest.approx([p["confidence"] for p in raw])
    assert window.embeddings is not None
    assert window.embeddings == pytest.approx(np.array([p["embedding"] for p in raw]))
    assert sample(registry, "prediction_duration_seconds_count") == 60
    assert sample(registry, "prediction_duration_seconds_sum") == pytest.approx(0.01 * 1830)
    assert monitor.summary()["latency_requests"] == 60


def test_hook_goes_through_bentoml_monitor_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bentoml

    name = "test-hook-once"
    monkeypatch.setattr(hook, "monitor_name", lambda: name)
    opened: list[str] = []
    original = bentoml.monitor

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(bentoml, "monitor", counting)
    for i in range(5):
        hook.log_predictions(["t"], [raw_prediction(i)], 0.1)
    mon = ACTIVE[name]
    try:
        assert opened == [name]
        assert set(mon.schema) == {c[0] for c in hook.COLUMNS} | {"embedding"}
        assert hook.summary()["total_predictions"] == 5
    finally:
        mon.close()


def test_performance_block_estimates_and_counts_labels(registry: CollectorRegistry) -> None:
    cfg = settings()
    cfg.performance.window_size = 20
    cfg.performance.min_window = 10
    cfg.performance.accuracy_floor = 0.9
    labelled = [("positive", "positive"), ("negative", "positive"), ("negative", "negative")]
    asked: list[int] = []

    def source(window: int) -> list[tuple[str, str]]:
        asked.append(window)
        return labelled

    # The identity calibration without the label-shift step: the estimate is the mean confidence.
    mon = SentimentMonitor(
        "test-performance",
        settings=cfg,
        metrics=MonitorMetrics(registry),
        reference=reference_from([raw_prediction(i) for i in range(300)]),
        estimator=PerformanceEstimator(IdentityCalibration()),
        background=False,
    )
    try:
        log_through_bentoml(mon, [raw_prediction(i) for i in range(5)], latency=0.1)
        early = mon.summary()["performance"]
        assert early["estimated_accuracy"] is None  # 5 < min_window
        assert early["realized_accuracy"] is None and early["labelled_count"] == 0
        assert early["accuracy_floor"] == 0.9 and early["estimator"] == "confidence"
        assert np.isnan(sample(registry, "model_estimated_accuracy"))
        mon.labelled_source = source
        log_through_bentoml(mon, [raw_prediction(i) for i in range(5, 30)], latency=0.1)
        block = mon.summary()["performance"]
        last = [raw_prediction(i)["confidence"] for i in range(10, 30)]  # the window of 20
        assert block["estimated_accuracy"] == pytest.approx(round(sum(last) / 20, 4))
        assert block["realized_accuracy"] == pytest.approx(round(2 / 3, 4))
        assert block["labelled_count"] == 3 and block["window"] == 20
        assert asked[-1] == 20
        assert sample(registry, "model_estimated_accuracy") == block["estimated_accuracy"]
        assert sample(registry, "model_realized_accuracy") == block["realized_accuracy"]
        assert sample(registry, "model_labelled_predictions") == 3
        assert sample(registry, "model_accuracy_floor") == 0.9
    finally:
        mon.close()


def test_a_failing_label_source_leaves_realized_accuracy_empty(
    monitor: SentimentMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(window: int) -> list[tuple[str, str]]:
        raise OSError("database is away")

    monitor.labelled_source = broken
    with caplog.at_level(logging.WARNING, logger="monitoring.monitor"):
        block = monitor.summary()["performance"]
    assert block["realized_accuracy"] is None and block["labelled_count"] == 0
    assert block["estimator"] is None
    assert "database is away" in caplog.text


def test_drift_appears_in_summary_and_gauges(
    monitor: SentimentMonitor, registry: CollectorRegistry
) -> None:
    for start in range(0, 100, 20):
        log_through_bentoml(monitor, [raw_prediction(i) for i in range(start, start + 20)], 0.1)
    status = monitor.summary()["drift_status"]
    assert status["status"] == "no drift"
    assert sample(registry, "drift_detected") == 0
    for start in range(0, 200, 20):
        shifted = [raw_prediction(i, shift=3.0) for i in range(start, start + 20)]
        log_through_bentoml(monitor, shifted, 0.1)
    status = monitor.summary()["drift_status"]
    assert status["status"] == "drift"
    assert status["drift_detected"] is True
    assert status["window_size"] == 200
    assert status["tests"]["length_ks"]["drift_detected"] is True
    assert sample(registry, "drift_detected") == 1
    assert sample(registry, "drift_score") > 0.95
    assert sample(registry, "drift_test_statistic", {"test": "length_ks"}) > 0.5


def test_memory_stays_bounded(monitor: SentimentMonitor) -> None:
    raw = [raw_prediction(i) for i in range(50)]
    for batch in range(200):  # 10,000 predictions
        log_through_bentoml(monitor, raw, 0.01)
        if batch % 20 == 19:
            monitor.refresh()
    assert monitor.totals.total == 10_000
    assert len(monitor.detector.window) == 200
    assert monitor.detector.window.n_embeddings == 200
    assert len(monitor.buffer) == 0
    assert len(monitor.totals.latencies) == 200  # under its 10,000 bound


def test_a_stalled_consumer_drops_and_counts(registry: CollectorRegistry) -> None:
    cfg = MonitoringConfig.model_validate({"monitor": {"max_pending": 100}})
    mon = SentimentMonitor(
        "test-stalled", settings=cfg, metrics=MonitorMetrics(registry), background=False
    )
    for _ in range(30):
        log_through_bentoml(mon, [raw_prediction(j) for j in range(10)], 0.01)
        assert len(mon.buffer) <= 100
    mon.refresh()
    assert mon.dropped == 200
    assert mon.totals.total == 100
    assert sample(registry, "monitoring_dropped_predictions_total") == 200
    mon.close()


def test_log_batch_does_not_warn_about_duplicate_columns(
    monitor: SentimentMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        log_through_bentoml(monitor, [raw_prediction(i) for i in range(5)], 0.1)
    assert "duplicated" not in caplog.text
    assert set(monitor.schema) == {c[0] for c in hook.COLUMNS} | {"embedding"}
    assert monitor.schema["embedding"]["type"] == "numerical_sequence"


def test_the_service_config_names_this_class() -> None:
    from bentoml._internal.types import LazyType

    assert hook.SERVICE_MONITORING["enabled"] is True
    assert LazyType(hook.SERVICE_MONITORING["type"]).get_class() is SentimentMonitor


def test_hook_logs_and_summarises(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "test-hook"
    monkeypatch.setattr(hook, "monitor_name", lambda: name)
    assert hook.summary() == hook.empty_summary()
    raw = [raw_prediction(i) for i in range(6)]
    hook.log_predictions(["t"] * 6, raw, 0.05, model_tag="sentiment:nonexistent")
    hook.log_predictions(["t"] * 3, raw[:3], 0.15)
    mon = ACTIVE[name]
    try:
        assert isinstance(mon, SentimentMonitor)
        summary = hook.summary()
        assert summary["total_predictions"] == 9
        assert summary["latency_p50"] == pytest.approx(0.1)
        # The tag cannot be found: the status says so instead of failing.
        assert summary["drift_status"]["status"] == "no reference"
        assert "sentiment:nonexistent" in summary["drift_status"]["reason"]
    finally:
        mon.close()


def test_hook_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    hook.log_predictions([], [], 0.1)
    with caplog.at_level(logging.WARNING):
        hook.log_predictions(["a"], [{"label": "positive"}], 0.1)  # fields missing
        hook.log_predictions(["a", "b"], [raw_prediction(0)], 0.1)
    assert "monitoring failed" in caplog.text
    assert "2 texts but 1 predictions" in caplog.text


def test_columns_of_leaves_out_missing_embeddings() -> None:
    raw = [raw_prediction(0), {**raw_prediction(1), "embedding": None}]
    columns = hook.columns_of(raw)
    assert "embedding" not in columns
    assert columns["label"] == ["negative", "positive"]
    assert "embedding" in hook.columns_of([raw_prediction(0)])


def test_monitoring_endpoint_returns_the_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook, "summary", lambda: {"total_predictions": 3})
    response = hook.monitoring_endpoint(None)
    assert response.status_code == 200
    assert response.body == b'{"total_predictions":3}'

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(hook, "summary", broken)
    response = hook.monitoring_endpoint(None)
    assert response.status_code == 503
    assert b"boom" in response.body


def test_config_file_and_env_overrides() -> None:
    cfg = load_monitoring_config(env={})
    assert cfg.drift.window_size == 1000
    assert cfg.drift.threshold == 0.05
    assert cfg.benchmark.window_sizes == [200, 500]
    env = {
        "DRIFT_WINDOW_SIZE": "500",
        "DRIFT_THRESHOLD": "0.01",
        "MONITORING_REFRESH_S": "0.5",
        "MONITORING_DRIFT_INTERVAL_S": "30",
    }
    cfg = load_monitoring_config(env=env)
    assert (cfg.drift.window_size, cfg.drift.threshold) == (500, 0.01)
    assert cfg.monitor.refresh_interval_s == 0.5
    assert cfg.monitor.drift_interval_s == 30
    assert set(env) <= set(MONITORING_ENV)
