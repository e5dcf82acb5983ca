"""The CoPersona recipe's config: data, facets, model settings, variants, training and scoring.

Example:
    >>> cfg = CoPersonaRecipeConfig(variants=["rag", "copersona"])
    >>> cfg.data.source, cfg.baseline, CoPersonaRecipeConfig.recipe
    ('builtin', 'nonperso', 'copersona')
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from personakit.config import BaseConfig
from personakit.recipes.base import PathField, RecipeConfig
from personakit.training.copersona import CoPersonaTrainingConfig

__all__ = ["COPERSONA_LABELS", "CoPersonaDataConfig", "CoPersonaFacetsConfig", "CoPersonaModelSettings",
           "CoPersonaRecipeConfig"]

COPERSONA_LABELS = {"nonperso": "Non-Perso", "rag": "RAG", "pag": "PAG", "copersona": "CoPersona",
                    "no_nonparametric": "w/o non-parametric", "no_parametric": "w/o parametric"}
"""Row labels of the variants (paper Tables 1 and 5): the system names in results and ``predictions.jsonl``."""


class CoPersonaDataConfig(BaseConfig):
    """Where the users come from, and the extra named test sets.

    ``builtin``: the built-in corpus as Persuasion-for-Good-style dialogues (three users
    with histories; no file, so it runs from an installed wheel).  ``pfg``: a
    Persuasion-for-Good ``FullData`` folder (:func:`~personakit.data.copersona_users.build_pfg_users`).
    ``reviews``: review histories as JSON lines
    (:func:`~personakit.data.copersona_users.build_review_users`).
    """

    source: Literal["builtin", "pfg", "reviews"] = Field(
        "builtin", description="'builtin' (the built-in corpus as PFG-style dialogues, no file), 'pfg' (a "
                               "Persuasion-for-Good FullData folder) or 'reviews' (review-history JSON lines).")
    path: Optional[str] = PathField(None, description="PFG FullData folder or review-history JSON lines "
                                                      "(source pfg / reviews; unused for builtin).")
    max_users: Optional[int] = Field(None, ge=2, description="Seeded sample of this many users (None: all).")
    max_examples_per_user: Optional[int] = Field(None, ge=1, description="Seeded sample of examples per user and "
                                                                         "split (pfg / builtin; None: all).")
    max_profile_items: Optional[int] = Field(8, ge=1, description="Most recent history items kept per user.")
    history_turns: int = Field(3, ge=1, description="Conversation turns in each input.")
    max_test: Optional[int] = Field(None, ge=1, description="Seeded sample of this many examples of each test set "
                                                            "(the main one and every named one; None: all).")
    test_sets: dict[str, str] = PathField(
        {},
        description="Extra named test sets, {name: JSON-lines file}: one ResponseExample per line (the format of "
                    "personakit augment / personakit.augment.io.save_examples: id, history, response, agent, "
                    "user_id), each user_id one of the recipe's users (the model reads the user's facets and "
                    "graph row). Scored like the main set, named 'test', and reported beside it.")
    seed: int = Field(0, description="Seed of the user and example sampling.")

    @field_validator("test_sets")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not name.strip() or name == "test":
                raise ValueError(f"test set name {name!r}: give a non-empty name other than 'test' (the main set)")
        return v

    @model_validator(mode="after")
    def _path_needed(self) -> "CoPersonaDataConfig":
        if self.source in ("pfg", "reviews") and not self.path:
            what = "FullData folder" if self.source == "pfg" else "JSON-lines file"
            raise ValueError(f"source {self.source!r} needs 'path' (the {what})")
        return self


class CoPersonaFacetsConfig(BaseConfig):
    """Facet induction, summaries, embeddings and the graph."""

    llm: str = Field("smollm2", description="LLM of schema induction and summaries (embedded name / folder).")
    constrained: bool = Field(True, description="Schema-guided decoding (local models): always parses.")
    dtype: Optional[str] = Field("auto", description="Weights of the facet LLM: 'auto' (bf16 where the CPU has AMX "
                                                     "or AVX512-BF16, or a GPU with bf16; fp32 elsewhere), "
                                                     "'bfloat16', 'float32', or None (fp32).")
    batch_size: int = Field(16, ge=1, description="Prompts filled together by schema-guided decoding (one batched "
                                                  "forward per decoding step); 1: one prompt at a time.")
    cache: Optional[str] = PathField(None, description="LLM reply cache, JSON lines (None: "
                                                       "<output_dir>/llm_cache.jsonl); a rerun makes no LLM call "
                                                       "for a prompt already answered.")
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
        None, ge=0, le=1, description="Threshold of the combined (user-level) layer; None: threshold / num_facets, "
                                      "i.e. the weighted facet scores of a pair must sum to the facet threshold (see "
                                      "the CoPersona docs).")
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
    max_item_tokens: int = Field(64, ge=1, description="Tokens per self-history item in the prompt.")
    max_peer_tokens: int = Field(256, ge=1, description="Tokens of peer evidence in the prompt.")
    max_prompt_tokens: int = Field(512, ge=16, description="Prompt length cap (tokens).")
    max_target_tokens: int = Field(64, ge=2, description="Target length cap in training (tokens).")


class CoPersonaRecipeConfig(RecipeConfig):
    """The whole recipe (``personakit run copersona --config tiny|default|FILE``; the shipped files are
    ``src/personakit/recipes/configs/copersona/{tiny,default}.yaml``)."""

    recipe = "copersona"

    data: CoPersonaDataConfig = Field(default_factory=CoPersonaDataConfig, description="Users and test sets.")
    facets: CoPersonaFacetsConfig = Field(default_factory=CoPersonaFacetsConfig,
                                          description="Facet schema, summaries, embeddings and graph.")
    model: CoPersonaModelSettings = Field(default_factory=CoPersonaModelSettings,
                                          description="Backbone, LoRA and CoPersona settings of every variant.")
    variants: list[str] = Field(default_factory=lambda: list(COPERSONA_LABELS),
                                description="Variants trained and scored, the rows of the table: "
                                            + ", ".join(COPERSONA_LABELS) + ".")
    training: CoPersonaTrainingConfig = Field(default_factory=lambda: CoPersonaTrainingConfig(epochs=1, progress=False),
                                              description="Training of each variant (its output_dir is "
                                                          "<output_dir>/checkpoints/<variant>).")
    max_new_tokens: int = Field(32, ge=1, description="Generated tokens per reply.")
    metrics: list[str] = Field(default_factory=lambda: ["rouge", "meteor", "bleu", "bertscore", "reply_stats"],
                               description="Metrics of every test set (personakit.eval names).")
    bertscore_model: str = Field("minilm", description="Local encoder of BERTScore (paper: led-base-16384).")
    baseline: Optional[str] = Field("nonperso", description="Variant the others are compared with (paired t-test "
                                                            "and bootstrap interval per example); None or a variant "
                                                            "not run: no comparison.")
    compare: list[str] = Field(default_factory=lambda: ["rougeL"],
                               description="Metric keys compared with the baseline (per-example scores).")
    significance_level: float = Field(0.05, gt=0, lt=1, description="Significance level of the paired t-tests.")

    @field_validator("variants")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in COPERSONA_LABELS]
        if bad or not v or len(set(v)) != len(v):
            raise ValueError(f"variants must be distinct names among {list(COPERSONA_LABELS)}, got {v}")
        return v

    @field_validator("baseline")
    @classmethod
    def _known_baseline(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in COPERSONA_LABELS:
            raise ValueError(f"baseline must be a variant name among {list(COPERSONA_LABELS)} or null, got {v!r}")
        return v
