"""Every quality figure of one evaluation, as pure functions of labels and probabilities.

Tested on hand-built inputs with exact expected values (tests/unit/evaluation/test_evaluate.py):
ROC AUC, ECE, accuracy by length bucket, reliability bins, the temperature round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sentiment.calibration import expected_calibration_error, fit_temperature
from sentiment.labels import LABEL_NAMES
from sentiment.metrics import classification_metrics, confusion_counts


def word_count(text: str) -> int:
    return len(text.split())


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """Names for word-count buckets: edges [10, 20] give '1-9', '10-19', '20+'."""
    lows = [1, *edges]
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(lows, edges, strict=False)]
    return [*names, f"{lows[-1]}+"]


def bucket_index(n_words: int, edges: Sequence[int]) -> int:
    return sum(1 for edge in edges if n_words >= edge)


@dataclass(frozen=True)
class BucketStat:
    bucket: str
    n: int
    accuracy: float | None


def accuracy_by_bucket(
    n_words: Sequence[int], correct: Sequence[bool], edges: Sequence[int]
) -> list[BucketStat]:
    """Accuracy per word-count bucket; None where a bucket holds no text."""
    names = bucket_labels(edges)
    totals = [0] * len(names)
    hits = [0] * len(names)
    for words, ok in zip(n_words, correct, strict=True):
        b = bucket_index(words, edges)
        totals[b] += 1
        hits[b] += int(ok)
    return [
        BucketStat(name, total, hit / total if total else None)
        for name, total, hit in zip(names, totals, hits, strict=True)
    ]


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    confidence: float | None
    accuracy: float | None


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int
) -> list[ReliabilityBin]:
    """Equal-width confidence bins, binned as sentiment.calibration.expected_calibration_error."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        out.append(
            ReliabilityBin(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(conf[mask].mean()) if n else None,
                float(ok[mask].mean()) if n else None,
            )
        )
    return out


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve: the chance a random positive outscores a random negative.

    Ties count one half (mid-ranks). None when one class is missing.
    """
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=int)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def margins_from_probabilities(p_pos: Sequence[float], p_neg: Sequence[float]) -> np.ndarray:
    """log(p_pos / p_neg): the logit difference divided by the temperature applied.

    Taken from both probabilities rather than from p_pos alone, so a confident prediction
    (p_pos rounding to 1.0) keeps its margin through the small p_neg.
    """
    pos = np.clip(np.asarray(p_pos, dtype=float), 1e-300, None)
    neg = np.clip(np.asarray(p_neg, dtype=float), 1e-300, None)
    return np.asarray(np.log(pos) - np.log(neg))


def positive_probability(margins: np.ndarray, temperature: float) -> np.ndarray:
    """p(positive) for margins computed at temperature 1, rescaled to `temperature`."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(margins) / temperature)))


def confidence_histogram(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 20
) -> dict[str, list[float] | list[int]]:
    """Counts of correct and wrong predictions per confidence bin over [0.5, 1]."""
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    conf = np.clip(np.asarray(confidences, dtype=float), 0.5, 1.0)
    ok = np.asarray(correct, dtype=bool)
    right, _ = np.histogram(conf[ok], bins=edges)
    wrong, _ = np.histogram(conf[~ok], bins=edges)
    return {"edges": edges.tolist(), "correct": right.tolist(), "wrong": wrong.tolist()}


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


@dataclass
class ErrorRow:
    text: str
    label: str
    prediction: str
    confidence: float
    p_positive: float
    n_words: int
    n_chars: int
    bucket: str


@dataclass
class EvaluationResult:
    model: dict[str, Any]
    dataset: dict[str, Any]
    metrics: dict[str, float | None]
    confusion: dict[str, int]
    buckets: list[dict[str, Any]]
    reliability: dict[str, list[dict[str, Any]]]
    confidence_histogram: dict[str, Any]
    latency: dict[str, float]
    errors: list[ErrorRow]
    runtime: dict[str, Any]
    evaluated_at: str

    def bucket_accuracy(self) -> dict[str, float | None]:
        return {b["bucket"]: b["accuracy"] for b in self.buckets}

    def worst_errors(self, n: int) -> list[ErrorRow]:
        return sorted(self.errors, key=lambda e: -e.confidence)[:n]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvaluationResult:
        fields = dict(data)
        fields["errors"] = [ErrorRow(**e) for e in data.get("errors", [])]
        return cls(**fields)


def score_predictions(
    texts: Sequence[str],
    labels: Sequence[int],
    p_pos: Sequence[float],
    p_neg: Sequence[float],
    temperature: float,
    *,
    edges: Sequence[int],
    n_bins: int,
) -> dict[str, Any]:
    """Every quality figure of one evaluation, from the served (calibrated) probabilities."""
    y = np.asarray(labels, dtype=int)
    margins = margins_from_probabilities(p_pos, p_neg)
    # The margins come from probabilities at `temperature`: undo it to get the raw model's.
    raw_margins = margins * temperature
    prob_cal = positive_probability(raw_margins, temperature)
    prob_raw = positive_probability(raw_margins, 1.0)
    preds = (raw_margins > 0).astype(int)
    correct = preds == y
    conf_cal = np.maximum(prob_cal, 1 - prob_cal)
    conf_raw = np.maximum(prob_raw, 1 - prob_raw)
    refit = fit_temperature(np.stack([np.zeros_like(raw_margins), raw_margins], axis=1), y)
    n_words = [word_count(t) for t in texts]
    metrics: dict[str, float | None] = {
        **classification_metrics(y.tolist(), preds.tolist()),
        "roc_auc": roc_auc(y.tolist(), prob_raw.tolist()),
        "ece_uncalibrated": expected_calibration_error(conf_raw, correct, n_bins),
        "ece_calibrated": expected_calibration_error(conf_cal, correct, n_bins),
        "temperature": float(temperature),
        "temperature_refit": refit,
        "mean_confidence": float(conf_cal.mean()) if len(y) else 0.0,
    }
    names = bucket_labels(edges)
    errors = [
        ErrorRow(
            text=texts[i],
            label=LABEL_NAMES[int(y[i])],
            prediction=LABEL_NAMES[int(preds[i])],
            confidence=round(float(conf_cal[i]), 6),
            p_positive=round(float(prob_cal[i]), 6),
            n_words=n_words[i],
            n_chars=len(texts[i]),
            bucket=names[bucket_index(n_words[i], edges)],
        )
        for i in np.flatnonzero(~correct).tolist()
    ]
    return {
        "metrics": metrics,
        "confusion": confusion_counts(y.tolist(), preds.tolist()),
        "buckets": [asdict(b) for b in accuracy_by_bucket(n_words, correct.tolist(), edges)],
        "reliability": {
            "calibrated": [asdict(b) for b in reliability_bins(conf_cal, correct, n_bins)],
            "uncalibrated": [asdict(b) for b in reliability_bins(conf_raw, correct, n_bins)],
        },
        "confidence_histogram": confidence_histogram(conf_cal, correct),
        "errors": errors,
    }
