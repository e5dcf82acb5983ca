"""BERTScore against the authors' ``bert-score`` package on a tiny local BERT, and a plain loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from personakit.eval import BERTScore, BERTScoreConfig, bertscore, greedy_match
from personakit.testing import assert_config_matches

WORDS = ("the a cat cats dog sat on mat hello there hi my friend love baking cookies with mom how are you "
         "today was sitting is i , . ! ?").split()
PREDS = ["the cat was sitting on the mat", "hello there my friend", "i love baking cookies", "how are you ?"]
REFS = ["the cat sat on the mat", "hi there friend", "i love cookies with my mom", "hello , how are you today ?"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 16-d random BERT with a word-level vocabulary, saved to a temp folder."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), model_max_length=64)
    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                 vocab_size=len(vocab), max_position_embeddings=64)).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def reference_bert_score(folder, preds, refs, num_layers, idf=False):
    bert_score = pytest.importorskip("bert_score")
    P, R, F = bert_score.score(preds, refs, model_type=str(folder), num_layers=num_layers, idf=idf,
                               device="cpu", nthreads=0, batch_size=3)
    return P.numpy(), R.numpy(), F.numpy()


@pytest.mark.parametrize("idf", [False, True])
def test_agrees_with_bert_score_package(tiny_bert, idf):
    folder, model, tokenizer = tiny_bert
    P, R, F = reference_bert_score(folder, PREDS, REFS, num_layers=2, idf=idf)
    out = BERTScore(model=(model, tokenizer), idf=idf, batch_size=3).pair_scores(PREDS, REFS)
    np.testing.assert_allclose(out.precision, P, atol=1e-5)
    np.testing.assert_allclose(out.recall, R, atol=1e-5)
    np.testing.assert_allclose(out.f1, F, atol=1e-5)


def test_loading_from_a_local_folder_and_layer_choice(tiny_bert):
    folder, _, _ = tiny_bert
    P, R, F = reference_bert_score(folder, PREDS, REFS, num_layers=1)
    got = bertscore(PREDS, REFS, model=str(folder), layer=1)
    assert got == pytest.approx({"precision": P.mean(), "recall": R.mean(), "f1": F.mean()}, abs=1e-5)


def test_multiple_references_agree_with_bert_score_package(tiny_bert):
    folder, model, tokenizer = tiny_bert
    refs = [[r, "the dog sat"] for r in REFS]
    P, R, F = reference_bert_score(folder, PREDS, refs, num_layers=2)
    out = BERTScore(model=(model, tokenizer)).pair_scores(PREDS, refs)
    np.testing.assert_allclose(np.stack([out.precision, out.recall, out.f1]), np.stack([P, R, F]), atol=1e-5)


def plain_loop(model, tokenizer, pred, ref):
    """Zhang et al. with special tokens removed from matching: explicit double loops."""
    def embed(text):
        enc = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask")[0].bool()
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0]
        return [h.double() for h, s in zip(hidden, special) if not s]

    def cos(u, v):
        return float(u @ v / (u.norm() * v.norm()))

    hyp, ref_ = embed(pred), embed(ref)
    p = sum(max(cos(h, r) for r in ref_) for h in hyp) / len(hyp)
    r = sum(max(cos(r, h) for h in hyp) for r in ref_) / len(ref_)
    return p, r, 2 * p * r / (p + r)


def test_match_special_tokens_false_agrees_with_plain_loop(tiny_bert):
    _, model, tokenizer = tiny_bert
    out = BERTScore(model=(model, tokenizer), match_special_tokens=False).pair_scores(PREDS, REFS)
    for k, (p, r) in enumerate(zip(PREDS, REFS)):
        assert (out.precision[k], out.recall[k], out.f1[k]) == pytest.approx(plain_loop(model, tokenizer, p, r),
                                                                          abs=1e-6)


def test_identical_and_empty_sentences(tiny_bert):
    _, model, tokenizer = tiny_bert
    out = BERTScore(model=(model, tokenizer)).pair_scores(["hello there", "", "hi"], ["hello there", "hi", ""])
    assert out.f1[0] == pytest.approx(1.0, abs=1e-6)
    assert out.precision[1] == out.recall[1] == out.f1[1] == 0.0
    assert out.f1[2] == 0.0


def test_baseline_rescaling(tiny_bert):
    _, model, tokenizer = tiny_bert
    raw = BERTScore(model=(model, tokenizer))(PREDS, REFS)
    rescaled = BERTScore(model=(model, tokenizer), baseline=(0.5, 0.5, 0.5))(PREDS, REFS)
    assert rescaled["f1"] == pytest.approx((raw["f1"] - 0.5) / 0.5)


def test_greedy_match_by_hand():
    # hyp tokens e1, e2; ref tokens e1, (e1+e2)/sqrt2: cos(e2, ref2) = 1/sqrt2
    hyp = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ref = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    p, r, f = greedy_match(hyp, ref, torch.ones(2), torch.ones(2))
    s = 1 / math.sqrt(2)
    assert p == pytest.approx((1 + s) / 2)
    assert r == pytest.approx((1 + s) / 2)
    assert f == pytest.approx((1 + s) / 2)


def test_update_compute_and_flat_keys(tiny_bert):
    _, model, tokenizer = tiny_bert
    metric = BERTScore(model=(model, tokenizer))
    metric.update(PREDS[:2], REFS[:2])
    metric.update(PREDS[2:], REFS[2:])
    assert metric.compute() == pytest.approx(metric(PREDS, REFS))
    assert set(metric.flat(metric.compute())) == {"bertscore_precision", "bertscore_recall", "bertscore_f1"}


def test_config_mirrors_constructor():
    assert_config_matches(BERTScoreConfig)
    assert BERTScoreConfig(idf=True).build().idf


@pytest.mark.real_model
def test_minilm_identical_related_unrelated(minilm_path):
    metric = BERTScore(model=str(minilm_path))
    out = metric.pair_scores(
        ["I love walking my dog in the park.", "I love walking my dog in the park.", "I love walking my dog in the park."],
        ["I love walking my dog in the park.", "Walking my puppy in the park is my favourite thing.",
         "The quarterly tax report is due on Monday."],
    )
    assert out.f1[0] == pytest.approx(1.0, abs=1e-5)
    assert out.f1[1] > out.f1[2]
    assert 0.0 < out.f1[2] < out.f1[1] < 1.0
