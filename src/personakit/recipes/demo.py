"""The main demo: the GRAG recipe on the built-in corpus with the embedded models, in a few minutes on a CPU.

``personakit demo`` (or :func:`run_demo`) needs no files and no network.  By default it
runs :func:`personakit.recipes.grag.run_grag_recipe` at demo scale:

1. loads the built-in corpus (:func:`personakit.data.load_builtin_corpus`): the agent
   turns of the 28 training dialogues are the training examples (and the ICL shot
   pool), those of the 12 test dialogues the evaluation examples;
2. writes a generic response $R_G$ for every example with the embedded
   SmolLM2-135M-Instruct (:class:`~personakit.augment.GenericResponseAugmenter`, the
   ``builtin-chat`` template: the history as chat turns, the persona withheld; an empty
   reply is retried, then replaced by a neutral fallback), cached under the user cache folder
   (``{cache_dir}/demo/llm_cache.jsonl``), so a second run generates nothing;
3. trains PreSFT(Hist), PreSFT(TST), PreGRAG and PostGRAG on the embedded
   SmolLM2-135M-Instruct with LoRA adapters (each from the same pretrained weights, the
   frozen ones in bf16 where the CPU has a fast bf16 path, prompts in the model's chat
   format so that every system answers fluently from the first step);
4. answers the test examples with ICL(Hist) (SmolLM2, persona + history + shots) as a
   fifth row;
5. scores every system (char-F1, ROUGE-1/2/L, BLEU, METEOR, BERTScore with MiniLM,
   bits per character of the references under each trained model, **persona use**: the
   BPC with every test example given another dialogue's persona minus the BPC with its
   own, and the shares of distinct replies and of replies that run past one turn) and
   prints the table with three sample replies of every system.

Sizes are picked so that the whole run, cold cache included, fits in about five
minutes on an idle 2-core CPU (see the CLI docs for measured times).  ``quick=True``
runs a smaller slice (about a minute and a half); ``icl_only=True`` runs the original
demo: ICL(Hist) next to a *copy the last user turn* row, no training.

Example:
    >>> from personakit.recipes import run_demo
    >>> result = run_demo(quick=True)  # doctest: +SKIP
    >>> print(result.report())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["DemoResult", "run_demo", "DEMO_METRICS", "DEMO_SIZES", "DEMO_TEMPLATE", "demo_recipe_config"]

DEMO_METRICS = ("char_f1", "rouge", "bleu", "meteor")
"""Metric groups of the ICL-only demo (``rouge`` gives rouge1, rouge2 and rougeL); the GRAG demo adds
``bertscore`` and ``bpc``."""

DEMO_TEMPLATE = "builtin-chat"
"""The demo's generic-response template: the shipped ``builtin-chat`` (the history as chat turns, a short
system message), which the embedded 135M SmolLM2 answers without empty replies or leaked speaker labels
(see :func:`~personakit.augment.recommended_template`)."""

_QUICK = {"max_train": 16, "max_test": 8, "epochs": 1}
_FULL = {"max_train": 32, "max_test": 16, "epochs": 2}
DEMO_SIZES = {"default": dict(_FULL), "quick": dict(_QUICK)}
"""Training examples, test examples and epochs of the GRAG demo, by setting (``personakit demo --help`` shows
these numbers)."""


@dataclass
class DemoResult:
    """What :func:`run_demo` returns.

    Attributes:
        metrics: metric values per row (``{"PostGRAG": {"rouge1": ..., ...}, "ICL(Hist) 2-shot": {...}}``).
        table: the markdown table of ``metrics``.
        records: one dict per test example: ``id``, ``persona``, ``last_user_turn``,
            ``reference``, ``generic_response`` (GRAG demo), ``predictions`` (per row),
            ``prediction`` (the row named by ``primary``) and, ICL-only demo, ``baseline``
            (the copy row's output).
        model: the generic LLM's name.
        n_shot: demonstrations per ICL prompt.
        wall_time_s: seconds for the whole run (loading included).
        generation_time_s: seconds spent generating with the LLM (augmentation and ICL).
        output_dir: where the files were written, if anywhere.
        settings: the run's settings.
        mode: ``"grag"`` or ``"icl-only"``.
        primary: the row whose outputs fill ``record["prediction"]`` (PostGRAG, or ICL(Hist)).
        recipe: the :class:`~personakit.recipes.grag.GRAGRecipeResults` (GRAG demo).
    """

    metrics: dict[str, dict[str, Any]]
    table: str
    records: list[dict[str, Any]]
    model: str
    n_shot: int
    wall_time_s: float
    generation_time_s: float
    output_dir: Optional[Path] = None
    settings: dict[str, Any] = field(default_factory=dict)
    mode: str = "icl-only"
    primary: str = ""
    recipe: Any = None

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
        n = len(self.records)
        if self.mode == "grag":
            rec = self.recipe
            dtypes = "/".join(sorted(set(rec.details.get("precision", {}).values()))) or "?"
            head = (f"GRAG on the built-in corpus: {rec.sizes['train']} training and {n} test examples; "
                    f"generic responses by {self.model}, models on {rec.config.get('backbone', '?')} "
                    f"(LoRA: {rec.config.get('lora')}, frozen weights in {dtypes}), ICL(Hist) {self.n_shot}-shot")
        else:
            head = f"ICL(Hist) {self.n_shot}-shot with {self.model} on the built-in test split ({n} examples)"
        lines = [head, "", self.table, ""]
        if self.mode == "grag":
            lines.append("bpc: bits per character of the references under each trained model (lower is better).")
            if any("persona_use" in row for row in self.metrics.values()):
                lines.append("persona_use: bpc with another dialogue's persona minus bpc with the right one "
                             "(above 0: the model uses the persona).")
            if any("distinct" in row for row in self.metrics.values()):
                lines.append("distinct: share of distinct replies; multi_turn: share of replies that run past "
                             "one turn; empty: share of empty replies.")
            sig = {system: next(iter(by_metric.items())) for system, by_metric in self.recipe.significance.items()
                   if by_metric}  # {system: (metric, comparison)}
            marked = [s for s, (_, v) in sig.items() if v["significant"]]
            if sig:
                metric = next(iter(sig.values()))[0]
                lines.append(f"paired t-test of per-example {metric} vs {self.recipe.primary.baseline}: "
                             + ", ".join(f"{s} p={v['p_value']:.2g}" for s, (_, v) in sig.items())
                             + (f" (p < 0.05: {', '.join(marked)})" if marked else " (none below 0.05)"))
            t = self.recipe.timings
            lines.append(f"augmentation {t.get('augment_s', 0):.0f} s ({rec.sizes['generated']} generated, "
                         f"{rec.sizes['cached']} cached; {rec.sizes.get('empty_generic', 0)} empty at first, "
                         f"{rec.sizes.get('fallback_generic', 0)} replaced by the fallback, "
                         f"{rec.sizes.get('empty_in_training', 0)} left empty), "
                         f"training {t.get('train_s', 0):.0f} s, "
                         f"ICL {t.get('icl_s', 0):.0f} s, evaluation {t.get('eval_s', 0):.0f} s, "
                         f"total {self.wall_time_s:.0f} s")
        else:
            lines.append(f"generation {self.generation_time_s:.1f} s, total {self.wall_time_s:.1f} s")
        for i, rec in enumerate(self.samples(n_samples), start=1):
            lines += ["", f"sample {i} ({rec['id']})",
                      f"  persona:    {rec['persona']}",
                      f"  user:       {rec['last_user_turn']}",
                      f"  reference:  {rec['reference']}"]
            if rec.get("generic_response") is not None:
                lines.append(f"  generic:    {rec['generic_response']}")
            if self.mode == "grag":
                width = max(len(s) for s in rec["predictions"])
                lines += [f"  {s + ':':<{width + 1}} {p}" for s, p in rec["predictions"].items()]
            else:
                lines.append(f"  prediction: {rec['prediction']}")
        if self.output_dir is not None:
            lines += ["", f"results written to {self.output_dir}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def demo_recipe_config(
    *,
    quick: bool = False,
    n_shot: int = 2,
    max_examples: Optional[int] = None,
    max_train_examples: Optional[int] = None,
    epochs: Optional[int] = None,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    seed: int = 0,
    model: str = "smollm2-135m-instruct",
    backbone: str = "smollm2",
    output_dir: str = "runs/demo",
    cache_path: Optional[str] = None,
    metrics: Optional[Sequence[str]] = None,
) -> Any:
    """The :class:`~personakit.recipes.grag.GRAGRecipeConfig` that ``personakit demo`` runs.

    Args:
        quick: a smaller slice (16 training and 8 test examples, one epoch).
        n_shot: ICL(Hist) demonstrations.
        max_examples: test examples (seeded subsample; default 16, quick 8).
        max_train_examples: training examples (default 32, quick 16).
        epochs: training epochs per model (default 2, quick 1).
        batch_size: generation batch of the LLM.
        max_new_tokens: reply length of ICL(Hist) and of the trained models.
        seed: seed of everything.
        model: the generic LLM (augmentation and ICL).
        backbone: the backbone of the trained models (``"smollm2"``: SmolLM2 + LoRA; ``"minilm"``:
            the MiniLM BERT2BERT encoder-decoder, fully fine-tuned).
        output_dir: the recipe's output folder.
        cache_path: the response cache (default ``{cache_dir}/demo/llm_cache.jsonl``).
        metrics: evaluation metrics (default: :data:`DEMO_METRICS`, ``bertscore``, ``bpc``, ``persona_use``
            and ``reply_stats``).
    """
    from personakit.backbones import cache_dir
    from personakit.recipes.grag import GRAGRecipeConfig

    sizes = _QUICK if quick else _FULL
    return GRAGRecipeConfig.from_dict({
        "data": {"source": "builtin", "max_history_turns": 3,
                 "max_train": max_train_examples if max_train_examples is not None else sizes["max_train"],
                 "max_test": max_examples if max_examples is not None else sizes["max_test"]},
        "augment": {"model": model, "template": DEMO_TEMPLATE, "max_new_tokens": 32, "batch_size": batch_size,
                    "cache": True, "cache_path": cache_path or str(cache_dir() / "demo" / "llm_cache.jsonl")},
        "inputs": {"max_persona_tokens": 48, "max_history_tokens": 80, "max_generic_tokens": 32,
                   "max_response_tokens": 32},
        "models": [{"kind": "presft-hist"}, {"kind": "presft-tst"}, {"kind": "pregrag", "beta": 0.05},
                   {"kind": "postgrag", "alpha": 0.5, "beta": 0.05, "settings": {"encoder_passes": 2}}],
        "backbone": backbone,
        "training": {"epochs": epochs if epochs is not None else sizes["epochs"], "batch_size": 8,
                     "learning_rate": 3e-4, "max_new_tokens": max_new_tokens, "eval_batch_size": 16,
                     "generation_options": {"no_repeat_ngram_size": 3}, "seed": seed, "progress": True},
        "icl": {"enabled": True, "n_shot": n_shot, "max_new_tokens": max_new_tokens, "batch_size": batch_size},
        "eval": {"metrics": list(metrics) if metrics is not None else [*DEMO_METRICS, "bertscore", "bpc",
                                                                        "persona_use", "reply_stats"],
                 "bertscore_model": "minilm"},
        "output_dir": output_dir,
        "seed": seed,
    })


def run_demo(
    n_shot: int = 2,
    max_examples: Optional[int] = None,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    seed: int = 0,
    model: str = "smollm2-135m-instruct",
    output_dir: Optional[str | os.PathLike[str]] = None,
    *,
    generator: Any = None,
    progress: Optional[bool] = None,
    icl_only: bool = False,
    quick: bool = False,
    epochs: Optional[int] = None,
    max_train_examples: Optional[int] = None,
    backbone: Any = "smollm2",
    cache_path: Optional[str | os.PathLike[str]] = None,
    metrics: Optional[Sequence[str]] = None,
) -> DemoResult:
    """Run the demo (see the module docstring) and score it.

    Args:
        n_shot: ICL(Hist) demonstrations per prompt, drawn from the training split.
        max_examples: evaluate a seeded random subset of this many test examples
            (``None``: 16; ``quick``: 8).
        batch_size: prompts per LLM generation batch.
        max_new_tokens: maximum reply length in tokens (ICL and the trained models).
        seed: seed of the subsets, the shots, the new weights and the data order.
        model: the generic causal LM, by embedded name, local folder or hub id.
        output_dir: when given, the results are written there (GRAG: ``results.md``,
            ``results.json``, ``predictions.jsonl``; ICL-only: ``predictions.jsonl``,
            ``metrics.json``), atomically; ``predictions.jsonl`` holds one record per system and
            example (``system``, ``id``, ``prediction``, ``reference``...), which ``personakit
            evaluate`` scores per system.
        generator: use this :class:`~personakit.llm.TextGenerator` instead of loading ``model``.
        progress: stage messages and progress bars (``None``: on for the GRAG demo,
            automatic for ICL-only).
        icl_only: the original demo: ICL(Hist) and a *copy the last user turn* row, no training.
        quick: GRAG on a smaller slice (16 training, 8 test examples, one epoch).
        epochs: training epochs per model (default 2; quick 1).
        max_train_examples: training examples (seeded subset; default 32; quick 16).
        backbone: the trained models' backbone: ``"smollm2"`` (with LoRA), ``"minilm"``, a folder, a ``(model,
            tokenizer)`` pair or a function returning a fresh pair (tests).
        cache_path: the response cache of augmentation and ICL (default
            ``{cache_dir}/demo/llm_cache.jsonl``, see :func:`personakit.backbones.cache_dir`).
        metrics: the GRAG demo's metrics (default char-F1, ROUGE, BLEU, METEOR, BERTScore, BPC).

    Returns:
        A :class:`DemoResult`; ``print(result)`` shows the table and samples.
    """
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be >= 1 or None, got {max_examples}")
    from personakit.backbones.quiet import loading_progress

    # progress=False hides transformers' "Loading weights" bars too
    with loading_progress(False) if progress is False else contextlib.nullcontext():
        if icl_only:
            return _run_icl_demo(n_shot, max_examples, batch_size, max_new_tokens, seed, model, output_dir,
                                 generator=generator, progress=progress)
        return _run_grag_demo(n_shot, max_examples, batch_size, max_new_tokens, seed, model, output_dir,
                              generator=generator, progress=True if progress is None else progress, quick=quick,
                              epochs=epochs, max_train_examples=max_train_examples, backbone=backbone,
                              cache_path=cache_path, metrics=metrics)


def _run_grag_demo(n_shot, max_examples, batch_size, max_new_tokens, seed, model, output_dir, *, generator,
                   progress, quick, epochs, max_train_examples, backbone, cache_path, metrics) -> DemoResult:
    import tempfile

    from personakit.eval import format_metrics_table
    from personakit.recipes.grag import run_grag_recipe

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="personakit-demo-") as tmp:
        config = demo_recipe_config(
            quick=quick, n_shot=n_shot, max_examples=max_examples, max_train_examples=max_train_examples,
            epochs=epochs, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed, model=model,
            backbone=backbone if isinstance(backbone, str) else "custom",
            output_dir=str(output_dir) if output_dir is not None else tmp,
            cache_path=None if cache_path is None else str(cache_path), metrics=metrics)
        results = run_grag_recipe(config, generator=generator,
                                  backbone=None if isinstance(backbone, str) else backbone,
                                  progress=progress, save=output_dir is not None)
    wall = time.perf_counter() - start
    systems = results.systems
    primary = "PostGRAG" if "PostGRAG" in systems else systems[0]
    records = []
    for i, ex in enumerate(results.test_examples):
        preds = {s: results.predictions[s][i] for s in systems}
        records.append({
            "id": ex.id, "persona": ex.persona.to_text(), "last_user_turn": ex.history[-1].text,
            "reference": ex.response, "generic_response": ex.generic_response, "predictions": preds,
            "prediction": preds[primary],
        })
    t = results.timings
    table = format_metrics_table(results.rows, digits=3)  # plain cells: the table docs/getting-started.md shows
    return DemoResult(
        metrics=results.rows, table=table, records=records, model=model, n_shot=n_shot, wall_time_s=wall,
        generation_time_s=t.get("augment_s", 0.0) + t.get("icl_s", 0.0),
        output_dir=Path(output_dir) if output_dir is not None else None,
        settings={"mode": "grag", **config.to_dict()}, mode="grag", primary=primary, recipe=results,
    )


def _run_icl_demo(n_shot, max_examples, batch_size, max_new_tokens, seed, model, output_dir, *, generator,
                  progress) -> DemoResult:
    """ICL(Hist) on the built-in test split next to the copy-the-last-user-turn row (the first demo)."""
    from personakit.config import atomic_write_text
    from personakit.data import dialogues_to_examples
    from personakit.data.builtin import load_builtin_corpus
    from personakit.eval import evaluate_texts, format_metrics_table
    from personakit.llm import GenerationSettings, HFGenerator
    from personakit.models.icl import ICLResponder

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
            "predictions": {"copy last user turn": base, icl_row: pred},
            "baseline": base,
        }
        for ex, ref, pred, base in zip(examples, references, predictions, baseline)
    ]
    run_settings = {
        "mode": "icl-only", "n_shot": n_shot, "max_examples": max_examples, "batch_size": batch_size,
        "max_new_tokens": max_new_tokens, "seed": seed, "model": model,
        "generator": getattr(generator, "model_id", type(generator).__name__),
    }
    wall = time.perf_counter() - start
    out_path = None
    if output_dir is not None:
        out_path = Path(output_dir)
        # one record per system and example, as every recipe writes: `personakit evaluate` scores each system
        lines = [json.dumps({"system": system, "id": r["id"], "prediction": pred, "reference": r["reference"],
                             "persona": r["persona"], "last_user_turn": r["last_user_turn"]}, ensure_ascii=False)
                 for system in metrics for r in records for pred in [r["predictions"][system]]]
        atomic_write_text(out_path / "predictions.jsonl", "".join(line + "\n" for line in lines))
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
        mode="icl-only", primary=icl_row,
    )
