r"""Run the retrieved-persona recipe: retrievers and the RSPG selector choose the persona a GRAG model reads.

The two method families meet in one loop:

1. **Data.** One :class:`~personakit.types.ResponseExample` per turn of the responding
   speaker (Synthetic-Persona-Chat ``train`` / ``valid`` / ``test`` files, or the built-in
   corpus). Each example's persona facts (and, with ``profile.include_own_turns``, the
   responder's earlier turns) are its *profile*; the last ``profile.query_turns`` history
   turns are the *query*.
2. **GRAG model.** PreSFT(Hist) (SmolLM2-135M-Instruct + LoRA, frozen weights in bf16 where
   the hardware has a fast bf16 path) trained with :class:`~personakit.training.GRAGTrainer`
   on the training examples with their **full** persona.
3. **Persona sources** (ROPG/RSPG family, :mod:`personakit.retrieval`): per test example,
   the full persona, none, ``k`` random items, or the top ``k`` items for the query by
   BM25, a dense encoder (MiniLM) or their reciprocal-rank fusion.
4. **RSPG selector.** On the dev split, every candidate source's persona is fed to the
   trained GRAG model and the log-likelihood of the reference response is the reward
   $\mathrm{EVAL}_i$ (the cross-family link: the GRAG model supplies RSPG's feedback).
   :class:`~personakit.training.RSPGTrainer` fits a
   :class:`~personakit.retrieval.RetrieverSelector` (RSPG-Pre: it reads
   ``persona: ... query: ...`` per candidate, never the response) to
   $\operatorname{softmax}(\mathrm{EVAL}/\tau)$; at test time it picks one source per example.
   The *oracle* row picks the source with the highest likelihood of the test reference (an
   upper bound of any selector over these candidates).
5. **Scoring** (:func:`~personakit.recipes.base.score_test_set`): ROUGE-1/2/L and BLEU of the
   greedy responses, bits per character of the references, the mean number of persona
   items shown, paired tests of every row against the full-persona row, and a paired
   comparison of the reference log-likelihoods; the selector's choice shares and success rate.

Every distinct (example, persona) pair is generated and scored once, so rows that show the
same items (e.g. BM25 and dense picking the same two facts) share their response.

Example:
    >>> from personakit.recipes import load_recipe_config  # doctest: +SKIP
    >>> results = run_retrieved_persona_recipe(load_recipe_config("retrieved-persona", "tiny"))  # doctest: +SKIP
    >>> print(results.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

from personakit.recipes.base import (
    RecipeResults,
    Stages,
    TestSetResult,
    expand_path,
    output_dir_of,
    run_manifest,
    score_test_set,
    subsample,
)
from personakit.recipes.retrieved_persona.config import (
    PERSONA_SOURCES,
    RetrievedPersonaProfileConfig,
    RetrievedPersonaRecipeConfig,
)
from personakit.types import Persona, ResponseExample

__all__ = [
    "PersonaChooser",
    "RetrievedPersonaResults",
    "build_presft_model",
    "load_retrieved_persona_splits",
    "profile_items",
    "query_of",
    "run_retrieved_persona_recipe",
    "selector_text",
]


# ------------------------------------------------------------------------------------ data
def _examples(dialogues: list, agent: str, max_history: Optional[int], n: Optional[int], seed: int
              ) -> list[ResponseExample]:
    """Examples of ``agent`` from a seeded sample of ``n`` dialogues, then a seeded sample of ``n`` of them."""
    from personakit.data import dialogues_to_examples

    picked = subsample(dialogues, n, seed)
    return subsample(dialogues_to_examples(picked, agent, max_history=max_history), n, seed)


def load_retrieved_persona_splits(config: RetrievedPersonaRecipeConfig
                                  ) -> tuple[list[ResponseExample], list[ResponseExample],
                                             dict[str, list[ResponseExample]], list[Path]]:
    """``(train, dev, {test set name: examples}, files read)`` of the config's data (``test`` first)."""
    from personakit.data import load_builtin_corpus, read_dataset, read_spc_jsonl

    data, seed = config.data, config.seed
    agent, hist = data.responder, data.max_history_turns
    paths: list[Path] = []
    if data.source == "spc":
        folder = Path(expand_path(data.path or ".", where="data.path"))  # a default or Python-made config
        files = [folder / data.train_file, folder / data.dev_file, folder / data.test_file]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: no such file (data.path={data.path!r}; set PERSONAKIT_DATA to the "
                                        "shared data folder or data.path to an SPC folder, or use data.source=builtin)")
        train_d, dev_d, test_d = (read_spc_jsonl(f) for f in files)
        paths += files
    else:
        pool = load_builtin_corpus("train")
        cut = max(1, len(pool) // 4)
        train_d, dev_d, test_d = pool[:-cut], pool[-cut:], load_builtin_corpus("test")
    train = _examples(train_d, agent, hist, data.max_train, seed)
    dev = _examples(dev_d, agent, hist, data.max_dev, seed + 1)
    tests = {"test": _examples(test_d, agent, hist, data.max_test, seed + 2)}
    for spec in data.test_sets:
        path = Path(expand_path(spec.path, where=f"data.test_sets.{spec.name}.path"))
        dialogues = read_dataset(path, spec.format)
        paths.append(path)
        tests[spec.name] = _examples(dialogues, spec.agent or agent, hist, spec.max_examples or data.max_test, seed + 2)
    for name, exs in [("train", train), ("dev", dev)] + list(tests.items()):
        if not exs:
            raise ValueError(f"{name}: no examples of the responding speaker {agent!r} (check data.agent)")
    return train, dev, tests, paths


# --------------------------------------------------------------------------------- personas
def profile_items(example: ResponseExample, profile: RetrievedPersonaProfileConfig) -> list[str]:
    """The profile the retrievers rank: the persona facts, then (optionally) the responder's earlier turns.

    Example:
        >>> from personakit.types import Turn
        >>> ex = ResponseExample(id="d:2", persona=Persona(sentences=["I bake."]), agent="a",
        ...                      history=[Turn(speaker="u", text="Hi"), Turn(speaker="a", text="Hello."),
        ...                               Turn(speaker="u", text="What do you do?")], response="I bake bread.")
        >>> profile_items(ex, RetrievedPersonaProfileConfig(include_own_turns=True))
        ['I bake.', 'Hello.']
    """
    items = list(example.persona.sentences)
    if profile.include_own_turns:
        items += [t.text for t in example.history if t.speaker == example.agent and t.text.strip()]
    return items


def query_of(example: ResponseExample, profile: RetrievedPersonaProfileConfig) -> str:
    """The retrieval query: the last ``query_turns`` turns of the history, joined by spaces."""
    return " ".join(t.text for t in example.history[-profile.query_turns:])


def selector_text(items: Sequence[str], query: str) -> str:
    """What the RSPG-Pre selector reads for one candidate: its persona and the query (never the response).

    Example:
        >>> selector_text(["I bake.", "I run."], "What do you do?")
        'persona: I bake. I run.\\nquery: What do you do?'
    """
    return f"persona: {' '.join(items) if items else '(none)'}\nquery: {query}"


class PersonaChooser:
    """The persona sources: ``choose(source, examples)`` gives the persona items shown per example.

    Args:
        config: the recipe config (``k``, ``profile``, ``dense_encoder``, ``seed``).
        dense_encoder: an encoder for the dense retriever (a name, a ``(model, tokenizer)``
            pair or a callable ``list[str] -> Tensor``; default ``config.dense_encoder``).
    """

    def __init__(self, config: RetrievedPersonaRecipeConfig, dense_encoder: Any = None):
        self.config = config
        self.k = config.k
        self.profile = config.profile
        self._dense_encoder = dense_encoder if dense_encoder is not None else config.dense_encoder
        self._retrievers: dict[str, Any] = {}

    def retriever(self, source: str) -> Any:
        """The retriever of ``bm25``, ``dense`` or ``rrf`` (built once)."""
        from personakit.retrieval import BM25Retriever, DenseRetriever, RRFRetriever

        if source not in self._retrievers:
            if source == "bm25":
                self._retrievers[source] = BM25Retriever()
            elif source == "dense":
                self._retrievers[source] = DenseRetriever(self._dense_encoder, device=self.config.device)
            elif source == "rrf":
                self._retrievers[source] = RRFRetriever([self.retriever("bm25"), self.retriever("dense")])
            else:
                raise ValueError(f"{source!r} is not a retriever source")
        return self._retrievers[source]

    def choose(self, source: str, examples: Sequence[ResponseExample]) -> list[list[str]]:
        """The persona items ``source`` shows for each example."""
        if source not in PERSONA_SOURCES:
            raise ValueError(f"unknown persona source {source!r}; use one of {list(PERSONA_SOURCES)}")
        if source == "full":
            return [list(ex.persona.sentences) for ex in examples]
        if source == "none":
            return [[] for _ in examples]
        profiles = [profile_items(ex, self.profile) for ex in examples]
        if source == "random":
            picks = []
            for ex, items in zip(examples, profiles):
                rng = random.Random(f"{self.config.seed}:{ex.id}")
                picks.append(sorted(rng.sample(range(len(items)), min(self.k, len(items)))))
        else:
            retriever = self.retriever(source)
            queries = [query_of(ex, self.profile) for ex in examples]
            picks, todo = [[] for _ in examples], [i for i, items in enumerate(profiles) if items]
            if todo:
                found = retriever.retrieve_batch([queries[i] for i in todo], [profiles[i] for i in todo], k=self.k)
                for i, hits in zip(todo, found):
                    picks[i] = [h.index for h in hits]
                    if self.profile.keep_profile_order:
                        picks[i] = sorted(picks[i])
        return [[items[j] for j in pick] for items, pick in zip(profiles, picks)]


def _with_persona(example: ResponseExample, items: Sequence[str]) -> ResponseExample:
    return example.model_copy(update={"persona": Persona(sentences=list(items))})


# ---------------------------------------------------------------------------------- model
def build_presft_model(config: RetrievedPersonaRecipeConfig, backbone: Any = None) -> tuple[Any, str]:
    """PreSFT(Hist) on ``config.backbone`` (or ``backbone``): LoRA on a decoder-only backbone, frozen weights in
    ``config.dtype`` (``"auto"``: bf16 where fast).

    Args:
        backbone: ``None`` (load ``config.backbone``), a ``(model, tokenizer)`` pair or a function returning one.

    Returns:
        ``(model, dtype name of the frozen weights)``.
    """
    from personakit.backbones.precision import cast_frozen, resolve_dtype
    from personakit.models.grag import GRAGModel, build_grag_model

    if backbone is None:
        bb, tok = GRAGModel.load_backbone(config.backbone)
    elif callable(backbone) and not hasattr(backbone, "parameters"):
        bb, tok = backbone()
    else:
        bb, tok = backbone
    encdec = bool(getattr(bb.config, "is_encoder_decoder", False)) or bb.config.model_type == "encoder-decoder"
    settings: dict[str, Any] = {}
    lora = None if encdec else config.lora
    if lora is not None:
        settings["lora"] = lora.model_dump()
    model = build_grag_model("presft-hist", bb, tok, **settings)
    frozen = "float32"
    if lora is not None:
        dtype = resolve_dtype(config.dtype, config.device)
        if dtype != resolve_dtype("float32"):
            cast_frozen(model, dtype)
        frozen = str(dtype).removeprefix("torch.")
    return model, frozen


class _PairCache:
    """Generated responses and reference log-likelihoods per distinct (example, persona) pair."""

    def __init__(self, trainer: Any, collator: Any, batch_size: int):
        self.trainer, self.collator, self.batch_size = trainer, collator, batch_size
        self.ll: dict[tuple, float] = {}
        self.text: dict[tuple, str] = {}

    @staticmethod
    def key(example: ResponseExample, items: Sequence[str]) -> tuple:
        return (example.id, tuple(items))

    def fill(self, examples: Sequence[ResponseExample], items: Sequence[Sequence[str]], generate: bool) -> None:
        todo: dict[tuple, ResponseExample] = {}
        for ex, its in zip(examples, items):
            key = self.key(ex, its)
            if key not in self.ll or (generate and key not in self.text):
                todo[key] = _with_persona(ex, its)
        missing_ll = [k for k in todo if k not in self.ll]
        if missing_ll:
            lls = self.trainer.reference_log_likelihoods([todo[k] for k in missing_ll])
            self.ll.update(zip(missing_ll, lls))
        missing_text = [k for k in todo if generate and k not in self.text]
        if missing_text:
            self.text.update(zip(missing_text, self.trainer.predict([todo[k] for k in missing_text])))


# -------------------------------------------------------------------------------- results
@dataclass
class RetrievedPersonaResults(RecipeResults):
    """Results of the retrieved-persona recipe: :class:`~personakit.recipes.base.RecipeResults` and three more fields.

    Attributes:
        selection: ``{test set: {"shares": {candidate: share}, "success_rate", "selected_eval",
            "best_single", "best_single_eval", "oracle_upper", "oracle_lower", "oracle_shares"}}``.
        likelihood: ``{test set: {system: PairedComparison dict}}``: per-example reference
            log-likelihood (nats) of each row against the baseline row.
        training: the PreSFT(Hist) and RSPG training summaries.
    """

    title: ClassVar[str] = "Retrieved-persona recipe: retrievers and RSPG choose the persona of PreSFT(Hist)"

    selection: dict[str, dict[str, Any]] = field(default_factory=dict)
    likelihood: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def sections(self) -> list[str]:
        out = []
        for name, by_system in self.likelihood.items():
            if not by_system:
                continue
            base = self.test_sets[name].baseline
            lines = [f"## Reference log-likelihood vs {base} ({name})", "",
                     "Per-example log-likelihood of the reference response (nats, higher is better) under the "
                     "GRAG model reading each row's persona; paired t-test and bootstrap interval.", "",
                     f"| system | mean log-lik. | difference vs {base} | 95% CI | p |",
                     "| --- | ---: | ---: | ---: | ---: |"]
            for system, s in by_system.items():
                p = s.get("p_value")
                p_text = "nan" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3g}"
                lines.append(f"| {system} | {s['mean_a']:.2f} | {s['mean_difference']:+.2f} | "
                             f"[{s['ci_low']:+.2f}, {s['ci_high']:+.2f}] | {p_text}{' *' if s.get('significant') else ''} |")
            out.append("\n".join(lines))
        for name, sel in self.selection.items():
            if not sel:
                continue
            labels = sel.get("labels", {})
            lines = [f"## RSPG selection ({name})", "",
                     "| candidate | chosen by RSPG | chosen by the oracle |", "| --- | ---: | ---: |"]
            for cand, share in sel["shares"].items():
                lines.append(f"| {labels.get(cand, cand)} | {share:.0%} | {sel['oracle_shares'].get(cand, 0.0):.0%} |")
            lines += ["", f"Selector success rate (its choice has the best likelihood, ties count): "
                          f"{sel['success_rate']:.0%}. Mean log-likelihood of the chosen persona: "
                          f"{sel['selected_eval']:.2f} nats; best single candidate "
                          f"({labels.get(sel['best_single'], sel['best_single'])}) {sel['best_single_eval']:.2f}; "
                          f"oracle {sel['oracle_upper']:.2f}, worst choice {sel['oracle_lower']:.2f}."]
            out.append("\n".join(lines))
        if self.training:
            t = self.training
            bits = []
            if "presft" in t:
                g = t["presft"]
                bits.append(f"PreSFT(Hist) on {g['examples']} examples with the full persona: {g['steps']} steps, "
                            f"final loss {g['final_loss']:.3f}, frozen weights {g['frozen_dtype']}")
            if "rspg" in t:
                r = t["rspg"]
                bits.append(f"RSPG selector ({r['encoder']}) on {r['items']} dev examples x {r['candidates']} "
                            f"candidates: {r['steps']} steps, dev success rate {r['dev_success_rate']:.0%}")
            out.append("Training: " + "; ".join(bits) + ".")
        return out

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update({"selection": self.selection, "likelihood": self.likelihood, "training": self.training})
        return out


