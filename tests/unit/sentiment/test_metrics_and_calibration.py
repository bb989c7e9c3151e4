import numpy as np
import pytest

from sentiment.calibration import (
    expected_calibration_error,
    fit_temperature,
    softmax_with_temperature,
)
from sentiment.metrics import classification_metrics, confusion_counts
from training.finetune import linear_warmup_schedule


def test_confusion_and_metrics_exact() -> None:
    labels = [1, 1, 1, 0, 0]
    preds = [1, 1, 0, 1, 0]
    assert confusion_counts(labels, preds) == {"tp": 2, "tn": 1, "fp": 1, "fn": 1}
    m = classification_metrics(labels, preds)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)


def test_metrics_without_positives_are_zero_not_nan() -> None:
    assert classification_metrics([0, 0], [0, 0]) == {
        "accuracy": 1.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }


def test_softmax_temperature() -> None:
    probs = softmax_with_temperature(np.array([[0.0, np.log(3.0)]]))
    assert probs[0].tolist() == pytest.approx([0.25, 0.75])
    flatter = softmax_with_temperature(np.array([[0.0, 2.0]]), temperature=2.0)
    assert flatter[0, 1] == pytest.approx(np.exp(1) / (1 + np.exp(1)))
    with pytest.raises(ValueError):
        softmax_with_temperature(np.zeros((1, 2)), 0)


def test_ece_exact() -> None:
    # Two bins: conf 0.95 all right (gap .05), conf 0.55 half right (gap .05).
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1, 1, 1, 0])
    assert expected_calibration_error(conf, correct) == pytest.approx(0.05)
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0


def test_fit_temperature_softens_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    # 70 % right but with huge margins: the best temperature is well above 1.
    right = rng.random(400) < 0.7
    predicted = np.where(right, labels, 1 - labels)
    logits = np.zeros((400, 2))
    logits[np.arange(400), predicted] = 8.0
    assert fit_temperature(logits, labels) > 3.0


def test_linear_warmup_schedule() -> None:
    f = linear_warmup_schedule(total_steps=10, warmup_steps=2)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == 1.0
    assert f(6) == pytest.approx(0.5)
    assert f(10) == 0.0
