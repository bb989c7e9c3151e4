"""Pure, typed statistical tests for drift: each compares a reference sample with a window.

Every test returns a TestResult with its statistic and p-value; the detector corrects the
p-values for multiple testing (Holm) and compares them with one threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

FloatArray = np.ndarray


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, despite the name

    name: str
    method: str
    statistic: float
    p_value: float
    n_reference: int
    n_current: int


def ks_test(
    name: str, reference: Sequence[float] | FloatArray, current: Sequence[float] | FloatArray
) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test of two continuous (or ordinal) samples."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        raise ValueError(f"{name}: both samples need at least one value")
    result = stats.ks_2samp(ref, cur)
    return TestResult(name, "ks", float(result.statistic), float(result.pvalue), ref.size, cur.size)


def category_counts(labels: Sequence[int] | np.ndarray, n_categories: int) -> np.ndarray:
    """How many times each category 0..n_categories-1 occurs."""
    values = np.asarray(labels, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() >= n_categories):
        raise ValueError(f"categories must lie in 0..{n_categories - 1}")
    return np.bincount(values, minlength=n_categories)


def chi_square_test(
    name: str,
    reference_counts: Sequence[int] | np.ndarray,
    current_counts: Sequence[int] | np.ndarray,
) -> TestResult:
    """Pearson chi-square test of homogeneity on a 2 x k table of category counts.

    Both rows are samples, so the reference's own sampling error is accounted for (a
    goodness-of-fit test against fixed reference shares would raise false alarms).
    Categories absent from both rows carry no information and are left out.
    """
    table = np.vstack([np.asarray(reference_counts, float), np.asarray(current_counts, float)])
    if table.shape[0] != 2 or (table < 0).any():
        raise ValueError(f"{name}: expected two rows of non-negative counts")
    n_ref, n_cur = int(table[0].sum()), int(table[1].sum())
    if n_ref == 0 or n_cur == 0:
        raise ValueError(f"{name}: both samples need at least one value")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return TestResult(name, "chi2", 0.0, 1.0, n_ref, n_cur)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return TestResult(name, "chi2", statistic, float(stats.chi2.sf(statistic, dof)), n_ref, n_cur)


def squared_distances(x: FloatArray) -> FloatArray:
    """Pairwise squared Euclidean distances between the rows of x."""
    norms = (x * x).sum(axis=1)
    d2 = norms[:, None] + norms[None, :] - 2.0 * (x @ x.T)
    return np.asarray(np.maximum(d2, 0.0))


def median_bandwidth(d2: FloatArray) -> float:
    """Median of the off-diagonal squared distances: the usual RBF bandwidth heuristic.

    Computed on the pooled sample, so it does not depend on which rows are reference and
    which are current, and the permutation test stays exact.
    """
    upper = d2[np.triu_indices_from(d2, k=1)]
    positive = upper[upper > 0]
    return float(np.median(positive)) if positive.size else 1.0


def mmd_permutation_test(
    name: str,
    reference: FloatArray,
    current: FloatArray,
    n_permutations: int = 200,
    seed: int = 0,
) -> TestResult:
    """Maximum mean discrepancy with an RBF kernel; the p-value comes from label permutations.

    statistic = biased MMD^2 = mean K(ref, ref) + mean K(cur, cur) - 2 mean K(ref, cur).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1]:
        raise ValueError(f"{name}: expected two 2-d arrays with the same number of columns")
    m, n = len(ref), len(cur)
    if m < 2 or n < 2:
        raise ValueError(f"{name}: both samples need at least two rows")
    pooled = np.vstack([ref, cur])
    d2 = squared_distances(pooled)
    kernel = np.exp(-d2 / median_bandwidth(d2))
    # MMD^2 of a split is w' K w with w = +1/m on one side and -1/n on the other, so all
    # permutations are evaluated with one matrix product.
    weights = np.concatenate([np.full(m, 1.0 / m), np.full(n, -1.0 / n)])
    observed = float(weights @ kernel @ weights)
    rng = np.random.default_rng(seed)
    permuted = np.stack([rng.permutation(weights) for _ in range(n_permutations)], axis=1)
    null = ((kernel @ permuted) * permuted).sum(axis=0)
    # Ties count against drift; the +1 keeps the p-value valid for a finite number of draws.
    exceed = int((null >= observed - 1e-12).sum())
    p_value = (1 + exceed) / (1 + n_permutations)
    return TestResult(name, "mmd", max(observed, 0.0), p_value, m, n)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Rejecting where adjusted p < alpha keeps the chance of any false alarm at most alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    k = p.size
    if k == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = (k - np.arange(k)) * p[order]
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty(k)
    adjusted[order] = adjusted_sorted
    return [float(v) for v in adjusted]


def percentile_summary(
    values: Sequence[float] | np.ndarray, quantiles: Sequence[int]
) -> dict[str, float | None]:
    """{"p50": ..., ...}; None for each when there are no values."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {f"p{q}": None for q in quantiles}
    return {
        f"p{q}": float(v) for q, v in zip(quantiles, np.percentile(data, quantiles), strict=True)
    }
