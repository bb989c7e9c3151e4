"""DriftDetector, its window and the reference, on hand-built predictions."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from monitoring.drift import (
    STATUS_DRIFT,
    STATUS_INSUFFICIENT,
    STATUS_NO_DRIFT,
    STATUS_NO_REFERENCE,
    DriftDetector,
    drift_report,
)
from monitoring.reference import DriftReference, build_reference
from monitoring.stats import TestResult
from monitoring.window import PendingBuffer, PredictionWindow, RunningSummary

N = 40


def make_reference() -> DriftReference:
    rng = np.random.default_rng(0)
    return DriftReference(
        confidence=np.linspace(0.5, 1.0, N).astype(np.float32),
        label=np.tile([0, 1], N // 2).astype(np.int8),
        n_chars=np.linspace(10, 200, N).astype(np.int32),
        n_tokens=np.linspace(3, 50, N).astype(np.int32),
        embeddings=rng.normal(size=(N, 4)).astype(np.float32),
    )


def add_reference_copy(detector: DriftDetector, ref: DriftReference) -> None:
    detector.add(ref.confidence, ref.label, ref.n_chars, ref.n_tokens, ref.embeddings)


def test_window_keeps_the_most_recent_rows_in_order() -> None:
    window = PredictionWindow(3)
    window.extend([0.1, 0.2], [0, 1], [1, 2], [1, 1])
    window.extend([0.3, 0.4, 0.5], [0, 0, 1], [3, 4, 5], [1, 1, 1])
    snap = window.snapshot()
    assert snap.n_chars.tolist() == [3, 4, 5]
    assert snap.label.tolist() == [0, 0, 1]
    window.extend([0.6] * 7, [1] * 7, list(range(10, 17)), [1] * 7)
    assert window.snapshot().n_chars.tolist() == [14, 15, 16]
    assert len(window) == 3
    assert snap.embeddings is None


def test_window_embeddings_have_their_own_ring() -> None:
    window = PredictionWindow(2)
    window.extend([0.9], [1], [5], [2], [[1.0, 2.0]])
    window.extend([0.8], [0], [6], [2])  # a request without embeddings
    window.extend([0.7], [0], [7], [2], [[3.0, 4.0]])
    snap = window.snapshot()
    assert window.n_embeddings == 2
    assert snap.embeddings is not None
    assert snap.embeddings.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    window.clear()
    assert len(window) == 0 and window.n_embeddings == 0


def test_window_rejects_ragged_columns() -> None:
    with pytest.raises(ValueError, match="same length"):
        PredictionWindow(3).extend([0.1, 0.2], [0], [1, 2], [1, 1])


def test_detector_without_reference() -> None:
    detector = DriftDetector(window_size=10, min_window=5)
    report = detector.detect_drift()
    assert report["status"] == STATUS_NO_REFERENCE
    assert report["drift_detected"] is False


def test_detector_below_min_window_is_insufficient_not_no_drift() -> None:
    ref = make_reference()
    detector = DriftDetector(window_size=N, min_window=10, reference=ref)
    detector.add(ref.confidence[:9], ref.label[:9], ref.n_chars[:9], ref.n_tokens[:9])
    report = detector.detect_drift()
    assert report["status"] == STATUS_INSUFFICIENT
    assert report["drift_detected"] is False
    assert report["drift_score"] == 0.0
    assert report["window_size"] == 9
    assert report["tests"]["confidence_ks"] == {"status": STATUS_INSUFFICIENT}


def test_detector_same_data_as_reference_is_no_drift() -> None:
    ref = make_reference()
    detector = DriftDetector(window_size=N, min_window=10, reference=ref, mmd_permutations=50)
    add_reference_copy(detector, ref)
    report = detector.detect_drift()
    assert report["status"] == STATUS_NO_DRIFT
    assert report["drift_score"] == pytest.approx(0.0)
    for name in ("confidence_ks", "label_chi2", "length_ks", "embedding_mmd"):
        assert report["tests"][name]["statistic"] == pytest.approx(0.0, abs=1e-9)
        assert report["tests"][name]["adjusted_p_value"] == 1.0
        assert report["tests"][name]["drift_detected"] is False


def test_detector_flags_a_clear_shift() -> None:
    ref = make_reference()
    detector = DriftDetector(window_size=N, min_window=10, reference=ref, mmd_permutations=99)
    detector.add(
        np.full(N, 0.55),
        np.zeros(N, dtype=int),
        np.full(N, 500),
        np.full(N, 120),
        ref.embeddings + 5.0,
    )
    report = detector.detect_drift()
    assert report["status"] == STATUS_DRIFT
    assert report["drift_detected"] is True
    assert report["drift_score"] > 0.99
    assert report["tests"]["length_ks"]["statistic"] == 1.0
    assert report["tests"]["label_chi2"]["drift_detected"] is True
    assert report["tests"]["embedding_mmd"]["p_value"] == pytest.approx(0.01)


def test_detector_skips_the_embedding_test_without_embeddings() -> None:
    ref = make_reference()
    detector = DriftDetector(window_size=N, min_window=10, reference=ref)
    detector.add(ref.confidence, ref.label, ref.n_chars, ref.n_tokens)
    report = detector.detect_drift()
    assert report["status"] == STATUS_NO_DRIFT
    assert report["tests"]["embedding_mmd"] == {"status": STATUS_INSUFFICIENT}
    assert report["tests"]["confidence_ks"]["adjusted_p_value"] == 1.0


def test_set_reference_replaces_it_and_restarts_the_window() -> None:
    ref = make_reference()
    detector = DriftDetector(window_size=N, min_window=10)
    add_reference_copy(detector, ref)
    assert detector.detect_drift()["status"] == STATUS_NO_REFERENCE
    detector.set_reference(ref)
    assert len(detector.window) == 0
    add_reference_copy(detector, ref)
    assert detector.detect_drift()["status"] == STATUS_NO_DRIFT
    detector.reset()
    assert len(detector.window) == 0
    assert detector.reference is ref


def test_detector_validates_its_settings() -> None:
    with pytest.raises(ValueError, match="threshold"):
        DriftDetector(threshold=1.5)
    with pytest.raises(ValueError, match="min_window"):
        DriftDetector(window_size=10, min_window=20)
    assert DriftDetector().window_size == 1000
    assert DriftDetector().threshold == 0.05


def test_drift_report_uses_holm_over_the_tests_that_ran() -> None:
    results = {
        "confidence_ks": TestResult("confidence_ks", "ks", 0.3, 0.01, 100, 100),
        "label_chi2": TestResult("label_chi2", "chi2", 2.0, 0.04, 100, 100),
        "length_ks": TestResult("length_ks", "ks", 0.1, 0.03, 100, 100),
        "embedding_mmd": None,
    }
    report = drift_report(results, threshold=0.05, window_size=100, min_window=50)
    assert report["tests"]["confidence_ks"]["adjusted_p_value"] == pytest.approx(0.03)
    assert report["tests"]["label_chi2"]["adjusted_p_value"] == pytest.approx(0.06)
    assert report["tests"]["length_ks"]["drift_detected"] is False
    assert report["status"] == STATUS_DRIFT
    assert report["drift_score"] == pytest.approx(0.97)


def test_add_predictions_from_raw_dicts() -> None:
    ref = make_reference()
    detector = DriftDetector(window_size=N, min_window=2, reference=ref)
    raw = [
        {
            "label": "positive",
            "confidence": 0.9,
            "n_chars": 10,
            "n_tokens": 3,
            "embedding": [0.0] * 4,
        },
        {
            "label": "NEGATIVE",
            "confidence": 0.7,
            "n_chars": 20,
            "n_tokens": 5,
            "embedding": [1.0] * 4,
        },
    ]
    detector.add_predictions(raw)
    snap = detector.window.snapshot()
    assert snap.label.tolist() == [1, 0]
    assert snap.embeddings is not None and snap.embeddings.shape == (2, 4)
    with pytest.raises(ValueError, match="unknown label"):
        detector.add_predictions([{**raw[0], "label": "neutral"}])


def test_build_reference_and_round_trip() -> None:
    raw = [
        {
            "label": "positive",
            "confidence": 0.9,
            "n_chars": 10,
            "n_tokens": 3,
            "embedding": [0.1, 0.2],
        },
        {
            "label": "negative",
            "confidence": 0.6,
            "n_chars": 30,
            "n_tokens": 7,
            "embedding": [0.3, 0.4],
        },
        {
            "label": "positive",
            "confidence": 0.8,
            "n_chars": 20,
            "n_tokens": 5,
            "embedding": [0.5, 0.6],
        },
    ]
    ref = build_reference(raw, [1, 1, 1], max_embeddings=2, seed=0)
    assert ref.label.tolist() == [1, 0, 1]
    assert ref.accuracy == pytest.approx(0.6667)
    assert ref.embeddings.shape == (2, 2)
    described = ref.describe()
    assert described["positive_ratio"] == pytest.approx(0.6667)
    assert described["size"] == 3
    # Stored in the Bento model as a plain dict: unpickling needs no class of ours.
    stored = pickle.loads(pickle.dumps(ref.to_dict()))
    assert isinstance(stored, dict)
    back = DriftReference.from_dict(stored)
    assert back.n_chars.tolist() == [10, 30, 20]
    assert back.confidence.tolist() == pytest.approx([0.9, 0.6, 0.8])
    with pytest.raises(ValueError, match="format"):
        DriftReference.from_dict({**stored, "format": 99})
    with pytest.raises(ValueError, match="at least one"):
        build_reference([])


def test_pending_buffer_drops_the_oldest_beyond_its_bound() -> None:
    buffer = PendingBuffer(max_items=10)
    for i in range(5):
        buffer.put(f"record{i}", 4)
    records, dropped = buffer.drain()
    assert records == ["record3", "record4"]
    assert dropped == 12
    assert buffer.drain() == ([], 0)
    assert len(buffer) == 0


def test_running_summary_is_bounded() -> None:
    summary = RunningSummary(latency_window=100)
    for i in range(1000):
        summary.add(np.array([0.5, 1.0]), 1, [float(i)])
    assert summary.total == 2000
    assert summary.positive_ratio == 0.5
    assert summary.average_confidence == pytest.approx(0.75)
    assert len(summary.latencies) == 100
    assert summary.latencies[0] == 900.0
    assert RunningSummary(100).average_confidence is None
