"""Multi-process GRAG training: ``torchrun --nproc_per_node=2`` on CPU (gloo), and the distributed helpers."""

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
sys.path.insert(0, str(HERE.parent / "models" / "grag"))

import _grag_worker as worker  # noqa: E402

from personakit.training.distributed import (  # noqa: E402
    all_reduce_sum,
    broadcast_object,
    find_free_port,
    rank_slice,
    world_size,
)
from personakit.training.grag import GRAGTrainer  # noqa: E402

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ helpers (single process)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 11])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rank_slice_is_a_balanced_contiguous_partition(n, world):
    items = list(range(n))
    shares = [items[rank_slice(n, world, r)] for r in range(world)]
    assert sum(shares, []) == items  # consecutive, in rank order, nothing lost or repeated
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_rank_slice_rejects_bad_ranks():
    with pytest.raises(ValueError, match="rank"):
        rank_slice(4, 2, 2)
    with pytest.raises(ValueError, match="n must be"):
        rank_slice(-1, 2, 0)


def test_single_process_fallbacks():
    assert world_size() == 1
    assert broadcast_object({"x": [1, 2]}) == {"x": [1, 2]}
    assert all_reduce_sum([1.5, 2.0]) == [1.5, 2.0]
    port = find_free_port()
    assert 0 < port < 65536


def test_step_examples_split_over_ranks_like_gradient_accumulation():
    """Micro-batch 0 of a 1-process, 2-accumulation step is rank 0's share of that step on 2 processes."""
    examples = worker.training_examples(5)
    trainer = GRAGTrainer(worker.build_llama_postgrag(), worker.ddp_config(1), train_examples=examples)
    plan = trainer.plan()
    assert (plan.per_step, plan.steps_per_epoch) == (4, 2)
    micros, n = trainer._micro_batches(1, plan)  # the short last step of epoch 0: one example
    assert n == 1 and [len(m) for m in micros] == [1]
    for step in range(4):
        idx = trainer.step_indices(step)
        assert len(idx) == (4 if step % 2 == 0 else 1)
        first_half = idx[rank_slice(len(idx), 2, 0)]
        micros, _ = trainer._micro_batches(step, plan)
        assert [ex.id for ex in micros[0]] == [examples[i].id for i in first_half[:2]]


# ------------------------------------------------------------------------------ 2 processes
@pytest.mark.slow
def test_torchrun_two_cpu_processes_agree_and_match_one_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    port = find_free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", str(HERE / "_grag_worker.py"), "ddp", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    from safetensors.torch import load_file

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    weights = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert all(r["backend"] == "gloo" for r in ranks)
    # both ranks hold identical parameters, logs and evaluation results
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and "bpc" in ranks[0]["metrics"]
    # the loss went down
    losses = [h["loss"] for h in ranks[0]["history"]]
    assert len(losses) == 6 and losses[-1] < losses[0]
    # only the main process wrote the checkpoint and the log
    assert (tmp_path / "run" / "checkpoint-00000006").is_dir()
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 6

    # 2 processes x 1 micro-batch == 1 process x 2 accumulated micro-batches (up to float rounding)
    model = worker.build_llama_postgrag()
    single = GRAGTrainer(model, worker.ddp_config(1), train_examples=worker.training_examples()).train()
    for got, want in zip(ranks[0]["history"], single.history):
        for key in ("loss", "loss_p", "loss_g", "loss_cjepa", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    state = model.state_dict()
    for key, value in weights[0].items():
        torch.testing.assert_close(value, state[key], rtol=1e-4, atol=1e-5)
