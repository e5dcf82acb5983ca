r"""End-to-end CoPersona recipe: induce facets → summarise → embed → graph → train → evaluate.

Zhang, Wang et al., "CoPersona: Collaborative Persona Graphs for Robust LLM
Personalization" (KDD 2026).  :func:`run_copersona_recipe` runs the paper's comparison
(Tables 1 and 5) on sparse conversational users
(:func:`~personakit.data.copersona_users.build_pfg_users`) or review histories:

1. **Facets** (:class:`CoPersonaPipeline`): schema induction
   (:class:`~personakit.facets.FacetSchemaInducer`), per-user facet summaries with
   grounded quotes and reliability (:class:`~personakit.facets.FacetSummarizer`), facet
   embeddings (:class:`~personakit.facets.FacetEmbedder`), the multiplex graph
   (:func:`~personakit.graph.build_multiplex_graph`).  Incremental: adding users or
   history re-summarises, re-embeds and re-links only the users whose history changed
   (summaries are stored by user + content hash; the graph is updated with
   :func:`~personakit.graph.update_multiplex_graph`).
2. **Models**: each variant of ``variants`` (Non-Perso, RAG, PAG, CoPersona, without the
   non-parametric branch, without the parametric branch) is a
   :class:`~personakit.models.copersona.CoPersonaModel` on a fresh copy of the backbone,
   trained with :class:`~personakit.training.copersona.CoPersonaTrainer`.
3. **Evaluation**: ROUGE-1, ROUGE-L, METEOR, BLEU, BERTScore on the test examples; the
   facet-biased fraction of users (Table 4); :meth:`CoPersonaResults.save` writes
   ``results.md`` / ``results.json`` / ``predictions.jsonl`` / ``facet_schema.json``.

Example:
    >>> cfg = CoPersonaRecipeConfig(variants=["rag", "copersona"])
    >>> CoPersonaRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
    True
"""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

from pydantic import Field, field_validator

from personakit.config import BaseConfig, atomic_write_text
from personakit.recipes._common import StageLog
from personakit.training.copersona import CoPersonaTrainingConfig
from personakit.types import ResponseExample, UserProfile

__all__ = ["COPERSONA_LABELS", "CoPersonaDataConfig", "CoPersonaFacetsConfig", "CoPersonaModelSettings",
           "CoPersonaRecipeConfig", "CoPersonaPipeline", "CoPersonaResults", "run_copersona_recipe",
           "load_copersona_data"]

COPERSONA_LABELS = {"nonperso": "Non-Perso", "rag": "RAG", "pag": "PAG", "copersona": "CoPersona",
                    "no_nonparametric": "w/o non-parametric", "no_parametric": "w/o parametric"}
"""Row labels of the variants (paper Tables 1 and 5)."""


class CoPersonaDataConfig(BaseConfig):
    """Where the users come from."""

    source: Literal["pfg", "reviews"] = Field("pfg", description="'pfg' (build_pfg_users) or 'reviews' (JSON lines).")
    path: Optional[str] = Field(None, description="PFG FullData folder or review-history JSON lines.")
    max_users: Optional[int] = Field(None, ge=2, description="Seeded sample of users.")
    max_examples_per_user: Optional[int] = Field(None, ge=1, description="Examples per user and split.")
    max_profile_items: Optional[int] = Field(8, ge=1, description="History items per user.")
    history_turns: int = Field(3, ge=1, description="Conversation turns in each input.")
    seed: int = Field(0, description="Sampling seed.")


