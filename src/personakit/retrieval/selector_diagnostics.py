r"""Diagnostics of a retriever selector's choices (RSPG; Salemi et al., SIGIR 2024, §6.2, Table 4).

The paper's success rate (Table 4) counts the inputs whose chosen retriever achieves
the best EVAL, $\frac{1}{B}\sum_b \mathbb{1}[\mathrm{EVAL}_{b,c_b} = \max_i \mathrm{EVAL}_{b,i}]$
(ties: choosing any best retriever is a success).  On its own it does not say whether a
selector learned anything: a selector that always picks one retriever reaches that
retriever's share of (tied-)best inputs.  :func:`selector_diagnostics` puts the success
rate beside

* the **majority-choice rate** $\max_j \frac{1}{B}\sum_b \mathbb{1}[\mathrm{EVAL}_{b,j} = \max_i \mathrm{EVAL}_{b,i}]$,
  the best any constant selector reaches on the split (a selector must beat it to be
  worth its cost), and the success rate of the best single retriever by mean EVAL;
* the **confusion** of the chosen retriever against the oracle retriever (the first of
  the best ones), the share of inputs on which several retrievers tie for the best;
* the **share of inputs on which the retrievers differ at all** (not every EVAL equal):
  on the others every choice is a success and no selector can help.

Example:
    >>> d = selector_diagnostics([0, 0, 1], [[0.2, 0.1], [0.1, 0.3], [0.5, 0.5]], ["none", "bm25"])
    >>> d.success_rate, d.majority_rate, d.differ_share
    (0.6666666666666666, 0.6666666666666666, 0.6666666666666666)
    >>> d.confusion  # rows: chosen, columns: oracle (first best)
    [[1, 1], [1, 0]]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["SelectorDiagnostics", "selector_diagnostics"]


@dataclass
class SelectorDiagnostics:
    """What a retriever selector chose on one split, against what it could have chosen.

    Attributes:
        retriever_names: The retrievers, in column order.
        n_inputs: Number of inputs $B$.
        success_rate: Share of inputs whose chosen retriever has the best EVAL (ties count as success; Table 4).
        majority_rate: The best success rate of a constant choice (always the same retriever) on this split.
        majority_index: The retriever of that constant choice (the first one on ties).
        best_single_index: The retriever with the best mean EVAL (the paper's "best single retriever").
        best_single_success_rate: Success rate of always choosing ``best_single_index``.
        differ_share: Share of inputs on which the retrievers' EVALs are not all equal.
        all_tie_share: ``1 - differ_share``: inputs where every choice is a success.
        best_tie_share: Share of inputs on which two or more retrievers tie for the best EVAL
            (all-tie inputs included).
        success_rate_where_differ: Success rate on the inputs where the retrievers differ
            (``nan`` when there are none).
        majority_rate_where_differ: The majority-choice rate on those inputs (``nan`` when none).
        selected_eval: Mean EVAL of the chosen retrievers (Table 3).
        best_single_eval: Mean EVAL of the best single retriever.
        oracle_eval: Mean of the per-input best EVAL (Table 5 upper bound).
        chosen_counts: How often each retriever was chosen.
        oracle_counts: How often each retriever is the oracle (first best) one.
        confusion: ``[R][R]`` counts, row = chosen retriever, column = oracle retriever.
        atol: The tolerance used for ties.
    """

    retriever_names: list[str]
    n_inputs: int
    success_rate: float
    majority_rate: float
    majority_index: int
    best_single_index: int
    best_single_success_rate: float
    differ_share: float
    all_tie_share: float
    best_tie_share: float
    success_rate_where_differ: float
    majority_rate_where_differ: float
    selected_eval: float
    best_single_eval: float
    oracle_eval: float
    chosen_counts: list[int] = field(default_factory=list)
    oracle_counts: list[int] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    atol: float = 0.0

    @property
    def majority_name(self) -> str:
        """Name of the retriever of the best constant choice."""
        return self.retriever_names[self.majority_index]

    @property
    def best_single_name(self) -> str:
        """Name of the retriever with the best mean EVAL."""
        return self.retriever_names[self.best_single_index]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (plus the two names)."""
        return {**asdict(self), "majority_name": self.majority_name, "best_single_name": self.best_single_name}

    def to_markdown(self, title: Optional[str] = None) -> str:
        """A summary table and the chosen × oracle confusion table, in Markdown.

        Args:
            title: Optional line written above the tables (e.g. ``"RSPG-Pre on test"``).
        """
        f = _fmt
        lines = [f"**{title}**", ""] if title else []
        lines += [
            "| inputs | success rate | majority-choice rate | success where retrievers differ | "
            "majority rate where they differ | retrievers differ | tie for best | selected EVAL | "
            "best single EVAL | oracle EVAL |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {self.n_inputs} | {f(self.success_rate)} | {f(self.majority_rate)} ({self.majority_name}) | "
            f"{f(self.success_rate_where_differ)} | {f(self.majority_rate_where_differ)} | {f(self.differ_share)} | "
            f"{f(self.best_tie_share)} | {f(self.selected_eval, 4)} | {f(self.best_single_eval, 4)} "
            f"({self.best_single_name}) | {f(self.oracle_eval, 4)} |",
            "",
            "Chosen (rows) × oracle (columns, the first best retriever of each input):",
            "",
            "| chosen \\ oracle | " + " | ".join(self.retriever_names) + " | total |",
            "| --- |" + " ---: |" * (len(self.retriever_names) + 1),
        ]
        for name, row, total in zip(self.retriever_names, self.confusion, self.chosen_counts):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + f" | {total} |")
        lines.append("| total | " + " | ".join(str(v) for v in self.oracle_counts) + f" | {self.n_inputs} |")
        return "\n".join(lines)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def selector_diagnostics(choices: Sequence[int] | Any, evals: Any, retriever_names: Optional[Sequence[str]] = None,
                         *, atol: float = 0.0) -> SelectorDiagnostics:
    r"""Success rate, majority-choice rate, chosen × oracle confusion and tie shares of a selector's choices.

    A retriever is *best* for input $b$ when $\mathrm{EVAL}_{b,i} \ge \max_j \mathrm{EVAL}_{b,j} - \epsilon$
    (``atol`` $= \epsilon$); the *oracle* retriever is the first best one; the retrievers
    *differ* on input $b$ when $\max_j \mathrm{EVAL}_{b,j} - \min_j \mathrm{EVAL}_{b,j} > \epsilon$.

    Args:
        choices: ``[B]`` chosen retriever indices (e.g. ``scores.argmax(-1)``).
        evals: ``[B, R]`` downstream scores, higher is better (tensor, array or nested lists).
        retriever_names: ``R`` names (default ``retriever_0 …``).
        atol: Tolerance $\epsilon \ge 0$ for ties between floating-point scores.

    Returns:
        :class:`SelectorDiagnostics`.

    Raises:
        ValueError: ``evals`` is not ``[B, R]`` with ``B, R >= 1``, the choices do not match
            it, or the names are not ``R`` unique strings.
    """
    ev = np.asarray(evals.detach().cpu() if hasattr(evals, "detach") else evals, dtype=np.float64)
    if ev.ndim != 2 or ev.shape[0] == 0 or ev.shape[1] == 0:
        raise ValueError(f"selector_diagnostics: evals must have shape [B, R] with B, R >= 1; got {ev.shape}")
    if not np.isfinite(ev).all():
        raise ValueError("selector_diagnostics: evals must be finite")
    if atol < 0:
        raise ValueError(f"selector_diagnostics: atol must be >= 0; got {atol}")
    n, r = ev.shape
    ch = np.asarray(choices.detach().cpu() if hasattr(choices, "detach") else list(choices)).reshape(-1)
    if ch.size != n:
        raise ValueError(f"selector_diagnostics: {ch.size} choices for {n} inputs")
    if not np.issubdtype(ch.dtype, np.integer) or (ch.size and (ch.min() < 0 or ch.max() >= r)):
        raise ValueError(f"selector_diagnostics: choices must be integers in [0, {r}); got {ch.tolist()[:10]}")
    names = [f"retriever_{i}" for i in range(r)] if retriever_names is None else [str(s) for s in retriever_names]
    if len(names) != r or len(set(names)) != r:
        raise ValueError(f"selector_diagnostics: need {r} unique retriever names; got {names}")

    best_value = ev.max(axis=1)  # (B,)
    is_best = ev >= best_value[:, None] - atol  # (B, R)
    differ = (best_value - ev.min(axis=1)) > atol  # (B,)
    success = is_best[np.arange(n), ch]  # (B,)
    oracle = is_best.argmax(axis=1)  # (B,) the first best
    constant = is_best.mean(axis=0)  # (R,) success rate of always choosing retriever j
    majority = int(constant.argmax())
    means = ev.mean(axis=0)  # (R,)
    best_single = int(means.argmax())
    confusion = np.zeros((r, r), dtype=np.int64)
    np.add.at(confusion, (ch, oracle), 1)
    if differ.any():
        where_success = float(success[differ].mean())
        where_majority = float(is_best[differ].mean(axis=0).max())
    else:
        where_success = where_majority = float("nan")
    return SelectorDiagnostics(
        retriever_names=names, n_inputs=n, success_rate=float(success.mean()), majority_rate=float(constant[majority]),
        majority_index=majority, best_single_index=best_single,
        best_single_success_rate=float(constant[best_single]), differ_share=float(differ.mean()),
        all_tie_share=float(1.0 - differ.mean()), best_tie_share=float((is_best.sum(axis=1) >= 2).mean()),
        success_rate_where_differ=where_success, majority_rate_where_differ=where_majority,
        selected_eval=float(ev[np.arange(n), ch].mean()), best_single_eval=float(means[best_single]),
        oracle_eval=float(best_value.mean()), chosen_counts=np.bincount(ch, minlength=r).astype(int).tolist(),
        oracle_counts=np.bincount(oracle, minlength=r).astype(int).tolist(), confusion=confusion.tolist(),
        atol=float(atol))
