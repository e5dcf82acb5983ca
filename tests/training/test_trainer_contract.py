"""The trainer contract, written once and checked for every family (GRAG PreSFT and PostGRAG, questioner,
CoPersona, ROPG-RL, ROPG-KD, RSPG):

* a run stopped, then killed, and resumed from its checkpoints ends bit-identical to an uninterrupted run
  (weights, history, log file);
* resuming refuses other training data or other settings, naming the field;
* gradient accumulation: the step's gradient is the size-weighted mean of the micro-batch gradients, and
  (where the loss is a mean over items) accumulation equals one large batch;
* the learning-rate schedule: the one warm-up (s+1)/(w+1), the peak, then the family's decay to its final fraction;
* two processes (torchrun, gloo on CPU) hold identical weights and logs, equal to one process with twice the
  accumulation (same micro-batches) where no state is shared between micro-batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _families import FAMILIES, log_records, settings, states_equal  # noqa: E402

from personakit.training import Trainer  # noqa: E402
from personakit.training.checkpoint import CheckpointError, latest_checkpoint  # noqa: E402
from personakit.training.distributed import find_free_port  # noqa: E402
from personakit.training.trainer import seed_everything, step_seed  # noqa: E402

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0:FutureWarning")

NEEDS = {"copersona": ("torch_geometric", "peft")}


@pytest.fixture(params=list(FAMILIES))
def family(request):
    for module in NEEDS.get(request.param, ()):
        pytest.importorskip(module)
    return FAMILIES[request.param]


class Killed(Exception):
    pass


def _perturbed(family, seed=0):
    """A fresh model whose trainable weights all differ from ``build(seed)``'s: a checkpoint must restore them."""
    model = family.build(seed, True)
    with torch.no_grad():
        for p in family.module(model).parameters():
            if p.requires_grad:
                p.add_(0.5)
    return model


def test_every_trainer_is_a_subclass_of_the_one_trainer(family):
    data = family.data()
    trainer = family.make(family.build(0, False), settings(), data)
    assert isinstance(trainer, Trainer)


# ------------------------------------------------------------------------------ resume
def test_stop_kill_and_resume_is_bit_identical(family, tmp_path):
    data = family.data()
    full_model = family.build(0, True)
    full = family.make(full_model, settings(max_steps=6, save_steps=2, output_dir=str(tmp_path / "full")), data)
    full_history = family.fit(full, data)
    assert [r["step"] for r in full_history] == [1, 2, 3, 4, 5, 6]

    cut = settings(max_steps=6, save_steps=2, output_dir=str(tmp_path / "cut"))
    first = family.make(family.build(0, True), cut, data)
    family.fit(first, data, stop=3)  # a time budget: stops at step 3 and checkpoints there
    assert first.global_step == 3 and latest_checkpoint(tmp_path / "cut").name == "checkpoint-00000003"

    def kill(record):
        if record["step"] == 5:
            raise Killed

    torch.manual_seed(999)  # the global RNG state must not matter: the checkpoint restores it
    with pytest.raises(Killed):  # dies after step 5, the last checkpoint is step 4
        family.fit(family.make(_perturbed(family), cut, data, callbacks=[kill]), data, resume=True)
    assert latest_checkpoint(tmp_path / "cut").name == "checkpoint-00000004"

    resumed_model = _perturbed(family)
    assert not states_equal(family.module(resumed_model), family.module(full_model))
    resumed = family.make(resumed_model, cut, data)
    history = family.fit(resumed, data, resume=True)
    assert states_equal(family.module(resumed_model), family.module(full_model))  # bit for bit
    assert history == full_history
    assert log_records(resumed) == log_records(full)  # records after the checkpoint were cut, none repeated
    assert [r["step"] for r in log_records(resumed)] == [1, 2, 3, 4, 5, 6]


def test_resume_checks_the_data_and_the_settings(family, tmp_path):
    data = family.data()
    run = settings(max_steps=4, save_steps=1, output_dir=str(tmp_path / "run"))
    family.fit(family.make(family.build(0, True), run, data), data, stop=1)
    with pytest.raises(CheckpointError, match="trainer_state.json: fields .* differ"):
        family.fit(family.make(family.build(0, True), run, data[:-1]), data[:-1], resume=True)
    changed = list(data)
    changed[0], changed[1] = changed[1], changed[0]  # same count, other order: the digest tells
    with pytest.raises(CheckpointError, match="differ"):
        family.fit(family.make(family.build(0, True), run, changed), changed, resume=True)
    other = settings(max_steps=4, save_steps=1, output_dir=str(tmp_path / "run"), batch_size=4)
    with pytest.raises(CheckpointError, match="'batch_size'"):
        family.fit(family.make(family.build(0, True), other, data), data, resume=True)


