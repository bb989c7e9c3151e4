"""Monitoring inside a real `bentoml serve`: /metrics and /monitoring move with traffic, and
the drift status flips when product reviews replace SST-2 sentences."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.config import load_monitoring_config
from sentiment.data import read_tsv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_REQUEST = 50


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def send(url: str, texts: Sequence[str]) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, len(texts), PER_REQUEST):
            resp = client.post("/predict", json={"texts": list(texts[start : start + PER_REQUEST])})
            assert resp.status_code == 200, resp.text


def monitoring(url: str) -> dict[str, Any]:
    resp = httpx.get(f"{url}/monitoring", timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_metrics_and_summary_move_then_drift_flips(
    served_url: str, sst2_dir: Path, reviews_file: Path
) -> None:
    window = load_monitoring_config().drift.window_size
    validation = read_tsv(sst2_dir / "validation.tsv").texts
    # A whole window of the reference's own sentences, so that whatever other tests sent
    # before has left the window.
    sst2 = (validation * (window // len(validation) + 1))[:window]
    # /monitoring first: it takes in buffered records, so the scrape after it is current.
    summary_before = monitoring(served_url)
    before = scrape(served_url)

    send(served_url, sst2)

    summary = monitoring(served_url)
    after = scrape(served_url)
    assert total(after, "prediction_total") - total(before, "prediction_total") == len(sst2)
    assert total(after, "model_confidence_count") - total(before, "model_confidence_count") == len(
        sst2
    )
    requests = -(-len(sst2) // PER_REQUEST)
    duration_count = total(after, "prediction_duration_seconds_count") - total(
        before, "prediction_duration_seconds_count"
    )
    assert duration_count == requests
    assert total(after, "prediction_duration_seconds_sum") > total(
        before, "prediction_duration_seconds_sum"
    )
    assert {labels for (n, labels), _ in after.items() if n == "prediction_total"} >= {
        (("sentiment", "positive"),),
        (("sentiment", "negative"),),
    }
    assert total(after, "active_models") == 1
    assert total(after, "drift_window_size") == window
    p_values = {
        dict(labels)["test"] for (n, labels), _ in after.items() if n == "drift_test_p_value"
    }
    assert p_values == {"confidence_ks", "label_chi2", "length_ks", "embedding_mmd"}

    assert summary["total_predictions"] - summary_before["total_predictions"] == len(sst2)
    assert 0.5 <= summary["average_confidence"] <= 1.0
    assert 0.0 < summary["positive_ratio"] < 1.0
    assert 0 < summary["latency_p50"] <= summary["latency_p95"] <= summary["latency_p99"]
    assert summary["reference"]["source"] == "sst2/validation"
    status = summary["drift_status"]
    assert status["window_size"] == window
    assert status["status"] == "no drift", status
    assert total(after, "drift_detected") == 0

    reviews = read_tsv(reviews_file).texts[: window // 2]
    send(served_url, reviews)

    status = monitoring(served_url)["drift_status"]
    assert status["status"] == "drift", status
    assert status["drift_detected"] is True
    assert status["drift_score"] > 0.95
    assert status["tests"]["length_ks"]["drift_detected"] is True
    drifted = scrape(served_url)
    assert total(drifted, "drift_detected") == 1
    assert total(drifted, "drift_score") > 0.95
