"""The distributed helpers and the data split per rank (2-process runs of every trainer: test_trainer_contract.py)."""

from __future__ import annotations

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