# ----------------------------------------------------------------------------------- run
def _train_selector(config: RetrievedPersonaRecipeConfig, dev: list[ResponseExample], chooser: PersonaChooser,
                    cache: _PairCache, selector_encoder: Any, out_dir: Path, stages: Stages
                    ) -> tuple[Any, dict[str, Any]]:
    from personakit.retrieval import RetrieverSelector
    from personakit.training import RSPGItem, RSPGTrainer, RSPGTrainerConfig

    cands = config.rspg.candidates
    with stages("feedback", f"RSPG feedback: likelihood of {len(dev)} dev references under {len(cands)} personas"):
        items = {c: chooser.choose(c, dev) for c in cands}
        for c in cands:
            cache.fill(dev, items[c], generate=False)
    queries = [query_of(ex, config.profile) for ex in dev]
    rspg_items = [RSPGItem(prompts=[selector_text(items[c][i], queries[i]) for c in cands],
                           evals=[cache.ll[cache.key(ex, items[c][i])] for c in cands], id=ex.id)
                  for i, ex in enumerate(dev)]
    rs = config.rspg
    encoder = selector_encoder if selector_encoder is not None else rs.encoder
    selector = RetrieverSelector(encoder, mode="pre", max_length=rs.max_length, pooling=rs.pooling,
                                 retriever_names=cands)
    tcfg = RSPGTrainerConfig(epochs=rs.epochs, batch_size=rs.batch_size,
                             gradient_accumulation_steps=rs.gradient_accumulation_steps,
                             learning_rate=rs.learning_rate, warmup_ratio=rs.warmup_ratio,
                             target_temperature=rs.target_temperature, seed=config.seed,
                             progress=config.training.progress, device=config.device, logging_steps=10)
    trainer = RSPGTrainer(selector, tcfg)
    with stages("train_rspg", f"training the RSPG selector on {len(rspg_items)} dev items"):
        result = trainer.train(rspg_items)
    dev_eval = trainer.evaluate(rspg_items)
    if config.save_model:
        selector.save_pretrained(out_dir / "models" / "rspg-selector")
    summary = {"encoder": str(getattr(selector, "encoder_name", rs.encoder)), "items": len(rspg_items),
               "candidates": len(cands), "steps": result.global_step,
               "final_loss": result.history[-1]["loss"] if result.history else None,
               "dev_success_rate": dev_eval["success_rate"], "dev": dev_eval}
    stages.log(f"RSPG: {result.global_step} steps, dev success rate {dev_eval['success_rate']:.0%}")
    return trainer, summary


