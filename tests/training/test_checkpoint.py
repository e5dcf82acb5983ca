"""Tests of personakit.training.checkpoint: atomic save, exact restore, pruning."""

from __future__ import annotations

import doctest
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import personakit.training.checkpoint as ckpt_mod
from personakit.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)


class Tied(nn.Module):
    """Embedding tied to the output layer, plus a buffer (BatchNorm running stats)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.norm = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 7, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids):
        return self.out(self.norm(self.emb(ids)))


def _trained(seed: int = 0, steps: int = 3):
    torch.manual_seed(seed)
    model = Tied()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(steps):
        ids = torch.randint(0, 7, (5,))
        loss = nn.functional.cross_entropy(model(ids), ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _draws():
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_round_trip_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    model, opt, sched = _trained(seed=0)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    path = save_checkpoint(tmp_path, step=3, modules={"model": model}, optimizer=opt, scheduler=sched,
                           extra={"epoch": 1, "note": "x"})
    expected_draws = _draws()  # the RNG streams right after the save

    other, opt2, sched2 = _trained(seed=1, steps=1)  # different weights, optimizer and scheduler state
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = load_checkpoint(path, modules={"model": other}, optimizer=opt2, scheduler=sched2)

    assert state == {"step": 3, "extra": {"epoch": 1, "note": "x"}}
    assert _draws() == expected_draws
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), other.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    assert other.out.weight is other.emb.weight  # tying survives the load
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        for key, value in s1["state"][pid].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(s2["state"][pid][key])), key
    assert sched.state_dict() == sched2.state_dict()
    # continuing from the restored state matches continuing from the original
    ids = torch.tensor([1, 2, 3])
    for m, o in ((model, opt), (other, opt2)):
        o.zero_grad()
        nn.functional.cross_entropy(m(ids), ids).backward()
        o.step()
    torch.testing.assert_close(model.emb.weight, other.emb.weight, rtol=0, atol=0)


def test_restore_rng_false_leaves_streams_alone(tmp_path):
    model = nn.Linear(2, 2)
    path = save_checkpoint(tmp_path, step=0, modules={"m": model})
    torch.manual_seed(123)
    expected = torch.rand(2)
    torch.manual_seed(123)
    load_checkpoint(path, modules={"m": model}, restore_rng=False)
    assert torch.equal(torch.rand(2), expected)


def test_layout_and_state_file(tmp_path):
    model, opt, sched = _trained()
    path = save_checkpoint(tmp_path, step=12, modules={"model": model, "head": nn.Linear(2, 1)}, optimizer=opt,
                           scheduler=sched, extra={"k": [1, 2]})
    assert path == tmp_path / "checkpoint-00000012"
    assert sorted(p.name for p in path.iterdir()) == ["modules", "optimizer.pt", "rng_state.pt", "scheduler.pt",
                                                      "trainer_state.json"]
    assert sorted(p.name for p in (path / "modules").iterdir()) == ["head.safetensors", "model.safetensors"]
    state = read_checkpoint_state(path)
    assert state["step"] == 12 and state["modules"] == ["head", "model"] and state["extra"] == {"k": [1, 2]}
    assert json.loads((path / "trainer_state.json").read_text())["optimizer"] is True
    # optimizer/scheduler files load with weights_only=True
    torch.load(path / "optimizer.pt", weights_only=True)
    torch.load(path / "rng_state.pt", weights_only=True)


class _FailingScheduler:
    def state_dict(self):
        raise RuntimeError("disk full")


def test_interrupted_save_keeps_previous_checkpoint_and_leaves_no_partial_dir(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    first = save_checkpoint(tmp_path, step=1, modules={"m": model})
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    # 1) an exception after the weights were written (scheduler state fails)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path, step=2, modules={"m": model}, scheduler=_FailingScheduler())
    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000001"]
    # 2) an interrupt (BaseException) inside the weight writer

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_model", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, step=2, modules={"m": model})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000001"]
    # 3) re-saving an existing step that fails keeps the old one
    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path, step=1, modules={"m": model}, scheduler=_FailingScheduler())
    restored = nn.Linear(3, 2)
    load_checkpoint(latest_checkpoint(tmp_path), modules={"m": restored})
    assert torch.equal(restored.weight, before)


def test_latest_ignores_temp_and_incomplete_dirs_and_next_save_cleans_up(tmp_path):
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, step=3, modules={"m": model})
    (tmp_path / ".tmp-checkpoint-00000009-abc").mkdir()  # a killed writer's leftovers
    (tmp_path / ".tmp-checkpoint-00000009-abc" / "trainer_state.json").write_text('{"step": 9}')
    (tmp_path / "checkpoint-00000007").mkdir()  # no trainer_state.json
    (tmp_path / "checkpoint-00000008").mkdir()
    (tmp_path / "checkpoint-00000008" / "trainer_state.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("x")
    assert latest_checkpoint(tmp_path).name == "checkpoint-00000003"
    assert latest_checkpoint(tmp_path / "missing") is None
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path / "checkpoint-00000007", modules={"m": model})
    save_checkpoint(tmp_path, step=4, modules={"m": model}, keep_last=None)
    assert not list(tmp_path.glob(".tmp-checkpoint-*"))


def test_pruning_keeps_the_newest(tmp_path):
    model = nn.Linear(2, 2)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step=step, modules={"m": model}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-00000003", "checkpoint-00000004"]
    save_checkpoint(tmp_path, step=5, modules={"m": model}, keep_last=None)
    assert len(list_checkpoints(tmp_path)) == 3
    save_checkpoint(tmp_path, step=100_000_000, modules={"m": model}, keep_last=1)  # 9 digits sorts numerically
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-100000000"]


def test_resaving_a_step_replaces_it(tmp_path):
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, step=2, modules={"m": model}, extra={"v": 1})
    save_checkpoint(tmp_path, step=2, modules={"m": model}, extra={"v": 2})
    assert read_checkpoint_state(latest_checkpoint(tmp_path))["extra"] == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000002"]


def test_errors_name_the_problem(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, step=-1, modules={"m": model})
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(tmp_path, step=1, modules={"m": model}, keep_last=0)
    with pytest.raises(ValueError, match="module name"):
        save_checkpoint(tmp_path, step=1, modules={"a/b": model})
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path, step=1, modules={"m": model}, extra={"x": object()})
    assert not list(tmp_path.iterdir())  # nothing written
    path = save_checkpoint(tmp_path, step=1, modules={"m": model})
    with pytest.raises(CheckpointError, match="other.safetensors"):
        load_checkpoint(path, modules={"other": model})
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load_checkpoint(path, modules={"m": nn.Linear(3, 2)})
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        load_checkpoint(path, modules={"m": model}, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_doctests():
    assert doctest.testmod(ckpt_mod).failed == 0


# ----------------------------------------------------------------- hardening (issue 23)
def _corrupt(path, how):
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbled": b"\x07" * 64,
                      "data_cut": data[:-3]}[how])


@pytest.mark.parametrize("how", ["truncated", "empty", "garbled", "data_cut"])
def test_unreadable_weights_file_raises_checkpoint_error_naming_it(tmp_path, how):
    model = nn.Linear(64, 32)  # enough data after the header that "data_cut" keeps the header whole
    path = save_checkpoint(tmp_path, step=1, modules={"m": model})
    file = path / "modules" / "m.safetensors"
    _corrupt(file, how)
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*cannot read") as info:
        load_checkpoint(path, modules={"m": model})
    assert str(file) in str(info.value)


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng_state.pt"])
@pytest.mark.parametrize("how", ["truncated", "empty", "garbled"])
def test_unreadable_torch_state_file_raises_checkpoint_error_naming_it(tmp_path, name, how):
    model, opt, sched = _trained()
    path = save_checkpoint(tmp_path, step=1, modules={"m": model}, optimizer=opt, scheduler=sched)
    _corrupt(path / name, how)
    with pytest.raises(CheckpointError, match="cannot read") as info:
        load_checkpoint(path, modules={"m": model}, optimizer=opt, scheduler=sched)
    assert str(path / name) in str(info.value)


def test_tied_weights_still_load_after_the_read_is_split_from_load_model(tmp_path):
    model, _, _ = _trained()
    path = save_checkpoint(tmp_path, step=1, modules={"m": model})
    other = Tied()
    load_checkpoint(path, modules={"m": other})
    assert other.out.weight is other.emb.weight
    assert torch.equal(other.emb.weight, model.emb.weight)
    with pytest.raises(CheckpointError, match="m.safetensors.*cannot load"):
        load_checkpoint(path, modules={"m": nn.Linear(4, 7)})


def test_kill_while_pruning_never_leaves_a_listed_checkpoint_without_weights(tmp_path, monkeypatch):
    model = nn.Linear(2, 2)
    for step in (1, 2):
        save_checkpoint(tmp_path, step=step, modules={"m": model}, keep_last=None)
    real_rmtree = ckpt_mod.shutil.rmtree

    def killed_midway(path, *args, **kwargs):  # deletes the weights, then the process dies
        if (Path(path) / "modules").is_dir():
            real_rmtree(Path(path) / "modules")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, step=3, modules={"m": model}, keep_last=2)
    monkeypatch.undo()
    listed = list_checkpoints(tmp_path)
    assert [p.name for p in listed] == ["checkpoint-00000002", "checkpoint-00000003"]
    for path in listed:
        load_checkpoint(path, modules={"m": model})
    save_checkpoint(tmp_path, step=4, modules={"m": model}, keep_last=2)  # the next save cleans up the leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000003", "checkpoint-00000004"]


def test_a_checkpoint_whose_listed_files_are_gone_is_not_complete(tmp_path):
    model, opt, _ = _trained()
    first = save_checkpoint(tmp_path, step=1, modules={"m": model}, optimizer=opt, keep_last=None)
    second = save_checkpoint(tmp_path, step=2, modules={"m": model}, optimizer=opt, keep_last=None)
    (second / "modules" / "m.safetensors").unlink()  # e.g. half-pruned by an older version
    assert latest_checkpoint(tmp_path) == first
    (first / "optimizer.pt").unlink()
    assert latest_checkpoint(tmp_path) is None
