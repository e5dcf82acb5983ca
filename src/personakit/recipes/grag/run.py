"""The GRAG recipe's run function, results and parts; see :mod:`personakit.recipes.grag`."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from personakit.backbones.peft import LoraSettings
from personakit.recipes.base import (
    RecipeResults,
    Stages,
    TestSetResult,
    output_dir_of,
    run_manifest,
    score_test_set,
    subsample,
)
from personakit.recipes.grag.config import (
    MODEL_ROW_METRICS,
    GRAGDataConfig,
    GRAGModelSpec,
    GRAGRecipeConfig,
    icl_label,
)
from personakit.training.grag import GRAGTrainingConfig

__all__ = [
    "GRAGRecipeResults",
    "build_recipe_model",
    "load_grag_splits",
    "load_grag_test_sets",
    "run_grag_recipe",
]

BackboneFactory = Callable[[], tuple[Any, Any]]

_FORMAT_TEMPLATES = {"spc_jsonl": "spc", "spc_csv": "spc", "convai2": "convai2", "empathetic_dialogues": "empathetic",
                     "persuasion_for_good": "pfg"}


# ----------------------------------------------------------------------------- data
def _read_examples(path_text: str, where: str, source: str, fmt: Optional[str], agent: Optional[str]) -> list:
    from personakit.data import dialogues_to_examples

    path = Path(path_text)
    if not path.exists():
        raise FileNotFoundError(f"{where} {path}: no such file")
    if source != "dataset":
        from personakit.augment import load_examples

        return load_examples(path)
    from personakit.data import read_dataset

    return dialogues_to_examples(read_dataset(path, fmt), agent=str(agent))


def _trim(data: GRAGDataConfig, examples: list) -> list:
    if data.max_history_turns is None:
        return examples
    n = data.max_history_turns
    return [ex.model_copy(update={"history": ex.history[-n:]}) for ex in examples]


def load_grag_splits(data: GRAGDataConfig, seed: int = 0) -> tuple[list, list]:
    """``(train, test)`` :class:`~personakit.types.ResponseExample` lists per the data config (seeded subsamples).

    Raises:
        FileNotFoundError: a data file is missing.
        ValueError: a split is empty.
    """
    if data.source == "builtin":
        from personakit.data import dialogues_to_examples, load_builtin_corpus

        train = dialogues_to_examples(load_builtin_corpus("train"), agent="agent")
        test = dialogues_to_examples(load_builtin_corpus("test"), agent="agent")
    else:
        train = _read_examples(str(data.train_path), "data.train_path", data.source, data.format, data.agent)
        test = _read_examples(str(data.test_path), "data.test_path", data.source, data.format, data.agent)
    train = subsample(_trim(data, train), data.max_train, seed)
    test = subsample(_trim(data, test), data.max_test, seed + 1)
    for name, split in (("train", train), ("test", test)):
        if not split:
            raise ValueError(f"data: the {name} split has no examples")
    return train, test


def load_grag_test_sets(data: GRAGDataConfig, seed: int = 0) -> dict[str, list]:
    """The extra named test sets of ``data.test_sets`` (``{name: examples}``, seeded subsamples of ``max_test``).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a test set is empty.
    """
    out: dict[str, list] = {}
    for i, (name, ts) in enumerate(data.test_sets.items()):
        source = ts.source or ("dataset" if data.source == "dataset" else "examples")
        examples = _read_examples(ts.path, f"data.test_sets.{name}", source, ts.format or data.format,
                                  ts.agent or data.agent)
        out[name] = subsample(_trim(data, examples), data.max_test, seed + 2 + i)
        if not out[name]:
            raise ValueError(f"data.test_sets.{name}: no examples in {ts.path}")
    return out


def _dataset_name(data: GRAGDataConfig) -> str:
    if data.source == "dataset" and data.format in _FORMAT_TEMPLATES:
        return _FORMAT_TEMPLATES[data.format]
    return "builtin"


def _data_paths(data: GRAGDataConfig) -> list[Optional[str]]:
    return [data.train_path, data.test_path, *(ts.path for ts in data.test_sets.values())]


# ----------------------------------------------------------------------------- results
@dataclass
class GRAGRecipeResults(RecipeResults):
    """What :func:`run_grag_recipe` returns (and :meth:`save` writes).

    Besides :class:`~personakit.recipes.base.RecipeResults` (``test_sets`` with the main
    one named ``"test"`` first, ``rows`` / ``predictions`` / ``systems`` of it, ``timings``,
    ``sizes``, ``manifest``, ``details``):

    Attributes:
        examples: ``{test set: [ResponseExample]}``, augmented (with ``generic_response``).
        training: ``{system: {"steps", "seconds", "final_loss", "history", "test_losses"}}`` per
            trained model.

    ``rows[system]["bpc"]`` is ``None`` for the prompted baseline (no likelihood here).
    ``test_sets[name].significance[system][metric]`` is the paired comparison
    (:class:`~personakit.eval.PairedComparison` fields: ``mean_difference``, ``t``,
    ``p_value``, ``ci_low``, ``ci_high``, ``significant``...) against the baseline.
    ``sizes``: ``train``, ``test`` (and ``test_<name>``), ``generated``, ``cached``,
    ``empty_generic`` (first replies that cleaned up to nothing), ``retried``,
    ``fallback_generic`` (replaced by the fallback), ``empty_in_training`` (left empty because
    ``augment.empty_fallback`` is ``None``; ``0`` otherwise).
    """

    title: ClassVar[str] = "GRAG recipe results"

    examples: dict[str, list] = field(default_factory=dict)
    training: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def test_examples(self) -> list:
        """The main test set's examples (augmented)."""
        return next(iter(self.examples.values())) if self.examples else []

    @property
    def significance(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{system: {metric: comparison}}`` against the baseline on the main test set."""
        return self.primary.significance

    def sections(self) -> list[str]:
        rows = [row for ts in self.test_sets.values() for row in ts.rows.values()]
        notes = []
        if any(row.get("bpc", 0) is None for row in rows):
            notes.append("`bpc`: bits per character of the references under each trained model (lower is better); "
                         "`–` for the prompted baseline.")
        if any("persona_use" in row for row in rows):
            notes.append("`persona_use` = `bpc_shuffled` − `bpc`: the BPC with every test example given another "
                         "dialogue's persona minus the BPC with its own (above 0: the model uses the persona).")
        if any("distinct" in row for row in rows):
            notes.append("`distinct`: share of distinct replies (1 = every reply differs); `multi_turn`: share of "
                         "replies that run past one turn; `empty`: share of empty replies.")
        s = self.sizes
        fallback = self.config.get("augment", {}).get("empty_fallback")
        notes.append(f"Generic responses: {s.get('generated', 0)} generated, {s.get('cached', 0)} from the cache, "
                     f"{s.get('empty_generic', 0)} empty at first ({s.get('retried', 0)} retried, "
                     f"{s.get('fallback_generic', 0)} replaced by {fallback!r}); "
                     + (f"{s['empty_in_training']} left empty (`augment.empty_fallback` is None)."
                        if s.get("empty_in_training") else "none reached training empty."))
        if self.training:
            notes.append("Training: " + "; ".join(
                f"{label} {t['steps']} steps, {t['seconds']:.0f} s, final loss "
                + ("nan" if t.get("final_loss") is None else f"{t['final_loss']:.3f}")
                for label, t in self.training.items()) + ".")
        return ["\n\n".join(notes)]


# ----------------------------------------------------------------------------- parts
def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "model"


def _backbone_factory(config: GRAGRecipeConfig, backbone: Any) -> BackboneFactory:
    """A function returning a fresh ``(model, tokenizer)`` per call."""
    if callable(backbone) and not hasattr(backbone, "parameters"):
        return backbone  # type: ignore[no-any-return]
    if backbone is None:
        from personakit.models.grag.base import load_backbone

        loaded = load_backbone(config.backbone)
    elif isinstance(backbone, tuple) and len(backbone) == 2:
        loaded = backbone
    else:
        raise TypeError("run_grag_recipe: backbone must be None, a (model, tokenizer) pair or a function returning one")
    model, tokenizer = loaded
    return lambda: (copy.deepcopy(model), tokenizer)


def build_recipe_model(spec: GRAGModelSpec, backbone: Any, tokenizer: Any, lora: Any = "auto", dtype: Any = "auto",
                       device: Optional[str] = None) -> tuple[Any, str]:
    """Build one recipe model: LoRA by the recipe's rule, the frozen weights in the resolved dtype.

    Returns:
        ``(model, dtype name of the frozen weights)``.
    """
    from personakit.backbones.peft import unwrap_peft
    from personakit.backbones.precision import cast_frozen, resolve_dtype
    from personakit.models.grag import build_grag_model

    settings = spec.model_settings()
    if "lora" not in settings:
        base_config = unwrap_peft(backbone).config
        encdec = bool(getattr(base_config, "is_encoder_decoder", False)) or base_config.model_type == "encoder-decoder"
        if lora == "auto":
            lora = None if encdec else LoraSettings()
        if lora is not None:
            settings["lora"] = lora.model_dump() if isinstance(lora, LoraSettings) else lora
    model = build_grag_model(spec.kind, backbone, tokenizer, **settings)
    frozen = resolve_dtype("float32")
    if settings.get("lora") is not None:
        frozen = resolve_dtype(dtype, device)
        if frozen != resolve_dtype("float32"):
            cast_frozen(model, frozen)
    return model, str(frozen).removeprefix("torch.")


def _augment(config: GRAGRecipeConfig, generator: Any, cache: Any, splits: list[list], stages: Stages,
             progress: bool) -> tuple[list[list], dict[str, int]]:
    """Every split's examples with R_G (the main and extra test sets alike), and the counts."""
    from personakit.augment import GenericResponseAugmenter, default_template
    from personakit.llm import GenerationSettings

    aug = config.augment
    both = [ex for split in splits for ex in split]
    todo = [i for i, ex in enumerate(both) if aug.overwrite or ex.generic_response is None]
    stats = {"generated": 0, "cached": 0}
    if todo:
        if not aug.enabled:
            ex = both[todo[0]]
            raise ValueError(f"augment.enabled is false but example {ex.id!r} has no generic_response "
                             "(PreSFT(TST), PreGRAG and PostGRAG need one)")
        template = aug.template if aug.template is not None else default_template(_dataset_name(config.data),
                                                                                   aug.model)
        augmenter = GenericResponseAugmenter(
            generator, template=template,
            settings=GenerationSettings(max_new_tokens=aug.max_new_tokens, stop=list(aug.stop)),
            cache=cache, batch_size=aug.batch_size, max_history_turns=aug.max_history_turns,
            empty_retries=aug.empty_retries, fallback=aug.empty_fallback)
        stages.log(f"augmenting {len(todo)} examples with {getattr(generator, 'model_id', type(generator).__name__)}"
                   f" (template {augmenter.template.name!r})")
        done = augmenter.augment([both[i] for i in todo], progress=progress)
        for i, ex in zip(todo, done):
            both[i] = ex
        st = augmenter.last_stats
        if st is not None:
            stats = {"generated": st.generated, "cached": st.cached, "empty_generic": st.first_empty,
                     "retried": st.retried, "fallback_generic": st.fallback}
    empty = [i for i, ex in enumerate(both) if ex.generic_response is not None and not ex.generic_response.strip()]
    augmented = set(todo)  # the augmenter counted its own empty replies already
    stats["empty_generic"] = stats.get("empty_generic", 0) + sum(i not in augmented for i in empty)  # given data
    stats.setdefault("retried", 0)
    stats["fallback_generic"] = stats.get("fallback_generic", 0) + (len(empty) if aug.empty_fallback else 0)
    stats["empty_in_training"] = 0 if aug.empty_fallback else len(empty)  # left empty: no (or an empty) fallback
    if empty and aug.empty_fallback is not None:
        for i in empty:
            both[i] = both[i].model_copy(update={"generic_response": aug.empty_fallback})
    out, start = [], 0
    for split in splits:
        out.append(both[start:start + len(split)])
        start += len(split)
    return out, stats


def _train_config(config: GRAGRecipeConfig, spec: GRAGModelSpec, out_dir: Path, progress: bool) -> GRAGTrainingConfig:
    update: dict[str, Any] = {
        "eval_at_epoch_end": False, "eval_steps": None, "progress": progress and config.training.progress,
        "eval_metrics": ["bpc", "loss"] if set(MODEL_ROW_METRICS) & set(config.eval.metrics) else ["loss"],
        "eval_metric_options": {},
        "output_dir": str(out_dir / "models" / _slug(spec.label)) if config.save_checkpoints else None,
    }
    if config.device == "cpu":
        update["use_cpu"] = True
    return GRAGTrainingConfig.from_dict({**config.training.to_dict(), **update}, source="training")


def _inputs(examples: list) -> list[dict[str, Any]]:
    return [{"persona": ex.persona.to_text(), "last_user_turn": ex.history[-1].text if ex.history else "",
             "generic_response": ex.generic_response} for ex in examples]


def run_grag_recipe(config: GRAGRecipeConfig, *, generator: Any = None, backbone: Any = None,
                    progress: bool = True, save: bool = True) -> GRAGRecipeResults:
    r"""Run the GRAG recipe (see :mod:`personakit.recipes.grag`) and write its results folder.

    Args:
        config: the recipe config.
        generator: the generic LLM (a :class:`~personakit.llm.TextGenerator`); default an
            :class:`~personakit.llm.HFGenerator` over ``config.augment.model``, loaded only
            when an example lacks a generic response or the ICL row is on.
        backbone: ``None`` (load ``config.backbone``), a ``(model, tokenizer)`` pair (each
            model trains on a deep copy), or a function returning a fresh pair per call.
        progress: print the stages and show progress bars.
        save: write ``results.md``, ``results.json``, ``predictions.jsonl``, ``manifest.json``
            (and the augmented examples) to the output folder (``config.output_dir``, or a new
            ``runs/grag/<timestamp>``).

    Returns:
        :class:`GRAGRecipeResults`; ``results.rows`` is ``{system: {metric: value}}`` on the main test set.
    """
    import torch

    from personakit.eval.controls import shuffle_personas
    from personakit.llm import ResponseCache
    from personakit.training.grag import GRAGTrainer

    stages = Stages("grag", progress)
    out_dir = output_dir_of(config)
    manifest = run_manifest(config, "grag", data_paths=_data_paths(config.data))

    # 1. data: the training split, the main test set and the extra named ones
    with stages("data"):
        train, test = load_grag_splits(config.data, seed=config.seed)
        extra = load_grag_test_sets(config.data, seed=config.seed)
    tests: dict[str, list] = {"test": test, **extra}
    stages.log(f"{len(train)} training examples; test sets: "
               + ", ".join(f"{name} {len(exs)}" for name, exs in tests.items()) + f" ({config.data.source})")

    # 2. the generic LLM (augmentation and ICL), behind one response cache
    cache = None
    if config.augment.cache:
        cache = ResponseCache(Path(config.augment.cache_path) if config.augment.cache_path else out_dir / "llm_cache.jsonl")
    needs_llm = config.icl.enabled or any(config.augment.overwrite or ex.generic_response is None
                                          for split in (train, *tests.values()) for ex in split)
    if generator is None and needs_llm:
        from personakit.llm import HFGenerator

        with stages("llm_load", f"loading the generic LLM {config.augment.model}"):
            generator = HFGenerator.from_pretrained(config.augment.model, batch_size=config.augment.batch_size,
                                                    dtype=config.augment.dtype, device=config.device)
    with stages("augment"):
        augmented, aug_stats = _augment(config, generator, cache, [train, *tests.values()], stages, progress)
    train, tests = augmented[0], dict(zip(tests, augmented[1:]))
    if config.augment.enabled and save:
        from personakit.augment import save_examples

        save_examples(out_dir / "augmented_train.jsonl", train)
        for name, exs in tests.items():
            save_examples(out_dir / f"augmented_{name}.jsonl", exs)

    # 3. training, then each model's replies and likelihoods on every test set
    predictions: dict[str, dict[str, list[str]]] = {name: {} for name in tests}
    model_eval: dict[str, dict[str, dict[str, float]]] = {name: {} for name in tests}
    training: dict[str, dict[str, Any]] = {}
    shuffled: dict[str, list] = {}
    if "persona_use" in config.eval.metrics:
        for name, exs in tests.items():
            try:
                shuffled[name] = shuffle_personas(exs, seed=config.seed)
            except ValueError as err:  # e.g. a test set from one dialogue
                stages.log(f"persona use not measured on {name}: {err}")
    make_backbone = _backbone_factory(config, backbone)
    precision: dict[str, str] = {}
    for spec in config.models:
        torch.manual_seed(config.seed)
        bb, tok = make_backbone()
        model, precision[spec.label] = build_recipe_model(spec, bb, tok, lora=config.lora, dtype=config.dtype,
                                                          device=config.device)
        collator = model.make_collator(**config.inputs.to_dict())
        tcfg = _train_config(config, spec, out_dir, progress)
        trainer = GRAGTrainer(model, tcfg, train_examples=train, collator=collator)
        stages.log(f"training {spec.label}: {trainer.plan().total_steps} steps of {tcfg.batch_size}")
        result = trainer.train(resume_from="latest" if config.save_checkpoints else None)
        stages.add("train", result.train_seconds)
        last = result.history[-1] if result.history else {}
        training[spec.label] = {"steps": result.global_step, "seconds": result.train_seconds,
                                "final_loss": last.get("loss"), "history": result.history}
        with stages("predict"):
            for name, exs in tests.items():
                predictions[name][spec.label] = trainer.predict(exs)
                model_eval[name][spec.label] = trainer.evaluate(exs)  # bpc and teacher-forced losses
                if name in shuffled:
                    model_eval[name][spec.label]["bpc_shuffled"] = trainer.evaluate(shuffled[name])["bpc"]
        training[spec.label]["test_losses"] = {k: v for k, v in model_eval["test"][spec.label].items()
                                               if not k.startswith("bpc")}
        if config.save_models:
            trainer.save_model(out_dir / "models" / _slug(spec.label) / "final")
        stages.log(f"{spec.label}: {result.train_seconds:.0f} s, final loss {last.get('loss', float('nan')):.3f}, "
                   f"e.g. {predictions['test'][spec.label][0]!r}")
        del trainer, model, bb

    # 4. ICL(Hist)
    if config.icl.enabled:
        from personakit.llm import CachedGenerator, GenerationSettings
        from personakit.models.icl import ICLResponder

        with stages("icl"):
            responder = ICLResponder(
                CachedGenerator(generator, cache) if cache is not None else generator, mode="hist",
                n_shot=config.icl.n_shot, shot_pool=train, seed=config.seed,
                max_history_turns=config.icl.max_history_turns,
                settings=GenerationSettings(max_new_tokens=config.icl.max_new_tokens, stop=["\n"]))
            for name, exs in tests.items():
                stages.log(f"ICL(Hist) {config.icl.n_shot}-shot on {len(exs)} examples of {name}")
                predictions[name][icl_label(config.icl)] = responder.respond(exs, batch_size=config.icl.batch_size,
                                                                             progress=progress)

    # 5. scoring and the paired comparison against the baseline, per test set
    text_metrics = [m for m in config.eval.metrics if m not in MODEL_ROW_METRICS]
    options = {"bertscore": {"model": config.eval.bertscore_model}} if "bertscore" in text_metrics else {}
    key = config.eval.significance_metric
    scored: dict[str, TestSetResult] = {}
    with stages("eval", f"scoring {len(predictions['test'])} systems: {', '.join(config.eval.metrics)}"):
        for name, exs in tests.items():
            preds = predictions[name]
            extra_rows: dict[str, dict[str, Any]] = {}
            for system in preds:
                own = model_eval[name].get(system, {})
                row: dict[str, Any] = {}
                if "bpc" in config.eval.metrics:
                    row["bpc"] = own.get("bpc")
                if "persona_use" in config.eval.metrics:
                    row["bpc_shuffled"] = own.get("bpc_shuffled")
                    row["persona_use"] = (own["bpc_shuffled"] - own["bpc"]) if "bpc_shuffled" in own else None
                extra_rows[system] = row
            compare = [key] if key is not None and len(preds) > 1 and len(exs) > 1 else []
            baseline = (config.eval.baseline or next(iter(preds))) if compare else None
            scored[name] = score_test_set(
                name, [ex.id for ex in exs], [ex.response for ex in exs], preds, text_metrics,
                baseline=baseline, compare=compare, significance_level=config.eval.significance_level,
                seed=config.seed, extra_rows=extra_rows, inputs=_inputs(exs), metric_options=options)

    sizes: dict[str, Any] = {"train": len(train), "test": len(tests["test"]),
                             **{f"test_{name}": len(exs) for name, exs in tests.items() if name != "test"},
                             **{k: aug_stats[k] for k in ("generated", "cached", "empty_generic", "retried",
                                                          "fallback_generic")}}
    results = GRAGRecipeResults(
        recipe="grag", config=config.to_dict(), test_sets=scored, timings=stages.total(), sizes=sizes,
        manifest=manifest, examples=tests, training=training,
        details={"training": training, "precision": precision,
                 "generator": getattr(generator, "model_id", None) if generator is not None else None},
    )
    if save:
        results.save(out_dir)
        stages.log(f"results written to {out_dir}")
    return results
