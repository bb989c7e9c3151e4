"""The performance-estimation benchmark's pure parts on tiny hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from loadtests.performance_estimation import (
    DEFAULT_VARIANT,
    KIND_DOMAIN,
    KIND_LABEL,
    KIND_NO_SHIFT,
    VARIANTS,
    PoolScores,
    build_rows,
    describe_pool,
    direction,
    draw_windows,
    evaluate_pool,
    fit_variants,
    format_method_table,
    format_table,
    label_mix,
    pool_accuracy_mae,
    short_unseen_rows,
    summarize,
    target_for,
    verdict,
    window_means,
)
from monitoring.performance import IdentityCalibration, PerformanceEstimator


def test_draw_windows_is_seeded_and_draws_without_replacement() -> None:
    first = draw_windows(10, 4, 3, np.random.default_rng(7))
    again = draw_windows(10, 4, 3, np.random.default_rng(7))
    assert first.shape == (3, 4)
    assert np.array_equal(first, again)
    for window in first:
        assert len(set(window.tolist())) == 4
        assert window.min() >= 0 and window.max() < 10
        assert window.tolist() == sorted(window.tolist())
    assert not np.array_equal(first, draw_windows(10, 4, 3, np.random.default_rng(8)))
    whole = draw_windows(5, 5, 2, np.random.default_rng(0))
    assert whole.tolist() == [[0, 1, 2, 3, 4]] * 2
    with pytest.raises(ValueError, match="window of 6 from a pool of 5"):
        draw_windows(5, 6, 1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        draw_windows(5, 2, 0, np.random.default_rng(0))


def test_window_means() -> None:
    values = np.array([1.0, 0.0, 1.0, 1.0])
    windows = np.array([[0, 1], [2, 3], [0, 1]])
    assert window_means(values, windows).tolist() == [0.5, 1.0, 0.5]


def test_summarize_errors_against_realized() -> None:
    summary = summarize(np.array([0.80, 0.90, 0.70]), np.array([0.78, 0.85, 0.75]))
    assert summary["mae"] == pytest.approx(0.04)
    assert summary["within"] == pytest.approx(1 / 3)  # 0.02 is within 3 points; 0.05 is not
    assert summary["mean_estimate"] == pytest.approx(0.8)
    assert summary["mean_realized"] == pytest.approx(0.7933333)
    assert summary["bias"] == pytest.approx(0.02 / 3)
    assert summary["max_abs_error"] == pytest.approx(0.05)
    exactly = summarize(np.array([0.83]), np.array([0.80]))
    assert exactly["within"] == 1.0  # an error of exactly 3 points counts as within
    with pytest.raises(ValueError):
        summarize(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        summarize(np.array([0.5]), np.array([0.5, 0.6]))


def test_direction_follows_the_realized_change() -> None:
    baseline = {"mean_estimate": 0.83, "mean_realized": 0.84}
    up = direction({"mean_estimate": 0.86, "mean_realized": 0.88}, baseline)
    assert up["right"] is True
    assert up["delta_estimate"] == pytest.approx(0.03)
    assert up["delta_realized"] == pytest.approx(0.04)
    wrong = direction({"mean_estimate": 0.82, "mean_realized": 0.88}, baseline)
    assert wrong["right"] is False
    flat = direction({"mean_estimate": 0.80, "mean_realized": 0.845}, baseline)
    assert flat["right"] is None  # realized moved 0.005 < 0.01: nothing to follow


def test_pool_accuracy_mae() -> None:
    assert pool_accuracy_mae(np.array([0.8, 0.9, 0.7]), 0.8) == pytest.approx(0.2 / 3)


def test_short_unseen_rows() -> None:
    texts = [
        "a gripping film",  # 0: short, unseen
        "it is a long and gripping film",  # 1: too long
        "dull",  # 2: seen in training
        " a gripping film ",  # 3: the same text as row 0
        "",  # 4: empty
        "one two three four",  # 5: four words, kept
        "one two three four five",  # 6: five words
    ]
    assert short_unseen_rows(texts, 4, {"dull"}) == [0, 5]
    assert short_unseen_rows(texts, 1, set()) == [2]


def test_label_mix() -> None:
    true = np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 1])  # 4 positives, 6 negatives
    quarter = label_mix(true, 0.25)  # all 6 negatives, 2 of the positives
    assert quarter.tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert true[quarter].mean() == 0.25
    three_quarters = label_mix(true, 0.75)  # all 4 positives, the first of the negatives
    assert true[three_quarters].tolist().count(1) == 4
    assert np.flatnonzero(three_quarters & (true == 0)).tolist() == [0]
    assert label_mix(true, 1.0).tolist() == (true == 1).tolist()
    assert label_mix(true, 0.0).tolist() == (true == 0).tolist()
    with pytest.raises(ValueError):
        label_mix(true, 1.5)


def test_targets_from_the_issue() -> None:
    assert target_for("sst2_unseen", KIND_NO_SHIFT, 500) == 0.02
    assert target_for("sst2_unseen", KIND_NO_SHIFT, 200) is None
    assert target_for("amazon", KIND_DOMAIN, 500) == 0.04
    assert target_for("sst2_negative", KIND_LABEL, 500) is None


def _scores(confidence: list[float], predicted: list[int], true: list[int]) -> PoolScores:
    return PoolScores(
        np.asarray(confidence, np.float64),
        np.asarray(predicted, np.int8),
        np.asarray(true, np.int8),
    )


def test_pool_scores_correct_and_subset() -> None:
    scores = _scores([0.9, 0.8, 0.7], [1, 0, 1], [1, 1, 1])
    assert scores.correct.tolist() == [True, False, True]
    assert len(scores.subset(scores.predicted == 1)) == 2


def test_evaluate_pool_on_whole_pool_windows() -> None:
    # Windows as large as the pool: every window is the pool, so the numbers are exact.
    scores = _scores([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 0], [1, 0, 0, 0])
    estimators = {"confidence": PerformanceEstimator(IdentityCalibration())}
    out = evaluate_pool(scores, estimators, [4], 3, np.random.default_rng(0))
    summary = out[(4, "confidence")]
    assert summary["mean_estimate"] == pytest.approx(0.75)
    assert summary["mean_realized"] == pytest.approx(0.75)
    assert summary["mae"] == pytest.approx(0.0)
    assert summary["pool_accuracy_mae"] == pytest.approx(0.0)
    assert summary["outside_label_shift"] == 0.0


def test_fit_variants_names_and_label_shift_step() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 200)
    predicted = rng.integers(0, 2, 200)
    true = np.where(rng.random(200) < confidence, predicted, 1 - predicted)
    estimators = fit_variants(
        PoolScores(confidence, predicted.astype(np.int8), true.astype(np.int8)), VARIANTS
    )
    assert set(estimators) == set(VARIANTS)
    assert DEFAULT_VARIANT in VARIANTS and DEFAULT_VARIANT.endswith("+prior")
    assert estimators["temperature"].fitted_prior is None
    assert estimators["temperature+prior"].fitted_prior == pytest.approx(np.mean(true == 1))
    assert "threshold+prior" not in estimators
    assert estimators["temperature+prior"].band is not None
    assert estimators["temperature+prior/noband"].band is None
    assert estimators["temperature+prior/noband"].fitted_prior is not None
    info = describe_pool(
        PoolScores(confidence, predicted.astype(np.int8), true.astype(np.int8)),
        KIND_NO_SHIFT,
        estimators,
    )
    assert info["size"] == 200
    assert set(info["estimate"]) == set(VARIANTS)
    assert info["estimated_positive_share"]["confidence"] is None


def _summary(est: float, real: float, mae: float) -> dict[str, float]:
    return {
        "mae": mae,
        "within": 1.0,
        "mean_estimate": est,
        "mean_realized": real,
        "bias": est - real,
        "max_abs_error": mae,
        "pool_accuracy_mae": 0.01,
    }


def test_rows_verdict_and_tables() -> None:
    pools = {
        "sst2_unseen": _scores([0.9] * 4, [1, 1, 0, 0], [1, 1, 0, 1]),
        "amazon": _scores([0.9] * 4, [1, 1, 0, 0], [1, 1, 0, 0]),
        "sst2_negative": _scores([0.9] * 4, [0, 0, 0, 0], [0, 0, 0, 0]),
    }
    kinds = {"sst2_unseen": KIND_NO_SHIFT, "amazon": KIND_DOMAIN, "sst2_negative": KIND_LABEL}
    results = {
        "sst2_unseen": {(500, "m"): _summary(0.80, 0.80, 0.015)},
        "amazon": {(500, "m"): _summary(0.85, 0.88, 0.05)},  # misses 0.04, right direction
        "sst2_negative": {(500, "m"): _summary(0.78, 0.90, 0.12)},  # wrong direction
    }
    rows = build_rows(results, pools, kinds, ["m"], [500])
    by_pool = {r["pool"]: r for r in rows}
    assert by_pool["sst2_unseen"]["meets_target"] is True
    assert by_pool["sst2_unseen"]["direction"] is None
    assert by_pool["amazon"]["meets_target"] is False
    assert by_pool["amazon"]["direction"]["right"] is True
    assert by_pool["sst2_negative"]["target"] is None
    assert by_pool["sst2_negative"]["direction"]["right"] is False
    result = verdict(rows, "m")
    assert result["targets"] == {"sst2_unseen@500": True, "amazon@500": False}
    assert result["directions"] == {"amazon@500": True, "sst2_negative@500": False}
    assert result["all_met"] is False

    lines = format_table(rows).splitlines()
    assert lines[0].startswith("pool")
    assert lines[2].rstrip().endswith("yes")
    assert "right" in lines[3] and lines[3].rstrip().endswith("NO")
    assert "WRONG" in lines[4]
    methods = format_method_table(rows, ["m", "other"]).splitlines()
    assert methods[0].split(" | ")[2].strip() == "m"
    assert methods[2].split(" | ")[2].strip() == "0.0150"
    assert methods[2].rstrip().endswith("-")
