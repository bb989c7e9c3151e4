"""DriftDetector: a sliding window of recent predictions tested against a reference.

Four tests, each on one aspect of the traffic, corrected together with Holm's method so that
the chance of any false alarm stays at `threshold`:

- confidence_ks: KS test on the model's confidence (the model is unsure on unfamiliar text),
- label_chi2: chi-square on the predicted-label counts (label shift),
- length_ks: KS test on text length (a different kind of text),
- embedding_mmd: MMD with a permutation p-value on sentence embeddings (domain shift).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from monitoring.reference import DriftReference, label_index
from monitoring.stats import (
    TestResult,
    category_counts,
    chi_square_test,
    holm_adjust,
    ks_test,
    mmd_permutation_test,
)
from monitoring.window import PredictionWindow, WindowData
from sentiment.labels import LABEL_NAMES

TEST_NAMES = ("confidence_ks", "label_chi2", "length_ks", "embedding_mmd")

STATUS_NO_REFERENCE = "no reference"
STATUS_INSUFFICIENT = "insufficient data"
STATUS_NO_DRIFT = "no drift"
STATUS_DRIFT = "drift"


@dataclass(frozen=True)
class DriftSettings:
    window_size: int = 1000
    threshold: float = 0.05
    min_window: int = 100
    length_feature: Literal["n_chars", "n_tokens"] = "n_chars"
    mmd_permutations: int = 200
    mmd_max_samples: int = 1000
    seed: int = 0


def run_tests(
    reference: DriftReference, window: WindowData, settings: DriftSettings
) -> dict[str, TestResult | None]:
    """Each test's raw result; None for a test without enough data (e.g. no embeddings)."""
    results: dict[str, TestResult | None] = dict.fromkeys(TEST_NAMES)
    if len(window) >= settings.min_window and len(reference) > 0:
        results["confidence_ks"] = ks_test("confidence_ks", reference.confidence, window.confidence)
        n_labels = len(reference.labels)
        results["label_chi2"] = chi_square_test(
            "label_chi2",
            category_counts(reference.label, n_labels),
            category_counts(window.label, n_labels),
        )
        feature = settings.length_feature
        results["length_ks"] = ks_test(
            "length_ks", getattr(reference, feature), getattr(window, feature)
        )
    current = window.embeddings
    ref_emb = reference.embeddings
    if (
        current is not None
        and len(current) >= settings.min_window
        and len(ref_emb) >= 2
        and ref_emb.shape[1] == current.shape[1]
    ):
        rng = np.random.default_rng(settings.seed)
        results["embedding_mmd"] = mmd_permutation_test(
            "embedding_mmd",
            _at_most(ref_emb, settings.mmd_max_samples, rng),
            # The most recent rows: the window is chronological.
            current[-settings.mmd_max_samples :],
            settings.mmd_permutations,
            settings.seed,
        )
    return results


