r"""CoPersona facet schema induction (Zhang, Wang et al., KDD 2026, §3.1 and Appendix C).

From the population's profile texts $\tau_u$ (up to $R$ items per user) an LLM induces a
global schema $\hat{\mathcal F} = \{f_m\}_{m=1}^M = \mathrm{LLM}(P)$ (Eq. 3), where the
evidence package $P = \{S_k\}_{k=1}^K$ holds, per k-means cluster $k$ of the profile
embeddings $z_u$, the top TF-IDF terms $T_k$ and medoid excerpts $E_k$ (plus
standardised writing-style statistics when enabled).  Each facet has a name, a
definition and a value specification.

The JSON reply is parsed and validated strictly with pydantic
(:class:`FacetSchema`); a failing reply is re-asked with the validation error
(:func:`personakit.llm.generate_structured`); after ``max_attempts`` a
:class:`~personakit.llm.StructuredOutputError` shows the raw reply.  For small local
models :class:`~personakit.facets.constrained.SchemaGuidedGenerator` writes the JSON
skeleton itself and lets the model fill only the string values, so the reply always
parses.

Departures: the paper's prompt is not printed (the wording here is ours); the "scoring
rubric" and "evidence grounded in clusters" fields of its schema are folded into the
value specification; k-means uses :func:`personakit.functional.kmeans`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from personakit.config import BaseConfig
from personakit.llm.base import GenerationSettings, Prompt, TextGenerator
from personakit.types import UserProfile

__all__ = [
    "FacetSpec",
    "FacetSchema",
    "ClusterEvidence",
    "STYLE_FEATURES",
    "style_statistics",
    "profile_text",
    "cluster_profiles",
    "build_schema_prompt",
    "build_facet_prompt",
    "FacetSchemaInducer",
    "FacetSchemaInducerConfig",
]

Encoder = Callable[[list[str]], Any]
"""Texts → ``[n, d]`` embeddings (a ``SentenceTransformer``'s ``encode`` or any function)."""

STYLE_FEATURES = ("mean_chars", "mean_sentence_words", "punctuation_rate", "exclamation_rate", "question_rate",
                  "type_token_ratio")
"""Writing-style statistics of :func:`style_statistics` (Appendix C: length, sentence length, punctuation,
lexical diversity)."""


class FacetSpec(BaseModel):
    """One facet $f_m$: a concise name, a definition and a value specification.

    Example:
        >>> FacetSpec(name="Tone", definition="How warm the user sounds.", values="ordinal: cold < neutral < warm").name
        'Tone'
    """

    model_config = ConfigDict(extra="ignore")
    name: str = Field(..., min_length=1, max_length=80, description="Concise facet name.")
    definition: str = Field(..., min_length=1, description="What behavioural attribute the facet describes.")
    values: str = Field(..., min_length=1, description="Value specification (categorical or ordinal scale).")
    keywords: list[str] = Field(default_factory=list,
                                description="Cluster keywords the facet was induced from (per-cluster induction).")

    def describe(self) -> str:
        """``"name: definition (values). Keywords: ..."``: the facet as one text (its evidence prototype)."""
        text = f"{self.name}: {self.definition} ({self.values})"
        return text + (". Keywords: " + ", ".join(self.keywords) if self.keywords else "")

    @field_validator("name", "definition", "values", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return " ".join(v.split()) if isinstance(v, str) else v


class FacetSchema(BaseModel):
    """The global facet schema $\\hat{\\mathcal F}$: ``facets`` with unique names (case-insensitive).

    Example:
        >>> s = FacetSchema(facets=[{"name": "Tone", "definition": "d", "values": "v"}])
        >>> s.names, FacetSchema.model_validate_json(s.model_dump_json()) == s
        (['Tone'], True)
    """

    model_config = ConfigDict(extra="forbid")
    facets: list[FacetSpec] = Field(..., min_length=1, description="The facets, in a fixed order.")

    @model_validator(mode="after")
    def _unique(self) -> "FacetSchema":
        seen: set[str] = set()
        for spec in self.facets:
            key = spec.name.lower()
            if key in seen:
                raise ValueError(f"facet name {spec.name!r} appears twice; facet names must be distinct")
            seen.add(key)
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.facets]

    def __len__(self) -> int:
        return len(self.facets)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON (part of every summary cache key)."""
        import hashlib

        return hashlib.sha256(self.model_dump_json().encode("utf-8")).hexdigest()[:16]


def _exact_count(m: int) -> Callable[[Any], FacetSchema]:
    def check(value: Any) -> FacetSchema:
        schema = FacetSchema.model_validate(value)
        if len(schema.facets) != m:
            raise ValueError(f"field 'facets': expected exactly {m} facets, got {len(schema.facets)}")
        return schema

    return check


# ------------------------------------------------------------------ evidence
_SENT = re.compile(r"[.!?]+")
_WORD = re.compile(r"\w+", re.UNICODE)


def style_statistics(texts: Sequence[str]) -> list[float]:
    """Writing-style statistics of one user's texts, in the order of :data:`STYLE_FEATURES`.

    Example:
        >>> [round(v, 2) for v in style_statistics(["Hi there!", "Is it? yes."])]
        [10.0, 1.67, 0.14, 0.05, 0.05, 1.0]
    """
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        return [0.0] * len(STYLE_FEATURES)
    joined = " ".join(texts)
    chars = max(1, len(joined))
    words = _WORD.findall(joined.lower())
    sentences = max(1, len([s for s in _SENT.split(joined) if s.strip()]))
    punct = sum(1 for c in joined if not c.isalnum() and not c.isspace())
    return [
        float(np.mean([len(t) for t in texts])),
        len(words) / sentences,
        punct / chars,
        joined.count("!") / chars,
        joined.count("?") / chars,
        (len(set(words)) / len(words)) if words else 0.0,
    ]


def profile_text(profile: Union[UserProfile, Sequence[str]], max_items: Optional[int] = 8, max_chars: int = 2000) -> str:
    """$\\tau_u$: the user's most recent ``max_items`` history texts, one per line, cut to ``max_chars``."""
    texts = [it.text for it in profile.items] if isinstance(profile, UserProfile) else list(profile)
    if max_items is not None:
        texts = texts[-max_items:]
    return "\n".join(" ".join(t.split()) for t in texts)[:max_chars]


@dataclass
class ClusterEvidence:
    """The evidence package $S_k = (T_k, E_k)$ of one cluster.

    Attributes:
        cluster: cluster index $k$.
        size: number of users in the cluster.
        keywords: $T_k$, top TF-IDF terms of the cluster's profile texts.
        excerpts: $E_k$, excerpts of the medoid and the users nearest to it.
        members: indices of the cluster's users.
        style: mean writing-style statistics of the members (:data:`STYLE_FEATURES`), when computed.
    """

    cluster: int
    size: int
    keywords: list[str]
    excerpts: list[str]
    members: list[int] = field(default_factory=list)
    style: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        lines = [f"Cluster {self.cluster + 1} ({self.size} users)", "Keywords: " + ", ".join(self.keywords)]
        if self.style:
            lines.append("Style: " + ", ".join(f"{k}={v:.2f}" for k, v in self.style.items()))
        lines += [f'Excerpt: "{e}"' for e in self.excerpts]
        return "\n".join(lines)


def cluster_profiles(texts: Sequence[str], embeddings: Any, num_clusters: int, *, style: Optional[Sequence[Sequence[float]]] = None,
                     num_keywords: int = 8, num_excerpts: int = 2, excerpt_chars: int = 200, seed: int = 0
                     ) -> list[ClusterEvidence]:
    """k-means over profile embeddings, then per cluster TF-IDF keywords and medoid excerpts.

    Args:
        texts: $\\tau_u$ per user.
        embeddings: ``[N, d]`` profile embeddings $z_u$ (L2-normalised); style statistics,
            when given, are standardised and concatenated before clustering (Appendix C).
        num_clusters: $K$ (capped at $N$).
        style: ``[N, len(STYLE_FEATURES)]`` statistics or ``None``.
        num_keywords, num_excerpts, excerpt_chars: size of each package.
        seed: k-means seed.

    Returns:
        One :class:`ClusterEvidence` per non-empty cluster, largest first.
    """
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer

    from personakit.functional.kmeans import kmeans

    z = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))  # (N, d)
    if z.ndim != 2 or z.size(0) != len(texts):
        raise ValueError(f"cluster_profiles: embeddings must be [N={len(texts)}, d], got {tuple(z.shape)}")
    feats = z
    if style is not None:
        s = torch.as_tensor(np.asarray(style, dtype=np.float32))  # (N, S)
        s = (s - s.mean(0)) / s.std(0, unbiased=False).clamp_min(1e-6)
        feats = torch.cat([z, s / max(1.0, float(s.size(1)) ** 0.5)], dim=1)  # (N, d + S)
    k = max(1, min(num_clusters, len(texts)))
    result = kmeans(feats, k, seed=seed)
    labels = result.labels.tolist()
    vec = TfidfVectorizer(stop_words="english", max_features=5000, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        tfidf = vec.fit_transform(texts)
        vocab = np.asarray(vec.get_feature_names_out())
    except ValueError:  # empty vocabulary
        tfidf, vocab = None, np.asarray([])
    out: list[ClusterEvidence] = []
    zn = torch.nn.functional.normalize(z, dim=1)
    for c in range(k):
        members = [i for i, lab in enumerate(labels) if lab == c]
        if not members:
            continue
        keywords: list[str] = []
        if tfidf is not None and len(vocab):
            mean = np.asarray(tfidf[members].mean(axis=0)).ravel()
            keywords = [str(vocab[j]) for j in np.argsort(-mean, kind="stable")[:num_keywords] if mean[j] > 0]
        sub = zn[members]  # (n_c, d)
        dist = 1.0 - sub @ sub.T  # cosine distances (n_c, n_c)
        medoid = int(dist.sum(1).argmin())
        near = torch.argsort(dist[medoid], stable=True).tolist()[:num_excerpts]
        excerpts = [" ".join(texts[members[j]].split())[:excerpt_chars] for j in near]
        stats = {}
        if style is not None:
            mean_style = np.asarray(style, dtype=np.float64)[members].mean(0)
            stats = {name: float(v) for name, v in zip(STYLE_FEATURES, mean_style)}
        out.append(ClusterEvidence(cluster=c, size=len(members), keywords=keywords, excerpts=excerpts,
                                   members=members, style=stats))
    out.sort(key=lambda e: (-e.size, e.cluster))
    return out


SCHEMA_SYSTEM = (
    "You design user-profile schemas. Given clusters of users with keywords and excerpts, "
    "propose {m} distinct, non-overlapping persona facets that best separate the clusters "
    "(e.g. tone vs. topical preference vs. values). Reply with JSON only."
)
SCHEMA_USER = (
    "{evidence}\n\n"
    'Return exactly {m} facets as JSON: {{"facets": [{{"name": "...", "definition": "...", '
    '"values": "..."}}, ...]}}. "name" is 1-4 words, "definition" one sentence, '
    '"values" the categorical or ordinal scale of the facet.'
)


def build_schema_prompt(evidence: Sequence[ClusterEvidence], num_facets: int) -> list[dict[str, str]]:
    """The chat that asks for a schema of ``num_facets`` facets given the cluster packages."""
    body = "\n\n".join(e.render() for e in evidence)
    return [{"role": "system", "content": SCHEMA_SYSTEM.format(m=num_facets)},
            {"role": "user", "content": SCHEMA_USER.format(evidence=body, m=num_facets)}]


FACET_SYSTEM = (
    "You design user-profile schemas. Given one cluster of users with keywords and excerpts, name one "
    "persona facet (a behavioural attribute such as tone, topical preference or values) that characterises "
    "these users. Reply with JSON only."
)
FACET_USER = (
    "{evidence}\n\n{avoid}"
    'Return one facet as JSON: {{"name": "...", "definition": "...", "values": "..."}}. "name" is 1-4 words, '
    '"definition" one sentence, "values" the categorical or ordinal scale of the facet.'
)


def build_facet_prompt(evidence: ClusterEvidence, taken: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat that asks for the one facet of a cluster package (per-cluster induction); ``taken``
    lists the facet names already chosen, which the reply must not repeat."""
    avoid = ("Facets already chosen (pick a different one): " + ", ".join(taken) + "\n\n") if taken else ""
    return [{"role": "system", "content": FACET_SYSTEM},
            {"role": "user", "content": FACET_USER.format(evidence=evidence.render(), avoid=avoid)}]


_GENERIC_NAME = re.compile(r"^(name|facet|definition|values?|unspecified|not specified|\.\.\.)?\s*\d*$", re.IGNORECASE)


def _repair_facet(spec: FacetSpec, evidence: ClusterEvidence, taken: Sequence[str],
                  taken_definitions: Sequence[str] = ()) -> FacetSpec:
    """Per-cluster induction: a facet whose name is generic ("name", "facet 2"), longer than the
    4 words the prompt asks for, or already taken is named after its cluster's keywords, and a
    definition that is unspecified, shorter than 3 words or another facet's is written from them."""
    used = {t.lower() for t in taken}
    name, definition = spec.name, spec.definition
    if _GENERIC_NAME.match(name.strip()) or name.lower() in used or len(name.split()) > 4:
        words = [k for k in evidence.keywords if k.lower() not in " ".join(used)] or list(evidence.keywords)
        name = " / ".join(words[:2]) if words else f"cluster {evidence.cluster + 1}"
        while name.lower() in used:
            name += "'"
    other = {d.strip().lower() for d in taken_definitions}
    if (len(definition.split()) < 3 or definition.strip().lower() in other) and evidence.keywords:
        definition = "How the user writes about " + ", ".join(evidence.keywords[:4]) + "."
    return spec.model_copy(update={"name": name, "definition": definition, "keywords": list(evidence.keywords)})


class FacetSchemaInducer:
    r"""Induce the global facet schema $\hat{\mathcal F} = \mathrm{LLM}(P)$ (CoPersona Eq. 3).

    Pipeline: $\tau_u$ (:func:`profile_text`) → embeddings (``encoder``) [+ style
    statistics] → :func:`~personakit.functional.kmeans` → TF-IDF keywords and medoid
    excerpts (:func:`cluster_profiles`) → one prompt (:func:`build_schema_prompt`) →
    validated :class:`FacetSchema` with exactly ``num_facets`` facets.

    Args:
        generator: any :class:`~personakit.llm.TextGenerator` (wrap it in a
            :class:`~personakit.llm.CachedGenerator` to make reruns free).
        encoder: texts → ``[n, d]`` embeddings (e.g. ``load_sentence_encoder("minilm").encode``).
        num_facets: $M$ (paper: 5; its Figure 4 varies 3-6).
        num_clusters: $K$.
        max_items: $R$, history items per profile text (paper: 8).
        style_features: add writing-style statistics to the clustering and the packages.
        num_keywords, num_excerpts: package sizes.
        settings: decoding settings (default greedy, 512 new tokens).
        max_attempts: attempts of :func:`~personakit.llm.generate_structured`.
        constrained: a :class:`~personakit.facets.constrained.SchemaGuidedGenerator`
            used instead of free generation (always parses).
        per_cluster: ask for one facet per cluster (the ``num_facets`` largest clusters,
            one small prompt each, :func:`build_facet_prompt`) instead of the whole schema in one
            prompt.  Small models copy one facet five times when asked for a list; per cluster
            each facet is tied to different evidence, keeps its cluster's keywords
            (:attr:`FacetSpec.keywords`), and a generic or repeated name is replaced by those
            keywords.  Needs ``num_clusters >= num_facets`` (otherwise clusters are reused).
        seed: k-means seed.

    Example:
        >>> import json
        >>> from personakit.llm import CallableGenerator
        >>> reply = json.dumps({"facets": [{"name": n, "definition": "d", "values": "low/high"} for n in "AB"]})
        >>> inducer = FacetSchemaInducer(CallableGenerator(lambda chat: reply), encoder=lambda t: [[1.0, 0.0]] * len(t),
        ...                              num_facets=2, num_clusters=1)
        >>> inducer.induce([["I love sci-fi."], ["Too long, boring."]]).names
        ['A', 'B']
    """

    def __init__(self, generator: Optional[TextGenerator], encoder: Encoder, *, num_facets: int = 5,
                 num_clusters: int = 6, max_items: Optional[int] = 8, style_features: bool = True,
                 num_keywords: int = 8, num_excerpts: int = 2, settings: Optional[GenerationSettings] = None,
                 max_attempts: int = 3, constrained: Any = None, per_cluster: bool = False, seed: int = 0):
        if generator is None and constrained is None:
            raise ValueError("FacetSchemaInducer: give a generator or a constrained SchemaGuidedGenerator")
        if num_facets < 1 or num_clusters < 1:
            raise ValueError(f"FacetSchemaInducer: num_facets and num_clusters must be >= 1, got {num_facets}, {num_clusters}")
        self.generator, self.encoder, self.constrained = generator, encoder, constrained
        self.num_facets, self.num_clusters, self.max_items = num_facets, num_clusters, max_items
        self.style_features, self.num_keywords, self.num_excerpts = style_features, num_keywords, num_excerpts
        self.settings = settings or GenerationSettings(max_new_tokens=512)
        self.max_attempts, self.seed, self.per_cluster = max_attempts, seed, per_cluster
        self.last_evidence: list[ClusterEvidence] = []
        self.last_prompt: Optional[Prompt] = None

    def evidence(self, profiles: Sequence[Union[UserProfile, Sequence[str]]]) -> list[ClusterEvidence]:
        """The cluster packages $P$ of the population ``profiles``."""
        if not profiles:
            raise ValueError("FacetSchemaInducer: no profiles")
        texts = [profile_text(p, self.max_items) for p in profiles]
        emb = np.asarray(self.encoder(texts), dtype=np.float32)
        style = None
        if self.style_features:
            style = [style_statistics([it.text for it in p.items][-self.max_items:] if isinstance(p, UserProfile)
                                      else list(p)[-(self.max_items or len(p)):]) for p in profiles]
        return cluster_profiles(texts, emb, self.num_clusters, style=style, num_keywords=self.num_keywords,
                                num_excerpts=self.num_excerpts, seed=self.seed)

    def induce(self, profiles: Sequence[Union[UserProfile, Sequence[str]]]) -> FacetSchema:
        """Cluster ``profiles``, prompt the LLM, return the validated schema.

        Raises:
            StructuredOutputError: no valid schema after ``max_attempts`` (shows the raw reply).
        """
        from personakit.llm.structured import generate_structured

        self.last_evidence = self.evidence(profiles)
        if self.per_cluster:
            return self._induce_per_cluster(self.last_evidence)
        prompt = build_schema_prompt(self.last_evidence, self.num_facets)
        self.last_prompt = prompt
        check = _exact_count(self.num_facets)
        if self.constrained is not None:
            from personakit.facets.constrained import schema_skeleton

            [raw] = self.constrained.generate_json([prompt], schema_skeleton(self.num_facets))
            from personakit.llm.structured import StructuredOutputError, extract_json

            try:
                return check(extract_json(raw))
            except Exception as err:  # noqa: BLE001 - shown with the raw reply
                raise StructuredOutputError(0, raw, str(err), 1) from err
        [schema] = generate_structured(self.generator, [prompt], check, self.settings,
                                       max_attempts=self.max_attempts, progress=False)
        return schema

    def _induce_per_cluster(self, evidence: Sequence[ClusterEvidence]) -> FacetSchema:
        """One prompt per facet m, on the evidence of the m-th largest cluster (reused when too few)."""
        from personakit.llm.structured import StructuredOutputError, extract_json, generate_structured

        facets: list[FacetSpec] = []
        for m in range(self.num_facets):
            ev = evidence[m % len(evidence)]
            taken = [f.name for f in facets]
            prompt = build_facet_prompt(ev, taken)
            self.last_prompt = prompt
            if self.constrained is not None:
                from personakit.facets.constrained import facet_skeleton

                [raw] = self.constrained.generate_json([prompt], facet_skeleton(f"facet {m + 1}"))
                try:
                    spec = FacetSpec.model_validate(extract_json(raw))
                except Exception as err:  # noqa: BLE001 - shown with the raw reply
                    raise StructuredOutputError(0, raw, str(err), 1) from err
            else:
                def check(value: Any, taken: Sequence[str] = tuple(taken)) -> FacetSpec:
                    spec = FacetSpec.model_validate(value)
                    if spec.name.lower() in {t.lower() for t in taken}:
                        raise ValueError(f"field 'name': {spec.name!r} is already a facet; choose a different facet")
                    return spec

                [spec] = generate_structured(self.generator, [prompt], check, self.settings,
                                             max_attempts=self.max_attempts, progress=False)
            facets.append(_repair_facet(spec, ev, taken, [f.definition for f in facets]))
        return FacetSchema(facets=facets)


class FacetSchemaInducerConfig(BaseConfig):
    """Config of :class:`FacetSchemaInducer` (the generator and encoder are passed to ``build``)."""

    _target_ = FacetSchemaInducer
    num_facets: int = Field(5, ge=1, le=16, description="M, facets in the schema (paper: 5).")
    num_clusters: int = Field(6, ge=1, description="K, k-means clusters of the profile embeddings.")
    max_items: Optional[int] = Field(8, ge=1, description="R, history items per profile text (paper: 8).")
    style_features: bool = Field(True, description="Add writing-style statistics (Appendix C).")
    num_keywords: int = Field(8, ge=1, description="TF-IDF keywords per cluster.")
    num_excerpts: int = Field(2, ge=1, description="Medoid excerpts per cluster.")
    settings: GenerationSettings = Field(default_factory=lambda: GenerationSettings(max_new_tokens=512),
                                         description="Decoding settings.")
    max_attempts: int = Field(3, ge=1, description="Attempts (first + retries with the validation error).")
    per_cluster: bool = Field(False, description="One prompt per facet on one cluster's evidence (small models).")
    seed: int = Field(0, description="k-means seed.")
