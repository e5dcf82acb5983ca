"""Tests of the ROPG trainers (personakit.training.ropg)."""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import personakit.training.ropg as ropg_mod
from personakit.retrieval import BM25Retriever, DenseRetriever
from personakit.training import (
    ROPGItem,
    ROPGKDTrainer,
    ROPGRLTrainer,
    ROPGTrainerConfig,
    latest_checkpoint,
    prepare_ropg_items,
    score_candidate_lists,
)
from personakit.training.checkpoint import CheckpointError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _families import WORDS, BagOfWords, keyword_feedback, keyword_task, ropg_items  # noqa: E402


def keyword_mass(trainer, items):
    probs = trainer.policy(items)
    return float(np.mean([sum(p for p, t in zip(ps, it.candidates) if "apple" in t) for ps, it in zip(probs, items)]))


_items = ropg_items


def _cfg(tmp_path=None, **kw):
    base = dict(learning_rate=0.05, epochs=3, batch_size=4, gradient_accumulation_steps=1, warmup_ratio=0.0, progress=False,
                seed=0)
    if tmp_path is not None:
        base["output_dir"] = str(tmp_path)
    base.update(kw)
    return ROPGTrainerConfig(**base)


# ---------------------------------------------------------------------------- data
def test_prepare_items_follows_the_initial_retriever():
    queries, profiles = keyword_task(3, 5)
    bm25 = BM25Retriever()
    items = prepare_ropg_items(queries, profiles, initial_retriever=bm25, top_l=3, feedback=keyword_feedback)
    for q, prof, it in zip(queries, profiles, items):
        top = bm25.retrieve(q, prof, k=3)
        assert it.candidates == [r.text for r in top]  # candidate 0 = d_b
        np.testing.assert_array_equal(it.evals, [1.0 if "apple" in r.text else 0.0 for r in top])
    pre = prepare_ropg_items(queries, profiles, initial_retriever=bm25, top_l=3, evals=[it.evals for it in items])
    assert [it.candidates for it in pre] == [it.candidates for it in items]
    with pytest.raises(ValueError, match="input 1: 2 EVAL scores for 3 candidates"):
        prepare_ropg_items(queries, profiles, initial_retriever=bm25, top_l=3,
                           evals=[np.zeros(3), np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match="exactly one"):
        prepare_ropg_items(queries, profiles, initial_retriever=bm25)
    with pytest.raises(ValueError, match="'evals' has 1 scores for 2 candidates"):
        ROPGItem("q", ["a", "b"], np.zeros(1), id="x")
    with pytest.raises(ValueError, match="non-finite"):
        ROPGItem("q", ["a"], np.array([np.nan]))
    with pytest.raises(ValueError, match="empty"):
        ROPGItem("q", [], np.zeros(0))


def test_trainer_prepare_uses_initial_retriever_and_feedback():
    queries, profiles = keyword_task(3, 5)
    trainer = ROPGKDTrainer(BagOfWords(), _cfg(top_l=4), initial_retriever=BM25Retriever(), feedback=keyword_feedback)
    items = trainer.prepare(queries, profiles)
    assert all(len(it.candidates) == 4 for it in items)
    with pytest.raises(TypeError, match="initial_retriever"):
        ROPGKDTrainer(BagOfWords(), _cfg(), feedback=keyword_feedback).prepare(queries, profiles)


# ------------------------------------------------------------------------- scoring
def test_dense_retriever_scores_match_its_inference_path():
    torch.manual_seed(0)
    enc = BagOfWords()
    dense = DenseRetriever(encoder=enc.encode, normalize=False)
    enc.eval()
    queries = ["apple river", "stone"]
    docs = [["apple cloud", "river green lamp", "tiger"], ["stone bread"]]
    scores, mask = score_candidate_lists(dense, queries, docs)
    assert scores.shape == (2, 3) and mask.tolist() == [[True, True, True], [True, False, False]]
    for b in range(2):
        np.testing.assert_allclose(scores[b, :len(docs[b])].detach().numpy(), dense.score(queries[b], docs[b]),
                                   rtol=1e-5, atol=1e-6)
    # the nn.Module path gives the same numbers
    torch.testing.assert_close(score_candidate_lists(enc, queries, docs)[0][mask], scores[mask])


def test_short_profiles_are_masked_and_top_l_truncates():
    items = [ROPGItem("apple", ["apple a", "river"], np.array([1.0, 0.0])),
             ROPGItem("stone", ["stone", "apple", "cloud", "music", "paper"], np.array([0.0, 1.0, 0.0, 0.0, 0.0]))]
    trainer = ROPGRLTrainer(BagOfWords(), _cfg(top_l=3))
    probs = trainer.policy(items)
    assert [len(p) for p in probs] == [2, 3]
    for p in probs:
        assert p.sum() == pytest.approx(1.0)
    hist = trainer.train(items)
    assert len(hist) == 3 and all(np.isfinite(h["loss"]) for h in hist)


# ------------------------------------------------------------------------ learning
@pytest.mark.parametrize("trainer_cls", [ROPGKDTrainer, ROPGRLTrainer])
def test_training_raises_probability_of_keyword_documents(trainer_cls):
    items = _items(12, 6)
    logs = []
    trainer = trainer_cls(BagOfWords(), _cfg(learning_rate=0.3, epochs=12, batch_size=6, target_temperature=0.1),
                          callback=logs.append)
    before = keyword_mass(trainer, items)
    initial = trainer.evaluate(items)
    history = trainer.train(items)
    after = keyword_mass(trainer, items)
    assert before < 0.5 and after > before + 0.3, (before, after)
    final = trainer.evaluate(items)
    assert final["eval@top1"] >= max(0.75, initial["eval@top1"] + 0.4)
    assert final["eval@expected"] > initial["eval@expected"]
    assert final["eval@initial"] == initial["eval@initial"] and final["eval@oracle"] == 1.0
    # one log per step, passed to the callback, with the trainer's terms
    assert logs == history and len(history) == 12 * 2
    assert [h["step"] for h in history] == list(range(1, 25))
    extra = "reward" if trainer_cls is ROPGRLTrainer else "target_entropy"
    assert {"step", "epoch", "lr", "loss", "entropy", "grad_norm", extra} <= set(history[0])
    assert history[0]["entropy"] == pytest.approx(initial["entropy"], rel=0.05)  # dropout makes it approximate
    assert history[-1]["entropy"] < history[0]["entropy"]


def test_rl_reward_log_is_eval_minus_baseline():
    items = [ROPGItem("q", ["a", "b", "c"], np.array([0.25, 1.0, 0.0]))] * 4
    trainer = ROPGRLTrainer(BagOfWords(), _cfg(epochs=5))
    # each input's reward is EVAL(d) - EVAL(d_b) in {0, 0.75, -0.25}; the log is the mean over 4 inputs
    possible = {round((0.75 * a - 0.25 * c) / 4, 9) for a in range(5) for c in range(5 - a)}
    rewards = [round(h["reward"], 9) for h in trainer.train(items)]
    assert set(rewards) <= possible and len(set(rewards)) > 1


# -------------------------------------------------------------------------- resume
def _tiny_bert_dense(tmp_path, seed):
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizer(vocab_file=str(vocab))
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32, max_position_embeddings=32))
    return DenseRetriever(encoder=(model, tok), normalize=False)


