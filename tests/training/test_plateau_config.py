"""PlateauConfig: one definition of dev evaluation and early stopping, used by every trainer config."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from personakit.training import (
    CoPersonaTrainingConfig,
    GRAGTrainingConfig,
    PlateauConfig,
    QuestionerTrainingConfig,
    ROPGItem,
    ROPGKDTrainer,
    ROPGRLTrainer,
    ROPGTrainerConfig,
    RSPGTrainer,
    RSPGTrainerConfig,
    TrainingConfig,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _families import fresh_selector, matching_task  # noqa: E402

PLATEAU = list(PlateauConfig.model_fields)


class Toy(torch.nn.Module):
    """One learnable score per candidate position."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(3))

    def score_candidates(self, queries, docs):
        return self.bias.expand(len(queries), 3)


def _items(n: int = 4) -> list[ROPGItem]:
    return [ROPGItem("q", ["a", "b", "c"], np.array([0.0, 1.0, 0.0]), id=str(i)) for i in range(n)]


@pytest.mark.parametrize("cls", [TrainingConfig, GRAGTrainingConfig, QuestionerTrainingConfig, CoPersonaTrainingConfig,
                                 ROPGTrainerConfig, RSPGTrainerConfig])
def test_every_trainer_config_shares_the_plateau_fields(cls):
    assert issubclass(cls, PlateauConfig)
    assert PLATEAU == ["eval_steps", "early_stopping_patience", "early_stopping_threshold", "metric_for_best_model",
                       "greater_is_better", "load_best_model_at_end"]
    base = PlateauConfig.model_fields
    for name in PLATEAU:
        if name == "metric_for_best_model":
            continue  # each family watches its own objective (GRAG: loss_p; ROPG: the expected dev EVAL)
        assert cls.model_fields[name].default == base[name].default, name
        assert cls.model_fields[name].description == base[name].description, name
    extra = {"eval_metrics": ["loss"]} if "eval_metrics" in cls.model_fields else {}
    cfg = cls(eval_steps=7, early_stopping_patience=2, early_stopping_threshold=0.05, load_best_model_at_end=True,
              **extra)
    shared = cfg.training_config() if hasattr(cfg, "training_config") else cfg
    assert isinstance(shared, TrainingConfig)
    assert (shared.eval_steps, shared.early_stopping_patience, shared.early_stopping_threshold,
            shared.load_best_model_at_end) == (7, 2, 0.05, True)


def test_ropg_metric_defaults_to_the_expected_dev_eval():
    assert ROPGTrainerConfig().metric_for_best_model == "eval@expected"
    cfg = ROPGTrainerConfig(eval_metric="rouge1")
    assert cfg.metric_for_best_model == "rouge1@expected" and cfg.best_is_greater
    assert cfg.training_config().metric_for_best_model == "rouge1@expected"
    assert cfg.training_config().best_is_greater
    assert ROPGTrainerConfig(metric_for_best_model="rouge1@top1").metric_for_best_model == "rouge1@top1"
    assert RSPGTrainerConfig().metric_for_best_model == "loss" and not RSPGTrainerConfig().best_is_greater


@pytest.mark.parametrize("cls", [ROPGRLTrainer, ROPGKDTrainer])
def test_ropg_stops_at_a_plateau_of_the_dev_objective_and_keeps_the_best_weights(cls, tmp_path):
    torch.manual_seed(0)
    # threshold 10: no later evaluation counts as an improvement, so patience 2 stops after the third
    cfg = ROPGTrainerConfig(learning_rate=0.5, epochs=50, batch_size=4, gradient_accumulation_steps=1,
                            warmup_ratio=0.0, eval_steps=3, early_stopping_patience=2, early_stopping_threshold=10.0,
                            load_best_model_at_end=True, output_dir=str(tmp_path), progress=False)
    trainer = cls(Toy(), cfg)
    trainer.train(_items(), eval_items=_items(2))
    result = trainer.train_result
    assert result.stopped_early and result.global_step == 9 < result.total_steps
    assert [r["step"] for r in result.eval_history] == [3, 6, 9]
    assert "eval@expected" in result.eval_history[0]
    best = max(result.eval_history, key=lambda r: r["eval@expected"])
    assert result.best_step == best["step"]
    assert trainer.evaluate(_items(2))["eval@expected"] == pytest.approx(best["eval@expected"])


