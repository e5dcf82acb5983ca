"""Helper process of the GRAG trainer tests (not collected by pytest).

Modes:

``python _grag_worker.py train OUT_DIR``: a checkpointed PostGRAG/BART run in its own
process that sleeps after every step (so the test can SIGKILL it mid-run).

The builders below are imported by the tests too (and by ``_families.py``), so both sides
start from the same model.  Multi-process runs of every trainer: ``_contract_worker.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "models" / "grag"))

from grag_testkit import build_backbone, make_examples, tokenizer_for  # noqa: E402

from personakit.models.grag import PostGRAG  # noqa: E402
from personakit.training.grag import GRAGTrainer, GRAGTrainingConfig, TrainerCallback  # noqa: E402
from personakit.types import ResponseExample  # noqa: E402

torch.set_num_threads(1)


def training_examples(n: int = 8) -> list[ResponseExample]:
    """``n`` examples cycling through the testkit's three, with distinct ids."""
    base = make_examples()
    return [base[i % len(base)].model_copy(update={"id": f"ex:{i}"}) for i in range(n)]


def build_bart_postgrag(seed: int = 0) -> PostGRAG:
    """Tiny PostGRAG over a random BART (dropout on: exercises the per-step RNG)."""
    backbone = build_backbone("bart", seed=seed)
    torch.manual_seed(seed + 1)
    return PostGRAG.from_backbone(backbone, tokenizer_for("bart"), alpha=0.5, beta=0.05, extractor_heads=2)


def kill_config(out_dir: str) -> GRAGTrainingConfig:
    return GRAGTrainingConfig(output_dir=out_dir, max_steps=8, batch_size=2, save_steps=2, keep_last=None,
                              logging_steps=1, learning_rate=1e-3, seed=3, use_cpu=True, progress=False)


def build_llama_postgrag(seed: int = 0) -> PostGRAG:
    """Tiny dropout-free PostGRAG over a random Llama (deterministic given the data)."""
    backbone = build_backbone("llama", seed=seed)
    torch.manual_seed(seed + 1)
    return PostGRAG.from_backbone(backbone, tokenizer_for("llama"), alpha=0.5, beta=0.05, extractor_heads=2,
                                  extractor_dropout=0.0)


def ddp_config(world_size: int, out_dir: str | None = None) -> GRAGTrainingConfig:
    """2 processes x 2 examples per step, or 1 process x 2 micro-batches of 2: the same updates."""
    return GRAGTrainingConfig(output_dir=out_dir, max_steps=6, batch_size=2, gradient_accumulation_steps=2 // world_size,
                              logging_steps=1, learning_rate=1e-2, max_grad_norm=None, seed=5, use_cpu=True,
                              progress=False, eval_at_epoch_end=False, eval_metrics=["char_f1", "bpc"],
                              ddp_find_unused_parameters=False)


class _Sleep(TrainerCallback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_step_end(self, trainer, step):
        time.sleep(self.seconds)


def main_train(out_dir: str) -> None:
    model = build_bart_postgrag()
    trainer = GRAGTrainer(model, kill_config(out_dir), train_examples=training_examples(), callbacks=[_Sleep(0.4)])
    trainer.train()


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    {"train": main_train}[mode](target)