def _at_most(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(rows) <= limit:
        return rows
    return rows[np.sort(rng.choice(len(rows), limit, replace=False))]


def drift_report(
    results: Mapping[str, TestResult | None], threshold: float, window_size: int, min_window: int
) -> dict[str, Any]:
    """The detector's verdict: Holm-corrected p-values, the decision, and per-test detail."""
    ran = {name: r for name, r in results.items() if r is not None}
    adjusted = dict(zip(ran, holm_adjust([r.p_value for r in ran.values()]), strict=True))
    tests: dict[str, Any] = {}
    for name, result in results.items():
        if result is None:
            tests[name] = {"status": STATUS_INSUFFICIENT}
            continue
        tests[name] = {
            "method": result.method,
            "statistic": round(result.statistic, 6),
            "p_value": round(result.p_value, 6),
            "adjusted_p_value": round(adjusted[name], 6),
            "drift_detected": adjusted[name] < threshold,
            "n_reference": result.n_reference,
            "n_current": result.n_current,
        }
    if window_size < min_window or not ran:
        status = STATUS_INSUFFICIENT
    else:
        status = STATUS_DRIFT if min(adjusted.values()) < threshold else STATUS_NO_DRIFT
    # One number for dashboards: 1 - the smallest corrected p-value, so "drift" is exactly
    # drift_score > 1 - threshold.
    score = 1.0 - min(adjusted.values()) if ran and status != STATUS_INSUFFICIENT else 0.0
    return {
        "status": status,
        "drift_detected": status == STATUS_DRIFT,
        "drift_score": round(score, 6),
        "threshold": threshold,
        "window_size": window_size,
        "min_window": min_window,
        "tests": tests,
    }


class DriftDetector:
    """Keeps the last `window_size` predictions and tests them against a reference.

    Not thread-safe: the monitor calls it from one thread.
    """

    def __init__(
        self,
        window_size: int = 1000,
        threshold: float = 0.05,
        reference: DriftReference | None = None,
        *,
        min_window: int = 100,
        length_feature: Literal["n_chars", "n_tokens"] = "n_chars",
        mmd_permutations: int = 200,
        mmd_max_samples: int = 1000,
        seed: int = 0,
    ) -> None:
        if not 0 < threshold < 1:
            raise ValueError("threshold must lie strictly between 0 and 1")
        if min_window < 2 or min_window > window_size:
            raise ValueError("min_window must lie between 2 and window_size")
        self.settings = DriftSettings(
            window_size,
            threshold,
            min_window,
            length_feature,
            mmd_permutations,
            mmd_max_samples,
            seed,
        )
        self.reference = reference
        self.window = PredictionWindow(window_size)

    @property
    def window_size(self) -> int:
        return self.settings.window_size

    @property
    def threshold(self) -> float:
        return self.settings.threshold

    def set_reference(self, reference: DriftReference | None, clear_window: bool = True) -> None:
        """Replace the reference (e.g. after a new model version); the window restarts."""
        self.reference = reference
        if clear_window:
            self.window.clear()

    def reset(self) -> None:
        """Forget the window; the reference stays."""
        self.window.clear()

    def add(
        self,
        confidence: Sequence[float] | np.ndarray,
        label: Sequence[int] | np.ndarray,
        n_chars: Sequence[int] | np.ndarray,
        n_tokens: Sequence[int] | np.ndarray,
        embeddings: Sequence[Sequence[float]] | np.ndarray | None = None,
    ) -> None:
        self.window.extend(confidence, label, n_chars, n_tokens, embeddings)

    def add_embeddings(self, embeddings: Sequence[Sequence[float]] | np.ndarray) -> None:
        """Embeddings alone (their ring of the window is filled on its own)."""
        self.window.extend_embeddings(embeddings)

    def add_predictions(self, predictions: Sequence[Mapping[str, Any]]) -> None:
        """Add raw prediction dicts (label, confidence, n_chars, n_tokens, embedding)."""
        if not predictions:
            return
        labels = self.reference.labels if self.reference is not None else LABEL_NAMES
        embeddings: list[Sequence[float]] = [p.get("embedding") or [] for p in predictions]
        self.add(
            [p["confidence"] for p in predictions],
            [label_index(p["label"], labels) for p in predictions],
            [p["n_chars"] for p in predictions],
            [p["n_tokens"] for p in predictions],
            embeddings if all(len(e) for e in embeddings) else None,
        )

    def detect_drift(self) -> dict[str, Any]:
        """{status, drift_detected, drift_score, window_size, tests: {name: {...}}}."""
        size = len(self.window)
        if self.reference is None:
            return {
                "status": STATUS_NO_REFERENCE,
                "drift_detected": False,
                "drift_score": 0.0,
                "threshold": self.threshold,
                "window_size": size,
                "min_window": self.settings.min_window,
                "tests": {name: {"status": STATUS_NO_REFERENCE} for name in TEST_NAMES},
            }
        results = run_tests(self.reference, self.window.snapshot(), self.settings)
        return drift_report(results, self.threshold, size, self.settings.min_window)