# ------------------------------------------------------------------------------ accumulation
def test_step_gradient_is_the_size_weighted_mean_of_micro_batch_gradients(family):
    """One step of 5 items as micro-batches of 2 + 2 + 1: gradient = sum_i (n_i / 5) grad(loss_i)."""
    data = family.data()[:5]
    s = settings(max_steps=1, batch_size=2, accumulation=3, max_grad_norm=None)
    grads = {}

    def grab(record):
        grads.update({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})

    trainer = family.make(family.build(0, False), s, data, callbacks=[grab])
    family.fit(trainer, data)
    assert grads

    ref = family.make(family.build(0, False), s, data)
    ref.train_data = data
    seed_everything(s.seed)
    if ref.reseed_every_step:
        torch.manual_seed(step_seed(s.seed, 0, 0))
    micros, n = ref._micro_batches(0, ref.plan())
    assert [len(m) for m in micros] == [2, 2, 1] and n == 5
    ref.model.train()
    for i, micro in enumerate(micros):
        ref.micro_step = i
        loss, terms = ref.compute_loss(ref.collate(micro))
        (loss * (len(micro) / n)).backward()
        assert "loss" in terms
    want = {n: p.grad for n, p in ref.model.named_parameters() if p.grad is not None}
    assert want.keys() == grads.keys()
    for name in want:
        torch.testing.assert_close(grads[name], want[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("name", [name for name, fam in FAMILIES.items() if fam.item_mean])
def test_gradient_accumulation_equals_one_large_batch(name):
    """Where the loss is a mean over items (not over tokens, no in-batch negatives, no per-micro-batch sampling)."""
    family = FAMILIES[name]
    data = family.data()
    grads, losses = [], []
    for bs, acc in ((4, 1), (2, 2), (1, 4)):  # one step of the same 4 items
        got = {}
        trainer = None

        def grab(record, got=got):
            got.update({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})

        trainer = family.make(family.build(0, False), settings(max_steps=1, batch_size=bs, accumulation=acc,
                                                               max_grad_norm=None), data, callbacks=[grab])
        losses.append(family.fit(trainer, data)[0]["loss"])
        grads.append(got)
    for other, loss in zip(grads[1:], losses[1:]):
        assert other.keys() == grads[0].keys() and other
        for key in other:
            torch.testing.assert_close(other[key], grads[0][key], rtol=1e-4, atol=1e-6, msg=key)
        assert loss == pytest.approx(losses[0], rel=1e-5)


# ------------------------------------------------------------------------------ schedule
def test_schedule_warms_up_then_decays_to_its_final_fraction(family):
    data = family.data()
    total, warmup = 8, 2
    history = family.fit(family.make(family.build(0, False), settings(max_steps=total, warmup=warmup), data), data)
    lrs = [r["lr"] for r in history]
    peak = lrs[warmup]
    assert lrs[:warmup] == pytest.approx([peak / 3, 2 * peak / 3], rel=1e-12)  # the one warm-up: (s+1)/(w+1)
    assert peak == max(lrs)
    assert all(a > b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # then it decays
    assert lrs == pytest.approx([peak * family.lr_factor(s, total, warmup) for s in range(total)], rel=1e-12)
    assert 0 < lrs[-1] <= 0.5 * peak


# ------------------------------------------------------------------------------ 2 processes
@pytest.mark.slow
def test_two_processes_agree(family, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={find_free_port()}", str(HERE / "_contract_worker.py"),
           family.id, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    from safetensors.torch import load_file

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    weights = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["checksum"] == ranks[1]["checksum"] and ranks[0]["history"] == ranks[1]["history"]
    assert len(ranks[0]["history"]) == 4 and ranks[0]["log_steps"] == [1, 2, 3, 4]  # written once, by rank 0
    if family.matches_one_process:  # 2 processes x 1 micro-batch == 1 process x 2 micro-batches (up to rounding)
        import _contract_worker as worker

        model, history, _ = worker.run(family, world_size=1)
        for got, want in zip(ranks[0]["history"], history):
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-4, abs=1e-6)
            assert got["lr"] == want["lr"]
        state = dict(family.module(model).named_parameters())
        for key, value in weights[0].items():
            torch.testing.assert_close(value, state[key], rtol=1e-4, atol=1e-5, msg=key)


def test_train_seconds_survive_a_resume(tmp_path):
    """``TrainResult.train_seconds`` (wall) and ``train_cpu_seconds`` of a resumed run include the run it continued.

    The callback sleeps (wall time without CPU) and then spins (CPU time), so the two clocks differ.
    """
    import time

    from personakit.training import TrainerCallback

    class Slow(TrainerCallback):
        def on_step_end(self, trainer, step):
            time.sleep(0.05)
            end = time.process_time() + 0.02
            while time.process_time() < end:
                pass

    class Keep(TrainerCallback):
        result = None

        def on_train_end(self, trainer, result):
            Keep.result = result

    family = FAMILIES["ropg-kd"]
    data = family.data()
    cut = settings(max_steps=4, save_steps=2, output_dir=str(tmp_path / "run"))
    first = family.make(family.build(0, True), cut, data)
    first.callbacks.append(Slow())
    family.fit(first, data, stop=2)
    state = json.loads((latest_checkpoint(tmp_path / "run") / "trainer_state.json").read_text())
    before, cpu_before = state["extra"]["train_seconds"], state["extra"]["train_cpu_seconds"]
    assert before >= 0.14  # two steps, each slowed by 0.05 s asleep and 0.02 s of CPU
    assert 0.04 <= cpu_before < before - 0.09  # the spinning counts, the sleeping does not

    second = family.make(family.build(0, True), cut, data)
    second.callbacks.append(Keep())
    family.fit(second, data, resume=True)
    assert Keep.result.global_step == 4
    assert Keep.result.train_seconds >= before  # the earlier run's time is kept, not restarted at 0
    assert Keep.result.train_seconds < before + 60
    assert Keep.result.train_cpu_seconds > cpu_before  # the first run's CPU time is kept too
    assert Keep.result.train_cpu_seconds < Keep.result.train_seconds
