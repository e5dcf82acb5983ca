r"""The questioner-aware recipe: cluster, train dual-tower models and baselines, evaluate, compare.

Zeng et al., "Personalized LLM for Generating Customized Responses to the Same Query from
Different Users" (arXiv:2412.11736).  :func:`run_questioner_recipe` runs:

1. **Data.** Train and test :class:`~personakit.types.ResponseExample` lists carrying
   ``questioner_id``: the built-in sample corpus (no files), the PFG-Questioner task built
   from Persuasion-for-Good (:func:`~personakit.data.build_pfg_questioner_task`), an
   MQDialog-format pair of files (:func:`~personakit.data.read_mqdialog`), or JSON-lines
   example files; optionally a seeded subsample of each; plus any extra named test sets
   (``data.test_sets``).
2. **Question clusters** (§4.1). :class:`~personakit.modules.QuestionClusterer` (k-means
   over MiniLM embeddings of the last questioner turn) fitted on the training questions;
   test questions go to the nearest centre.
3. **Systems.** Each entry of ``systems`` is trained on a fresh copy of the same backbone
   with :class:`~personakit.training.QuestionerTrainer` (same data, prompts, optimiser and
   number of steps), or prompted without training:

   * ``"dual-tower"``: :class:`~personakit.models.questioner.DualTowerResponder` (LoRA on
     the general tower plus the low-rank questioner-specific stream, the contrastive loss
     and multi-view augmentation; ablations through ``settings``: ``rank``,
     ``contrastive_weight: 0``, ``use_clusters: false``, ``num_views: 0``);
   * ``"lora"``: the same model without the specific stream: a plain LoRA fine-tune;
   * ``"persona-prompt"``: the untrained backbone prompted (chat template) with the
     questioner's persona record and the history.

4. **Evaluation** on every test set (:func:`~personakit.recipes.base.score_test_set`):
   ROUGE-1/2/L and BLEU (and any :func:`~personakit.eval.evaluate_texts` metric), each
   system compared with the baseline (default: the LoRA system) by a paired t-test and a
   bootstrap interval; on the main test set also the **questioner diversity**: for the
   first ``diversity_inputs`` test inputs, the responses generated for
   ``diversity_questioners`` different training questioners (their ids for the trained
   systems, their persona records for the prompted one), scored by the mean pairwise
   $1 - \text{ROUGE-L}$ over those responses (0: the questioner changes nothing).
5. **Cost**: parameters added per layer and trainable parameters of each trained
   system, and its mean training step time relative to the ``"lora"`` system measured in
   the same run.

:meth:`QuestionerRecipeResults.save` writes ``results.md``, ``results.json``,
``predictions.jsonl`` and ``manifest.json``; with ``save_models`` each trained model is in
``models/<system>/final`` of the output folder.
"""

from __future__ import annotations

import copy
import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

from personakit.recipes.base import (
    RecipeResults,
    Stages,
    TestSetResult,
    output_dir_of,
    run_manifest,
    score_test_set,
    subsample,
)
from personakit.recipes.questioner.config import QuestionerDataConfig, QuestionerRecipeConfig

__all__ = [
    "PERSONA_PROMPT_SYSTEM",
    "QuestionerRecipeResults",
    "load_questioner_splits",
    "questioner_diversity",
    "run_questioner_recipe",
]

PERSONA_PROMPT_SYSTEM = (
    "You are {agent} in a conversation. Reply to the other person's last message in one or two sentences, "
    "adapting your reply to who they are.\n\nAbout the person you are talking to: {persona}"
)
"""System message of the persona-in-prompt baseline (``{agent}``: the responder's role, ``{persona}``: the
questioner's persona record)."""


