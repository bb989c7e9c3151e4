"""Two accuracies of the served model, as pure functions.

- **Realized accuracy**: the share of labelled predictions whose predicted label is the true
  one (`realized_accuracy` over (predicted, true) pairs). Which pairs (the last `window_size`
  labelled predictions of one model version) is the caller's concern.
- **Estimated accuracy without labels** (confidence-based performance estimation): when the
  confidence of a prediction is the probability that it is right, the expected accuracy of a
  window is the mean of those probabilities. The served confidence is the softmax probability of
  the predicted class after the model's temperature scaling; a `Calibration` fitted on labelled
  predictions (`fit_calibration`) maps it to the probability of being right, where the
  model's own temperature is not enough.
- **Label shift.** A model calibrated on one mix of labels is not calibrated on another: with
  only negative texts, the negatives it predicts are all right and its positives all wrong,
  whatever their confidences say. `PerformanceEstimator` therefore first estimates the window's
  share of positives (the maximum-likelihood prior under label shift, Saerens et al. 2002),
  reweights each calibrated posterior by new prior / fitting prior, and only then averages the
  probability of the predicted class. The share is reported with the estimate.

An estimator is fitted once, offline, on labelled predictions the model did not train on (SST-2
validation at import time, or labels fed back by users), and stored as a plain dict (`to_dict`
/ `estimator_from_dict`) so that a container needs no class of this package to read it.

The confidences are those of a two-class model (the predicted class's probability, in
[0.5, 1]): `TemperatureCalibration` rescales the logit of that probability, which for two
classes is exactly a change of the softmax temperature.

Limits. Concept shift (the same text now meaning another label) is invisible to any label-free
estimate: the confidences do not move, so neither does the estimate. The label-shift step
assumes that what changed is the mix of labels; where the inputs change so much that the model
predicts one class for nearly everything (garbage, one spammer), it would read that as a window
of that class and the estimate would go up, not down. `LabelShiftBand` refuses the step where
the share of positive predictions lies outside what label shift can produce (between the
fitting predictions' false- and true-positive rates, with sampling slack), and
`AccuracyEstimate.unadjusted` keeps the plain mean of the calibrated confidences beside it; a
change of the inputs that stays inside the band can still fool the step, and the drift tests
are what flags it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

import numpy as np

# Confidences are clipped into [CONFIDENCE_FLOOR, CONFIDENCE_CEILING] before a logit is taken:
# a float32 softmax rounds very confident predictions to exactly 1.0.
CONFIDENCE_FLOOR = 0.5
CONFIDENCE_CEILING = 1.0 - 1e-7

# Temperature factors searched by `fit_temperature_factor` (multiplying the served temperature).
TEMPERATURE_FACTOR_BOUNDS = (0.05, 20.0)

# Histogram calibration: equal-mass bins over the fitting confidences.
DEFAULT_HISTOGRAM_BINS = 10

# The methods `fit_calibration` knows, in the order the benchmark reports them.
METHOD_CONFIDENCE = "confidence"  # the served confidence as it is (the model's temperature)
METHOD_TEMPERATURE = "temperature"  # a temperature refitted on labelled predictions
METHOD_HISTOGRAM = "histogram"  # accuracy per equal-mass confidence bin
METHOD_ISOTONIC = "isotonic"  # a non-decreasing map from confidence to accuracy
METHOD_THRESHOLD = "threshold"  # the share of predictions above a fitted confidence threshold
METHODS: tuple[str, ...] = (
    METHOD_CONFIDENCE,
    METHOD_TEMPERATURE,
    METHOD_HISTOGRAM,
    METHOD_ISOTONIC,
    METHOD_THRESHOLD,
)

# What `fit_calibration` and `fit_estimator` use when no method is named: measured by
# `loadtests/performance_estimation.py` (README, "Two accuracies").
DEFAULT_METHOD = METHOD_TEMPERATURE

# Where the import step stores the fitted estimator in the Bento model (its to_dict()).
ESTIMATOR_OBJECT_KEY = "performance_estimator"

# Probabilities are clipped into [PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON] for the
# label-shift likelihood, and its maximum is found by bisection to PRIOR_TOLERANCE.
PROBABILITY_EPSILON = 1e-7
PRIOR_TOLERANCE = 1e-10
PRIOR_BISECTIONS = 60

POSITIVE_INDEX = 1  # the positive class's index in the model's labels (sentiment.labels)

# LabelShiftBand: how many standard deviations of sampling error a window's share of positive
# predictions may lie outside the band before the label-shift step is refused.
BAND_SLACK_SD = 3.0


class Calibration(Protocol):
    """Maps served confidences to the probability that each prediction is right."""

    @property
    def method(self) -> str: ...

    def apply(self, confidences: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class IdentityCalibration:
    """The served confidence taken as the probability of being right."""

    method: str = METHOD_CONFIDENCE

    def apply(self, confidences: np.ndarray) -> np.ndarray:
        return np.asarray(confidences, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method}


@dataclass(frozen=True)
class TemperatureCalibration:
    """The served temperature multiplied by `factor`: confidence' = σ(logit(confidence) / factor).

    factor > 1 softens an over-confident model, factor < 1 sharpens an under-confident one.
    """

    factor: float
    method: str = METHOD_TEMPERATURE

    def apply(self, confidences: np.ndarray) -> np.ndarray:
        return _sigmoid(confidence_logits(confidences) / self.factor)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "factor": self.factor}


@dataclass(frozen=True)
class HistogramCalibration:
    """Accuracy of the fitting predictions per confidence bin; bin i is (edges[i-1], edges[i]]
    with open ends, so every confidence falls in one of len(edges) + 1 bins."""

    edges: tuple[float, ...]  # inner edges, increasing
    accuracy: tuple[float, ...]  # one per bin: len(edges) + 1
    method: str = METHOD_HISTOGRAM

    def apply(self, confidences: np.ndarray) -> np.ndarray:
        bins = np.searchsorted(np.asarray(self.edges), np.asarray(confidences), side="left")
        return np.asarray(self.accuracy, dtype=np.float64)[bins]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "edges": list(self.edges), "accuracy": list(self.accuracy)}


@dataclass(frozen=True)
class IsotonicCalibration:
    """A non-decreasing map through the points (x, y), linear between them, flat beyond."""

    x: tuple[float, ...]  # increasing confidences
    y: tuple[float, ...]  # non-decreasing accuracies
    method: str = METHOD_ISOTONIC

    def apply(self, confidences: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(confidences, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}


@dataclass(frozen=True)
class ThresholdCalibration:
    """A prediction counts as right when its confidence is at least `threshold`: the threshold
    is chosen so that on the fitting predictions the share above it equals their accuracy."""

    threshold: float
    method: str = METHOD_THRESHOLD

    def apply(self, confidences: np.ndarray) -> np.ndarray:
        return (np.asarray(confidences, dtype=np.float64) >= self.threshold).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "threshold": self.threshold}


# --- realized accuracy -----------------------------------------------------------------------


def correct_mask(predicted: Sequence[Hashable], true: Sequence[Hashable]) -> np.ndarray:
    """Per prediction, whether the predicted label is the true one (labels as names or ids)."""
    if len(predicted) != len(true):
        raise ValueError(f"{len(predicted)} predictions but {len(true)} labels")
    return np.asarray([p == t for p, t in zip(predicted, true, strict=True)], dtype=bool)


def realized_accuracy(pairs: Iterable[tuple[Hashable, Hashable]]) -> float | None:
    """Share of (predicted, true) pairs that agree; None when there are none."""
    total = right = 0
    for predicted, true in pairs:
        total += 1
        right += predicted == true
    return right / total if total else None


# --- estimated accuracy ----------------------------------------------------------------------


def estimated_accuracy(
    confidences: Sequence[float] | np.ndarray, calibration: Calibration | None = None
) -> float | None:
    """Mean probability of being right over a window; None for an empty window.

    Without a calibration the served confidences are taken as they are.
    """
    values = np.asarray(confidences, dtype=np.float64)
    if values.size == 0:
        return None
    probabilities = values if calibration is None else calibration.apply(values)
    return float(np.mean(probabilities))


def confidence_logits(confidences: Sequence[float] | np.ndarray) -> np.ndarray:
    """log(c / (1 - c)) of the predicted class's probability: the logit margin over the
    temperature for two classes (>= 0)."""
    c = np.clip(np.asarray(confidences, dtype=np.float64), CONFIDENCE_FLOOR, CONFIDENCE_CEILING)
    return np.asarray(np.log(c) - np.log1p(-c))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


# --- label shift ---------------------------------------------------------------------------


def positive_probabilities(
    probabilities: Sequence[float] | np.ndarray,
    predicted: Sequence[int] | np.ndarray,
    positive_index: int = POSITIVE_INDEX,
) -> np.ndarray:
    """P(positive | text) from the probability of the predicted class and its index."""
    p = np.asarray(probabilities, dtype=np.float64)
    is_positive = np.asarray(predicted) == positive_index
    if p.shape != is_positive.shape:
        raise ValueError("probabilities and predicted differ in length")
    return np.where(is_positive, p, 1.0 - p)


def label_shift_prior(positive: np.ndarray, fitted_prior: float) -> float:
    """The share of positives q that makes the window most likely under label shift.

    The posteriors P(positive | x) were right where positives had the share `fitted_prior`;
    where they have the share q, each text's likelihood is proportional to
    p·q/fitted_prior + (1 - p)·(1 - q)/(1 - fitted_prior). The log-likelihood is concave in q,
    so its maximum is an end of [0, 1] or the root of its derivative, found by bisection (the
    fixed point that the EM iteration of Saerens et al. approaches slowly).
    """
    p = np.clip(
        np.asarray(positive, dtype=np.float64), PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON
    )
    if p.size == 0:
        return fitted_prior
    if not 0.0 < fitted_prior < 1.0:
        raise ValueError("fitted_prior must lie strictly between 0 and 1")
    a = p / fitted_prior
    b = (1.0 - p) / (1.0 - fitted_prior)

    def slope(q: float) -> float:
        return float(np.sum((a - b) / (a * q + b * (1.0 - q))))

    at_zero, at_one = slope(0.0), slope(1.0)
    if at_zero <= 0.0 <= at_one:  # concave, so both are 0: a flat likelihood says nothing
        return fitted_prior
    if at_zero <= 0.0:
        return 0.0
    if at_one >= 0.0:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(PRIOR_BISECTIONS):
        mid = 0.5 * (low + high)
        if slope(mid) > 0.0:
            low = mid
        else:
            high = mid
        if high - low < PRIOR_TOLERANCE:
            break
    return 0.5 * (low + high)


def reweight_positive(positive: np.ndarray, fitted_prior: float, prior: float) -> np.ndarray:
    """P(positive | x) when positives have the share `prior` instead of `fitted_prior`."""
    p = np.asarray(positive, dtype=np.float64)
    up = p * (prior / fitted_prior)
    down = (1.0 - p) * ((1.0 - prior) / (1.0 - fitted_prior))
    total = up + down
    return np.divide(up, total, out=np.full_like(p, prior), where=total > 0)


@dataclass(frozen=True)
class LabelShiftBand:
    """Where label shift alone can take the share of positive predictions.

    With P(text | label) fixed, a window whose true share of positives is q gets positive
    predictions at the rate FPR + (TPR - FPR)·q: between the false-positive rate (only
    negatives) and the true-positive rate (only positives) of the fitting predictions. A window
    well outside that band (say every prediction positive, while TPR is 0.80) changed in some
    other way, and the label-shift step would read it as near-perfect accuracy.
    """

    false_positive_rate: float
    true_positive_rate: float
    negatives: int  # fitting predictions of each true label: how well the rates are known
    positives: int

    def admits(self, predicted_positive_share: float, count: int) -> bool:
        """Whether a window of `count` predictions with this share of positive predictions lies
        within the band, widened by BAND_SLACK_SD standard deviations of sampling error (the
        window's and the fitting rates')."""
        low, high = sorted((self.false_positive_rate, self.true_positive_rate))
        low_n, high_n = (
            (self.negatives, self.positives)
            if self.false_positive_rate <= self.true_positive_rate
            else (self.positives, self.negatives)
        )
        return (
            low - _slack(low, count, low_n)
            <= predicted_positive_share
            <= high + _slack(high, count, high_n)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "false_positive_rate": self.false_positive_rate,
            "true_positive_rate": self.true_positive_rate,
            "negatives": self.negatives,
            "positives": self.positives,
        }


def _slack(rate: float, count: int, fitted: int) -> float:
    variance = rate * (1.0 - rate) * (1.0 / max(count, 1) + 1.0 / max(fitted, 1))
    return BAND_SLACK_SD * math.sqrt(variance)


@dataclass(frozen=True)
class AccuracyEstimate:
    estimated: float  # mean probability of being right, after the label-shift step if it ran
    unadjusted: float  # mean calibrated confidence, without the label-shift step
    positive_share: float | None  # the window's estimated share of positives (None: no step)
    count: int  # predictions in the window
    # True when the step was on but the window's positive predictions lay outside the
    # LabelShiftBand: the estimate is then the unadjusted one.
    outside_label_shift: bool = False


@dataclass(frozen=True)
class PerformanceEstimator:
    """A calibration of the served confidences and, optionally, the share of positives in the
    labelled predictions it was fitted on (which turns the label-shift step on) and the band
    of positive-prediction shares that label shift can explain (which limits the step)."""

    calibration: Calibration
    fitted_prior: float | None = None
    band: LabelShiftBand | None = None

    def estimate(
        self, confidences: Sequence[float] | np.ndarray, predicted: Sequence[int] | np.ndarray
    ) -> AccuracyEstimate | None:
        """The expected accuracy of a window of predictions (confidence of the predicted class,
        predicted label index); None for an empty window."""
        c = np.asarray(confidences, dtype=np.float64)
        if c.size == 0:
            return None
        calibrated = self.calibration.apply(c)
        unadjusted = float(calibrated.mean())
        if self.fitted_prior is None:
            return AccuracyEstimate(unadjusted, unadjusted, None, int(c.size))
        pred = np.asarray(predicted)
        if pred.shape != c.shape:
            raise ValueError("confidences and predicted differ in length")
        predicted_share = float(np.mean(pred == POSITIVE_INDEX))
        if self.band is not None and not self.band.admits(predicted_share, int(c.size)):
            return AccuracyEstimate(unadjusted, unadjusted, None, int(c.size), True)
        positive = positive_probabilities(calibrated, pred)
        share = label_shift_prior(positive, self.fitted_prior)
        adjusted = reweight_positive(positive, self.fitted_prior, share)
        right = np.where(pred == POSITIVE_INDEX, adjusted, 1.0 - adjusted)
        return AccuracyEstimate(float(right.mean()), unadjusted, share, int(c.size))

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibration": self.calibration.to_dict(),
            "fitted_prior": self.fitted_prior,
            "band": None if self.band is None else self.band.to_dict(),
        }


def fit_estimator(
    confidences: Sequence[float] | np.ndarray,
    predicted: Sequence[int] | np.ndarray,
    true: Sequence[int] | np.ndarray,
    method: str = DEFAULT_METHOD,
    *,
    label_shift: bool = True,
    band: bool = True,
) -> PerformanceEstimator:
    """An estimator fitted on labelled predictions (predicted and true label indices)."""
    pred = np.asarray(predicted)
    truth = np.asarray(true)
    calibration = fit_calibration(confidences, correct_mask(list(pred), list(truth)), method)
    if not label_shift:
        return PerformanceEstimator(calibration)
    positives = truth == POSITIVE_INDEX
    prior = float(np.mean(positives))
    if not 0.0 < prior < 1.0:
        raise ValueError("the label-shift step needs both labels among the fitting labels")
    limits = None
    if band:
        said_positive = pred == POSITIVE_INDEX
        limits = LabelShiftBand(
            false_positive_rate=float(np.mean(said_positive[~positives])),
            true_positive_rate=float(np.mean(said_positive[positives])),
            negatives=int(np.sum(~positives)),
            positives=int(np.sum(positives)),
        )
    return PerformanceEstimator(calibration, prior, limits)


def estimator_from_dict(data: Mapping[str, Any]) -> PerformanceEstimator:
    """The estimator `PerformanceEstimator.to_dict` wrote."""
    prior = data.get("fitted_prior")
    band = data.get("band")
    return PerformanceEstimator(
        calibration_from_dict(data["calibration"]),
        None if prior is None else float(prior),
        None
        if band is None
        else LabelShiftBand(
            float(band["false_positive_rate"]),
            float(band["true_positive_rate"]),
            int(band["negatives"]),
            int(band["positives"]),
        ),
    )


def performance_report(
    estimate: AccuracyEstimate | None,
    labelled: Iterable[tuple[Hashable, Hashable]],
    window: int,
) -> dict[str, Any]:
    """The `performance` block of GET /monitoring: both accuracies over one window."""
    pairs = list(labelled)
    realized = realized_accuracy(pairs)
    return {
        "estimated_accuracy": None if estimate is None else round(estimate.estimated, 4),
        "estimated_accuracy_unadjusted": None
        if estimate is None
        else round(estimate.unadjusted, 4),
        "estimated_positive_share": None
        if estimate is None or estimate.positive_share is None
        else round(estimate.positive_share, 4),
        "outside_label_shift": None if estimate is None else estimate.outside_label_shift,
        "realized_accuracy": None if realized is None else round(realized, 4),
        "labelled_count": len(pairs),
        "window": window,
    }


def shadow_report(
    tag: str, pairs: Sequence[tuple[Hashable, Hashable, Hashable | None]]
) -> dict[str, Any]:
    """The `shadow` block of GET /monitoring from (served, challenger, true or None) labels:
    how often the challenger agrees with the served model, and both realized accuracies over
    the pairs that have a true label."""
    labelled = [(a, b, t) for a, b, t in pairs if t is not None]
    agreement = realized_accuracy((a, b) for a, b, _ in pairs)
    champion = realized_accuracy((a, t) for a, _, t in labelled)
    challenger = realized_accuracy((b, t) for _, b, t in labelled)
    return {
        "tag": tag,
        "compared": len(pairs),
        "agreement": None if agreement is None else round(agreement, 4),
        "champion_realized_accuracy": None if champion is None else round(champion, 4),
        "challenger_realized_accuracy": None if challenger is None else round(challenger, 4),
        "labelled_count": len(labelled),
    }


# --- fitting ---------------------------------------------------------------------------------


def fit_calibration(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    method: str = DEFAULT_METHOD,
    *,
    bins: int = DEFAULT_HISTOGRAM_BINS,
) -> Calibration:
    """A calibration of `method` fitted on labelled predictions (confidence, right or not)."""
    c = np.asarray(confidences, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if c.shape != y.shape or c.ndim != 1:
        raise ValueError("confidences and correct must be 1-d and of the same length")
    if method == METHOD_CONFIDENCE:
        return IdentityCalibration()
    if c.size == 0:
        raise ValueError(f"fitting {method!r} needs at least one labelled prediction")
    if method == METHOD_TEMPERATURE:
        return TemperatureCalibration(fit_temperature_factor(c, y))
    if method == METHOD_HISTOGRAM:
        return fit_histogram(c, y, bins)
    if method == METHOD_ISOTONIC:
        return fit_isotonic(c, y)
    if method == METHOD_THRESHOLD:
        return ThresholdCalibration(fit_threshold(c, y))
    raise ValueError(f"unknown calibration method {method!r}; expected one of {list(METHODS)}")


def correctness_nll(confidences: np.ndarray, correct: np.ndarray, factor: float) -> float:
    """Mean negative log-likelihood of right/wrong under TemperatureCalibration(factor)."""
    z = confidence_logits(confidences) / factor
    y = np.asarray(correct, dtype=np.float64)
    # -log σ(z) = log(1 + e^-z); -log(1 - σ(z)) = log(1 + e^z)
    return float(np.mean(y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)))


def fit_temperature_factor(confidences: np.ndarray, correct: np.ndarray) -> float:
    """The factor in TEMPERATURE_FACTOR_BOUNDS that minimises `correctness_nll`: for two
    classes, the same fit as temperature scaling on the logits (Guo et al., 2017)."""
    from scipy.optimize import minimize_scalar

    low, high = TEMPERATURE_FACTOR_BOUNDS
    found = minimize_scalar(
        lambda log_f: correctness_nll(confidences, correct, math.exp(log_f)),
        bounds=(math.log(low), math.log(high)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(found.x))


def fit_histogram(
    confidences: np.ndarray, correct: np.ndarray, bins: int = DEFAULT_HISTOGRAM_BINS
) -> HistogramCalibration:
    """Equal-mass bins (as equal as ties allow) and the accuracy within each."""
    if bins < 1:
        raise ValueError("bins must be >= 1")
    order = np.argsort(confidences, kind="stable")
    c, y = confidences[order], correct[order]
    # Cut between positions k*n/bins, moved past ties so one confidence never spans two bins.
    cuts = sorted({int(np.searchsorted(c, c[(k * c.size) // bins])) for k in range(1, bins)})
    cuts = [k for k in cuts if 0 < k < c.size]
    edges = tuple(float(c[k - 1]) for k in cuts)  # a bin's upper edge is its largest value
    bounds = [0, *cuts, c.size]
    accuracy = tuple(float(y[a:b].mean()) for a, b in pairwise(bounds))
    return HistogramCalibration(edges, accuracy)


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The non-decreasing sequence closest to `values` in weighted least squares."""
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    means: list[float] = []
    masses: list[float] = []
    lengths: list[int] = []
    for value, weight in zip(v, w, strict=True):
        means.append(float(value))
        masses.append(float(weight))
        lengths.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            mass = masses[-2] + masses[-1]
            mean = (means[-2] * masses[-2] + means[-1] * masses[-1]) / mass
            length = lengths[-2] + lengths[-1]
            del means[-1], masses[-1], lengths[-1]
            means[-1], masses[-1], lengths[-1] = mean, mass, length
    return np.repeat(np.asarray(means), lengths)