class CoPersonaFacetsConfig(BaseConfig):
    """Facet induction, summaries, embeddings and the graph."""

    llm: str = Field("smollm2", description="LLM of schema induction and summaries (embedded name / folder).")
    constrained: bool = Field(True, description="Schema-guided decoding (local models): always parses.")
    cache: Optional[str] = Field("auto", description="LLM response cache ('auto': output_dir/llm_cache.jsonl).")
    num_facets: int = Field(5, ge=1, le=16, description="M (paper: 5).")
    num_clusters: int = Field(4, ge=1, description="K of the k-means.")
    schema_items: int = Field(8, ge=1, description="R: items per profile text for induction (paper: 8).")
    summary_items: int = Field(6, ge=1, description="Items per user shown to the summariser (paper: 6).")
    schema_tokens: int = Field(512, ge=16, description="Max new tokens of the schema reply (free decoding).")
    summary_tokens: int = Field(160, ge=16, description="Max new tokens of a summary reply (free decoding).")
    on_failure: Literal["raise", "placeholder"] = Field("placeholder", description="A summary that never validates.")
    encoder: str = Field("minilm", description="Sentence encoder of the facet texts (paper: mpnet).")
    top_k: int = Field(5, ge=1, description="Neighbours per user and facet (paper: 5).")
    threshold: float = Field(0.35, ge=0, le=1, description="Similarity threshold (paper: 0.35).")
    combined_threshold: Optional[float] = Field(
        None, ge=0, le=1, description="Threshold of the combined (user-level) layer; None: threshold / num_facets, i.e. the "
                          "weighted facet scores of a pair must sum to the facet threshold (see the CoPersona docs).")
    per_cluster_schema: bool = Field(True, description="Induce one facet per cluster (small local models); False: "
                                                       "the whole schema in one prompt, as in the paper.")
    reliability: Literal["llm", "evidence"] = Field(
        "evidence", description="Reliability labels from the LLM (paper) or graded from the user's messages "
                                "(evidence_reliability; the embedded 135M model labels everything 'none').")


class CoPersonaModelSettings(BaseConfig):
    """Model settings shared by every variant (:class:`~personakit.models.copersona.CoPersonaConfig` fields)."""

    backbone: str = Field("smollm2", description="Causal LM (embedded name / folder).")
    lora_r: int = Field(16, ge=1, description="LoRA rank (paper: 16).")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (paper: 32).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout (paper: 0.05).")
    graph_hidden: int = Field(512, ge=1, description="FacetGraph width (paper: 512).")
    num_virtual_tokens: int = Field(20, ge=1, description="Soft-prompt length L (paper: 20).")
    retrieval_k: int = Field(4, ge=0, description="BM25 self-history items (paper: 4).")
    max_neighbors: int = Field(3, ge=0, description="Peers per facet in the prompt (paper: up to 3).")
    max_item_tokens: int = Field(64, ge=1)
    max_peer_tokens: int = Field(256, ge=1)
    max_prompt_tokens: int = Field(512, ge=16)
    max_target_tokens: int = Field(64, ge=2)


class CoPersonaRecipeConfig(BaseConfig):
    """The whole recipe (a YAML file; see ``examples/configs/copersona.yaml``)."""

    data: CoPersonaDataConfig = Field(default_factory=CoPersonaDataConfig)
    facets: CoPersonaFacetsConfig = Field(default_factory=CoPersonaFacetsConfig)
    model: CoPersonaModelSettings = Field(default_factory=CoPersonaModelSettings)
    variants: list[str] = Field(default_factory=lambda: list(COPERSONA_LABELS), description="Rows of the table.")
    training: CoPersonaTrainingConfig = Field(default_factory=lambda: CoPersonaTrainingConfig(epochs=1, progress=False))
    max_new_tokens: int = Field(32, ge=1, description="Generated tokens per reply.")
    metrics: list[str] = Field(default_factory=lambda: ["rouge", "meteor", "bleu", "bertscore", "reply_stats"])
    bertscore_model: str = Field("minilm", description="Local encoder of BERTScore (paper: led-base-16384).")
    output_dir: str = Field("runs/copersona", description="Results, caches, checkpoints.")
    device: Optional[str] = Field(None, description="e.g. cuda (default CPU).")
    seed: int = Field(0)

    @field_validator("variants")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in COPERSONA_LABELS]
        if bad or not v or len(set(v)) != len(v):
            raise ValueError(f"variants must be distinct names among {list(COPERSONA_LABELS)}, got {v}")
        return v


