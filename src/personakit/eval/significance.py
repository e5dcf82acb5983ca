"""Significance tests for comparing two systems on the same examples: paired t-test, paired bootstrap and McNemar."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

__all__ = ["SignificanceResult", "PairedComparison", "paired_comparison", "paired_ttest", "paired_bootstrap", "mcnemar"]


@dataclass(frozen=True)
class SignificanceResult:
    """Outcome of a significance test.

    Attributes:
        test: What was tested, e.g. ``"paired t-test (two-sided)"``.
        statistic: The test statistic ($t$; McNemar: $\\chi^2$, or $\\min(b, c)$ for the
            exact test).
        p_value: Probability, under the null hypothesis, of a statistic at least as
            extreme.
        n: Number of paired examples.
        details: Test-specific numbers (degrees of freedom, mean difference, the
            discordant counts ``b`` and ``c``, ...).
    """

    test: str
    statistic: float
    p_value: float
    n: int
    details: dict[str, Any] = field(default_factory=dict)

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether ``p_value < alpha``."""
        return bool(self.p_value < alpha)


def _paired(a: Sequence[Any], b: Sequence[Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, str) or isinstance(b, str):
        raise TypeError(f"{name}: expected two sequences of per-example values, got a string")
    x, y = np.asarray(a), np.asarray(b)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"{name}: expected two 1-D sequences, got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{name}: the two systems have {len(x)} and {len(y)} values; they must be paired one to one")
    if len(x) == 0:
        raise ValueError(f"{name}: empty input")
    return x, y


