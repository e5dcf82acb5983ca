"""Paired t-test against scipy.stats.ttest_rel; McNemar against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from personakit.eval import SignificanceResult, mcnemar, paired_ttest

rng = np.random.default_rng(0)
A = rng.normal(0.30, 0.1, size=40)
B = A - rng.normal(0.02, 0.05, size=40)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_paired_ttest_agrees_with_scipy(alternative):
    ours = paired_ttest(A, B, alternative=alternative)
    ref = stats.ttest_rel(A, B, alternative=alternative)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert ours.n == 40 and ours.details["df"] == 39
    assert ours.details["mean_difference"] == pytest.approx(float(np.mean(A - B)))
    assert ours.test == f"paired t-test ({alternative})"


def test_paired_ttest_degenerate_and_errors():
    same = paired_ttest([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert math.isnan(same.statistic) and math.isnan(same.p_value)
    shifted = paired_ttest([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert shifted.statistic == math.inf and shifted.p_value == 0.0
    with pytest.raises(ValueError, match="3 and 2 values"):
        paired_ttest([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        paired_ttest([1.0], [2.0])


def exact_mcnemar_by_hand(b: int, c: int) -> float:
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def outcomes(b: int, c: int, both: int, neither: int):
    a = [1] * b + [0] * c + [1] * both + [0] * neither
    bb = [0] * b + [1] * c + [1] * both + [0] * neither
    return a, bb


@pytest.mark.parametrize("b,c", [(3, 0), (7, 2), (10, 10), (12, 4)])
def test_mcnemar_exact_by_hand_and_binomtest(b, c):
    a, bb = outcomes(b, c, both=5, neither=3)
    r = mcnemar(a, bb, exact=True)
    assert (r.details["b"], r.details["c"]) == (b, c)
    assert r.p_value == pytest.approx(exact_mcnemar_by_hand(b, c), rel=1e-12)
    assert r.p_value == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)
    assert r.statistic == min(b, c) and r.n == b + c + 8


@pytest.mark.parametrize("correction", [True, False])
def test_mcnemar_chi_square_by_hand(correction):
    b, c = 30, 15
    a, bb = outcomes(b, c, both=20, neither=10)
    r = mcnemar(a, bb, exact=False, correction=correction)
    chi2 = (abs(b - c) - (1 if correction else 0)) ** 2 / (b + c)
    assert r.statistic == pytest.approx(chi2)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(chi2 / 2)))  # chi2(1) survival function
    assert "chi-square" in r.test


def test_mcnemar_auto_choice_and_edge_cases():
    assert mcnemar(*outcomes(10, 5, 3, 3)).details["exact"] is True  # b + c < 25
    assert mcnemar(*outcomes(20, 10, 3, 3)).details["exact"] is False
    none = mcnemar([1, 0, 1], [1, 0, 1])
    assert none.p_value == 1.0 and none.statistic == 0.0
    equal = mcnemar(*outcomes(15, 15, 0, 0), exact=False)
    assert equal.p_value == 1.0
    with pytest.raises(ValueError, match=r"correct_b\[1\] is 2"):
        mcnemar([1, 0], [1, 2])


def test_result_dataclass():
    r = SignificanceResult(test="t", statistic=2.0, p_value=0.01, n=10)
    assert r.significant() and not r.significant(alpha=0.005)
    with pytest.raises(Exception):
        r.p_value = 0.5  # frozen


def test_paired_bootstrap_interval_and_p_value():
    import numpy as np

    from personakit.eval import paired_bootstrap

    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.1, 300)
    b = a - 0.05 + rng.normal(0, 0.01, 300)  # A better by 0.05
    r = paired_bootstrap(a, b, n_resamples=2000)
    assert abs(r.statistic - float(np.mean(a - b))) < 1e-12
    assert r.details["ci_low"] < r.statistic < r.details["ci_high"] and r.details["ci_low"] > 0
    assert r.p_value < 0.01 and r.n == 300
    same = paired_bootstrap(a, a + rng.normal(0, 0.1, 300), n_resamples=2000)
    assert same.details["ci_low"] < 0 < same.details["ci_high"] and same.p_value > 0.05
    assert paired_bootstrap(a, b, n_resamples=500, seed=3) == paired_bootstrap(a, b, n_resamples=500, seed=3)
    median = paired_bootstrap(a, b, n_resamples=200, statistic=np.median)
    assert abs(median.statistic - (np.median(a) - np.median(b))) < 1e-12


def test_paired_bootstrap_rejects_bad_input():
    import pytest

    from personakit.eval import paired_bootstrap

    with pytest.raises(ValueError, match="paired one to one"):
        paired_bootstrap([1, 2], [1])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1, 2], [1, 2], confidence=1.5)


def test_paired_comparison_joins_the_t_test_and_the_bootstrap_interval():
    from personakit.eval import paired_bootstrap, paired_comparison, paired_ttest

    a, b = [0.5, 0.6, 0.7, 0.8, 0.9, 0.4], [0.4, 0.5, 0.6, 0.75, 0.7, 0.45]
    c = paired_comparison(a, b, n_resamples=1000, seed=1)
    assert c.p_value == paired_ttest(a, b).p_value and c.t == paired_ttest(a, b).statistic
    boot = paired_bootstrap(a, b, n_resamples=1000, seed=1)
    assert (c.ci_low, c.ci_high) == (boot.details["ci_low"], boot.details["ci_high"])
    assert c.significant == (c.p_value < 0.05) and c.marker() in ("↑", "")
    assert paired_comparison(b, a, n_resamples=100, significance_level=0.5).marker() == "↓"
    same = paired_comparison([1.0, 2.0], [1.0, 2.0], n_resamples=10)
    assert not same.significant and same.marker() == ""  # p is nan: never significant
    with pytest.raises(ValueError, match="significance_level"):
        paired_comparison(a, b, significance_level=1.5)