def load_copersona_data(cfg: CoPersonaDataConfig) -> Any:
    """:class:`~personakit.data.copersona_users.CoPersonaUsers` for the data config."""
    from personakit.data.copersona_users import build_pfg_users, build_review_users

    if not cfg.path:
        raise ValueError("CoPersonaDataConfig: field 'path' is required")
    if cfg.source == "pfg":
        return build_pfg_users(cfg.path, max_users=cfg.max_users, max_examples_per_user=cfg.max_examples_per_user,
                               max_profile_items=cfg.max_profile_items, history_turns=cfg.history_turns, seed=cfg.seed)
    from personakit.data.reviews import read_review_histories

    profiles = read_review_histories(cfg.path)
    if cfg.max_users is not None:
        profiles = profiles[: cfg.max_users]
    return build_review_users(profiles, max_profile_items=cfg.max_profile_items)


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
class CoPersonaResults:
    """Metrics per variant, the facet schema, the facet-biased fraction, sizes, timings."""

    rows: dict[str, dict[str, float]]
    schema: dict[str, Any]
    facet_biased_fraction: float
    sizes: dict[str, Any]
    timings: dict[str, float]
    predictions: dict[str, list[str]] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    structured: dict[str, Any] = field(default_factory=dict)

    def to_markdown(self) -> str:
        from personakit.eval import format_metrics_table

        keys = ["rouge1", "rougeL", "meteor", "bleu", "bertscore_f1"]
        rows = {label: {k: v[k] for k in keys if k in v} for label, v in self.rows.items()}
        lines = ["## CoPersona", "", format_metrics_table(rows, digits=4), "",
                 f"Facet-biased users (at least one facet not 'strong'): {self.facet_biased_fraction:.2%}.", "",
                 "Facets: " + "; ".join(f["name"] for f in self.schema.get("facets", [])) + "."]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "schema": self.schema, "facet_biased_fraction": self.facet_biased_fraction,
                "sizes": self.sizes, "timings": self.timings, "structured": self.structured}

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "results.md", self.to_markdown())
        atomic_write_text(d / "results.json", json.dumps(self.to_dict(), indent=2) + "\n")
        atomic_write_text(d / "facet_schema.json", json.dumps(self.schema, indent=2) + "\n")
        lines = [json.dumps({"variant": v, "index": i, "prediction": p, "reference": self.references[i]})
                 for v, preds in self.predictions.items() for i, p in enumerate(preds)]
        atomic_write_text(d / "predictions.jsonl", "\n".join(lines) + ("\n" if lines else ""))
        return d