# --------------------------------------------------------------------------- results
@dataclass
class QuestionerRecipeResults(RecipeResults):
    """What :func:`run_questioner_recipe` returns (a :class:`~personakit.recipes.base.RecipeResults`).

    ``rows`` / ``predictions`` are those of the main test set (``test_sets["test"]``), whose
    rows carry ``diversity`` beside the text metrics.  The questioner-specific parts are in
    ``details`` (saved in ``results.json``) and shown by :meth:`sections`:

    * ``costs``: ``{system: {"frozen_dtype", "added_params_per_layer", "trainable_params", "step_s",
      "step_time_vs_lora"}}``;
    * ``diversity``: ``{system: {"mean_pairwise_1_minus_rougeL", "inputs", "questioners", "examples"}}``;
    * ``training``: ``{system: {"steps", "seconds", "history"}}``;
    * ``clusters``: ``{"num_clusters", "train_sizes", "test_sizes", "examples"}`` (question clusters).
    """

    title: ClassVar[str] = "Questioner-aware responder"

    @property
    def costs(self) -> dict[str, dict[str, Any]]:
        return self.details.get("costs", {})

    @property
    def diversity(self) -> dict[str, dict[str, Any]]:
        return self.details.get("diversity", {})

    @property
    def training(self) -> dict[str, dict[str, Any]]:
        return self.details.get("training", {})

    @property
    def clusters(self) -> dict[str, Any]:
        return self.details.get("clusters", {})

    def cost_table(self) -> str:
        """``| system | frozen weights | params added per layer | trainable params | step time (s) | vs LoRA |``."""
        lines = ["| system | frozen weights | params added per layer | trainable params | step time (s) | "
                 "step time vs LoRA |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for system, c in self.costs.items():
            vs = c.get("step_time_vs_lora")
            lines.append(f"| {system} | {c.get('frozen_dtype', 'float32')} | {c['added_params_per_layer']:,} | "
                         f"{c['trainable_params']:,} | {c['step_s']:.3f} | {'-' if vs is None else f'{vs:.2f}'} |")
        return "\n".join(lines)

    def cluster_table(self) -> str:
        """``| cluster | train | test | a training question |``."""
        c = self.clusters
        lines = ["| cluster | train | test | a training question |", "| ---: | ---: | ---: | --- |"]
        for k in sorted(c.get("train_sizes", {}), key=int):
            q = (c.get("examples", {}).get(k) or [""])[0].replace("|", "\\|")
            q = q if len(q) <= 80 else q[:77] + "..."
            lines.append(f"| {k} | {c['train_sizes'][k]} | {c.get('test_sizes', {}).get(k, 0)} | {q} |")
        return "\n".join(lines)

    def sections(self) -> list[str]:
        s = self.sizes
        out = []
        if self.diversity:
            out.append("`diversity` (test set only): mean pairwise 1 - ROUGE-L between the responses to the same input "
                       f"under {s.get('diversity_questioners', 0)} different training questioners "
                       f"({s.get('diversity_inputs', 0)} inputs; 0: the questioner changes nothing, which holds by "
                       "construction for LoRA).")
        if self.costs:
            out.append("## Cost (measured side by side in this run)\n\n" + self.cost_table())
        if self.clusters:
            out.append(f"## Question clusters\n\nk-means over the embeddings of the last questioner turn, "
                       f"{self.clusters.get('num_clusters', 0)} clusters (contrastive negatives come from the "
                       "same cluster).\n\n" + self.cluster_table())
        return out


# ----------------------------------------------------------------------------- data
def _builtin_splits() -> dict[str, list[Any]]:
    """The built-in corpus as questioner examples: each dialogue's last agent reply is test, the earlier ones train."""
    from personakit.data import load_builtin_corpus
    from personakit.data.examples import dialogues_to_examples

    examples = dialogues_to_examples(load_builtin_corpus("all"), "agent", persona_from="user",
                                     include_user_persona=True)
    last: dict[str, str] = {}
    for ex in examples:
        last[ex.dialogue_id] = ex.id  # examples come in turn order
    return {"train": [ex for ex in examples if last[ex.dialogue_id] != ex.id],
            "test": [ex for ex in examples if last[ex.dialogue_id] == ex.id]}


def _read_splits(config: QuestionerDataConfig) -> dict[str, list[Any]]:
    """Every split the source gives (``train``, ``test`` and, for pfg, ``dev``), not subsampled."""
    if config.source == "builtin":
        return _builtin_splits()
    if config.source == "pfg":
        from personakit.data.pfg_questioner import build_pfg_questioner_task

        splits = build_pfg_questioner_task(config.path, **config.pfg.to_dict())  # type: ignore[arg-type]
        return {"train": splits["train"], "dev": splits["dev"], "test": splits["test"]}
    if config.source == "mqdialog":
        from personakit.data.mqdialog import read_mqdialog

        return {"train": read_mqdialog(config.train_path), "test": read_mqdialog(config.test_path)}  # type: ignore[arg-type]
    from personakit.augment import load_examples

    return {"train": load_examples(config.train_path), "test": load_examples(config.test_path)}  # type: ignore[arg-type]


def _main_splits(config: QuestionerDataConfig, splits: dict[str, list[Any]], seed: int) -> tuple[list, list]:
    train, test = splits["train"], splits[config.test_split if config.source == "pfg" else "test"]
    if not train or not test:
        raise ValueError(f"data: empty split (train {len(train)}, test {len(test)})")
    return subsample(train, config.max_train, seed), subsample(test, config.max_test, seed + 1)


def load_questioner_splits(config: QuestionerDataConfig, seed: int = 0) -> tuple[list, list]:
    """``(train, test)`` examples for a data config (see :class:`QuestionerDataConfig`), subsampled.

    Example:
        >>> train, test = load_questioner_splits(QuestionerDataConfig(source="builtin", max_test=4))
        >>> len(train), len(test), all(ex.questioner_id for ex in train + test)
        (113, 4, True)
    """
    return _main_splits(config, _read_splits(config), seed)


def _extra_test_sets(config: QuestionerDataConfig, splits: dict[str, list[Any]], seed: int) -> dict[str, list]:
    out = {}
    for i, (name, ts) in enumerate(config.test_sets.items()):
        if ts.split is not None:
            examples = list(splits.get(ts.split, []))
        elif ts.format == "mqdialog":
            from personakit.data.mqdialog import read_mqdialog

            examples = read_mqdialog(ts.path)  # type: ignore[arg-type]
        else:
            from personakit.augment import load_examples

            examples = load_examples(ts.path)  # type: ignore[arg-type]
        if not examples:
            raise ValueError(f"data.test_sets.{name}: no examples ({ts.path or 'split ' + str(ts.split)})")
        out[name] = subsample(examples, ts.max_examples, seed + 2 + i)
    return out


# ----------------------------------------------------------------------------- parts
def questioner_diversity(responses: Sequence[Sequence[str]]) -> float:
    r"""Mean over inputs of the mean pairwise $1 - \text{ROUGE-L}_F$ between the responses to one input.

    Args:
        responses: per input, the responses generated for different questioners.

    Example:
        >>> questioner_diversity([["the same", "the same"], ["yes please", "no thanks"]])
        0.5
    """
    from personakit.eval import evaluate_texts

    per_input = []
    for group in responses:
        pairs = list(itertools.combinations(group, 2))
        if not pairs:
            continue
        scores = [1.0 - float(evaluate_texts([a], [b], metrics=["rouge"])["rougeL"]) if (a.strip() or b.strip())
                  else 0.0 for a, b in pairs]
        per_input.append(sum(scores) / len(scores))
    return sum(per_input) / len(per_input) if per_input else float("nan")


def _persona_prompt(example: Any, questioner_persona: Any, max_turns: Optional[int]) -> list[dict[str, str]]:
    persona = questioner_persona.to_text() if questioner_persona is not None else ""
    msgs = [{"role": "system", "content": PERSONA_PROMPT_SYSTEM.format(agent=example.agent, persona=persona or "(unknown)")}]
    history = example.history if max_turns is None else example.history[-max_turns:]
    for turn in history:
        role = "assistant" if turn.speaker == example.agent else "user"
        if msgs[-1]["role"] == role:
            msgs[-1]["content"] += " " + turn.text
        elif len(msgs) == 1 and role == "assistant":
            continue  # the chat starts with a user message
        else:
            msgs.append({"role": role, "content": turn.text})
    return msgs


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "system"


def _inputs(examples: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"questioner_id": ex.questioner_id, "responder_id": ex.responder_id,
             "question": ex.history[-1].text if ex.history else ""} for ex in examples]


