"""The Metric base: update → compute, validation and reference normalisation."""

from __future__ import annotations

import pytest

from personakit.eval import CharF1, Metric, normalize_references


def test_update_compute_equals_one_shot_call():
    preds = ["the cat", "a dog", "hello"]
    refs = ["the hat", "a log", "help"]
    metric = CharF1()
    metric.update(preds[:2], refs[:2])
    metric.update(preds[2:], refs[2:])
    assert len(metric) == 3
    assert metric.compute() == pytest.approx(CharF1()(preds, refs))
    metric.reset()
    assert len(metric) == 0
    with pytest.raises(ValueError, match="before update"):
        metric.compute()


def test_call_does_not_touch_accumulated_state():
    metric = CharF1()
    metric.update(["abc"], ["abc"])
    assert metric(["abc"], ["xyz"]) == 0.0
    assert metric.compute() == 1.0


def test_length_mismatch_empty_and_type_errors_name_the_metric():
    metric = CharF1()
    with pytest.raises(ValueError, match=r"char_f1: 2 predictions but 1 references"):
        metric(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="char_f1: empty input"):
        metric([], [])
    with pytest.raises(TypeError, match="not a single string"):
        metric("abc", "abc")
    with pytest.raises(TypeError, match="prediction 1 is int"):
        metric(["a", 3], ["a", "b"])
    with pytest.raises(TypeError, match=r"reference 0\[1\] is NoneType"):
        metric(["a"], [["a", None]])


def test_normalize_references_single_and_multiple():
    assert normalize_references(["a", ("b", "c")]) == [["a"], ["b", "c"]]
    with pytest.raises(ValueError, match="reference 1 is an empty list"):
        normalize_references(["a", []])


def test_flat_keys_for_float_and_dict_results():
    class Two(Metric):
        name = "two"

        def score(self, predictions, references):
            return {"p": 1, "r": 0.5}

    assert Two().flat(Two()(["x"], ["y"])) == {"two_p": 1.0, "two_r": 0.5}
    assert CharF1().flat(0.25) == {"char_f1": 0.25}
