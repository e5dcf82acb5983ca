"""CoPersona facets: schema induction, per-facet summaries with reliability, facet embeddings.

* :class:`FacetSchemaInducer` → :class:`FacetSchema` (k-means + TF-IDF + medoid excerpts + an LLM).
* :class:`FacetSummarizer` → :class:`UserFacets` (summary, grounded quotes, reliability per facet).
* :class:`FacetEmbedder` → :class:`FacetEmbeddings` (``[N, M, d]`` L2-normalised, ``[N, M]`` labels).
* :class:`SchemaGuidedGenerator`: constrained JSON decoding for small local models.

Importing this package imports neither torch_geometric nor sentence_transformers nor peft.
"""

from personakit.facets.constrained import (
    ChoiceSlot,
    LiteralPiece,
    SchemaGuidedGenerator,
    StringSlot,
    facet_skeleton,
    schema_skeleton,
    summary_skeleton,
)
from personakit.facets.embed import FacetEmbedder, FacetEmbeddings, embed_facets
from personakit.facets.schema import (
    STYLE_FEATURES,
    ClusterEvidence,
    FacetSchema,
    FacetSchemaInducer,
    FacetSchemaInducerConfig,
    FacetSpec,
    build_facet_prompt,
    build_schema_prompt,
    cluster_profiles,
    profile_text,
    style_statistics,
)
from personakit.facets.summarize import (
    PLACEHOLDER,
    QUOTE_THRESHOLD,
    RELIABILITY_LEVELS,
    FacetSummarizer,
    FacetSummarizerConfig,
    FacetSummary,
    SummarizeStats,
    SummaryReply,
    UserFacets,
    build_summary_prompt,
    evidence_reliability,
    facet_biased_fraction,
    profile_hash,
    quote_is_grounded,
)

__all__ = [
    "FacetSpec", "FacetSchema", "ClusterEvidence", "STYLE_FEATURES", "style_statistics", "profile_text",
    "cluster_profiles", "build_schema_prompt", "build_facet_prompt", "FacetSchemaInducer", "FacetSchemaInducerConfig",
    "RELIABILITY_LEVELS", "PLACEHOLDER", "QUOTE_THRESHOLD", "FacetSummary", "UserFacets", "SummaryReply",
    "quote_is_grounded", "profile_hash", "build_summary_prompt", "SummarizeStats", "FacetSummarizer",
    "FacetSummarizerConfig", "facet_biased_fraction", "evidence_reliability",
    "FacetEmbeddings", "FacetEmbedder", "embed_facets",
    "LiteralPiece", "StringSlot", "ChoiceSlot", "SchemaGuidedGenerator", "facet_skeleton", "schema_skeleton", "summary_skeleton",
]
