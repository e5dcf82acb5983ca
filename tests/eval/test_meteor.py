"""METEOR (exact + stem) against nltk given a WordNet stub with no synsets, and by hand."""

from __future__ import annotations

import pytest
from nltk.stem.porter import PorterStemmer
from nltk.translate.meteor_score import meteor_score as nltk_meteor_score

from personakit.eval import Meteor, MeteorConfig, count_chunks, meteor, meteor_alignment
from personakit.functional.text import word_tokenize
from personakit.testing import assert_config_matches


class NoSynonyms:
    """Stands in for nltk's WordNet reader: no synsets, so nltk computes exact+stem METEOR too."""

    def synsets(self, word):
        return []


PAIRS = [
    ("the cat sat on the mat", "the cats sat on a mat"),
    ("It is a guide to action which ensures that the military always obeys the commands of the party",
     "It is a guide to action that ensures that the military will forever heed Party commands"),
    ("I love baking cookies with my mother!", "i loved to bake cookies with mom."),
    ("the the the dog", "the dog the"),
    ("running runners run", "runs running runner"),
    ("nothing in common", "entirely different words"),
    ("a", "a"),
    ("hello there, how are you doing today?", "hi, how are you today?"),
]


def nltk_reference(pred: str, refs: list[str]) -> float:
    return nltk_meteor_score([word_tokenize(r) for r in refs], word_tokenize(pred), stemmer=PorterStemmer(),
                             wordnet=NoSynonyms())


@pytest.mark.parametrize("pred,ref", PAIRS)
def test_agrees_with_nltk_without_wordnet(pred, ref):
    assert meteor([pred], [ref]) == pytest.approx(nltk_reference(pred, [ref]), abs=1e-12)


def test_mean_and_multiple_references_agree_with_nltk():
    preds = [p for p, _ in PAIRS]
    refs = [[r, "the cat is here"] for _, r in PAIRS]
    expected = [nltk_reference(p, rs) for p, rs in zip(preds, refs)]
    assert Meteor().pair_scores(preds, refs).tolist() == pytest.approx(expected, abs=1e-12)
    assert meteor(preds, refs) == pytest.approx(sum(expected) / len(expected), abs=1e-12)


def test_hand_computed_case():
    # hyp: the cat sat on the mat / ref: the cats sat on a mat
    # exact (from the end): mat5-5, the4-0, on3-3, sat2-2; stem: cat1-cats1  -> m = 5
    # chunks: (1,1)(2,2)(3,3) | (4,0) | (5,5) -> 3;  P = R = 5/6 so F_mean = 5/6
    # METEOR = (1 - 0.5 * (3/5)**3) * 5/6 = 0.892 * 5/6
    assert meteor_alignment("the cat sat on the mat".split(), "the cats sat on a mat".split(),
                            stem=PorterStemmer().stem) == [(1, 1), (2, 2), (3, 3), (4, 0), (5, 5)]
    assert meteor(["the cat sat on the mat"], ["the cats sat on a mat"]) == pytest.approx(0.892 * 5 / 6)
    # one chunk of 4 matching tokens, hyp longer than ref: P = 4/5, R = 1
    # F_mean = 0.8 / (0.9 * 0.8 + 0.1) = 0.97561; penalty = 0.5 * (1/4)**3
    expected = (1 - 0.5 / 64) * 0.8 / (0.9 * 0.8 + 0.1)
    assert meteor(["a b c d e"], ["a b c d"]) == pytest.approx(expected)


def test_stem_stage_and_no_match():
    assert Meteor(stem=False)(["cats"], ["cat"]) == 0.0
    assert Meteor()(["cats"], ["cat"]) == pytest.approx(0.5)  # one match, one chunk: 1 - 0.5
    assert meteor(["x y"], ["z"]) == 0.0
    assert meteor([""], ["a"]) == 0.0


def test_count_chunks():
    assert count_chunks([]) == 0
    assert count_chunks([(0, 3)]) == 1
    assert count_chunks([(0, 0), (1, 1), (2, 2)]) == 1
    assert count_chunks([(0, 1), (1, 0)]) == 2


def test_variant_is_declared_and_config_mirrors_constructor():
    assert Meteor.variant == "exact+stem, no WordNet synonyms"
    assert "no WordNet" in (Meteor.__doc__ or "")
    assert_config_matches(MeteorConfig)
    assert MeteorConfig(alpha=0.85).build().alpha == 0.85
    with pytest.raises(ValueError, match="alpha"):
        Meteor(alpha=1.5)
