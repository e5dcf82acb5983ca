"""evaluate_texts, the metric registry and the markdown table."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from personakit.eval import (
    DEFAULT_METRICS,
    METRICS,
    Metric,
    Rouge,
    char_f1,
    evaluate_texts,
    format_metrics_table,
    meteor,
)

PREDS = ["the cat sat on the mat", "i love baking cookies with my mom"]
REFS = ["the cat is on the mat", "i like to bake cookies with my mother"]


def test_default_metrics_flat_keys_and_values():
    scores = evaluate_texts(PREDS, REFS)
    assert list(scores) == ["char_f1", "rouge1", "rouge2", "rougeL", "bleu", "meteor"]
    assert DEFAULT_METRICS == ("char_f1", "rouge", "bleu", "meteor")
    scorer = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True)
    assert scores["rouge2"] == pytest.approx(sum(scorer.score(r, p)["rouge2"].fmeasure for p, r in zip(PREDS, REFS)) / 2)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score)
    assert scores["char_f1"] == pytest.approx(char_f1(PREDS, REFS))
    assert scores["meteor"] == pytest.approx(meteor(PREDS, REFS))


def test_names_resolve_normalised_and_from_a_comma_string():
    a = evaluate_texts(PREDS, REFS, metrics=["Char-F1", "CHRF"])
    b = evaluate_texts(PREDS, REFS, metrics="char_f1, chrf")
    assert a == b and list(a) == ["char_f1", "chrf"]


def test_per_metric_options_are_validated():
    only_l = evaluate_texts(PREDS, REFS, metrics=["rouge"], rouge={"types": ["rougeL"], "use_stemmer": False})
    assert list(only_l) == ["rougeL"]
    with pytest.raises(ValueError, match=r"(?s)invalid options for metric 'rouge'.*field 'use_stemer'"):
        evaluate_texts(PREDS, REFS, metrics=["rouge"], rouge={"use_stemer": False})
    with pytest.raises(ValueError, match="options given for metric 'bleu'"):
        evaluate_texts(PREDS, REFS, metrics=["rouge"], bleu={"lowercase": True})


def test_label_metrics_are_registered():
    scores = evaluate_texts(["a", "b", "b"], ["a", "b", "c"], metrics=["accuracy", "macro_f1"])
    assert scores["accuracy"] == pytest.approx(2 / 3)
    assert evaluate_texts(["4", "2"], ["5", "2"], metrics=["mae", "rmse"]) == pytest.approx(
        {"mae": 0.5, "rmse": 0.5 ** 0.5})


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown metric 'blue'; registered metrics: .*bleu"):
        evaluate_texts(PREDS, REFS, metrics=["blue"])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        evaluate_texts(PREDS, REFS[:1])
    with pytest.raises(ValueError, match="empty input"):
        evaluate_texts([], [])
    with pytest.raises(ValueError, match="two metrics produce the key 'rouge1'"):
        evaluate_texts(PREDS, REFS, metrics=["rouge", Rouge(types=("rouge1",))])
    with pytest.raises(ValueError, match="no metrics"):
        evaluate_texts(PREDS, REFS, metrics=[])


def test_metric_instances_and_custom_metrics():
    class Length(Metric):
        name = "length"

        def score(self, predictions, references):
            return sum(len(p) for p in predictions) / len(predictions)

    scores = evaluate_texts(PREDS, REFS, metrics=[Length(), "bleu"])
    assert scores["length"] == pytest.approx(sum(map(len, PREDS)) / 2)
    assert "bleu" in scores


def test_registry_contents():
    for name in ("char_f1", "rouge", "bleu", "chrf", "meteor", "bertscore", "accuracy", "macro_f1", "mae", "rmse"):
        assert name in METRICS
    with pytest.raises(ValueError, match="already registered"):
        METRICS.register("bleu", Rouge)


def test_format_metrics_table():
    table = format_metrics_table({"PreSFT(Hist)": {"rouge2": 0.2354, "bleu": 17.444},
                                  "PostGRAG": {"rouge2": 0.288, "bleu": 21.086, "bpc": 0.403}})
    assert table.splitlines() == [
        "| system | rouge2 | bleu | bpc |",
        "| --- | ---: | ---: | ---: |",
        "| PreSFT(Hist) | 0.235 | 17.444 | – |",
        "| PostGRAG | 0.288 | 21.086 | 0.403 |",
    ]
    assert "| a\\|b | nan |" in format_metrics_table({"a|b": {"x": float("nan")}}, digits=1)
    with pytest.raises(ValueError, match="no rows"):
        format_metrics_table({})
    with pytest.raises(TypeError, match="row 'x' is float"):
        format_metrics_table({"x": 1.0})


def test_per_example_scores_average_to_the_sentence_level_metrics():
    from personakit.eval import evaluate_per_example, evaluate_texts

    preds = ["the cat sat on the mat", "a dog barked", "hello"]
    refs = ["the cat sat on a mat", "the dog barked loudly", ["hi", "hello there"]]
    per = evaluate_per_example(preds, refs, metrics=["rouge", "char_f1", "meteor", "bleu"])
    corpus = evaluate_texts(preds, refs, metrics=["rouge", "char_f1", "meteor", "bleu"])
    assert set(per) == set(corpus)
    for key in ("rouge1", "rouge2", "rougeL", "char_f1", "meteor"):
        assert len(per[key]) == 3
        assert sum(per[key]) / 3 == pytest.approx(corpus[key])
    assert per["bleu"][0] > per["bleu"][2] >= 0.0  # sentence-level BLEU, one value per pair
    with pytest.raises(ValueError):
        evaluate_per_example(["a"], ["b", "c"], metrics=["rouge"])
