"""The ROPG / RSPG recipe's run: data, LLM feedback, ROPG, the pool, RSPG, scoring (see :mod:`personakit.recipes.ropg`)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from personakit.recipes.base import (
    RecipeResults,
    Stages,
    TestSetResult,
    output_dir_of,
    run_manifest,
    score_test_set,
    subsample,
)
from personakit.recipes.ropg.config import ROPGDataConfig, ROPGRecipeConfig, ROPGTestSetConfig
from personakit.training.ropg import ROPGTrainerConfig
from personakit.data.builtin import builtin_pfg_dialogues  # re-exported here, its old home

__all__ = ["ROPGResults", "builtin_pfg_dialogues", "load_recipe_splits", "load_test_sets", "run_ropg_recipe"]

_SELECTORS = {"pre": "RSPG-Pre", "post": "RSPG-Post"}
_DISPLAY = {"none": "No retrieval", "recency": "Recency", "bm25": "BM25", "dense": "Dense (MiniLM)",
            "rrf": "RRF", "ropg-rl": "ROPG-RL", "ropg-kd": "ROPG-KD"}
_SPLIT_SEED = {"train": 0, "dev": 1, "test": 2}


# ----------------------------------------------------------------------------- data
def _read_lamp_split(folder: Path, split: str, task: Optional[str]) -> Optional[list]:
    from personakit.data import read_lamp

    questions = folder / f"{split}_questions.json"
    if not questions.is_file():
        return None
    outputs = folder / f"{split}_outputs.json"
    return read_lamp(questions, outputs if outputs.is_file() else None, task=task)


def _usable(rows: list, where: str) -> list:
    """The examples with a profile (retrieval needs one); every one must have a target (the recipe scores outputs)."""
    rows = [ex for ex in (rows or []) if ex.profile.items]
    for ex in rows:
        if ex.target is None:
            raise ValueError(f"{where} example {ex.id!r} has no target (field 'target'); the recipe scores outputs")
    if not rows:
        raise ValueError(f"the {where} split is empty after filtering (examples need a non-empty profile)")
    return rows


def load_recipe_splits(data: ROPGDataConfig, seed: int = 0) -> tuple[str, dict[str, list]]:
    """``(task, {"train", "dev", "test"})`` of :class:`~personakit.types.ProfileExample` per the data config.

    Args:
        data: the data section.
        seed: seed of the subsampling (the recipe's ``seed``).

    Raises:
        FileNotFoundError: the data folder (or a required LaMP file) is missing.
        ValueError: a split is empty, or an example has no target.
    """
    from personakit.data.pfg_lamp import PFG_LAMP_TASK, build_pfg_lamp_task

    if data.source == "lamp":
        folder = Path(str(data.path))
        if not folder.is_dir():
            raise FileNotFoundError(f"data.path {folder}: no such LaMP folder")
        splits = {s: _read_lamp_split(folder, s, data.task) for s in ("train", "dev", "test")}
        for s in ("train", "dev"):
            if splits[s] is None:
                raise FileNotFoundError(f"{folder / f'{s}_questions.json'}: missing (the LaMP recipe needs train and dev)")
        if splits["test"] is None:  # LaMP's test outputs are not public: dev is cut in two halves
            dev = splits["dev"]
            half = len(dev) // 2
            splits["dev"], splits["test"] = dev[:half], dev[half:]
        task = splits["train"][0].task if splits["train"] else str(data.task)
    else:
        source = builtin_pfg_dialogues() if data.source == "builtin" else Path(str(data.path))
        if isinstance(source, Path) and not source.exists():
            raise FileNotFoundError(f"data.path {source}: no such Persuasion-for-Good folder")
        splits = build_pfg_lamp_task(source, history_turns=data.history_turns,
                                     max_profile_items=data.max_profile_items, max_users=data.max_users,
                                     max_examples_per_user=data.max_examples_per_user, seed=seed,
                                     split_by=data.split_by, split_fractions=data.split_fractions,
                                     min_prior_dialogues=data.min_prior_dialogues)
        task = PFG_LAMP_TASK
    limits = {"train": data.max_train, "dev": data.max_dev, "test": data.max_test}
    return task, {s: subsample(_usable(rows, s), limits[s], seed + _SPLIT_SEED[s]) for s, rows in splits.items()}


def _read_test_set(name: str, cfg: ROPGTestSetConfig, task: str) -> list:
    from personakit.data import read_lamp
    from personakit.data._io import Loc, iter_jsonl, validate_model
    from personakit.eval.lamp import _task_name
    from personakit.types import ProfileExample

    path = Path(cfg.path)
    if not path.is_file():
        raise FileNotFoundError(f"data.test_sets.{name}.path {path}: no such file")
    if path.suffix.lower() == ".jsonl":
        rows = [validate_model(ProfileExample, rec, Loc(path, line)) for line, rec in iter_jsonl(path, "test set")]
    else:
        outputs = Path(cfg.outputs) if cfg.outputs else path.with_name(path.name.replace("_questions", "_outputs"))
        if cfg.outputs and not outputs.is_file():
            raise FileNotFoundError(f"data.test_sets.{name}.outputs {outputs}: no such file")
        has_outputs = outputs != path and outputs.is_file()
        rows = read_lamp(path, outputs if has_outputs else None, task=task if task.startswith("LaMP") else None)
    for ex in rows:
        if _task_name(ex.task) != _task_name(task):
            raise ValueError(f"data.test_sets.{name} ({path}): example {ex.id!r} is a {ex.task} example, "
                             f"but the recipe's task is {task}")
    return rows


def load_test_sets(data: ROPGDataConfig, task: str, seed: int = 0) -> dict[str, list]:
    """``{name: [ProfileExample]}`` of the extra test sets (``data.test_sets``), filtered and subsampled.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: an example of another task, without a target, or an empty set.
    """
    out = {}
    for i, (name, cfg) in enumerate(data.test_sets.items()):
        rows = _usable(_read_test_set(name, cfg, task), f"test set {name!r}:")
        out[name] = subsample(rows, cfg.max_examples, seed + 3 + i)
    return out


# --------------------------------------------------------------------------- results
@dataclass
class ROPGResults(RecipeResults):
    """What :func:`run_ropg_recipe` returns: one table per test set (``"test"`` and ``data.test_sets``).

    Every table has the pool's retrievers and the selectors as systems; ↑ / ↓ mark a
    significant difference from the test set's best single retriever (its ``baseline``,
    two-sided paired t-test at ``significance_level``).  ``details`` holds the task, the
    metric the selectors learn (``eval_metric``), per test set the selectors' summary
    (paper Table 4) and the pool's oracle bounds (Table 5), and the ROPG training summaries.
    """

    title: ClassVar[str] = "ROPG / RSPG: retrievers and selectors"

    @property
    def task(self) -> str:
        """``"PFG-LaMP"``, ``"LaMP-4"``..."""
        return self.details.get("task", "")

    @property
    def best_single(self) -> Optional[str]:
        """The pool member with the best mean EVAL on the main test set (the baseline of its tests)."""
        return self.primary.baseline

    @property
    def significance(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{system: {metric: PairedComparison.to_dict()}}`` against :attr:`best_single` on the main test set."""
        return self.primary.significance

    @property
    def selectors(self) -> dict[str, dict[str, Any]]:
        """``{"RSPG-Pre": {"success_rate", "selected_eval", "chosen", ...}}`` on the main test set."""
        return self.details.get("selectors", {}).get(self.primary.name, {})

    @property
    def oracle(self) -> dict[str, Any]:
        """``{"lower", "upper", "metric"}``: the pool's oracle bounds on the main test set."""
        return self.details.get("oracle", {}).get(self.primary.name, {})

    @property
    def ropg(self) -> dict[str, dict[str, Any]]:
        """Training summaries of ROPG-RL / ROPG-KD (steps, final loss, top-1 EVAL on the train items)."""
        return self.details.get("ropg", {})

    def sections(self) -> list[str]:
        out = []
        eval_name = self.details.get("eval_metric", "EVAL")
        for name, ts in self.test_sets.items():
            lines = [f"## Selection on {name}: best single retriever {ts.baseline}", ""]
            selectors = self.details.get("selectors", {}).get(name, {})
            if selectors:
                lines += [f"| selector | success rate | mean {eval_name} of the choice | choices | "
                          "success rate on its training split |", "| --- | ---: | ---: | --- | ---: |"]
                for label, s in selectors.items():
                    chosen = ", ".join(f"{k} {v}" for k, v in s["chosen"].items() if v)
                    lines.append(f"| {label} | {s['success_rate']:.3f} | {s['selected_eval']:.4f} | {chosen} | "
                                 f"{s['train_success_rate']:.3f} |")
                lines.append("")
            oracle = self.details.get("oracle", {}).get(name)
            if oracle:
                lines.append(f"Oracle over the pool ({eval_name}): lower bound {oracle['lower']:.4f}, "
                             f"upper bound {oracle['upper']:.4f}.")
            out.append("\n".join(lines))
        if "mae" in self.details.get("metrics", ()):
            out.append("mae: lower is better (↑ there marks a larger error than the baseline's).")
        if self.ropg:
            lines = [f"## ROPG training (top-1 {eval_name} on the training inputs)", "",
                     "| retriever | steps | final loss | before | after | initial top document | oracle |",
                     "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for label, s in self.ropg.items():
                m, b, a = s["metric"], s["before"], s["after"]
                loss = "–" if s["final_loss"] is None else f"{s['final_loss']:.4f}"
                lines.append(f"| {label} | {s['steps']} | {loss} | {b[f'{m}@top1']:.4f} | {a[f'{m}@top1']:.4f} | "
                             f"{a[f'{m}@initial']:.4f} | {a[f'{m}@oracle']:.4f} |")
            out.append("\n".join(lines))
        if "llm_prompts_requested" in self.sizes:
            out.append(f"LLM ({self.details.get('generator', '?')}): {self.sizes['llm_prompts_requested']} prompts "
                       f"answered, {self.sizes['llm_prompts_generated']} generated (the rest from the response "
                       f"cache, {self.sizes.get('llm_cache_entries')} entries).")
        return out


# ----------------------------------------------------------------------------- run
def _token_counter(generator: Any, mode: str) -> Any:
    tok = getattr(getattr(generator, "generator", generator), "tokenizer", None)
    if mode != "llm" or tok is None:
        return None
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def run_ropg_recipe(config: ROPGRecipeConfig, *, progress: bool = True, save: bool = True, generator: Any = None,
                    encoder: Any = None, selector_encoder: Any = None) -> ROPGResults:
    """Run the ROPG / RSPG recipe (see :mod:`personakit.recipes.ropg`).

    Args:
        config: The recipe config (:func:`~personakit.recipes.base.load_recipe_config`).
        progress: Print each stage and show progress bars.
        save: Write ``results.md``, ``results.json``, ``predictions.jsonl`` and
            ``manifest.json`` to the output folder (the response cache, checkpoints and
            selectors go there in any case).
        generator: A :class:`~personakit.llm.TextGenerator` to use as the frozen LLM
            (default: ``config.llm.model`` through :class:`~personakit.llm.HFGenerator`).
            It is always put behind the response cache.
        encoder: The dense retrievers' encoder: anything
            :class:`~personakit.retrieval.DenseRetriever` accepts (a name, a
            ``SentenceTransformer``, a ``(model, tokenizer)`` pair, a
            :class:`~personakit.retrieval.TextEncoder`); default ``config.ropg.encoder``.
            The trained retrievers get deep copies, so it must have trainable parameters.
        selector_encoder: The selectors' encoder (a name or a ``(model, tokenizer)``
            pair); default ``config.rspg.encoder``.  Each selector gets a deep copy.

    Returns:
        :class:`ROPGResults` (``output_dir`` set when saved).
    """
    import numpy as np
    import torch

    from personakit.eval.lamp import LaMPMetric
    from personakit.functional.selector import (best_single_retriever, oracle_bounds, selected_performance,
                                                selection_success_rate)
    from personakit.llm import GenerationSettings, HFGenerator
    from personakit.retrieval import (BM25Retriever, DenseRetriever, NoRetrieval, RecencyRetriever, RRFRetriever,
                                      as_text_encoder)
    from personakit.retrieval.lamp_prompts import LaMPPromptBuilder
    from personakit.retrieval.selector import RetrieverSelector
    from personakit.training.feedback import LLMFeedbackScorer
    from personakit.training.ropg import ROPGKDTrainer, ROPGRLTrainer, prepare_ropg_items
    from personakit.training.rspg import RSPGItem, RSPGTrainer

    if not isinstance(config, ROPGRecipeConfig):
        raise TypeError(f"config must be a ROPGRecipeConfig, got {type(config).__name__}")
    stages = Stages("ropg", progress, width=7)
    out_dir = output_dir_of(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = config.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    data = config.data

    # 1. data --------------------------------------------------------------------
    with stages("data"):
        task, splits = load_recipe_splits(data, seed)
        test_sets = {"test": splits["test"], **load_test_sets(data, task, seed)}
    rspg_split = config.rspg.train_split
    stages.log(f"{task}: " + ", ".join(f"{s} {len(v)}" for s, v in {**splits, **test_sets}.items()))

    # 2. LLM and prompts ---------------------------------------------------------------
    with stages("llm_load"):
        if generator is None:
            generator = HFGenerator.from_pretrained(config.llm.model, batch_size=config.llm.batch_size,
                                                    dtype=config.llm.dtype, device=config.device)
        builder = LaMPPromptBuilder(task, max_tokens=config.prompt.max_tokens,
                                    tokenizer=_token_counter(generator, config.prompt.count_with))
        cache_path = Path(config.llm.cache_path) if config.llm.cache_path else out_dir / "llm_cache.jsonl"
        settings = GenerationSettings(max_new_tokens=config.llm.max_new_tokens, temperature=0.0, stop=config.llm.stop)
        scorer = LLMFeedbackScorer(generator, builder, cache=cache_path, settings=settings,
                                   batch_size=config.llm.batch_size, progress=progress,
                                   postprocess="builder" if config.llm.postprocess else None)
        base_encoder = as_text_encoder(encoder if encoder is not None else config.ropg.encoder, device=config.device)
        base_encoder.eval()
    needed = set(config.pool.retrievers) | (set(config.pool.rrf_members) if "rrf" in config.pool.retrievers else set())
    dense = DenseRetriever(encoder=copy.deepcopy(base_encoder))

    # 3. ROPG -----------------------------------------------------------------------
    ropg_summary: dict[str, dict[str, Any]] = {}
    trained: dict[str, DenseRetriever] = {}
    want = [n for n in ("ropg-rl", "ropg-kd") if n in needed]
    if want:
        train = splits["train"]
        top_l = config.ropg.top_l
        with stages("ropg_feedback", f"ROPG feedback: {len(train)} inputs x top-{top_l} candidates of the initial "
                                     "dense retriever"):
            items = prepare_ropg_items([builder.query(ex) for ex in train], [ex.profile for ex in train],
                                       initial_retriever=dense, top_l=top_l, feedback=scorer.score_candidates,
                                       examples=train, ids=[ex.id for ex in train])
        for name in want:
            key = "rl" if name == "ropg-rl" else "kd"
            base_cfg: ROPGTrainerConfig = getattr(config.ropg, key)
            tcfg = base_cfg.model_copy(update={
                "top_l": top_l, "progress": progress, "output_dir": base_cfg.output_dir or str(out_dir / name)})
            retriever = DenseRetriever(encoder=copy.deepcopy(base_encoder))
            trainer = (ROPGRLTrainer if key == "rl" else ROPGKDTrainer)(retriever, tcfg)
            with stages(f"ropg_{key}_eval"):
                before = trainer.evaluate(items)
            history = trainer.train(items, resume_from="latest")
            stages.add(f"train_ropg_{key}", trainer.train_result.train_seconds if trainer.train_result else 0.0)
            with stages(f"ropg_{key}_eval"):
                after = trainer.evaluate(items)
            retriever.module.eval()
            trained[name] = retriever
            m = tcfg.eval_metric
            ropg_summary[_DISPLAY[name]] = {"steps": len(history), "final_loss": history[-1]["loss"] if history else None,
                                            "train_items": len(items), "metric": m, "before": before, "after": after}
            stages.log(f"{name}: {len(history)} steps, top-1 EVAL on train {before[f'{m}@top1']:.4f} -> "
                       f"{after[f'{m}@top1']:.4f} (initial {after[f'{m}@initial']:.4f}, "
                       f"oracle {after[f'{m}@oracle']:.4f})")

    # 4. the pool -------------------------------------------------------------------
    members: dict[str, Any] = {"none": NoRetrieval(), "recency": RecencyRetriever(), "bm25": BM25Retriever(),
                               "dense": dense, **trained}
    if "rrf" in config.pool.retrievers:
        members["rrf"] = RRFRetriever([members[m] for m in config.pool.rrf_members], k=config.pool.rrf_k)
    pool_names = list(config.pool.retrievers)
    labels = [_DISPLAY[n] for n in pool_names]

    def pool_outputs(examples: list) -> tuple[list[list[str]], list[list[str]], np.ndarray]:
        queries = [builder.query(ex) for ex in examples]
        item_lists: list[list[list[Any]]] = [[] for _ in examples]
        for n in pool_names:
            ranked = members[n].retrieve_batch(queries, [ex.profile for ex in examples], k=config.pool.k)
            for i, row in enumerate(ranked):
                item_lists[i].append([r.item for r in row])
        scored = scorer.score_item_lists(examples, item_lists)
        return scored.prompts, scored.outputs, np.stack(scored.scores)  # (N, R) EVAL

    sets = {**test_sets, **({rspg_split: splits[rspg_split]} if config.rspg.modes else {})}
    pool: dict[str, tuple[list[list[str]], list[list[str]], np.ndarray]] = {}
    with stages("pool_generation"):
        for s, examples in sets.items():
            stages.log(f"pool on {s}: {len(examples)} inputs x {len(pool_names)} retrievers")
            pool[s] = pool_outputs(examples)

    # 5. RSPG -----------------------------------------------------------------------
    chosen: dict[str, dict[str, list[int]]] = {name: {} for name in test_sets}
    selector_summary: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in test_sets}
    for mode in config.rspg.modes:
        label = _SELECTORS[mode]
        prompts, outputs, evals = pool[rspg_split]
        train_items = [RSPGItem(prompts=p, evals=e.tolist(), outputs=o, id=ex.id)
                       for p, o, e, ex in zip(prompts, outputs, evals, splits[rspg_split])]
        enc = selector_encoder if selector_encoder is not None else config.rspg.encoder
        if isinstance(enc, tuple):
            enc = (copy.deepcopy(enc[0]), copy.deepcopy(enc[1]))
        torch.manual_seed(seed)
        selector = RetrieverSelector(enc, mode=mode, max_length=config.rspg.max_length, pooling=config.rspg.pooling,
                                     retriever_names=labels)
        if config.device is not None:
            selector = selector.to(config.device)
        rcfg = config.rspg.trainer.model_copy(update={
            "output_dir": config.rspg.trainer.output_dir or str(out_dir / f"rspg-{mode}"), "progress": progress})
        trainer = RSPGTrainer(selector, rcfg)
        out = trainer.train(train_items)
        stages.add(f"train_rspg_{mode}", out.train_seconds)
        with stages(f"rspg_{mode}_predict"):
            train_success = selection_success_rate(trainer.predict(train_items).argmax(-1).tolist(), evals)
            for name in test_sets:
                t_prompts, t_outputs, t_evals = pool[name]
                items = [RSPGItem(prompts=p, evals=e.tolist(), outputs=o)
                         for p, o, e in zip(t_prompts, t_outputs, t_evals)]
                choice = trainer.predict(items).argmax(-1).tolist()  # (N,)
                chosen[name][label] = choice
                selector_summary[name][label] = {
                    "success_rate": selection_success_rate(choice, t_evals),
                    "selected_eval": selected_performance(choice, t_evals),
                    "chosen": {lab: int(sum(1 for c in choice if c == j)) for j, lab in enumerate(labels)},
                    "train_split": rspg_split, "train_items": len(train_items), "steps": out.global_step,
                    "train_success_rate": train_success,
                }
        if config.save_models:
            selector.save_pretrained(out_dir / f"selector-{mode}")
        stages.log(f"{label}: success rate {selector_summary['test'][label]['success_rate']:.3f} on test")

    # 6. evaluation -----------------------------------------------------------------
    metric = LaMPMetric(task)
    scored: dict[str, TestSetResult] = {}
    oracle: dict[str, dict[str, Any]] = {}
    with stages("scoring"):
        for name, examples in test_sets.items():
            _, t_outputs, t_evals = pool[name]
            predictions = {lab: [o[j] for o in t_outputs] for j, lab in enumerate(labels)}
            predictions.update({lab: [o[c] for o, c in zip(t_outputs, choice)] for lab, choice in chosen[name].items()})
            best = labels[best_single_retriever(t_evals)[0]]  # the paper's baseline: the best single retriever
            scored[name] = score_test_set(
                name, [ex.id for ex in examples], [str(ex.target) for ex in examples], predictions, [metric],
                baseline=best, compare=list(metric.keys), significance_level=config.significance_level, seed=seed,
                inputs=[{"user_id": ex.profile.user_id, "input": ex.input} for ex in examples])
            lower, upper = oracle_bounds(t_evals)
            oracle[name] = {"lower": lower, "upper": upper, "metric": metric.eval.name}

    sizes: dict[str, Any] = {s: len(v) for s, v in splits.items()}
    sizes.update({name: len(v) for name, v in test_sets.items() if name != "test"})
    sizes.update({
        "users": len({ex.profile.user_id for v in splits.values() for ex in v}),
        "mean_profile_items_test": round(float(np.mean([len(ex.profile.items) for ex in splits["test"]])), 2),
        "ropg_train_items": len(splits["train"]) if want else 0,
        "llm_prompts_requested": scorer.requested, "llm_prompts_generated": scorer.generated,
        "llm_cache_entries": len(scorer.cache) if scorer.cache is not None else None,
    })
    data_paths = [data.path] + [p for ts in data.test_sets.values() for p in (ts.path, ts.outputs)]
    results = ROPGResults(
        recipe="ropg", config=config.to_dict(), test_sets=scored, timings=stages.total(), sizes=sizes,
        manifest=run_manifest(config, "ropg", data_paths=data_paths),
        details={"task": task, "eval_metric": metric.eval.name, "metrics": list(metric.keys),
                 "generator": getattr(generator, "model_id", type(generator).__name__),
                 "best_single": {name: ts.baseline for name, ts in scored.items()},
                 "selectors": selector_summary, "oracle": oracle, "ropg": ropg_summary})
    if save:
        results.save(out_dir)
        stages.log(f"done in {results.timings['total_s']:.1f} s; results in {out_dir}")
    return results
