"""selector_diagnostics: success and majority-choice rates, chosen × oracle confusion, tie shares (hand values)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from personakit.functional.selector import selected_performance, selection_success_rate
from personakit.retrieval import SelectorDiagnostics, selector_diagnostics

NAMES = ["none", "bm25", "dense"]
EVALS = [[0.30, 0.10, 0.10],   # none best
         [0.10, 0.20, 0.20],   # bm25 and dense tie for best (oracle: bm25, the first)
         [0.20, 0.20, 0.20],   # every retriever ties: any choice succeeds
         [0.00, 0.10, 0.35],   # dense best
         [0.50, 0.40, 0.40],   # none best
         [0.10, 0.30, 0.00]]   # bm25 best
CHOICES = [0, 2, 1, 0, 0, 1]   # successes: rows 0, 1 (tie), 2 (all tie), 4, 5; failure: row 3


def test_hand_values():
    d = selector_diagnostics(CHOICES, EVALS, NAMES)
    assert isinstance(d, SelectorDiagnostics) and d.n_inputs == 6 and d.retriever_names == NAMES
    assert d.success_rate == pytest.approx(5 / 6)
    # always none: rows 0, 2, 4 -> 3/6; always bm25: rows 1, 2, 5 -> 3/6; always dense: rows 1, 2, 3 -> 3/6
    assert d.majority_rate == pytest.approx(3 / 6) and d.majority_index == 0 and d.majority_name == "none"
    # mean EVAL: none 1.2/6, bm25 1.3/6, dense 1.25/6 -> bm25
    assert d.best_single_index == 1 and d.best_single_name == "bm25"
    assert d.best_single_success_rate == pytest.approx(3 / 6)
    assert d.best_single_eval == pytest.approx(1.3 / 6)
    assert d.differ_share == pytest.approx(5 / 6) and d.all_tie_share == pytest.approx(1 / 6)
    assert d.best_tie_share == pytest.approx(2 / 6)  # rows 1 and 2
    assert d.success_rate_where_differ == pytest.approx(4 / 5)  # rows 0, 1, 3, 4, 5; row 3 fails
    # on those 5 rows: none best on 0, 4 -> 2/5; bm25 on 1, 5 -> 2/5; dense on 1, 3 -> 2/5
    assert d.majority_rate_where_differ == pytest.approx(2 / 5)
    assert d.selected_eval == pytest.approx((0.30 + 0.20 + 0.20 + 0.00 + 0.50 + 0.30) / 6)
    assert d.oracle_eval == pytest.approx((0.30 + 0.20 + 0.20 + 0.35 + 0.50 + 0.30) / 6)
    assert d.chosen_counts == [3, 2, 1]
    assert d.oracle_counts == [3, 2, 1]  # oracles: none, bm25, none, dense, none, bm25
    #                chosen none: oracle none (rows 0, 4), dense (row 3); bm25: none (row 2), bm25 (row 5);
    #                dense: bm25 (row 1)
    assert d.confusion == [[2, 0, 1], [1, 1, 0], [0, 1, 0]]
    # agrees with the functional helpers of Tables 3 and 4
    assert d.success_rate == selection_success_rate(CHOICES, EVALS)
    assert d.selected_eval == pytest.approx(selected_performance(CHOICES, EVALS))


def test_constant_selector_reaches_exactly_the_majority_rate():
    d = selector_diagnostics([0] * 6, EVALS, NAMES)
    assert d.success_rate == d.majority_rate == pytest.approx(0.5)
    assert d.chosen_counts == [6, 0, 0] and sum(map(sum, d.confusion)) == 6


def test_tensors_atol_and_all_ties():
    evals = torch.tensor([[0.5, 0.5 - 1e-9], [0.1, 0.1]], dtype=torch.float64)
    exact = selector_diagnostics(torch.tensor([1, 1]), evals)
    assert exact.retriever_names == ["retriever_0", "retriever_1"]
    assert exact.success_rate == 0.5 and exact.differ_share == 0.5
    loose = selector_diagnostics(torch.tensor([1, 1]), evals, atol=1e-6)
    assert loose.success_rate == 1.0 and loose.differ_share == 0.0 and loose.best_tie_share == 1.0
    assert math.isnan(loose.success_rate_where_differ) and math.isnan(loose.majority_rate_where_differ)
    assert "n/a" in loose.to_markdown()


def test_markdown_and_dict():
    d = selector_diagnostics(CHOICES, EVALS, NAMES)
    md = d.to_markdown("RSPG-Pre on test")
    assert md.startswith("**RSPG-Pre on test**")
    assert "| 6 | 0.833 | 0.500 (none) | 0.800 | 0.400 | 0.833 | 0.333 |" in md
    assert "| chosen \\ oracle | none | bm25 | dense | total |" in md
    assert "| none | 2 | 0 | 1 | 3 |" in md and "| total | 3 | 2 | 1 | 6 |" in md
    data = json.loads(json.dumps(d.to_dict()))
    assert data["confusion"] == d.confusion and data["majority_name"] == "none" and data["best_single_name"] == "bm25"


def test_input_checks():
    with pytest.raises(ValueError, match=r"\[B, R\]"):
        selector_diagnostics([0], [0.1, 0.2])
    with pytest.raises(ValueError, match="choices for"):
        selector_diagnostics([0, 1], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="integers in"):
        selector_diagnostics([2], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="unique retriever names"):
        selector_diagnostics([0], [[0.1, 0.2]], ["a", "a"])
    with pytest.raises(ValueError, match="finite"):
        selector_diagnostics([0], [[0.1, float("nan")]])
    with pytest.raises(ValueError, match="atol"):
        selector_diagnostics([0], [[0.1, 0.2]], atol=-1.0)