def paired_ttest(a: Sequence[float], b: Sequence[float],
                 alternative: Literal["two-sided", "greater", "less"] = "two-sided") -> SignificanceResult:
    r"""Paired (dependent-samples) t-test of per-example scores of two systems.

    With differences $d_i = a_i - b_i$, mean $\bar d$ and sample standard deviation
    $s_d$ (ddof 1):

    $$t = \frac{\bar d}{s_d / \sqrt{n}},\qquad \nu = n - 1,$$

    and the p-value from Student's $t$ distribution with $\nu$ degrees of freedom.
    ``alternative="greater"`` tests whether $a$ scores higher than $b$.  When every
    difference is identical the statistic is undefined and both $t$ and $p$ are NaN
    (all zero) or $\pm\infty$ and 0 (a constant non-zero difference), as in
    ``scipy.stats.ttest_rel``.

    Args:
        a: Per-example scores of system A (e.g. sentence ROUGE-L).
        b: Per-example scores of system B, same examples, same order.
        alternative: ``"two-sided"``, ``"greater"`` (A > B) or ``"less"``.

    Returns:
        A :class:`SignificanceResult` with ``details = {"df", "mean_difference",
        "alternative"}``.

    Example:
        >>> r = paired_ttest([0.5, 0.6, 0.7, 0.8], [0.4, 0.6, 0.5, 0.7])
        >>> round(r.statistic, 4), round(r.p_value, 4)
        (2.4495, 0.0917)
    """
    x, y = _paired(a, b, "paired_ttest")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"paired_ttest: alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    n = len(x)
    if n < 2:
        raise ValueError("paired_ttest: need at least 2 paired values")
    from scipy import stats

    d = x.astype(np.float64) - y.astype(np.float64)
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    df = n - 1
    if sd == 0.0:
        t = math.nan if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / (sd / math.sqrt(n))
    if math.isnan(t):
        p = math.nan
    elif alternative == "two-sided":
        p = float(2.0 * stats.t.sf(abs(t), df))
    elif alternative == "greater":
        p = float(stats.t.sf(t, df))
    else:
        p = float(stats.t.cdf(t, df))
    if not math.isnan(p):
        p = min(p, 1.0)
    return SignificanceResult(test=f"paired t-test ({alternative})", statistic=t, p_value=p, n=n,
                              details={"df": df, "mean_difference": mean, "alternative": alternative})


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0, statistic: Any = None) -> SignificanceResult:
    r"""Paired bootstrap of the difference between two systems scored on the same examples.

    Resample the $n$ example indices with replacement ``n_resamples`` times; for each
    resample $I$ compute $\Delta_I = f(a_I) - f(b_I)$ with $f$ the mean (or ``statistic``,
    any function of a 1-D array, e.g. a corpus-level score computed from per-example
    parts).  The interval is the percentile interval of $\Delta_I$ at ``confidence``
    (Efron and Tibshirani 1993; Koehn 2004 for MT metrics); the p-value is the two-sided
    bootstrap p-value $\min(1, 2 \min(P(\Delta \le 0), P(\Delta \ge 0)))$.

    Args:
        a, b: per-example values of systems A and B (same examples, same order).
        n_resamples: bootstrap resamples.
        confidence: level of the interval.
        seed: seed of the resampling (results are reproducible).
        statistic: ``f``; ``None``: the mean.

    Returns:
        A :class:`SignificanceResult` whose ``statistic`` is the observed difference
        $f(a) - f(b)$, with ``details = {"ci_low", "ci_high", "confidence", "n_resamples"}``.

    Example:
        >>> r = paired_bootstrap([0.5, 0.6, 0.7, 0.8, 0.9], [0.4, 0.5, 0.6, 0.7, 0.8], n_resamples=2000)
        >>> round(r.statistic, 3), r.details["ci_low"] > 0, r.p_value < 0.05
        (0.1, True, True)
    """
    x, y = _paired(a, b, "paired_bootstrap")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"paired_bootstrap: confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"paired_bootstrap: n_resamples must be >= 1, got {n_resamples}")
    f = statistic if statistic is not None else (lambda v: float(np.mean(v)))
    x, y = x.astype(np.float64), y.astype(np.float64)
    observed = float(f(x) - f(y))
    rng = np.random.default_rng(seed)
    n = len(x)
    deltas = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        deltas[i] = f(x[idx]) - f(y[idx])
    tail = (1.0 - confidence) / 2.0
    low, high = (float(v) for v in np.quantile(deltas, [tail, 1.0 - tail]))
    p = float(min(1.0, 2.0 * min(np.mean(deltas <= 0.0), np.mean(deltas >= 0.0))))
    return SignificanceResult(test="paired bootstrap (two-sided)", statistic=observed, p_value=p, n=n,
                              details={"ci_low": low, "ci_high": high, "confidence": confidence,
                                       "n_resamples": n_resamples})


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], exact: bool | None = None,
            correction: bool = True) -> SignificanceResult:
    r"""McNemar's test on paired right/wrong outcomes of two systems.

    Only discordant examples count: $b$ = A right and B wrong, $c$ = A wrong and B
    right.  Under the null hypothesis both kinds are equally likely.

    * Exact test: $p = \min\big(1,\ 2\sum_{k=0}^{\min(b,c)} \binom{b+c}{k} 2^{-(b+c)}\big)$,
      statistic $\min(b, c)$.
    * Asymptotic test: $\chi^2 = \frac{(|b - c| - 1)^2}{b + c}$ with Edwards'
      continuity correction (without it, $(b-c)^2/(b+c)$), 1 degree of freedom; the
      corrected $|b - c| - 1$ is floored at 0, so $b = c$ gives $p = 1$.

    ``exact=None`` chooses the exact test when $b + c < 25$ (where the $\chi^2$
    approximation is poor) and the $\chi^2$ test otherwise.  With no discordant
    pair the systems are indistinguishable: statistic 0, $p = 1$.

    Args:
        correct_a: Per-example correctness of system A (bools or 0/1).
        correct_b: Per-example correctness of system B, same examples, same order.
        exact: ``True`` for the exact binomial test, ``False`` for $\chi^2$, ``None``
            to choose by $b + c$.
        correction: Continuity correction for the $\chi^2$ test.

    Returns:
        A :class:`SignificanceResult` with ``details = {"b", "c", "exact",
        "correction"}``.

    Example:
        >>> r = mcnemar([1, 1, 1, 1, 0, 1], [0, 0, 0, 1, 0, 1])  # b = 3, c = 0
        >>> r.details["b"], r.details["c"], r.p_value
        (3, 0, 0.25)
    """
    x, y = _paired(correct_a, correct_b, "mcnemar")
    for name, arr in (("correct_a", x), ("correct_b", y)):
        bad = ~np.isin(arr, [0, 1])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = arr[i].item() if hasattr(arr[i], "item") else arr[i]
            raise ValueError(f"mcnemar: {name}[{i}] is {value!r}; expected True/False or 1/0")
    from scipy import stats

    x, y = x.astype(bool), y.astype(bool)
    b = int(np.sum(x & ~y))
    c = int(np.sum(~x & y))
    n_disc = b + c
    use_exact = (n_disc < 25) if exact is None else bool(exact)
    details = {"b": b, "c": c, "exact": use_exact, "correction": correction and not use_exact}
    if n_disc == 0:
        return SignificanceResult(test="McNemar " + ("exact" if use_exact else "chi-square"), statistic=0.0,
                                  p_value=1.0, n=len(x), details=details)
    if use_exact:
        k = min(b, c)
        p = min(1.0, 2.0 * float(stats.binom.cdf(k, n_disc, 0.5)))
        return SignificanceResult(test="McNemar exact (binomial)", statistic=float(k), p_value=p, n=len(x),
                                  details=details)
    diff = abs(b - c) - (1.0 if correction else 0.0)
    chi2 = max(diff, 0.0) ** 2 / n_disc
    p = float(stats.chi2.sf(chi2, 1))
    name = "McNemar chi-square" + (" (continuity-corrected)" if correction else "")
    return SignificanceResult(test=name, statistic=chi2, p_value=p, n=len(x), details=details)