def run_copersona_recipe(config: CoPersonaRecipeConfig, *, data: Any = None, generator: Any = None,
                         encoder: Any = None, backbone_factory: Optional[Callable[[], tuple[Any, Any]]] = None,
                         progress: bool = False) -> CoPersonaResults:
    """Run the recipe; ``data`` (:class:`~personakit.data.copersona_users.CoPersonaUsers`), ``generator``
    (a :class:`~personakit.llm.TextGenerator` for facets, else ``facets.llm`` is loaded), ``encoder``
    (texts → ``[n, d]``, else ``facets.encoder``) and ``backbone_factory`` (``() -> (model, tokenizer)``,
    else ``model.backbone``) replace the defaults (tests pass tiny stand-ins)."""
    import torch

    from personakit.eval import evaluate_texts
    from personakit.facets import FacetEmbedder, FacetSchemaInducer, FacetSummarizer, facet_biased_fraction
    from personakit.llm import GenerationSettings
    from personakit.models.copersona import CoPersonaContext, CoPersonaModel
    from personakit.training.copersona import CoPersonaTrainer

    t0 = time.perf_counter()
    log = StageLog(progress, "copersona")
    timings: dict[str, float] = {}
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    data = data if data is not None else load_copersona_data(config.data)
    fc = config.facets
    constrained = None
    if generator is None:
        from personakit.llm import HFGenerator

        generator = HFGenerator.from_pretrained(fc.llm, batch_size=8, device=config.device)
        if fc.constrained:
            from personakit.facets import SchemaGuidedGenerator

            constrained = SchemaGuidedGenerator.from_hf(generator)
    if encoder is None:
        from personakit.backbones import load_sentence_encoder

        st = load_sentence_encoder(fc.encoder, device=config.device)
        encoder = st.encode
    cache = str(out / "llm_cache.jsonl") if fc.cache == "auto" else fc.cache
    from personakit.llm import CachedGenerator

    gen = CachedGenerator(generator, cache) if cache else generator
    inducer = FacetSchemaInducer(gen, encoder, num_facets=fc.num_facets, num_clusters=fc.num_clusters,
                                 max_items=fc.schema_items, settings=GenerationSettings(max_new_tokens=fc.schema_tokens),
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
                               settings=GenerationSettings(max_new_tokens=fc.summary_tokens), on_failure=fc.on_failure,
                               constrained=constrained, reliability=fc.reliability, encoder=encoder)

    combined = fc.threshold / fc.num_facets if fc.combined_threshold is None else fc.combined_threshold
    pipe = CoPersonaPipeline(inducer, make_summarizer, FacetEmbedder(encoder), top_k=fc.top_k, threshold=fc.threshold,
                             combined_threshold=combined, schema=schema)
    log(f"{len(data.users)} users, {len(data.train)} train / {len(data.test)} test examples; "
        f"facets: schema, summaries, embeddings, graph")
    pipe.update(data.users, progress=progress)
    atomic_write_text(schema_path, pipe.schema.model_dump_json(indent=2) + "\n")
    timings["facets_s"] = time.perf_counter() - t0
    biased = facet_biased_fraction(list(pipe.facets.values()))
    log(f"facets done ({timings['facets_s']:.0f} s): {', '.join(f.name for f in pipe.schema.facets)}; "
        f"facet-biased users {biased:.0%}; graph edges {int(pipe.graph.edge_index.shape[1])}")

    if backbone_factory is None:
        from personakit.backbones import load_causal_lm

        def backbone_factory() -> tuple[Any, Any]:
            return load_causal_lm(config.model.backbone)

    base, tokenizer = backbone_factory()
    m = config.model
    context = CoPersonaContext.build(data.users, pipe.facets, pipe.embeddings, pipe.graph, max_neighbors=m.max_neighbors,
                                     max_peer_tokens=m.max_peer_tokens)
    refs = [ex.response for ex in data.test]
    rows: dict[str, dict[str, float]] = {}
    preds: dict[str, list[str]] = {}
    train = list(data.train) or list(data.test)
    for variant in config.variants:
        ts = time.perf_counter()
        log(f"{COPERSONA_LABELS[variant]}: training on {len(train)} examples")
        model = CoPersonaModel.from_backbone(
            copy.deepcopy(base), tokenizer, context=context, variant=variant, num_facets=len(pipe.schema),
            facet_dim=int(pipe.embeddings.embeddings.shape[-1]), graph_hidden=m.graph_hidden,
            num_virtual_tokens=m.num_virtual_tokens, retrieval_k=m.retrieval_k, max_neighbors=m.max_neighbors,
            max_item_tokens=m.max_item_tokens, max_peer_tokens=m.max_peer_tokens, max_prompt_tokens=m.max_prompt_tokens,
            max_target_tokens=m.max_target_tokens,
            lora={"r": m.lora_r, "alpha": m.lora_alpha, "dropout": m.lora_dropout})
        if config.device:
            model.to(config.device)
        tcfg = config.training.model_copy(update={"output_dir": str(out / "checkpoints" / variant),
                                                  "overwrite_output_dir": True, "max_new_tokens": config.max_new_tokens,
                                                  "use_cpu": not (config.device or "").startswith("cuda")})
        trainer = CoPersonaTrainer(model, tcfg, train_examples=train)
        trainer.train()
        texts = trainer.predict(data.test)
        preds[variant] = texts
        opts = {"bertscore": {"model": config.bertscore_model}} if "bertscore" in config.metrics else {}
        rows[COPERSONA_LABELS[variant]] = evaluate_texts(texts, refs, metrics=config.metrics, **opts)
        timings[f"{variant}_s"] = time.perf_counter() - ts
        log(f"{COPERSONA_LABELS[variant]}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[COPERSONA_LABELS[variant]].items())
            + f" ({timings[f'{variant}_s']:.0f} s)")
    timings["total_s"] = time.perf_counter() - t0
    results = CoPersonaResults(
        rows=rows, schema=json.loads(pipe.schema.model_dump_json()), facet_biased_fraction=biased,
        sizes={**data.stats(), "facets": len(pipe.schema), "graph_edges": int(pipe.graph.edge_index.shape[1]),
               "facet_edges": [int(e.shape[1]) for e in pipe.graph.facet_edge_index],
               "reliability_counts": {lvl: sum(f.reliability == lvl for u in pipe.facets.values() for f in u.facets)
                                      for lvl in ("none", "weak", "moderate", "strong")},
               "machine": platform.platform()},
        timings=timings, predictions=preds, references=refs,
        structured={"summary_failures": pipe.summarizer.last_stats.failures if pipe.summarizer.last_stats else 0,
                    "summary_prompts": pipe.summarizer.last_stats.prompts if pipe.summarizer.last_stats else 0,
                    "constrained": constrained is not None})
    results.save(out)
    return results