def fit_isotonic(confidences: np.ndarray, correct: np.ndarray) -> IsotonicCalibration:
    """Isotonic regression of right/wrong on confidence; the map goes through each block's
    mean confidence and accuracy."""
    unique, inverse, counts = np.unique(confidences, return_inverse=True, return_counts=True)
    rate = np.bincount(inverse, weights=correct) / counts
    fitted = pool_adjacent_violators(rate, counts.astype(np.float64))
    # One point per block of equal fitted values: its count-weighted mean confidence.
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    ends = np.r_[starts[1:], fitted.size]
    xs = [
        float(np.average(unique[a:b], weights=counts[a:b]))
        for a, b in zip(starts, ends, strict=True)
    ]
    ys = [float(fitted[a]) for a in starts]
    return IsotonicCalibration(tuple(xs), tuple(ys))


def fit_threshold(confidences: np.ndarray, correct: np.ndarray) -> float:
    """The confidence t with share(confidence >= t) equal to the accuracy (as ties allow)."""
    accuracy = float(np.mean(correct))
    ranked = np.sort(confidences)[::-1]
    above = round(accuracy * ranked.size)
    if above <= 0:
        return float(np.nextafter(ranked[0], np.inf))
    return float(ranked[above - 1])


# --- storage ---------------------------------------------------------------------------------


def calibration_from_dict(data: Mapping[str, Any]) -> Calibration:
    """The calibration `to_dict` wrote."""
    method = data.get("method")
    if method == METHOD_CONFIDENCE:
        return IdentityCalibration()
    if method == METHOD_TEMPERATURE:
        return TemperatureCalibration(float(data["factor"]))
    if method == METHOD_HISTOGRAM:
        edges = tuple(float(v) for v in data["edges"])
        accuracy = tuple(float(v) for v in data["accuracy"])
        if len(accuracy) != len(edges) + 1:
            raise ValueError("a histogram calibration needs one accuracy more than edges")
        return HistogramCalibration(edges, accuracy)
    if method == METHOD_ISOTONIC:
        x = tuple(float(v) for v in data["x"])
        y = tuple(float(v) for v in data["y"])
        if len(x) != len(y) or not x:
            raise ValueError("an isotonic calibration needs as many x as y, at least one")
        return IsotonicCalibration(x, y)
    if method == METHOD_THRESHOLD:
        return ThresholdCalibration(float(data["threshold"]))
    raise ValueError(f"unknown calibration method {method!r}")