def _score_split(name: str, examples: list[ResponseExample], config: RetrievedPersonaRecipeConfig,
                 chooser: PersonaChooser, cache: _PairCache, rspg: Any, stages: Stages
                 ) -> tuple[TestSetResult, dict[str, Any], dict[str, dict[str, Any]]]:
    """Every system's responses on one test set, scored; and the selection and likelihood summaries."""
    import torch

    from personakit.eval import bits_per_character, paired_comparison
    from personakit.training import RSPGItem

    labels = config.system_labels()
    cands = config.rspg.candidates
    with stages(f"predict_{name}", f"{name}: choosing personas and generating for {len(examples)} examples"):
        items = {s: chooser.choose(s, examples) for s in config.needed_sources()}
        for s, its in items.items():
            cache.fill(examples, its, generate=True)
    ll = {s: [cache.ll[cache.key(ex, its[i])] for i, ex in enumerate(examples)] for s, its in items.items()}
    chosen: dict[str, list[int]] = {}
    selection: dict[str, Any] = {}
    if config.selects:
        cand_ll = torch.tensor([[ll[c][i] for c in cands] for i in range(len(examples))], dtype=torch.float64)
        chosen["oracle"] = cand_ll.argmax(-1).tolist()  # first best on ties
        if "rspg" in config.systems:
            queries = [query_of(ex, config.profile) for ex in examples]
            test_items = [RSPGItem(prompts=[selector_text(items[c][i], queries[i]) for c in cands],
                                   evals=[ll[c][i] for c in cands], id=ex.id) for i, ex in enumerate(examples)]
            chosen["rspg"] = rspg.predict(test_items).argmax(-1).tolist()
            stats = rspg.evaluate(test_items)
            n = len(examples)
            selection = {
                "shares": {c: sum(1 for j in chosen["rspg"] if j == ci) / n for ci, c in enumerate(cands)},
                "oracle_shares": {c: sum(1 for j in chosen["oracle"] if j == ci) / n for ci, c in enumerate(cands)},
                "success_rate": stats["success_rate"], "selected_eval": stats["selected_eval"],
                "best_single": cands[int(stats["best_single_index"])], "best_single_eval": stats["best_single_eval"],
                "oracle_upper": stats["oracle_upper"], "oracle_lower": stats["oracle_lower"],
                "labels": {c: labels[c] for c in cands}}
    predictions: dict[str, list[str]] = {}
    per_ll: dict[str, list[float]] = {}
    shown: dict[str, list[list[str]]] = {}
    for system in config.systems:
        if system in chosen:
            shown[system] = [items[cands[j]][i] for i, j in enumerate(chosen[system])]
        else:
            shown[system] = items[system]
        predictions[labels[system]] = [cache.text[cache.key(ex, shown[system][i])] for i, ex in enumerate(examples)]
        per_ll[labels[system]] = [cache.ll[cache.key(ex, shown[system][i])] for i, ex in enumerate(examples)]
    references = [ex.response for ex in examples]
    extra: dict[str, dict[str, Any]] = {}
    for system in config.systems:
        label = labels[system]
        row: dict[str, Any] = {}
        if config.eval.bpc:
            row["bpc"] = bits_per_character(per_ll[label], [r.strip() for r in references])
        row["items"] = sum(len(x) for x in shown[system]) / len(examples)
        extra[label] = row
    inputs = []
    for i, ex in enumerate(examples):
        rec: dict[str, Any] = {"query": query_of(ex, config.profile), "persona": list(ex.persona.sentences)}
        for system in chosen:
            if system in config.systems:
                rec[f"{system}_choice"] = cands[chosen[system][i]]
        inputs.append(rec)
    baseline = labels[config.eval.baseline]
    with stages("score", f"{name}: scoring {len(predictions)} systems"):
        result = score_test_set(name, [ex.id for ex in examples], references, predictions, config.eval.metrics,
                                baseline=baseline, compare=config.eval.compare,
                                significance_level=config.eval.significance_level, seed=config.seed,
                                extra_rows=extra, inputs=inputs)
        likelihood = {}
        if len(examples) > 1:
            likelihood = {label: paired_comparison(per_ll[label], per_ll[baseline],
                                                   significance_level=config.eval.significance_level,
                                                   seed=config.seed).to_dict()
                          for label in predictions if label != baseline}
    return result, selection, likelihood


