"""ROUGE against rouge-score (the backend and the reference) and a hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest
from rouge_score import rouge_scorer

from personakit.eval import Rouge, RougeConfig, rouge
from personakit.testing import assert_config_matches

PREDS = ["the cat was sitting on the mat", "hello there my friend", "completely unrelated words", ""]
REFS = ["the cat sat on the mat", "hi there friend", "a persona about dogs", "something"]


def test_means_agree_with_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per = [scorer.score(r, p) for p, r in zip(PREDS, REFS)]
    got = rouge(PREDS, REFS)
    for t in ("rouge1", "rouge2", "rougeL"):
        assert got[t] == pytest.approx(np.mean([s[t].fmeasure for s in per]), abs=1e-12)


def test_hand_computed_case():
    # unigrams: pred {a, b, c, d}, ref {a, b, e}: overlap 2 -> P 2/4, R 2/3, F = 4/7
    # bigrams: pred {ab, bc, cd}, ref {ab, be}: overlap 1 -> P 1/3, R 1/2, F = 2/5
    # LCS("a b c d", "a b e") = 2 -> same as ROUGE-1 here
    got = rouge(["a b c d"], ["a b e"], use_stemmer=False)
    assert got == pytest.approx({"rouge1": 4 / 7, "rouge2": 2 / 5, "rougeL": 4 / 7})


def test_stemmer_option_and_types():
    assert rouge(["cats running"], ["cat runs"], types=("rouge1",), use_stemmer=True)["rouge1"] == 1.0
    assert rouge(["cats running"], ["cat runs"], types=("rouge1",), use_stemmer=False)["rouge1"] == 0.0
    assert set(rouge(["a"], ["a"], types=["rougeLsum", "rouge3"])) == {"rougeLsum", "rouge3"}
    with pytest.raises(ValueError, match="unknown ROUGE type"):
        Rouge(types=("rougeX",))


def test_multiple_references_take_the_best_like_score_multi():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    refs = [["the dog sat", "the cat sat on the mat"], ["hi there friend"]]
    preds = PREDS[:2]
    got = Rouge(types=("rouge1", "rougeL")).pair_scores(preds, refs)
    for t in ("rouge1", "rougeL"):
        expected = [max(scorer.score(r, p)[t].fmeasure for r in rs) for p, rs in zip(preds, refs)]
        assert got[t].tolist() == pytest.approx(expected)


def test_flat_keys_are_the_types():
    metric = Rouge(types=("rouge2",))
    assert list(metric.flat(metric(["a b"], ["a b"]))) == ["rouge2"]


def test_config_mirrors_constructor_and_validates_types():
    assert_config_matches(RougeConfig)
    assert RougeConfig(types=["rougeL"]).build().types == ("rougeL",)
    with pytest.raises(Exception, match="unknown ROUGE type"):
        RougeConfig(types=["bleu"])
