"""The main demo: GRAG's ICL(Hist) baseline on the built-in corpus with the embedded SmolLM2.

``personakit demo`` (or :func:`run_demo`) needs no files and no network:

1. loads the built-in corpus (:func:`personakit.data.builtin.load_builtin_corpus`): the
   28 training dialogues are the shot pool, the agent turns of the 12 test dialogues
   are the evaluation examples (:func:`personakit.data.dialogues_to_examples`);
2. answers every test example with :class:`~personakit.models.ICLResponder`
   (``mode="hist"``: persona + history, ``n_shot`` demonstrations) through a batched
   :class:`~personakit.llm.HFGenerator` over the embedded SmolLM2-135M-Instruct;
3. scores the replies (char-F1, ROUGE-1/2/L, BLEU, METEOR) next to a trivial reference
   row, *copy the last user turn*, and prints a markdown table and three samples.

Example:
    >>> from personakit.recipes import run_demo
    >>> result = run_demo(max_examples=8, max_new_tokens=24)  # doctest: +SKIP
    >>> print(result.report())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = ["DemoResult", "run_demo", "DEMO_METRICS"]

DEMO_METRICS = ("char_f1", "rouge", "bleu", "meteor")
"""Metric groups computed by the demo (``rouge`` gives rouge1, rouge2 and rougeL)."""


@dataclass
class DemoResult:
    """What :func:`run_demo` returns.

    Attributes:
        metrics: metric values per row (``{"ICL(Hist) 2-shot": {"rouge1": ..., ...}, ...}``).
        table: the markdown table of ``metrics``.
        records: one dict per test example: ``id``, ``persona``, ``last_user_turn``,
            ``reference``, ``prediction`` and ``baseline`` (the copy baseline's output).
        model: the model name.
        n_shot: demonstrations per prompt.
        wall_time_s: seconds for the whole run (loading included).
        generation_time_s: seconds spent generating.
        output_dir: where the files were written, if anywhere.
    """

    metrics: dict[str, dict[str, float]]
    table: str
    records: list[dict[str, Any]]
    model: str
    n_shot: int
    wall_time_s: float
    generation_time_s: float
    output_dir: Optional[Path] = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> list[str]:
        return [r["prediction"] for r in self.records]

    @property
    def references(self) -> list[str]:
        return [r["reference"] for r in self.records]

    def samples(self, k: int = 3) -> list[dict[str, Any]]:
        """``k`` records spread over the test set."""
        if not self.records:
            return []
        step = max(1, len(self.records) // k)
        return self.records[::step][:k]

    def report(self, n_samples: int = 3) -> str:
        """The table, the timings and ``n_samples`` sample responses, as text."""
        lines = [
            f"ICL(Hist) {self.n_shot}-shot with {self.model} on the built-in test split "
            f"({len(self.records)} examples)",
            "",
            self.table,
            "",
            f"generation {self.generation_time_s:.1f} s, total {self.wall_time_s:.1f} s",
        ]
        for i, rec in enumerate(self.samples(n_samples), start=1):
            lines += [
                "",
                f"sample {i} ({rec['id']})",
                f"  persona:    {rec['persona']}",
                f"  user:       {rec['last_user_turn']}",
                f"  reference:  {rec['reference']}",
                f"  prediction: {rec['prediction']}",
            ]
        if self.output_dir is not None:
            lines += ["", f"predictions and metrics written to {self.output_dir}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def run_demo(
    n_shot: int = 2,
    max_examples: Optional[int] = None,
    batch_size: int = 16,
    max_new_tokens: int = 40,
    seed: int = 0,
    model: str = "smollm2-135m-instruct",
    output_dir: Optional[str | os.PathLike[str]] = None,
    *,
    generator: Any = None,
    progress: Optional[bool] = None,
) -> DemoResult:
    """Run ICL(Hist) on the built-in test split and score it (see the module docstring).

    Args:
        n_shot: demonstrations per prompt, drawn from the training split.
        max_examples: evaluate a seeded random subset of this many test examples
            (``None``: all of them).
        batch_size: prompts per generation batch.
        max_new_tokens: maximum reply length in tokens.
        seed: seed of the shot sampling and of the subset.
        model: the causal LM, by embedded name, local folder or hub id.
        output_dir: when given, ``predictions.jsonl`` and ``metrics.json`` are written
            there (atomically).
        generator: use this :class:`~personakit.llm.TextGenerator` instead of loading
            ``model``.
        progress: progress bar during generation (``None``: automatic).

    Returns:
        A :class:`DemoResult`; ``print(result)`` shows the table and samples.
    """
    from personakit.config import atomic_write_text
    from personakit.data import dialogues_to_examples
    from personakit.data.builtin import load_builtin_corpus
    from personakit.eval import evaluate_texts, format_metrics_table
    from personakit.llm import GenerationSettings, HFGenerator
    from personakit.models.icl import ICLResponder

    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be >= 1 or None, got {max_examples}")
    start = time.perf_counter()
    pool = dialogues_to_examples(load_builtin_corpus("train"), agent="agent")
    examples = dialogues_to_examples(load_builtin_corpus("test"), agent="agent")
    if max_examples is not None and max_examples < len(examples):
        keep = sorted(random.Random(seed).sample(range(len(examples)), max_examples))
        examples = [examples[i] for i in keep]

    if generator is None:
        generator = HFGenerator.from_pretrained(model, batch_size=batch_size)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, stop=["\n"])
    responder = ICLResponder(generator, mode="hist", n_shot=n_shot, shot_pool=pool, seed=seed, settings=settings)

    gen_start = time.perf_counter()
    predictions = responder.respond(examples, batch_size=batch_size, progress=progress)
    generation_time = time.perf_counter() - gen_start

    references = [ex.response for ex in examples]
    baseline = [ex.last_user_turn.text for ex in examples]
    icl_row = f"ICL(Hist) {n_shot}-shot"
    metrics = {
        "copy last user turn": evaluate_texts(baseline, references, metrics=DEMO_METRICS),
        icl_row: evaluate_texts(predictions, references, metrics=DEMO_METRICS),
    }
    table = format_metrics_table(metrics)
    records = [
        {
            "id": ex.id,
            "persona": ex.persona.to_text(),
            "last_user_turn": ex.last_user_turn.text,
            "reference": ref,
            "prediction": pred,
            "baseline": base,
        }
        for ex, ref, pred, base in zip(examples, references, predictions, baseline)
    ]
    run_settings = {
        "n_shot": n_shot, "max_examples": max_examples, "batch_size": batch_size,
        "max_new_tokens": max_new_tokens, "seed": seed, "model": model,
        "generator": getattr(generator, "model_id", type(generator).__name__),
    }
    wall = time.perf_counter() - start
    out_path = None
    if output_dir is not None:
        out_path = Path(output_dir)
        atomic_write_text(
            out_path / "predictions.jsonl",
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
        )
        atomic_write_text(
            out_path / "metrics.json",
            json.dumps(
                {"metrics": metrics, "settings": run_settings, "n_examples": len(records),
                 "generation_time_s": generation_time, "wall_time_s": wall},
                indent=2,
            ) + "\n",
        )
    return DemoResult(
        metrics=metrics, table=table, records=records, model=model, n_shot=n_shot,
        wall_time_s=wall, generation_time_s=generation_time, output_dir=out_path, settings=run_settings,
    )
