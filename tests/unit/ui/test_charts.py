"""The frames behind the UI's charts."""

from __future__ import annotations

import pytest

from ui.charts import (
    bin_edges,
    confidence_histogram,
    distribution_frame,
    histogram_order,
    probability_frame,
)


def test_probability_frame_has_both_classes_in_order() -> None:
    df = probability_frame({"probabilities": {"positive": 0.75, "negative": 0.25}})
    assert df.to_dict("list") == {
        "sentiment": ["negative", "positive"],
        "probability": [0.25, 0.75],
    }


def test_distribution_counts_every_class_even_at_zero() -> None:
    df = distribution_frame(["positive", "positive", "positive"])
    assert df.to_dict("list") == {"sentiment": ["negative", "positive"], "rows": [0, 3]}
    assert distribution_frame([])["rows"].tolist() == [0, 0]


def test_bin_edges() -> None:
    assert bin_edges(width=0.1) == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert len(bin_edges()) == 11


def test_histogram_bins_edges_and_out_of_range_values() -> None:
    confidences = [0.5, 0.55, 0.599, 0.6, 1.0, 0.95, 0.3]
    labels = ["positive", "positive", "negative", "negative", "positive", "negative", "negative"]
    df = confidence_histogram(confidences, labels, width=0.1)
    counts = {(r.confidence, r.sentiment): r.rows for r in df.itertuples()}
    assert counts == {
        ("0.50–0.60", "negative"): 2,  # 0.599 and 0.3 (below the range: first bin)
        ("0.50–0.60", "positive"): 2,
        ("0.60–0.70", "negative"): 1,  # 0.6 opens its bin
        ("0.60–0.70", "positive"): 0,
        ("0.70–0.80", "negative"): 0,
        ("0.70–0.80", "positive"): 0,
        ("0.80–0.90", "negative"): 0,
        ("0.80–0.90", "positive"): 0,
        ("0.90–1.00", "negative"): 1,
        ("0.90–1.00", "positive"): 1,  # 1.0 closes the last bin
    }
    assert df["rows"].sum() == len(confidences)


def test_histogram_floating_point_edges_land_in_the_bin_they_open() -> None:
    df = confidence_histogram([0.55, 0.65, 0.85], ["positive"] * 3)
    filled = df[df["rows"] > 0]["confidence"].tolist()
    assert filled == ["0.55–0.60", "0.65–0.70", "0.85–0.90"]


def test_histogram_order_matches_bins() -> None:
    assert histogram_order()[0] == "0.50–0.55" and histogram_order()[-1] == "0.95–1.00"
    assert confidence_histogram([], [])["confidence"].unique().tolist() == histogram_order()


def test_histogram_needs_one_label_per_value() -> None:
    with pytest.raises(ValueError):
        confidence_histogram([0.9], [])
