"""Char-F1 against a plain loop written from the definition, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personakit.eval import CharF1, CharF1Config, char_f1
from personakit.functional.text import char_counts, multiset_f1, word_tokenize
from personakit.testing import assert_config_matches


def reference_char_f1(pred: str, ref: str) -> float:
    """Plain loop: remove whitespace, match characters one by one without replacement."""
    p = [c for c in pred if not c.isspace()]
    r = [c for c in ref if not c.isspace()]
    if not p and not r:
        return 1.0
    if not p or not r:
        return 0.0
    pool = list(r)
    common = 0
    for c in p:
        if c in pool:
            pool.remove(c)
            common += 1
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


PAIRS = [
    ("the cat sat on the mat", "the cats sat on a mat"),
    ("Hello, world!", "hello world"),
    ("", ""),
    ("", "x"),
    ("abc", "xyz"),
    ("aaab", "ab"),
    ("I love my dog very much.", "I adore dogs."),
]


@pytest.mark.parametrize("pred,ref", PAIRS)
def test_matches_plain_loop(pred, ref):
    assert char_f1([pred], [ref]) == pytest.approx(reference_char_f1(pred, ref), abs=1e-12)


def test_hand_computed_case():
    # "aaab" vs "ab": overlap {a:1, b:1} = 2; P = 2/4, R = 2/2 -> F1 = 2/3
    assert char_f1(["aaab"], ["ab"]) == pytest.approx(2 / 3)
    # whitespace ignored entirely
    assert char_f1(["a b\tc\n"], ["abc"]) == 1.0


def test_mean_over_pairs_and_best_reference():
    preds = [p for p, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    expected = sum(reference_char_f1(p, r) for p, r in PAIRS) / len(PAIRS)
    assert char_f1(preds, refs) == pytest.approx(expected)
    assert char_f1(["abc"], [["xyz", "abd", "abc"]]) == 1.0
    scores = CharF1().pair_scores(["abc", "abc"], [["xyz", "abd"], "cba"])
    assert scores.tolist() == pytest.approx([2 / 3, 1.0])


def test_options_lowercase_and_whitespace():
    assert char_f1(["ABC"], ["abc"]) == 0.0
    assert char_f1(["ABC"], ["abc"], lowercase=True) == 1.0
    assert char_f1(["a  b"], ["a b"], ignore_whitespace=False) == pytest.approx(2 * 3 / (4 + 3))


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30))
def test_properties_symmetric_bounded_and_agrees_with_loop(a, b):
    ab, ba = char_f1([a], [b]), char_f1([b], [a])
    assert ab == pytest.approx(ba)
    assert 0.0 <= ab <= 1.0
    assert ab == pytest.approx(reference_char_f1(a, b))
    assert char_f1([a], [a]) == 1.0


def test_functional_text_helpers():
    assert word_tokenize("Don't STOP!") == ["don", "'", "t", "stop", "!"]
    assert word_tokenize("Don't", lowercase=False) == ["Don", "'", "t"]
    assert char_counts("Aa a", lowercase=True) == {"a": 3}
    assert multiset_f1({}, {}) == 1.0
    assert multiset_f1({"x": 1}, {}) == 0.0


def test_config_mirrors_constructor():
    assert_config_matches(CharF1Config)
    assert isinstance(CharF1Config(lowercase=True).build(), CharF1)
