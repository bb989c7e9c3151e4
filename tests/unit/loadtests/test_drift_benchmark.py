"""The drift benchmark's pure parts: finding SST's full sentences, rates, targets."""

from __future__ import annotations

import numpy as np
import pytest

from loadtests.drift_benchmark import (
    PoolPredictions,
    alarm_rates,
    format_table,
    full_sentence_rows,
    meets,
    target_for,
)


def test_full_sentence_rows_keeps_only_rows_that_are_no_span_of_another() -> None:
    texts = [
        "a gripping film",  # 0: span of row 3
        "gripping",  # 1: span
        "dull and slow .",  # 2: a sentence
        "it is a gripping film .",  # 3: a sentence
        "and slow",  # 4: span of row 2
        "grip",  # 5: a substring but not a token span of any row: its own sentence
        "dull and slow .",  # 6: duplicate of 2
    ]
    assert full_sentence_rows(texts) == [2, 3, 5]


def test_alarm_rates_count_windows_per_test() -> None:
    def report(overall: bool, **tests: bool) -> dict:
        names = ("confidence_ks", "label_chi2", "length_ks", "embedding_mmd")
        return {
            "drift_detected": overall,
            "tests": {n: {"drift_detected": tests.get(n, False)} for n in names},
        }

    rates = alarm_rates(
        [
            report(True, length_ks=True),
            report(True, length_ks=True, label_chi2=True),
            report(False),
            report(False),
        ]
    )
    assert rates == {
        "overall": 0.5,
        "confidence_ks": 0.0,
        "label_chi2": 0.25,
        "length_ks": 0.5,
        "embedding_mmd": 0.0,
    }
    with pytest.raises(ValueError):
        alarm_rates([])


def test_targets_from_the_issue() -> None:
    assert target_for("no drift", 200) == ("<=", 0.05)
    assert target_for("domain shift", 200) is None
    assert target_for("domain shift", 500) == (">=", 0.95)
    assert target_for("label shift", 200) == (">=", 0.95)
    assert target_for("phrases", 500) is None
    assert meets(("<=", 0.05), 0.04) is True
    assert meets(("<=", 0.05), 0.06) is False
    assert meets((">=", 0.95), 0.95) is True
    assert meets(None, 1.0) is None


def test_pool_windows_and_subsets() -> None:
    preds = PoolPredictions(
        confidence=np.array([0.9, 0.8, 0.7], np.float32),
        label=np.array([1, 0, 1], np.int8),
        n_chars=np.array([10, 20, 30], np.int32),
        n_tokens=np.array([2, 4, 6], np.int32),
        embeddings=np.eye(3, dtype=np.float32),
        true_label=np.array([1, 0, 0], np.int8),
    )
    negatives = preds.subset(preds.true_label == 0)
    assert negatives.n_chars.tolist() == [20, 30]
    window = preds.window(np.array([0, 2]))
    assert window.n_tokens.tolist() == [2, 6]
    assert window.embeddings is not None and window.embeddings.shape == (2, 3)


def test_format_table_marks_targets() -> None:
    rates = {
        "overall": 0.02,
        "confidence_ks": 0.0,
        "label_chi2": 0.02,
        "length_ks": 0.0,
        "embedding_mmd": 0.0,
    }
    row = {
        "pool": "sst2_unseen",
        "kind": "no drift",
        "window_size": 200,
        "windows": 50,
        "rates": rates,
        "target": ("<=", 0.05),
        "meets_target": True,
    }
    table = format_table([row, {**row, "meets_target": False}])
    lines = table.splitlines()
    assert lines[0].startswith("pool")
    assert "<= 0.05" in lines[2] and lines[2].rstrip().endswith("yes")
    assert lines[3].rstrip().endswith("NO")
