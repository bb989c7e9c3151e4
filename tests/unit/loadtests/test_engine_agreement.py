"""The engine-agreement report's arithmetic, on hand-built predictions."""

from __future__ import annotations

import pytest

from loadtests.engine_agreement import Disagreement, accuracy, batch_shift, disagreements


def test_only_the_texts_with_other_labels_are_listed_with_both_confidences() -> None:
    a = [("positive", 0.9), ("negative", 0.51234), ("positive", 0.6)]
    b = [("positive", 0.8), ("positive", 0.50011), ("positive", 0.7)]
    assert disagreements(a, b) == [Disagreement(1, "negative", 0.5123, "positive", 0.5001)]
    assert disagreements(a, a) == []


def test_runs_of_other_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 predictions against 1"):
        disagreements([("positive", 0.9)] * 2, [("positive", 0.9)])


def test_accuracy_counts_positive_as_1() -> None:
    predicted = [("positive", 0.9), ("negative", 0.8), ("positive", 0.6), ("negative", 0.7)]
    assert accuracy(predicted, [1, 0, 0, 0]) == 0.75


def test_batch_shift_compares_positive_probabilities() -> None:
    alone = [("positive", 0.9), ("negative", 0.6), ("positive", 0.7)]
    # 0.6 negative is 0.4 positive; 0.55 positive moved it by 0.15. The third moved by 1e-7.
    batched = [("positive", 0.9), ("positive", 0.55), ("positive", 0.7000001)]
    assert batch_shift(alone, batched) == {"max_shift": 0.15, "texts_moved": 1}
    assert batch_shift(alone, alone) == {"max_shift": 0.0, "texts_moved": 0}
    with pytest.raises(ValueError, match="1 predictions against 3"):
        batch_shift(alone[:1], batched)
