"""The accuracy estimator and realized accuracy on hand-built scores with exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.performance import (
    METHODS,
    AccuracyEstimate,
    HistogramCalibration,
    IdentityCalibration,
    IsotonicCalibration,
    LabelShiftBand,
    PerformanceEstimator,
    TemperatureCalibration,
    ThresholdCalibration,
    calibration_from_dict,
    confidence_logits,
    correct_mask,
    estimated_accuracy,
    estimator_from_dict,
    fit_calibration,
    fit_estimator,
    fit_histogram,
    fit_isotonic,
    fit_temperature_factor,
    fit_threshold,
    label_shift_prior,
    performance_report,
    pool_adjacent_violators,
    positive_probabilities,
    realized_accuracy,
    reweight_positive,
    shadow_report,
)

# --- realized accuracy -----------------------------------------------------------------------


def test_realized_accuracy_over_pairs() -> None:
    pairs = [("positive", "positive"), ("negative", "positive"), ("negative", "negative")]
    assert realized_accuracy(pairs) == pytest.approx(2 / 3)
    assert realized_accuracy([(1, 1), (0, 0)]) == 1.0
    assert realized_accuracy(iter([(1, 0)])) == 0.0
    assert realized_accuracy([]) is None


def test_correct_mask() -> None:
    assert correct_mask([1, 0, 1], [1, 1, 1]).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="2 predictions but 1 labels"):
        correct_mask([1, 0], [1])


# --- the estimate on calibrated and miscalibrated scores -------------------------------------


def test_calibrated_scores_estimate_equals_accuracy() -> None:
    # 10 predictions at 0.9 of which 9 are right, 10 at 0.6 of which 6 are right.
    confidences = [0.9] * 10 + [0.6] * 10
    correct = [True] * 9 + [False] + [True] * 6 + [False] * 4
    assert estimated_accuracy(confidences) == pytest.approx(0.75)
    assert np.mean(correct) == pytest.approx(0.75)


def test_calibrated_scores_estimate_equals_accuracy_in_expectation() -> None:
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.5, 1.0, 200_000)
    correct = rng.random(confidences.size) < confidences
    # The gap is sampling noise only: its standard deviation is about 0.001 here.
    assert estimated_accuracy(confidences) == pytest.approx(correct.mean(), abs=0.005)


def test_overconfident_scores_overestimate_by_the_calibration_gap() -> None:
    confidences = np.full(20, 0.9)
    correct = np.array([True] * 14 + [False] * 6)  # accuracy 0.7
    assert estimated_accuracy(confidences) == pytest.approx(0.9)  # the gap: +0.2
    calibration = fit_calibration(confidences, correct, "temperature")
    assert isinstance(calibration, TemperatureCalibration)
    # One confidence level: the fitted temperature maps it exactly to the accuracy.
    assert calibration.factor == pytest.approx(math.log(9) / math.log(7 / 3), rel=1e-4)
    assert estimated_accuracy(confidences, calibration) == pytest.approx(0.7, abs=1e-5)


def test_underconfident_scores_get_a_sharper_temperature() -> None:
    confidences = np.full(10, 0.6)
    correct = np.array([True] * 9 + [False])
    factor = fit_temperature_factor(confidences, correct.astype(float))
    assert factor < 1.0
    assert TemperatureCalibration(factor).apply(np.array([0.6]))[0] == pytest.approx(0.9, abs=1e-5)


def test_estimate_of_an_empty_window_is_none() -> None:
    assert estimated_accuracy([]) is None
    assert PerformanceEstimator(IdentityCalibration(), 0.5).estimate([], []) is None


def test_confidence_logits_clip_a_rounded_one() -> None:
    logits = confidence_logits([0.5, 1.0, 0.3])
    assert logits[0] == 0.0
    assert math.isfinite(logits[1]) and logits[1] > 15
    assert logits[2] == 0.0  # below 0.5 is clipped: never the predicted class of two


# --- calibration maps ------------------------------------------------------------------------


def test_histogram_bins_of_equal_mass_and_their_accuracy() -> None:
    confidences = np.array([0.9, 0.6, 0.7, 0.6, 0.9, 0.7])
    correct = np.array([1, 0, 1, 1, 1, 1], dtype=float)
    calibration = fit_histogram(confidences, correct, bins=3)
    assert calibration.edges == (0.6, 0.7)
    assert calibration.accuracy == (0.5, 1.0, 1.0)
    applied = calibration.apply(np.array([0.55, 0.6, 0.65, 0.7, 0.95]))
    assert applied.tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]


def test_histogram_never_splits_a_tie() -> None:
    calibration = fit_histogram(np.full(6, 0.8), np.array([1, 1, 1, 0, 0, 0.0]), bins=3)
    assert calibration.edges == ()
    assert calibration.accuracy == (0.5,)
    with pytest.raises(ValueError):
        fit_histogram(np.full(2, 0.8), np.ones(2), bins=0)


def test_pool_adjacent_violators() -> None:
    assert pool_adjacent_violators(np.array([1.0, 3.0, 2.0, 4.0])).tolist() == [1, 2.5, 2.5, 4]
    weighted = pool_adjacent_violators(np.array([1.0, 3.0, 2.0, 4.0]), np.array([1, 1, 3, 1.0]))
    assert weighted.tolist() == [1, 2.25, 2.25, 4]
    assert pool_adjacent_violators(np.array([3.0, 2.0, 1.0])).tolist() == [2, 2, 2]


def test_isotonic_map_through_block_means() -> None:
    calibration = fit_isotonic(np.array([0.6, 0.7, 0.8, 0.9]), np.array([0, 1, 0, 1.0]))
    assert calibration.x == pytest.approx((0.6, 0.75, 0.9))
    assert calibration.y == (0.0, 0.5, 1.0)
    applied = calibration.apply(np.array([0.5, 0.65, 0.75, 0.95]))
    assert applied == pytest.approx([0.0, 1 / 6, 0.5, 1.0])  # linear from (0.6, 0) to (0.75, 0.5)


def test_threshold_keeps_the_accuracy_share_above_it() -> None:
    confidences = np.array([0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 0, 1, 1, 0.0])  # accuracy 0.6: three of five above the threshold
    threshold = fit_threshold(confidences, correct)
    assert threshold == 0.8
    assert estimated_accuracy(confidences, ThresholdCalibration(threshold)) == pytest.approx(0.6)
    assert fit_threshold(confidences, np.zeros(5)) > 0.95


def test_fit_calibration_checks_its_input() -> None:
    assert isinstance(fit_calibration([], [], "confidence"), IdentityCalibration)
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibration([0.9], [True], "platt")
    with pytest.raises(ValueError, match="same length"):
        fit_calibration([0.9, 0.8], [True], "temperature")
    with pytest.raises(ValueError, match="at least one"):
        fit_calibration([], [], "histogram")


@pytest.mark.parametrize("method", METHODS)
def test_every_calibration_round_trips_through_a_plain_dict(method: str) -> None:
    rng = np.random.default_rng(1)
    confidences = rng.uniform(0.5, 1.0, 300)
    correct = rng.random(300) < confidences
    calibration = fit_calibration(confidences, correct, method)
    again = calibration_from_dict(calibration.to_dict())
    assert again == calibration
    probe = np.linspace(0.5, 1.0, 11)
    assert np.array_equal(again.apply(probe), calibration.apply(probe))


def test_bad_stored_calibrations_are_refused() -> None:
    with pytest.raises(ValueError):
        calibration_from_dict({"method": "histogram", "edges": [0.7], "accuracy": [0.5]})
    with pytest.raises(ValueError):
        calibration_from_dict({"method": "isotonic", "x": [], "y": []})
    with pytest.raises(ValueError):
        calibration_from_dict({"method": "magic"})
    assert isinstance(
        calibration_from_dict({"method": "histogram", "edges": [], "accuracy": [0.8]}),
        HistogramCalibration,
    )
    assert isinstance(
        calibration_from_dict({"method": "isotonic", "x": [0.5], "y": [0.5]}), IsotonicCalibration
    )


# --- label shift -----------------------------------------------------------------------------


def test_positive_probabilities_from_the_predicted_class() -> None:
    assert positive_probabilities([0.9, 0.7], [1, 0]).tolist() == pytest.approx([0.9, 0.3])
    with pytest.raises(ValueError):
        positive_probabilities([0.9], [1, 0])


def test_label_shift_prior_maximises_the_likelihood() -> None:
    # p = 0.9 and 0.2 under a 50 % prior: the slope 1.6/(0.2 + 1.6q) - 1.2/(1.6 - 1.2q) is 0
    # at q = 29/48.
    q = label_shift_prior(np.array([0.9, 0.2]), 0.5)
    assert q == pytest.approx(29 / 48, abs=1e-9)
    # The fixed point of EM: the reweighted posteriors average to the prior they assume.
    assert reweight_positive(np.array([0.9, 0.2]), 0.5, q).mean() == pytest.approx(q, abs=1e-9)


def test_label_shift_prior_at_the_ends_and_when_flat() -> None:
    assert label_shift_prior(np.array([0.8, 0.9]), 0.5) == 1.0
    assert label_shift_prior(np.array([0.1, 0.2]), 0.5) == 0.0
    assert label_shift_prior(np.full(4, 0.3), 0.3) == 0.3  # the likelihood is flat
    assert label_shift_prior(np.array([]), 0.4) == 0.4
    with pytest.raises(ValueError):
        label_shift_prior(np.array([0.5]), 1.0)


def test_reweight_positive_follows_bayes() -> None:
    # Odds 0.8/0.2 = 4 at a 50 % prior become 4 · (0.2/0.8) = 1 at a 20 % prior.
    assert reweight_positive(np.array([0.8]), 0.5, 0.2)[0] == pytest.approx(0.5)
    assert reweight_positive(np.array([0.8]), 0.5, 0.5)[0] == pytest.approx(0.8)
    assert reweight_positive(np.array([0.8]), 0.5, 0.0)[0] == 0.0


def _two_kinds(n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Texts of kind A (P(positive) = 0.9: predicted positive at 0.9) and kind B (P(positive) =
    0.3: predicted negative at 0.7), calibrated where half the texts are A: positives 60 %."""
    confidences = np.array([0.9] * n_a + [0.7] * n_b)
    predicted = np.array([1] * n_a + [0] * n_b)
    return confidences, predicted