def test_ropg_without_early_stopping_evaluates_dev_items_and_runs_the_budget():
    cfg = ROPGTrainerConfig(learning_rate=0.5, max_steps=6, batch_size=4, gradient_accumulation_steps=1,
                            warmup_ratio=0.0, eval_steps=2, progress=False)
    trainer = ROPGRLTrainer(Toy(), cfg)
    trainer.train(_items(), eval_items=_items(2))
    assert [r["step"] for r in trainer.train_result.eval_history] == [2, 4, 6]
    assert trainer.train_result.global_step == 6 and not trainer.train_result.stopped_early


@pytest.mark.parametrize("field", ["early_stopping_patience", "load_best_model_at_end"])
def test_plateau_fields_without_dev_items_are_an_error(field):
    value = 2 if field == "early_stopping_patience" else True
    trainer = ROPGRLTrainer(Toy(), ROPGTrainerConfig(max_steps=2, batch_size=4, gradient_accumulation_steps=1,
                                                     progress=False, **{field: value}))
    with pytest.raises(ValueError, match=f"{field} set but no dev items"):
        trainer.train(_items())
    with pytest.raises(TypeError, match=r"eval_items\[0\]"):
        trainer.train(_items(), eval_items=["not an item"])
    rspg = RSPGTrainer(fresh_selector(), max_steps=2, batch_size=4, gradient_accumulation_steps=1, progress=False,
                       **{field: value})
    with pytest.raises(ValueError, match=f"{field} set but no dev items"):
        rspg.train(matching_task(8, seed=0))


def test_rspg_stops_at_a_plateau_of_the_dev_loss():
    torch.manual_seed(0)
    trainer = RSPGTrainer(fresh_selector(), max_steps=40, batch_size=4, gradient_accumulation_steps=1,
                          learning_rate=0.1, warmup_ratio=0.0, eval_steps=1, early_stopping_patience=1,
                          early_stopping_threshold=10.0, load_best_model_at_end=True, progress=False)
    out = trainer.train(matching_task(8, seed=5), eval_items=matching_task(6, seed=6))
    assert out.global_step == 2 and trainer.plateau_reached()
    assert [r["step"] for r in out.eval_history] == [1, 2]
    best = min(out.eval_history, key=lambda r: r["loss"])
    assert out.eval_metrics["loss"] == pytest.approx(best["loss"])


def test_plateau_step_finds_where_the_rule_fires_in_a_full_run():
    """A run trained to its budget can still say where early stopping would have stopped it."""
    losses = [(10, 1.0), (20, 0.8), (30, 0.795), (40, 0.81), (50, 0.70), (60, 0.75), (70, 0.76)]
    history = [{"step": s, "loss": v} for s, v in losses]
    cfg = PlateauConfig(early_stopping_patience=2)
    assert cfg.plateau_step(history) == 40  # 0.795 is not 1% below 0.8, 0.81 neither: two without improvement
    assert cfg.plateau_step(history, patience=3) is None  # 0.70 improves before a third miss... then only two
    assert PlateauConfig().plateau_step(history) is None  # no patience: never
    assert PlateauConfig(early_stopping_patience=2, early_stopping_threshold=0.0).plateau_step(history) == 70
    up = [{"step": s, "acc": v} for s, v in [(1, 0.5), (2, 0.4), (3, 0.45)]]
    assert PlateauConfig(early_stopping_patience=2, metric_for_best_model="acc").plateau_step(up) == 3
    assert PlateauConfig(early_stopping_patience=1).plateau_step([{"step": 1, "bpc": 1.0}]) is None  # no such metric
