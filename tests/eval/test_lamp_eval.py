"""LaMP EVAL functions: accuracy, the LaMP-3 normalised score and ROUGE-1 (against rouge-score)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rouge_score import rouge_scorer

import personakit.eval.lamp as lamp_module
from personakit.eval.lamp import (
    LAMP_EVAL_METRICS,
    lamp3_score,
    lamp_accuracy,
    lamp_eval_fn,
    lamp_eval_name,
    lamp_rouge1,
    parse_rating,
)


def test_doctests():
    assert doctest.testmod(lamp_module).failed == 0


@pytest.mark.parametrize(
    "task, name",
    [("LaMP-1", "accuracy"), ("LaMP_2", "accuracy"), ("lamp3", "lamp3_score"), (4, "rouge1"),
     ("LaMP-5", "rouge1"), ("LaMP-6", "rouge1"), ("LaMP 7", "rouge1"), ("PFG-LaMP", "rouge1"), ("pfg_lamp", "rouge1")],
)
def test_task_mapping(task, name):
    assert lamp_eval_name(task) == name
    assert lamp_eval_fn(task).name == name


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'LaMP-8'"):
        lamp_eval_fn("LaMP-8")
    with pytest.raises(ValueError, match="unknown task"):
        lamp_eval_fn(True)


def test_every_task_has_a_metric():
    assert set(LAMP_EVAL_METRICS) == {f"LaMP-{i}" for i in range(1, 8)} | {"PFG-LaMP"}


def test_accuracy():
    assert lamp_accuracy("[1]", "[1]") == 1.0
    assert lamp_accuracy(" [2]. ", "[2]") == 1.0
    assert lamp_accuracy("[1]", "[2]") == 0.0
    assert lamp_accuracy("Comedy", "comedy") == 1.0
    assert lamp_accuracy("Comedy", "comedy", normalize=False) == 0.0
    assert lamp_accuracy(" comedy\n", "comedy", normalize=False) == 1.0
    assert lamp_accuracy("dark comedy", "comedy") == 0.0


def _reference_lamp3(pred: float, y: float) -> float:
    worst = max(abs(1 - y), abs(5 - y))
    return (worst - abs(y - pred)) / worst


@pytest.mark.parametrize("y", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("pred", [1, 2, 3, 4, 5])
def test_lamp3_matches_formula(pred, y):
    assert lamp3_score(str(pred), str(y)) == pytest.approx(_reference_lamp3(pred, y))


def test_lamp3_bounds_and_examples():
    assert lamp3_score("5", "5") == 1.0
    assert lamp3_score("1", "5") == 0.0
    assert lamp3_score("5", "1") == 0.0
    assert lamp3_score("1", "3") == 0.0  # worst distance from 3 is 2
    assert lamp3_score("4", "3") == 0.5
    assert lamp3_score("3 stars", "4") == pytest.approx(2 / 3)
    assert lamp3_score("Rating: 2.", "2") == 1.0
    assert lamp3_score("9", "5") == 1.0  # clipped to 5
    assert lamp3_score("-3", "5") == 0.0  # clipped to 1


def test_lamp3_unparsable_is_worst():
    for y in ("1", "3", "5"):
        assert lamp3_score("I loved it!", y) == 0.0
        assert lamp3_score("", y) == 0.0


def test_lamp3_bad_target():
    with pytest.raises(ValueError, match="target 'great'"):
        lamp3_score("4", "great")
    with pytest.raises(ValueError, match="between 1 and 5"):
        lamp3_score("4", "7")


@given(st.floats(min_value=-10, max_value=10, allow_nan=False), st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0]))
def test_lamp3_in_unit_interval(pred, y):
    s = lamp3_score(repr(pred), str(y))
    assert 0.0 <= s <= 1.0


def test_parse_rating():
    assert parse_rating("4") == 4.0
    assert parse_rating(' "3.5" ') == 3.5
    assert parse_rating("The score is 2 out of 5") == 2.0
    assert parse_rating("nan") is None
    assert parse_rating("no number") is None


def test_rouge1_matches_rouge_score_without_stemmer():
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    preds = ["The cats were running home", "hello world", "", "a b c d"]
    refs = ["the cat runs home", "hello there world", "something", "a b e"]
    for p, r in zip(preds, refs):
        assert lamp_rouge1(p, r) == pytest.approx(scorer.score(r, p)["rouge1"].fmeasure, abs=1e-12)
    assert lamp_rouge1("a b c d", "a b e") == pytest.approx(4 / 7)
    # no stemming: "cats" and "cat" differ
    assert lamp_rouge1("cats", "cat") == 0.0


def test_many():
    f = lamp_eval_fn("LaMP-3")
    got = f.many(["5", "1", "x"], ["5", "5", "3"])
    np.testing.assert_allclose(got, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        f.many(["1", "2"], ["1"])


def test_lamp_metric_per_example_and_corpus():
    from personakit.eval import LaMPMetric, build_metrics, evaluate_texts
    from personakit.eval.lamp import lamp3_rating

    m3 = LaMPMetric("LaMP_3")
    preds, refs = ["4", "no idea", "9 stars", "1"], ["5", "2", "3", "1"]
    per = m3.per_example(preds, refs)
    assert list(per) == list(m3.keys) == ["lamp3_score", "mae"]
    # unparsable -> the end of the scale farther from y (5 for y=2); 9 -> clipped to 5
    assert [lamp3_rating(p, r) for p, r in zip(preds, refs)] == [4.0, 5.0, 5.0, 1.0]
    assert per["mae"] == [1.0, 3.0, 2.0, 0.0]
    assert per["lamp3_score"] == [lamp3_score(p, r) for p, r in zip(preds, refs)]
    assert per["lamp3_score"][1] == 0.0  # the worst rating scores 0
    corpus = evaluate_texts(preds, refs, metrics=[m3])
    assert corpus == pytest.approx({"lamp3_score": np.mean(per["lamp3_score"]), "mae": 1.5})

    acc = LaMPMetric("LaMP-2")
    assert acc.per_example(["Comedy.", "drama"], ["comedy", "horror"]) == {"accuracy": [1.0, 0.0]}

    gen = LaMPMetric("PFG-LaMP")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    p, r = ["the cats sat down", "a b c"], ["the cat sat", "c b a"]
    got = gen.per_example(p, r)
    assert got["rouge1"] == pytest.approx([scorer.score(t, x)["rouge1"].fmeasure for x, t in zip(p, r)])
    assert got["rougeL"] == pytest.approx([scorer.score(t, x)["rougeL"].fmeasure for x, t in zip(p, r)])
    assert got["rouge1"] == pytest.approx([lamp_rouge1(x, t) for x, t in zip(p, r)])  # the EVAL is the first key
    assert build_metrics([gen])[0] is gen
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        gen.per_example(p, r[:1])