def _cluster_details(train: Sequence[Any], test: Sequence[Any]) -> dict[str, Any]:
    def sizes(examples: Sequence[Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for ex in examples:
            k = str(ex.metadata["question_cluster"])
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: int(kv[0])))

    examples: dict[str, list[str]] = {}
    for ex in train:
        group = examples.setdefault(str(ex.metadata["question_cluster"]), [])
        if len(group) < 3:
            group.append(ex.history[-1].text)
    return {"num_clusters": len(sizes(train)), "train_sizes": sizes(train), "test_sizes": sizes(test),
            "examples": examples}


def run_questioner_recipe(config: QuestionerRecipeConfig, *, backbone: Any = None, clusterer_encoder: Any = None,
                          progress: bool = True, save: bool = True) -> QuestionerRecipeResults:
    """Run the recipe (see the module docstring); with ``save``, write the results to the output folder.

    Args:
        config: the recipe config (:func:`~personakit.recipes.base.load_recipe_config`).
        backbone: ``None`` (load ``config.backbone``), a ``(model, tokenizer)`` pair (each system
            gets a deep copy), or a function returning a fresh pair per call.
        clusterer_encoder: replaces the clusterer's sentence encoder (a callable ``texts -> [N, D]``).
        progress: print the stages, and the training progress bars (unless ``training.progress`` is off).
        save: write ``results.md``, ``results.json``, ``predictions.jsonl`` and ``manifest.json`` to
            the output folder (``config.output_dir``, default ``runs/questioner/<timestamp>``).

    Returns:
        The results; ``results.output_dir`` is the folder written when ``save``.
    """
    import torch

    from personakit.models.questioner import DualTowerResponder
    from personakit.modules.question_clusterer import QuestionClusterer
    from personakit.training.questioner import QuestionerTrainingConfig, QuestionerTrainer

    stages = Stages("questioner", progress)
    out_dir = output_dir_of(config)
    manifest = run_manifest(config, "questioner", data_paths=[
        config.data.path, config.data.train_path, config.data.test_path,
        *[ts.path for ts in config.data.test_sets.values()]])

    with stages("data", f"reading the {config.data.source} data"):
        splits = _read_splits(config.data)
        train, test = _main_splits(config.data, splits, config.seed)
        extra = _extra_test_sets(config.data, splits, config.seed)
    missing = [ex.id for ex in train if not ex.questioner_id]
    if missing:
        raise ValueError(f"training example {missing[0]!r} has no questioner_id ({len(missing)} such examples)")
    questioners = sorted({ex.questioner_id for ex in train})
    stages.log(f"{len(train)} training and {len(test)} test examples, {len(questioners)} questioners"
               + "".join(f", test set {name}: {len(exs)}" for name, exs in extra.items()))

    with stages("cluster", f"clustering the questions ({config.clusterer.num_clusters} clusters, "
                           f"encoder {config.clusterer.encoder if clusterer_encoder is None else 'given'})"):
        ccfg = config.clusterer.to_dict()
        clusterer = QuestionClusterer(**{**ccfg, "encoder": clusterer_encoder if clusterer_encoder is not None
                                         else ccfg["encoder"]})
        train = clusterer.assign(train, fit=True)
        test = clusterer.assign(test, fit=False)
        extra = {name: clusterer.assign(exs, fit=False) for name, exs in extra.items()}
    clusters = _cluster_details(train, test)
    stages.log(f"{clusters['num_clusters']} question clusters, training sizes {list(clusters['train_sizes'].values())}")

    if callable(backbone) and not hasattr(backbone, "parameters"):
        make_backbone = backbone
    else:
        if backbone is None:
            from personakit.backbones import load_causal_lm

            with stages("load_backbone", f"loading the backbone {config.backbone}"):
                loaded = load_causal_lm(config.backbone)
        else:
            loaded = backbone
        model0, tok0 = loaded
        make_backbone = lambda: (copy.deepcopy(model0), tok0)  # noqa: E731

    from personakit.backbones.precision import cast_frozen, resolve_dtype

    frozen_dtype = resolve_dtype(config.dtype, config.device)
    stages.log(f"frozen backbone weights in {str(frozen_dtype).removeprefix('torch.')} (dtype: {config.dtype})")
    test_sets = {"test": test, **extra}
    rng = random.Random(config.seed)
    n_div = min(config.eval.diversity_inputs, len(test))
    div_questioners = rng.sample(questioners, min(config.eval.diversity_questioners, len(questioners)))
    measure_diversity = n_div > 0 and len(div_questioners) >= 2
    persona_of = {}
    for ex in train:
        persona_of.setdefault(ex.questioner_id, ex.user_persona if ex.user_persona is not None else ex.persona)
    div_inputs = test[:n_div]

    predictions: dict[str, dict[str, list[str]]] = {name: {} for name in test_sets}
    diversity: dict[str, dict[str, Any]] = {}
    training: dict[str, dict[str, Any]] = {}
    costs: dict[str, dict[str, Any]] = {}
    gen_kwargs = {"max_new_tokens": config.training.max_new_tokens, "do_sample": False,
                  **config.training.generation_options}
    n_predict = sum(len(exs) for exs in test_sets.values())
    for i, spec in enumerate(config.systems, 1):
        label, slug = spec.label, _slug(spec.label)
        div_groups: list[list[str]] = []
        with stages(slug, f"system {i}/{len(config.systems)}: {label} ({spec.kind})"):
            torch.manual_seed(config.seed)
            bb, tok = make_backbone()
            if spec.kind == "persona-prompt":
                from personakit.llm import GenerationSettings, HFGenerator

                if frozen_dtype != torch.float32:
                    cast_frozen(bb.requires_grad_(False), frozen_dtype)
                gen = HFGenerator(bb.eval(), tok, batch_size=config.eval.prompt_batch_size)
                settings = GenerationSettings(max_new_tokens=config.training.max_new_tokens, stop=["\n"])
                stages.log(f"{label}: generating {n_predict} responses")
                for name, exs in test_sets.items():
                    prompts = [_persona_prompt(ex, ex.user_persona if ex.user_persona is not None else ex.persona,
                                               config.inputs.max_history_turns) for ex in exs]
                    predictions[name][label] = gen.generate(prompts, settings, progress=progress)
                if measure_diversity:
                    stages.log(f"{label}: diversity, {n_div} inputs x {len(div_questioners)} questioners")
                    dprompts = [_persona_prompt(ex, persona_of[q], config.inputs.max_history_turns)
                                for ex in div_inputs for q in div_questioners]
                    flat = gen.generate(dprompts, settings, progress=progress)
                    k = len(div_questioners)
                    div_groups = [flat[j * k:(j + 1) * k] for j in range(n_div)]
                del gen
            else:
                model = DualTowerResponder.from_backbone(bb, tok, questioners=questioners,
                                                         use_specific=spec.kind == "dual-tower", **dict(spec.settings))
                if frozen_dtype != torch.float32:
                    cast_frozen(model, frozen_dtype)  # the frozen base in bf16; adapters and specific encoders fp32
                collator = model.make_collator(**config.inputs.to_dict())
                update: dict[str, Any] = {"progress": progress and config.training.progress,
                                          "eval_at_epoch_end": False, "eval_steps": None, "output_dir": None}
                if config.save_checkpoints:
                    update["output_dir"] = str(out_dir / "models" / slug)
                if config.device == "cpu":
                    update["use_cpu"] = True
                tcfg = QuestionerTrainingConfig.from_dict({**config.training.to_dict(), **update}, source="training")
                trainer = QuestionerTrainer(model, tcfg, train_examples=train, collator=collator)
                plan = trainer.plan()
                stages.log(f"{label}: training {plan.total_steps} steps of {tcfg.batch_size}")
                result = trainer.train(resume_from="latest" if config.save_checkpoints else None)
                stages.add(f"train_{slug}", result.train_seconds)
                training[label] = {"steps": result.global_step, "seconds": result.train_seconds,
                                   "history": result.history}
                costs[label] = {"frozen_dtype": str(frozen_dtype).removeprefix("torch."),
                                "added_params_per_layer": model.added_parameters_per_layer(),
                                "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                                "step_s": result.train_seconds / max(1, result.global_step)}
                stages.log(f"{label}: trained in {result.train_seconds:.0f} s; generating {n_predict} responses")
                for name, exs in test_sets.items():
                    predictions[name][label] = trainer.predict(exs)
                if spec.kind == "dual-tower" and measure_diversity:
                    stages.log(f"{label}: diversity, {n_div} inputs x {len(div_questioners)} questioners")
                    model.eval()
                    per_q = {q: model.respond(div_inputs, batch_size=tcfg.eval_batch_size, questioner_id=q,
                                              **gen_kwargs) for q in div_questioners}
                    div_groups = [[per_q[q][j] for q in div_questioners] for j in range(n_div)]
                elif measure_diversity:  # the LoRA baseline cannot see the questioner
                    div_groups = [[p] * len(div_questioners) for p in predictions["test"][label][:n_div]]
                if config.save_models:
                    path = out_dir / "models" / slug / "final"
                    trainer.save_model(path)
                    stages.log(f"{label}: model saved to {path}")
                del trainer, model
            if div_groups:
                d = questioner_diversity(div_groups)
                diversity[label] = {"mean_pairwise_1_minus_rougeL": d, "inputs": n_div,
                                    "questioners": div_questioners, "examples": div_groups[:3]}
            del bb
    lora = next((s.label for s in config.systems if s.kind == "lora"), None)
    base = costs.get(lora, {}).get("step_s") if lora is not None else None
    for c in costs.values():
        c["step_time_vs_lora"] = c["step_s"] / base if base else None

    baseline = config.eval.baseline or lora
    with stages("score", f"scoring {len(test_sets)} test set(s)"
                         + (f", each system against {baseline}" if baseline and len(config.systems) > 1 else "")):
        results_sets: dict[str, TestSetResult] = {}
        for name, exs in test_sets.items():
            extra_rows = ({label: {"diversity": d["mean_pairwise_1_minus_rougeL"]} for label, d in diversity.items()}
                          if name == "test" else None)
            results_sets[name] = score_test_set(
                name, [ex.id for ex in exs], [ex.response for ex in exs], predictions[name],
                list(config.eval.metrics), baseline=baseline, compare=list(config.eval.compare) if baseline else (),
                significance_level=config.eval.significance_level, seed=config.seed, extra_rows=extra_rows,
                inputs=_inputs(exs))
    for label, row in results_sets["test"].rows.items():
        stages.log(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                            if isinstance(v, float) and k in ("rougeL", "bleu", "diversity")))

    results = QuestionerRecipeResults(
        recipe="questioner", config=config.to_dict(), test_sets=results_sets, timings=stages.total(),
        sizes={"train": len(train), "test": len(test), "questioners": len(questioners),
               "clusters": clusters["num_clusters"], "diversity_inputs": n_div if measure_diversity else 0,
               "diversity_questioners": len(div_questioners)},
        manifest=manifest,
        details={"costs": costs, "diversity": diversity, "training": training, "clusters": clusters},
    )
    if save:
        results.save(out_dir)
        stages.log(f"results written to {out_dir}")
    return results
