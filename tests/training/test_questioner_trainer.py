"""QuestionerTrainer: logs the LM and contrastive terms, cluster-grouped batches (resumption: test_trainer_contract.py)."""

from __future__ import annotations

import json

from _questioner_kit import QUESTIONERS, build_lm, build_tokenizer, make_examples
from personakit.models.questioner import DualTowerResponder
from personakit.training import QuestionerTrainer, QuestionerTrainingConfig


def _model():
    return DualTowerResponder.from_backbone(build_lm(seed=3), build_tokenizer(), questioners=QUESTIONERS, rank=4,
                                            general="lora", queue_size=8, num_views=2, init_scale=0.1)


def _config(out, **kw):
    base = dict(output_dir=str(out) if out else None, max_steps=6, batch_size=4, learning_rate=5e-3,
                logging_steps=1, save_steps=2, eval_metrics=["loss"], progress=False, use_cpu=True, seed=7)
    base.update(kw)
    return QuestionerTrainingConfig(**base)


def test_logs_both_terms(tmp_path):
    trainer = QuestionerTrainer(_model(), _config(tmp_path, max_steps=3), train_examples=make_examples(16))
    result = trainer.train()
    assert len(result.history) == 3
    for rec in result.history:
        assert {"loss", "loss_lm", "loss_contrastive", "contrastive_valid", "lr", "grad_norm"} <= set(rec)
        assert abs(rec["loss"] - (rec["loss_lm"] + 0.5 * rec["loss_contrastive"])) < 1e-4
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["train"] * 3 and "loss_contrastive" in lines[0]


def test_cluster_grouped_order():
    examples = make_examples(16)
    trainer = QuestionerTrainer(_model(), _config(None), train_examples=examples)
    order = trainer.epoch_order(0)
    assert sorted(order.tolist()) == list(range(16))
    for start in range(0, 16, 4):
        clusters = {examples[i].metadata["question_cluster"] for i in order[start:start + 4]}
        assert len(clusters) == 1
    assert not (order == trainer.epoch_order(1)).all()
    plain = QuestionerTrainer(_model(), _config(None, group_by_cluster=False), train_examples=examples)
    assert plain.epoch_order(0).tolist() != order.tolist()


def test_predict_uses_questioners(tmp_path):
    trainer = QuestionerTrainer(_model(), _config(None, max_steps=1, max_new_tokens=3), train_examples=make_examples(8))
    trainer.train()
    preds = trainer.predict(make_examples(4))
    assert len(preds) == 4 and all(isinstance(p, str) for p in preds)
