"""The drift tests on small hand-built samples whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitoring.stats import (
    category_counts,
    chi_square_test,
    holm_adjust,
    ks_test,
    median_bandwidth,
    mmd_permutation_test,
    percentile_summary,
    squared_distances,
)


def test_ks_identical_samples_show_no_difference() -> None:
    result = ks_test("x", [1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert result.statistic == 0.0
    assert result.p_value == 1.0
    assert (result.n_reference, result.n_current) == (5, 5)


def test_ks_separated_samples_give_the_exact_p_value() -> None:
    result = ks_test("x", [1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert result.statistic == 1.0
    # Exact two-sided: 2 of the C(10, 5) = 252 orderings are this extreme.
    assert result.p_value == pytest.approx(2 / 252)


def test_ks_refuses_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        ks_test("x", [], [1.0])


def test_category_counts() -> None:
    assert category_counts([0, 1, 1, 1], 2).tolist() == [1, 3]
    assert category_counts([], 2).tolist() == [0, 0]
    with pytest.raises(ValueError):
        category_counts([2], 2)


def test_chi_square_equal_shares_is_zero() -> None:
    result = chi_square_test("labels", [50, 50], [50, 50])
    assert result.statistic == 0.0
    assert result.p_value == 1.0


def test_chi_square_hand_computed() -> None:
    # Expected 50 in every cell: 4 * (10^2 / 50) = 8.
    result = chi_square_test("labels", [60, 40], [40, 60])
    assert result.statistic == pytest.approx(8.0)
    assert result.p_value == pytest.approx(0.004677735, rel=1e-6)
    strong = chi_square_test("labels", [90, 10], [10, 90])
    assert strong.statistic == pytest.approx(128.0)
    assert strong.p_value == pytest.approx(stats.chi2.sf(128.0, 1))
    assert strong.p_value < 1e-20


def test_chi_square_ignores_categories_absent_from_both() -> None:
    result = chi_square_test("labels", [30, 0], [10, 0])
    assert (result.statistic, result.p_value) == (0.0, 1.0)
    three = chi_square_test("labels", [60, 40, 0], [40, 60, 0])
    assert three.statistic == pytest.approx(8.0)


def test_chi_square_refuses_empty_rows() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        chi_square_test("labels", [0, 0], [1, 2])


def test_squared_distances_and_bandwidth() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    d2 = squared_distances(x)
    assert d2.tolist() == [[0.0, 25.0, 0.0], [25.0, 0.0, 25.0], [0.0, 25.0, 0.0]]
    assert median_bandwidth(d2) == 25.0
    assert median_bandwidth(np.zeros((3, 3))) == 1.0


def test_mmd_identical_samples() -> None:
    x = np.random.default_rng(0).normal(size=(30, 4))
    result = mmd_permutation_test("emb", x, x.copy(), n_permutations=99)
    assert result.statistic == pytest.approx(0.0, abs=1e-12)
    assert result.p_value == 1.0


def test_mmd_two_point_clusters_hand_computed() -> None:
    ref = np.zeros((20, 2))
    cur = np.tile([3.0, 4.0], (20, 1))
    result = mmd_permutation_test("emb", ref, cur, n_permutations=99, seed=1)
    # Bandwidth = median positive squared distance = 25: k(within) = 1, k(across) = e^-1.
    assert result.statistic == pytest.approx(2 - 2 * math.exp(-1))
    # No relabelling of 40 points is as extreme (2 in C(40, 20)): the smallest p-value.
    assert result.p_value == pytest.approx(1 / 100)
    assert result.method == "mmd"


def test_mmd_checks_shapes() -> None:
    with pytest.raises(ValueError, match="same number of columns"):
        mmd_permutation_test("emb", np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="two rows"):
        mmd_permutation_test("emb", np.zeros((1, 2)), np.zeros((5, 2)))


def test_holm_adjustment() -> None:
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([0.02]) == [0.02]
    assert holm_adjust([]) == []


def test_percentile_summary() -> None:
    assert percentile_summary([1, 2, 3, 4], (50, 95, 99)) == pytest.approx(
        {"p50": 2.5, "p95": 3.85, "p99": 3.97}
    )
    assert percentile_summary([], (50,)) == {"p50": None}