def test_label_shift_step_recovers_the_accuracy_of_a_new_label_mix() -> None:
    # Positives drop from 60 % to 30 % (P(text | label) unchanged). Then 31.25 % of the texts are
    # A, right 72 % of the time, and 68.75 % are B, right 89.09 % of the time: accuracy 0.8375.
    confidences, predicted = _two_kinds(5, 11)
    estimator = PerformanceEstimator(IdentityCalibration(), fitted_prior=0.6)
    estimate = estimator.estimate(confidences, predicted)
    assert estimate is not None
    assert estimate.positive_share == pytest.approx(0.3, abs=1e-9)
    assert estimate.estimated == pytest.approx(0.8375, abs=1e-9)
    # Without the step: the mean confidence, 0.7625, moves down while the accuracy moves up.
    assert estimate.unadjusted == pytest.approx(0.7625)
    assert estimate.count == 16


def test_label_shift_step_on_only_negatives() -> None:
    # Only negatives: 12.5 % A (all wrong), 87.5 % B (all right).
    confidences, predicted = _two_kinds(1, 7)
    estimate = PerformanceEstimator(IdentityCalibration(), 0.6).estimate(confidences, predicted)
    assert estimate is not None
    assert estimate.positive_share == pytest.approx(0.0, abs=1e-8)
    assert estimate.estimated == pytest.approx(0.875, abs=1e-8)


