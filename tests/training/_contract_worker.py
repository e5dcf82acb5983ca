"""``torchrun --nproc_per_node=2 _contract_worker.py FAMILY OUT_DIR``: train one family on 2 processes
(not collected by pytest).  Each rank writes ``rank{r}.json`` (world size, checksum of the parameters,
history, the log's steps) and ``rank{r}.safetensors`` (final parameters; buffers such as the questioner's
queue of negatives are per rank)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _families import FAMILIES, checksum, log_records, settings  # noqa: E402

torch.set_num_threads(1)


def run(family, world_size: int, output_dir: str | None = None):
    """4 steps of 2 items per process and micro-batch; one process accumulates 2 micro-batches instead."""
    data = family.data()
    model = family.build(0, False)
    s = settings(max_steps=4, batch_size=2, accumulation=2 // world_size, max_grad_norm=None, output_dir=output_dir)
    trainer = family.make(model, s, data)
    history = family.fit(trainer, data)
    return model, history, trainer


def main(name: str, out_dir: str) -> None:
    from safetensors.torch import save_file

    family = FAMILIES[name]
    model, history, trainer = run(family, 2, str(Path(out_dir) / "run"))
    rank = trainer.accelerator.process_index
    params = {k: v.detach().cpu().clone() for k, v in family.module(model).named_parameters()}
    save_file(params, str(Path(out_dir) / f"rank{rank}.safetensors"))
    trainer.accelerator.wait_for_everyone()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world_size": trainer.world_size, "checksum": checksum(params), "history": history,
        "log_steps": [r["step"] for r in log_records(trainer) if r.get("kind") == "train"],
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