def test_dense_retriever_trains_its_module_and_resumes(tmp_path):
    """A DenseRetriever trains through its ``.module``; checkpoints are named after the retriever.

    (Bit-identical resumption, accumulation and the schedule are checked for every trainer in
    test_trainer_contract.py.)
    """
    items = _items(6, 4)
    cfg = _cfg(tmp_path / "a", epochs=2, batch_size=2, save_steps=2, learning_rate=0.01)  # 6 steps
    dense_a = _tiny_bert_dense(tmp_path, seed=0)
    before = [p.detach().clone() for p in dense_a.module.parameters()]
    hist_a = ROPGRLTrainer(dense_a, cfg).train(items)
    assert len(hist_a) == 6 and any(not torch.equal(a, b) for a, b in zip(before, dense_a.module.parameters()))
    ckpt = latest_checkpoint(cfg.output_dir)
    assert ckpt.name == "checkpoint-00000006" and (ckpt / "modules" / "retriever.safetensors").is_file()
    dense_b = _tiny_bert_dense(tmp_path, seed=1)
    hist_b = ROPGRLTrainer(dense_b, cfg).train(items, resume_from=ckpt.parent / "checkpoint-00000004")
    for (name, pa), (_, pb) in zip(dense_a.module.named_parameters(), dense_b.module.named_parameters()):
        assert torch.equal(pa, pb), name
    assert hist_b == hist_a


