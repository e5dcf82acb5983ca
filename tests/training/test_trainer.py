"""The shared pieces of the one trainer: its config, the data digest, seeding, callbacks, the JSONL log, doctests.

(The loop's contract, over every family: test_trainer_contract.py.)
"""

from __future__ import annotations

import doctest
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import personakit.training.callbacks as callbacks_mod
import personakit.training.logging as logging_mod
import personakit.training.trainer as trainer_mod
from personakit.training import (
    FunctionCallback,
    JsonlLog,
    Trainer,
    TrainerCallback,
    TrainingConfig,
    data_digest,
    epoch_permutation,
    seed_everything,
)
from personakit.training.callbacks import as_callbacks


def test_config_direction_of_the_best_metric():
    assert not TrainingConfig().best_is_greater  # "loss"
    assert not TrainingConfig(metric_for_best_model="loss_lm").best_is_greater
    assert not TrainingConfig(metric_for_best_model="bpc").best_is_greater
    assert TrainingConfig(metric_for_best_model="rouge1").best_is_greater
    assert not TrainingConfig(metric_for_best_model="rouge1", greater_is_better=False).best_is_greater
    with pytest.raises(ValueError, match="typo"):
        TrainingConfig(typo=1)


@dataclass
class _Item:
    text: str
    scores: np.ndarray


def test_data_digest_sees_order_and_content():
    a = [_Item("x", np.array([1.0, 2.0])), _Item("y", np.array([0.5]))]
    assert data_digest(a) == data_digest([_Item("x", np.array([1.0, 2.0])), _Item("y", np.array([0.5]))])
    assert data_digest(a) != data_digest(a[::-1])
    assert data_digest(a) != data_digest([_Item("x", np.array([1.0, 2.5])), a[1]])
    assert data_digest([{"b": 1, "a": torch.tensor([1, 2])}]) == data_digest([{"a": [1, 2], "b": 1}])


def test_epoch_order_and_seeding_are_reproducible():
    assert (epoch_permutation(3, 1, 10) == epoch_permutation(3, 1, 10)).all()
    assert not (epoch_permutation(3, 1, 10) == epoch_permutation(3, 2, 10)).all()
    assert sorted(epoch_permutation(0, 0, 7).tolist()) == list(range(7))
    seed_everything(5)
    first = (torch.rand(2), np.random.rand())
    seed_everything(5)
    assert torch.equal(first[0], torch.rand(2)) and first[1] == np.random.rand()


def test_callbacks_and_the_log(tmp_path):
    seen = []
    wrapped = as_callbacks([seen.append, TrainerCallback()])
    assert isinstance(wrapped[0], FunctionCallback) and type(wrapped[1]) is TrainerCallback
    wrapped[0].on_log(None, {"step": 1})
    assert seen == [{"step": 1}]
    with pytest.raises(TypeError, match=r"callbacks\[0\]"):
        as_callbacks([3])
    log = JsonlLog(tmp_path / "log.jsonl")
    for step in (1, 2, 3):
        log.append({"kind": "train", "step": step})
    with open(log.path, "a") as fh:
        fh.write('{"kind": "tr')  # a torn last line (a writer killed mid-write)
    assert [r["step"] for r in log.records()] == [1, 2, 3]
    log.truncate_after(2)
    assert [r["step"] for r in log.records()] == [1, 2] and log.path.read_text().endswith("}\n")
    log.reset()
    assert log.records() == []


def test_the_base_trainer_needs_a_loss_hook_and_data():
    model = torch.nn.Linear(2, 1)
    args = TrainingConfig(max_steps=2, use_cpu=True, progress=False)
    with pytest.raises(ValueError, match="no training items"):
        Trainer(model, args).train()
    with pytest.raises(TypeError, match="must be a mapping"):  # the default compute_loss calls model(**batch)
        Trainer(model, args, train_data=[1.0, 2.0]).train()
    with pytest.raises(TypeError, match="TrainingConfig"):
        Trainer(model, {"max_steps": 2})
    with pytest.raises(NotImplementedError, match="evaluate"):
        Trainer(model, args).evaluate([1.0])