def test_label_shift_step_changes_nothing_on_the_fitting_mix() -> None:
    confidences, predicted = _two_kinds(8, 8)  # the mix the posteriors were calibrated on
    estimate = PerformanceEstimator(IdentityCalibration(), 0.6).estimate(confidences, predicted)
    assert estimate is not None
    assert estimate.positive_share == pytest.approx(0.6, abs=1e-9)
    assert estimate.estimated == pytest.approx(0.8, abs=1e-9)
    assert estimate.unadjusted == pytest.approx(0.8)


def test_without_a_fitted_prior_the_estimate_is_the_mean_calibrated_confidence() -> None:
    confidences, predicted = _two_kinds(5, 11)
    estimate = PerformanceEstimator(IdentityCalibration()).estimate(confidences, predicted)
    assert estimate == AccuracyEstimate(0.7625, 0.7625, None, 16)


def test_label_shift_band_with_sampling_slack() -> None:
    band = LabelShiftBand(
        false_positive_rate=0.15, true_positive_rate=0.80, negatives=400, positives=400
    )
    # Slack at 500 predictions: 3·sqrt(0.8·0.2·(1/500 + 1/400)) = 0.0805 above 0.80,
    # 3·sqrt(0.15·0.85·(1/500 + 1/400)) = 0.0719 below 0.15.
    assert band.admits(0.5, 500)
    assert band.admits(0.87, 500) and not band.admits(0.89, 500)
    assert band.admits(0.08, 500) and not band.admits(0.07, 500)
    assert not band.admits(1.0, 500)
    assert band.admits(1.0, 5)  # five predictions say little