def test_resume_refuses_another_trainer_or_a_missing_checkpoint(tmp_path):
    items = _items(6, 4)
    cfg = _cfg(tmp_path, epochs=1, batch_size=2)
    ROPGKDTrainer(BagOfWords(), cfg).train(items)
    with pytest.raises(CheckpointError, match="'trainer'"):
        ROPGRLTrainer(BagOfWords(), cfg).train(items, resume_from="latest")
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        ROPGKDTrainer(BagOfWords(), cfg).train(items, resume_from=tmp_path / "nowhere")


# -------------------------------------------------------------------------- config
def test_config_validation_and_round_trip(tmp_path):
    cfg = ROPGTrainerConfig()
    assert (cfg.learning_rate, cfg.top_l, cfg.epochs, cfg.batch_size * cfg.gradient_accumulation_steps) == (1e-5, 16, 10, 64)
    assert ROPGTrainerConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(Exception, match="output_dir"):
        ROPGTrainerConfig(save_steps=5)
    with pytest.raises(Exception, match="top_l"):
        ROPGTrainerConfig(top_l=0)
    with pytest.raises(TypeError, match="not trainable"):
        ROPGKDTrainer(object())
    with pytest.raises(TypeError, match="ROPGItem"):
        ROPGKDTrainer(BagOfWords(), _cfg()).train([("q", ["a"], [1.0])])
    assert re.match(r"ROPGRLTrainer\(retriever=BagOfWords", repr(ROPGRLTrainer(BagOfWords(), _cfg())))


def test_doctests():
    assert doctest.testmod(ropg_mod).failed == 0


def test_old_field_names_are_read_with_a_warning():
    """The trainer configs share the transformers vocabulary; the old names still load, with a FutureWarning."""
    from personakit.training import RSPGTrainerConfig

    with pytest.warns(FutureWarning, match="'lr' is now 'learning_rate'"):
        cfg = ROPGTrainerConfig.from_dict({"lr": 0.01, "checkpoint_dir": "runs/x", "save_every": 3})
    assert (cfg.learning_rate, cfg.output_dir, cfg.save_steps) == (0.01, "runs/x", 3)
    with pytest.warns(FutureWarning, match="'num_epochs' is now 'epochs'"):
        rspg = RSPGTrainerConfig(num_epochs=3, log_every=2, eval_every=4, progress_bar=False)
    assert (rspg.epochs, rspg.logging_steps, rspg.eval_steps, rspg.progress) == (3, 2, 4, False)
    with pytest.raises(ValueError, match="give 'learning_rate' only"):
        ROPGTrainerConfig(lr=0.1, learning_rate=0.2)
    shared = {"learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "output_dir",
              "save_steps", "keep_last", "max_grad_norm", "seed", "weight_decay", "progress"}
    assert shared <= set(ROPGTrainerConfig.model_fields)
    assert shared <= set(RSPGTrainerConfig.model_fields)