@pytest.mark.parametrize("module", [trainer_mod, callbacks_mod, logging_mod])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


_BF16_SCRIPT = """
import torch
from personakit.training import Trainer, TrainingConfig

class Regression(Trainer):
    def compute_loss(self, batch):
        x = torch.tensor(batch)
        self.dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        y = self.model(x[:, None]).squeeze(1)
        loss = ((y.float() - 2 * x) ** 2).mean()
        return loss, {"loss": float(loss)}

model = torch.nn.Linear(1, 1, bias=False)
args = TrainingConfig(max_steps=2, batch_size=2, use_cpu=True, progress=False, mixed_precision="bf16")
trainer = Regression(model, args, train_data=[1.0, 2.0])
trainer.dtypes = []
trainer.train()
assert trainer.dtypes == [torch.bfloat16] * 2, trainer.dtypes
assert model.weight.dtype == torch.float32 and trainer.history[-1]["loss"] > 0  # the weights stay float32
print("ok")
"""


def test_bf16_runs_the_loss_under_autocast():
    """(In a fresh process: Accelerate fixes the mixed precision once per process.)"""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _BF16_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


class _Regression(Trainer):
    def compute_loss(self, batch):
        x = torch.tensor(batch)
        loss = ((self.model(x[:, None]).squeeze(1) - 2 * x) ** 2).mean()
        return loss, {"loss": float(loss)}


def test_learning_rate_multipliers_set_each_groups_rate():
    model = torch.nn.Sequential(torch.nn.Linear(1, 3), torch.nn.Linear(3, 1))
    args = TrainingConfig(max_steps=1, batch_size=2, use_cpu=True, progress=False, learning_rate=1e-3,
                          weight_decay=0.1, learning_rate_multipliers={"1.*": 10.0, "0.bias": 0.5})
    groups = trainer_mod.parameter_groups(model, weight_decay=0.1, learning_rate=1e-3,
                                          multipliers=args.learning_rate_multipliers)
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert by_param[id(model[0].weight)] == (1e-3, 0.1)
    assert by_param[id(model[0].bias)] == (5e-4, 0.0)
    assert by_param[id(model[1].weight)] == (pytest.approx(1e-2), 0.1)
    assert by_param[id(model[1].bias)] == (pytest.approx(1e-2), 0.0)
    # the optimizer the trainer builds carries them, and the schedule scales each group from its own rate
    trainer = _Regression(model, args, train_data=[1.0, 2.0])
    trainer.train()
    lrs = sorted(g["initial_lr"] for g in trainer.optimizer.param_groups)
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-2, 1e-2])


def test_learning_rate_multipliers_the_first_match_wins_and_a_typo_is_an_error():
    model = torch.nn.Sequential(torch.nn.Linear(1, 1))
    groups = trainer_mod.parameter_groups(model, weight_decay=0.0, learning_rate=1.0,
                                          multipliers={"0.*": 3.0, "*": 7.0})
    assert {g["lr"] for g in groups} == {3.0}
    with pytest.raises(ValueError, match=r"style_extractor.*match no trainable parameter"):
        trainer_mod.parameter_groups(model, weight_decay=0.0, learning_rate=1.0,
                                     multipliers={"*style_extractor.*": 10})
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        trainer_mod.parameter_groups(model, weight_decay=0.0, learning_rate=1.0)


def test_without_multipliers_the_groups_keep_their_order():
    """Checkpoints store the optimizer state by group order: decayed matrices first, then the rest."""
    model = torch.nn.Linear(2, 2)
    groups = trainer_mod.parameter_groups(model, weight_decay=0.1, learning_rate=1.0)
    assert [(g["weight_decay"], [p.ndim for p in g["params"]]) for g in groups] == [(0.1, [2]), (0.0, [1])]