def test_the_band_refuses_the_step_for_a_share_no_label_mix_gives() -> None:
    # Fitted where A (predicted positive) and B (predicted negative) are half each: with labels,
    # positives are predicted positive 75 % of the time, negatives 12.5 % of the time.
    band = LabelShiftBand(0.125, 0.75, negatives=400, positives=600)
    estimator = PerformanceEstimator(IdentityCalibration(), 0.6, band)
    all_positive = estimator.estimate(*_two_kinds(500, 0))
    assert all_positive is not None and all_positive.outside_label_shift
    assert all_positive.estimated == all_positive.unadjusted == pytest.approx(0.9)
    assert all_positive.positive_share is None
    # Without the band the step reads "every text positive" and every prediction as right.
    unbounded = PerformanceEstimator(IdentityCalibration(), 0.6).estimate(*_two_kinds(500, 0))
    assert unbounded is not None and unbounded.estimated == pytest.approx(1.0)
    inside = estimator.estimate(*_two_kinds(5, 11))
    assert inside is not None and not inside.outside_label_shift
    assert inside.estimated == pytest.approx(0.8375, abs=1e-9)


def test_fit_estimator_and_its_plain_dict() -> None:
    confidences = np.array([0.9, 0.9, 0.7, 0.7])
    predicted = np.array([1, 1, 0, 0])
    true = np.array([1, 0, 0, 0])
    estimator = fit_estimator(confidences, predicted, true, "histogram")
    assert estimator.fitted_prior == 0.25
    assert estimator.band == LabelShiftBand(1 / 3, 1.0, negatives=3, positives=1)
    assert estimator_from_dict(estimator.to_dict()) == estimator
    unbounded = fit_estimator(confidences, predicted, true, band=False)
    assert unbounded.band is None and unbounded.fitted_prior == 0.25
    assert estimator_from_dict(unbounded.to_dict()) == unbounded
    plain = fit_estimator(confidences, predicted, true, "confidence", label_shift=False)
    assert plain == PerformanceEstimator(IdentityCalibration(), None)
    assert estimator_from_dict(plain.to_dict()) == plain
    with pytest.raises(ValueError, match="both labels"):
        fit_estimator(confidences, predicted, np.zeros(4, int))


def test_performance_report_block() -> None:
    estimate = AccuracyEstimate(0.83456, 0.81234, 0.41, 500)
    report = performance_report(estimate, [("positive", "positive"), ("negative", "positive")], 500)
    assert report == {
        "estimated_accuracy": 0.8346,
        "estimated_accuracy_unadjusted": 0.8123,
        "estimated_positive_share": 0.41,
        "outside_label_shift": False,
        "realized_accuracy": 0.5,
        "labelled_count": 2,
        "window": 500,
    }
    empty = performance_report(None, [], 1000)
    assert empty["estimated_accuracy"] is None and empty["realized_accuracy"] is None
    assert empty["labelled_count"] == 0


def test_shadow_report_compares_the_challenger_with_the_served_model() -> None:
    pairs = [("p", "p", "p"), ("p", "n", None), ("n", "n", "p"), ("n", "p", "p")]
    assert shadow_report("sentiment:v2-x", pairs) == {
        "tag": "sentiment:v2-x",
        "compared": 4,
        "agreement": 0.5,
        "champion_realized_accuracy": 0.3333,
        "challenger_realized_accuracy": 0.6667,
        "labelled_count": 3,
    }
    empty = shadow_report("t", [])
    assert empty["compared"] == 0 and empty["agreement"] is None
    assert empty["champion_realized_accuracy"] is None and empty["labelled_count"] == 0
