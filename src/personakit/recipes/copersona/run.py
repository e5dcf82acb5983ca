"""The CoPersona recipe's run function, its results and the incremental facet pipeline.

:func:`run_copersona_recipe` loads the users (:func:`load_copersona_data`) and the named test
sets (:func:`load_copersona_test_sets`), builds the facets with :class:`CoPersonaPipeline`,
trains every variant, scores every test set (:func:`~personakit.recipes.base.score_test_set`)
and returns :class:`CoPersonaResults`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence, Union

from personakit.config import atomic_write_text
from personakit.recipes.base import (RecipeResults, Stages, output_dir_of, run_manifest, score_test_set,
                                     subsample)
from personakit.recipes.copersona.config import COPERSONA_LABELS, CoPersonaDataConfig, CoPersonaRecipeConfig
from personakit.types import ResponseExample, UserProfile

__all__ = ["CoPersonaPipeline", "CoPersonaResults", "run_copersona_recipe", "load_copersona_data",
           "load_copersona_test_sets"]


def load_copersona_data(cfg: CoPersonaDataConfig) -> Any:
    """:class:`~personakit.data.copersona_users.CoPersonaUsers` for the data config (before ``max_test``).

    Raises:
        FileNotFoundError: ``path`` does not exist (sources ``pfg`` and ``reviews``).
    """
    from personakit.data.copersona_users import build_pfg_users, build_review_users

    if cfg.source in ("builtin", "pfg"):
        if cfg.source == "builtin":
            from personakit.data import builtin_pfg_dialogues

            source: Any = builtin_pfg_dialogues()
        else:
            source = Path(str(cfg.path))
            if not source.exists():
                raise FileNotFoundError(f"data.path {source}: no such Persuasion-for-Good folder "
                                        "(is PERSONAKIT_DATA set to the shared data folder?)")
        return build_pfg_users(source, max_users=cfg.max_users, max_examples_per_user=cfg.max_examples_per_user,
                               max_profile_items=cfg.max_profile_items, history_turns=cfg.history_turns, seed=cfg.seed)
    from personakit.data.reviews import read_review_histories

    profiles = subsample(read_review_histories(str(cfg.path)), cfg.max_users, cfg.seed)
    return build_review_users(profiles, max_profile_items=cfg.max_profile_items)


def load_copersona_test_sets(cfg: CoPersonaDataConfig, test: Sequence[ResponseExample],
                             users: Sequence[UserProfile]) -> dict[str, list[ResponseExample]]:
    """``{"test": ..., name: ...}``: the main test examples and each named set of ``cfg.test_sets``,
    each a seeded sample of ``cfg.max_test``.

    Raises:
        FileNotFoundError: a named set's file is missing.
        ValueError: a line is not a ResponseExample, a set is empty, or an example's
            ``user_id`` is not one of ``users`` (the message names the set and the users).
    """
    from personakit.augment.io import load_examples

    known = {u.user_id for u in users}
    out = {"test": subsample(list(test), cfg.max_test, cfg.seed)}
    for i, (name, path) in enumerate(cfg.test_sets.items(), start=1):
        examples = load_examples(path)
        if not examples:
            raise ValueError(f"data.test_sets.{name}: {path} holds no example")
        unknown = sorted({str(ex.user_id) for ex in examples if ex.user_id not in known})
        if unknown:
            raise ValueError(f"data.test_sets.{name}: {path}: user_id {', '.join(map(repr, unknown[:5]))} "
                             f"{'is' if len(unknown) == 1 else 'are'} not among the recipe's {len(known)} users "
                             f"(the model needs the user's facets; users: {', '.join(sorted(known)[:8])}...)")
        out[name] = subsample(examples, cfg.max_test, cfg.seed + i)
    return out


class CoPersonaPipeline:
    """Facets → summaries → embeddings → graph, incremental.

    Args:
        inducer: a :class:`~personakit.facets.FacetSchemaInducer` (``None`` when ``schema`` is given).
        summarizer_factory: schema → :class:`~personakit.facets.FacetSummarizer` (with a ``store``).
        embedder: a :class:`~personakit.facets.FacetEmbedder`.
        top_k, threshold, combined_threshold: graph settings (``combined_threshold=None``: ``threshold``).
        schema: a fixed schema (skips induction).

    :meth:`update` may be called again with more users or longer histories: only users
    whose history changed are summarised (no LLM call for the others) and re-linked.
    """

    def __init__(self, inducer: Any, summarizer_factory: Callable[[Any], Any], embedder: Any, *, top_k: int = 5,
                 threshold: float = 0.35, combined_threshold: Optional[float] = None, schema: Any = None):
        self.inducer, self.summarizer_factory, self.embedder = inducer, summarizer_factory, embedder
        self.top_k, self.threshold, self.combined_threshold = top_k, threshold, combined_threshold
        self.schema = schema
        self.summarizer: Any = None
        self.facets: dict[str, Any] = {}
        self.embeddings: Any = None
        self.graph: Any = None
        self.last_changed: list[str] = []

    def update(self, profiles: Sequence[UserProfile], progress: bool = False) -> "CoPersonaPipeline":
        from personakit.graph import build_multiplex_graph, update_multiplex_graph

        if self.schema is None:
            self.schema = self.inducer.induce(list(profiles))
        if self.summarizer is None:
            self.summarizer = self.summarizer_factory(self.schema)
        old_ids = list(self.embeddings.user_ids) if self.embeddings is not None else []
        old_hash = {u: f.content_hash for u, f in self.facets.items()}
        # existing users first, in their old order, then new ones: graph rows stay valid
        ordered = sorted(profiles, key=lambda p: (old_ids.index(p.user_id) if p.user_id in old_ids else len(old_ids)))
        facets = self.summarizer.summarize(ordered, progress=progress)
        emb = self.embedder.embed([facets[p.user_id] for p in ordered], self.schema.names)
        changed = [i for i, p in enumerate(ordered)
                   if old_hash.get(p.user_id) != facets[p.user_id].content_hash or p.user_id not in old_ids]
        keep_prefix = old_ids == [p.user_id for p in ordered[: len(old_ids)]]
        if self.graph is not None and keep_prefix:
            self.graph = update_multiplex_graph(self.graph, emb.embeddings, emb.reliability, changed)
        else:
            self.graph = build_multiplex_graph(emb.embeddings, emb.reliability, top_k=self.top_k,
                                               threshold=self.threshold, combined_threshold=self.combined_threshold,
                                               facet_names=self.schema.names)
        self.facets, self.embeddings = facets, emb
        self.last_changed = [ordered[i].user_id for i in changed]
        return self


@dataclass
class CoPersonaResults(RecipeResults):
    """Every variant scored on every test set, plus the facets: schema, facet-biased fraction, graph.

    Attributes (besides :class:`~personakit.recipes.base.RecipeResults`'):
        schema: the facet schema (``facet_schema.json``).
        facet_biased_fraction: users with at least one facet not 'strong' (paper Table 4).
        reliability_counts: facet summaries per reliability label.
        facet_edges: edges of each facet layer of the graph.
        structured: summary prompts, summaries that never validated, whether decoding was schema-guided.
    """

    title: ClassVar[str] = "CoPersona"

    schema: dict[str, Any] = field(default_factory=dict)
    facet_biased_fraction: float = float("nan")
    reliability_counts: dict[str, int] = field(default_factory=dict)
    facet_edges: list[int] = field(default_factory=list)
    structured: dict[str, Any] = field(default_factory=dict)

    def sections(self) -> list[str]:
        names = [f["name"] for f in self.schema.get("facets", [])]
        lines = [f"Facet-biased users (at least one facet not 'strong'): {self.facet_biased_fraction:.2%}.", ""]
        if names:
            lines.append("Facets: " + "; ".join(names) + ".")
        if self.facet_edges:
            lines.append("Graph edges per facet: " + ", ".join(f"{n} {e}" for n, e in zip(names, self.facet_edges))
                         + "; reliability labels: " + ", ".join(f"{k} {v}" for k, v in self.reliability_counts.items())
                         + ".")
        if self.structured.get("summary_prompts"):
            lines.append(f"Summary prompts: {self.structured['summary_prompts']}, never valid: "
                         f"{self.structured.get('summary_failures', 0)} "
                         f"({'schema-guided' if self.structured.get('constrained') else 'free'} decoding).")
        return ["\n".join(lines)]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "schema": self.schema, "facet_biased_fraction": self.facet_biased_fraction,
                "reliability_counts": self.reliability_counts, "facet_edges": self.facet_edges,
                "structured": self.structured}

    def save(self, directory: Union[str, "Path", None] = None) -> Path:
        """The four files of :meth:`RecipeResults.save` and ``facet_schema.json``; returns the folder."""
        out = super().save(directory)
        if self.schema:
            atomic_write_text(out / "facet_schema.json", json.dumps(self.schema, indent=2) + "\n")
        return out


def _inputs(ex: ResponseExample) -> dict[str, Any]:
    return {"user_id": ex.user_id, "agent": ex.agent, "history": [f"{t.speaker}: {t.text}" for t in ex.history]}


def run_copersona_recipe(config: CoPersonaRecipeConfig, *, progress: bool = True, save: bool = True,
                         data: Any = None, generator: Any = None, encoder: Any = None,
                         backbone_factory: Optional[Callable[[], tuple[Any, Any]]] = None) -> CoPersonaResults:
    """Run the recipe: facets, graph, every variant trained and scored on every test set.

    Args:
        config: the recipe config (:func:`~personakit.recipes.base.load_recipe_config`).
        progress: print stage messages.
        save: write ``results.md``, ``results.json``, ``predictions.jsonl``, ``manifest.json``
            and ``facet_schema.json`` to the output folder (the LLM cache, the facet store
            and the checkpoints are written there in any case).
        data: :class:`~personakit.data.copersona_users.CoPersonaUsers` instead of ``config.data``'s
            users (the named test sets are still read from ``config.data.test_sets``).
        generator: a :class:`~personakit.llm.TextGenerator` for the facets (default: ``facets.llm``).
        encoder: texts → ``[n, d]`` (default: ``facets.encoder``).
        backbone_factory: ``() -> (model, tokenizer)`` (default: ``model.backbone``).

    Tests pass tiny stand-ins for ``data``, ``generator``, ``encoder`` and ``backbone_factory``.
    """
    import torch

    from personakit.facets import FacetEmbedder, FacetSchemaInducer, FacetSummarizer, facet_biased_fraction
    from personakit.llm import CachedGenerator, GenerationSettings
    from personakit.models.copersona import CoPersonaContext, CoPersonaModel
    from personakit.training.copersona import CoPersonaTrainer

    stages = Stages("copersona", progress)
    out = output_dir_of(config)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    data_paths: list[Any] = list(config.data.test_sets.values())
    with stages("data", "loading users and test sets"):
        if data is None:
            data = load_copersona_data(config.data)
            data_paths.insert(0, config.data.path)
        test_sets = load_copersona_test_sets(config.data, data.test, data.users)
    manifest = run_manifest(config, "copersona", data_paths=data_paths)

    fc = config.facets
    constrained = None
    with stages("facets"):
        if generator is None:
            from personakit.llm import HFGenerator

            generator = HFGenerator.from_pretrained(fc.llm, dtype=fc.dtype, batch_size=8, device=config.device)
            if fc.constrained:
                from personakit.facets import SchemaGuidedGenerator

                constrained = SchemaGuidedGenerator.from_hf(generator, batch_size=fc.batch_size)
        if encoder is None:
            from personakit.backbones import load_sentence_encoder

            encoder = load_sentence_encoder(fc.encoder, device=config.device).encode
        gen = CachedGenerator(generator, fc.cache or str(out / "llm_cache.jsonl"))
        inducer = FacetSchemaInducer(gen, encoder, num_facets=fc.num_facets, num_clusters=fc.num_clusters,
                                     max_items=fc.schema_items,
                                     settings=GenerationSettings(max_new_tokens=fc.schema_tokens),
                                     constrained=constrained, per_cluster=fc.per_cluster_schema, seed=config.seed)
        schema_path = out / "facet_schema.json"
        schema = None
        if schema_path.is_file():
            from personakit.facets import FacetSchema

            schema = FacetSchema.model_validate_json(schema_path.read_text(encoding="utf-8"))
            if len(schema) != fc.num_facets:
                schema = None

        def make_summarizer(s: Any) -> Any:
            return FacetSummarizer(gen, s, max_items=fc.summary_items, store=out / "facet_store.jsonl",
                                   settings=GenerationSettings(max_new_tokens=fc.summary_tokens),
                                   on_failure=fc.on_failure, constrained=constrained, reliability=fc.reliability,
                                   encoder=encoder, batch_size=fc.batch_size)

        combined = fc.threshold / fc.num_facets if fc.combined_threshold is None else fc.combined_threshold
        pipe = CoPersonaPipeline(inducer, make_summarizer, FacetEmbedder(encoder), top_k=fc.top_k,
                                 threshold=fc.threshold, combined_threshold=combined, schema=schema)
        stages.log(f"{len(data.users)} users, {len(data.train)} train examples, test sets "
                   + ", ".join(f"{k} {len(v)}" for k, v in test_sets.items())
                   + "; facets: schema, summaries, embeddings, graph")
        pipe.update(data.users, progress=progress)
        atomic_write_text(schema_path, pipe.schema.model_dump_json(indent=2) + "\n")
    biased = facet_biased_fraction(list(pipe.facets.values()))
    stages.log(f"facets done: {', '.join(f.name for f in pipe.schema.facets)}; facet-biased users {biased:.0%}; "
               f"graph edges {int(pipe.graph.edge_index.shape[1])}")

    if backbone_factory is None:
        from personakit.backbones import load_causal_lm

        def backbone_factory() -> tuple[Any, Any]:
            return load_causal_lm(config.model.backbone)

    base, tokenizer = backbone_factory()
    m = config.model
    context = CoPersonaContext.build(data.users, pipe.facets, pipe.embeddings, pipe.graph,
                                     max_neighbors=m.max_neighbors, max_peer_tokens=m.max_peer_tokens)
    train = list(data.train) or list(test_sets["test"])
    preds: dict[str, dict[str, list[str]]] = {name: {} for name in test_sets}
    histories: dict[str, Any] = {}
    for variant in config.variants:
        label = COPERSONA_LABELS[variant]
        stages.log(f"{label}: training on {len(train)} examples")
        model = CoPersonaModel.from_backbone(
            copy.deepcopy(base), tokenizer, context=context, variant=variant, num_facets=len(pipe.schema),
            facet_dim=int(pipe.embeddings.embeddings.shape[-1]), graph_hidden=m.graph_hidden,
            num_virtual_tokens=m.num_virtual_tokens, retrieval_k=m.retrieval_k, max_neighbors=m.max_neighbors,
            max_item_tokens=m.max_item_tokens, max_peer_tokens=m.max_peer_tokens, max_prompt_tokens=m.max_prompt_tokens,
            max_target_tokens=m.max_target_tokens,
            lora={"r": m.lora_r, "lora_alpha": m.lora_alpha, "lora_dropout": m.lora_dropout})
        if config.device:
            model.to(config.device)
        tcfg = config.training.model_copy(update={"output_dir": str(out / "checkpoints" / variant),
                                                  "overwrite_output_dir": True, "max_new_tokens": config.max_new_tokens,
                                                  "use_cpu": not (config.device or "").startswith("cuda")})
        trainer = CoPersonaTrainer(model, tcfg, train_examples=train)
        result = trainer.train()
        stages.add(f"train_{variant}", result.train_seconds)
        histories[label] = {"global_step": result.global_step, "train_seconds": result.train_seconds}
        with stages(f"predict_{variant}", f"{label}: generating for "
                    + ", ".join(f"{k} ({len(v)})" for k, v in test_sets.items())):
            for name, examples in test_sets.items():
                preds[name][label] = trainer.predict(examples)
        del trainer, model

    baseline = COPERSONA_LABELS[config.baseline] if config.baseline in config.variants else None
    compare = list(config.compare) if baseline is not None and len(config.variants) > 1 else []
    options = {"bertscore": {"model": config.bertscore_model}} if "bertscore" in config.metrics else {}
    scored = {}
    with stages("score", "scoring " + ", ".join(test_sets)):
        for name, examples in test_sets.items():
            scored[name] = score_test_set(
                name, [ex.id for ex in examples], [ex.response for ex in examples], preds[name],
                config.metrics, baseline=baseline, compare=compare, significance_level=config.significance_level,
                seed=config.seed, inputs=[_inputs(ex) for ex in examples], metric_options=options)
    for label, row in scored["test"].rows.items():
        stages.log(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))

    stats = data.stats()
    stats["test"] = len(test_sets["test"])
    sizes = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in stats.items()}
    sizes.update({"facets": len(pipe.schema), "graph_edges": int(pipe.graph.edge_index.shape[1])})
    last = pipe.summarizer.last_stats
    results = CoPersonaResults(
        recipe="copersona", config=config.to_dict(), test_sets=scored, timings=stages.total(), sizes=sizes,
        manifest=manifest, details={"training": histories},
        schema=json.loads(pipe.schema.model_dump_json()), facet_biased_fraction=biased,
        reliability_counts={lvl: sum(f.reliability == lvl for u in pipe.facets.values() for f in u.facets)
                            for lvl in ("none", "weak", "moderate", "strong")},
        facet_edges=[int(e.shape[1]) for e in pipe.graph.facet_edge_index],
        structured={"summary_failures": last.failures if last else 0, "summary_prompts": last.prompts if last else 0,
                    "constrained": constrained is not None})
    if save:
        results.save(out)
    return results