@dataclass(frozen=True)
class PairedComparison:
    """System A against system B on the same examples: what a results table reports.

    Attributes:
        n: paired examples.
        mean_a, mean_b: the two systems' means.
        mean_difference: ``mean_a - mean_b``.
        t: the paired t statistic; ``p_value``: its two-sided p-value (``nan`` when every
            difference is equal, e.g. two identical systems).
        ci_low, ci_high: the paired bootstrap percentile interval of the difference.
        confidence: level of that interval.
        significance_level: the level ``significant`` uses.
        significant: ``p_value < significance_level``.
    """

    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    t: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    significance_level: float
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dict(self.__dict__)

    def marker(self) -> str:
        """``"↑"`` / ``"↓"`` when A is significantly better / worse than B, else ``""``."""
        if not self.significant:
            return ""
        return "↑" if self.mean_difference > 0 else "↓"


def paired_comparison(a: Sequence[float], b: Sequence[float], significance_level: float = 0.05,
                      confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> PairedComparison:
    """The one significance helper of the recipes: a paired t-test and a paired bootstrap interval of ``a - b``.

    Args:
        a, b: per-example scores of systems A and B (same examples, same order), e.g. from
            :func:`~personakit.eval.evaluate_per_example`.
        significance_level: ``significant`` is ``p_value < significance_level``.
        confidence: level of the bootstrap interval.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.

    Example:
        >>> c = paired_comparison([0.5, 0.6, 0.7, 0.8, 0.9], [0.4, 0.5, 0.6, 0.7, 0.75], n_resamples=2000)
        >>> round(c.mean_difference, 2), c.significant, c.ci_low > 0, c.marker()
        (0.11, True, True, '↑')
    """
    if not 0.0 < significance_level < 1.0:
        raise ValueError(f"paired_comparison: significance_level must be in (0, 1), got {significance_level}")
    t = paired_ttest(a, b)
    boot = paired_bootstrap(a, b, n_resamples=n_resamples, confidence=confidence, seed=seed)
    x, y = _paired(a, b, "paired_comparison")
    p = float(t.p_value)
    return PairedComparison(
        n=t.n, mean_a=float(np.mean(x)), mean_b=float(np.mean(y)), mean_difference=float(boot.statistic),
        t=float(t.statistic), p_value=p, ci_low=float(boot.details["ci_low"]), ci_high=float(boot.details["ci_high"]),
        confidence=confidence, significance_level=significance_level,
        significant=bool(not math.isnan(p) and p < significance_level))