def run_retrieved_persona_recipe(config: RetrievedPersonaRecipeConfig, *, progress: bool = True, save: bool = True,
                                 backbone: Any = None, dense_encoder: Any = None, selector_encoder: Any = None
                                 ) -> RetrievedPersonaResults:
    """Run the retrieved-persona recipe (see the module docstring).

    Args:
        config: the recipe config.
        progress: print the stages.
        save: write ``results.md``, ``results.json``, ``predictions.jsonl`` and ``manifest.json`` to the
            output folder (:func:`~personakit.recipes.base.output_dir_of`).
        backbone: the GRAG backbone: ``None`` (load ``config.backbone``), a ``(model, tokenizer)`` pair or
            a function returning one (tests pass tiny random models).
        dense_encoder: the dense retriever's encoder (default ``config.dense_encoder``): a name, a
            ``(model, tokenizer)`` pair or a callable ``list[str] -> Tensor``.
        selector_encoder: the RSPG selector's encoder (default ``config.rspg.encoder``): a name or a
            ``(model, tokenizer)`` pair.

    Returns:
        :class:`RetrievedPersonaResults`; ``results.rows`` is ``{system: {metric: value}}`` on ``test``.
    """
    import torch

    from personakit.training import GRAGTrainer

    started = datetime.now(timezone.utc)
    stages = Stages("retrieved-persona", progress)
    out_dir = output_dir_of(config)
    torch.manual_seed(config.seed)

    with stages("data"):
        train, dev, tests, paths = load_retrieved_persona_splits(config)
    stages.log(f"{len(train)} training, {len(dev)} dev and "
               + ", ".join(f"{len(v)} {k}" for k, v in tests.items()) + " examples")

    with stages("load", f"loading {config.backbone if backbone is None else 'the given backbone'}"):
        model, frozen = build_presft_model(config, backbone)
    collator = model.make_collator(**config.inputs.to_dict())
    tcfg = config.training.trainer_config(
        seed=config.seed, use_cpu=config.device == "cpu",
        output_dir=str(out_dir / "models" / "presft-hist") if config.save_model else None)
    trainer = GRAGTrainer(model, tcfg, train_examples=train, collator=collator)
    stages.log(f"training PreSFT(Hist) on the full persona: {trainer.plan().total_steps} steps of "
               f"{tcfg.batch_size}, frozen weights {frozen}")
    result = trainer.train()
    stages.add("train", result.train_seconds)
    if config.save_model:
        trainer.save_model(out_dir / "models" / "presft-hist" / "final")
    last = result.history[-1] if result.history else {}
    training: dict[str, Any] = {"presft": {"examples": len(train), "steps": result.global_step,
                                           "final_loss": last.get("loss", float("nan")), "frozen_dtype": frozen,
                                           "seconds": result.train_seconds, "history": result.history}}
    stages.log(f"PreSFT(Hist): {result.global_step} steps in {result.train_seconds:.0f} s, "
               f"final loss {training['presft']['final_loss']:.3f}")

    chooser = PersonaChooser(config, dense_encoder)
    cache = _PairCache(trainer, collator, config.training.eval_batch_size)
    rspg = None
    if "rspg" in config.systems:
        rspg, training["rspg"] = _train_selector(config, dev, chooser, cache, selector_encoder, out_dir, stages)

    test_sets: dict[str, TestSetResult] = {}
    selection: dict[str, dict[str, Any]] = {}
    likelihood: dict[str, dict[str, dict[str, Any]]] = {}
    for name, examples in tests.items():
        test_sets[name], selection[name], likelihood[name] = _score_split(name, examples, config, chooser, cache,
                                                                          rspg, stages)
    sizes = {"train": len(train), "dev": len(dev), **{name: len(v) for name, v in tests.items()}, "k": config.k}
    results = RetrievedPersonaResults(
        recipe=type(config).recipe, config=config.to_dict(), test_sets=test_sets, timings=stages.total(),
        sizes=sizes, manifest=run_manifest(config, type(config).recipe, data_paths=paths, started=started),
        details={"frozen_dtype": frozen}, selection=selection, likelihood=likelihood, training=training)
    if save:
        folder = results.save(out_dir)
        stages.log(f"results written to {folder}")
    return results
