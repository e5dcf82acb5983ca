"""BLEU and chrF against sacrebleu called directly."""

from __future__ import annotations

import pytest
import sacrebleu

from personakit.eval import BLEU, CHRF, BLEUConfig, CHRFConfig, bleu, chrf
from personakit.testing import assert_config_matches

PREDS = ["the cat is sitting on the mat", "i love to bake cookies with my mom", "hello how are you doing today"]
REFS = ["the cat sat on the mat", "i like baking cookies with my mother", "hi how are you today"]
REFS2 = ["a cat is on the mat", "i love baking cookies", "hello how are you"]


def test_corpus_bleu_agrees_with_sacrebleu():
    expected = sacrebleu.corpus_bleu(PREDS, [REFS]).score
    assert bleu(PREDS, REFS) == pytest.approx(expected, abs=1e-9)
    assert 0 < bleu(PREDS, REFS) < 100  # the 0-100 scale


def test_bleu_is_a_corpus_score_not_a_mean_of_sentence_scores():
    sentence_mean = sum(sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(PREDS, REFS)) / len(PREDS)
    assert bleu(PREDS, REFS) != pytest.approx(sentence_mean, abs=1e-6)


def test_multiple_references_per_prediction():
    refs = [[a, b] for a, b in zip(REFS, REFS2)]
    expected = sacrebleu.corpus_bleu(PREDS, [REFS, REFS2]).score
    assert bleu(PREDS, refs) == pytest.approx(expected, abs=1e-9)
    assert bleu(PREDS, refs) > bleu(PREDS, REFS)


def test_variable_number_of_references():
    refs = [[REFS[0], REFS2[0]], [REFS[1]], [REFS[2], REFS2[2]]]
    expected = sacrebleu.corpus_bleu(PREDS, [REFS, [REFS2[0], None, REFS2[2]]]).score
    assert bleu(PREDS, refs) == pytest.approx(expected, abs=1e-9)


def test_options_are_passed_to_sacrebleu():
    preds = ["The Cat sat on The Mat"]
    refs = ["the cat sat on the mat"]
    assert bleu(preds, refs, lowercase=True) == pytest.approx(100.0)
    assert bleu(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert bleu(preds, refs) < 100.0
    assert BLEU(tokenize="char")(preds, refs) == pytest.approx(
        sacrebleu.corpus_bleu(preds, [refs], tokenize="char").score)


def test_chrf_agrees_with_sacrebleu():
    assert chrf(PREDS, REFS) == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS]).score, abs=1e-9)
    plus = sacrebleu.metrics.CHRF(word_order=2).corpus_score(PREDS, [REFS]).score
    assert chrf(PREDS, REFS, word_order=2) == pytest.approx(plus, abs=1e-9)


def test_configs_mirror_constructors():
    assert_config_matches(BLEUConfig)
    assert_config_matches(CHRFConfig)
    assert isinstance(CHRFConfig(word_order=2).build(), CHRF)
