r"""CoPersona facet summaries with grounded quotes and reliability labels (§3.1, Eq. 4).

For every user $u$ and facet $f_m$ an LLM writes a concise summary $s_u^{(m)}$, at most
two short quotes $\mathrm{ev}_u^{(m)}$ taken from the user's own text, and a reliability
label $r_u^{(m)} \in \{\text{none}, \text{weak}, \text{moderate}, \text{strong}\}$.  The
facet description is $t_u^{(m)} = [s_u^{(m)}; \mathrm{ev}_u^{(m)}]$; a facet labelled
none or weak gets the neutral placeholder :data:`PLACEHOLDER` instead.

**Quote grounding.**  A quote is kept only if it occurs in the user's text
(:func:`quote_is_grounded`): after lower-casing and collapsing whitespace it must be a
substring, or reach rapidfuzz ``partial_ratio`` $\ge$ :data:`QUOTE_THRESHOLD` (= 90)
against the text, and have at least 3 words.  90 accepts a copied quote with a changed
character or two (case, punctuation, a typo fixed) and rejects paraphrases and invented
quotes (which score far lower).  A reply with an invented quote fails validation and
is re-asked with the error (``ungrounded="retry"``) or has the quote dropped
(``"drop"``).

**Backends, cache, resume.**  Prompts go through any
:class:`~personakit.llm.TextGenerator` (local HF model, OpenAI-compatible endpoint,
callable) via :func:`~personakit.llm.generate_structured`, wrapped in a
:class:`~personakit.llm.CachedGenerator` when ``cache`` is given (every completed
batch is durable; a rerun costs nothing).  Finished users are stored in a second
append-only :class:`~personakit.llm.ResponseCache` (``store``) keyed by
(user id, hash of the user's history, schema, settings): summarising a population
again only calls the LLM for new users and users whose history changed.

**Evidence-graded reliability** (``reliability="evidence"``, a departure for small
models).  A 135M model's reliability label carries no information: it picks ``none``
for every user and facet (with the log-likelihood of ``none`` ahead by 7-9 nats), so
every facet becomes a placeholder and the graph has no edge.  With ``"evidence"`` the
label is graded from the user's own messages instead (:func:`evidence_reliability`):
each facet scores the mean of the two highest cosine similarities between the user's
messages and the facet's description (:meth:`FacetSpec.describe`), and the user's
facets are ranked by that score: the best supported facet is ``strong``, the second
``moderate``, the third ``weak``, the rest ``none``.  It needs a sentence ``encoder``,
looks at one user at a time (adding users changes no one else's labels) and makes
every user facet-biased by construction, as the paper finds nearly all users are
(Table 4).  The LLM still writes the summaries and quotes.

Departure: the paper batches 8 users per call to GPT-4o-mini; one prompt per
(user, facet) is used here, which small local models handle far better.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from personakit.config import BaseConfig
from personakit.facets.schema import FacetSchema, FacetSpec
from personakit.llm.base import GenerationSettings, Prompt, TextGenerator
from personakit.llm.cache import CachedGenerator, ResponseCache
from personakit.types import UserProfile

__all__ = [
    "RELIABILITY_LEVELS",
    "PLACEHOLDER",
    "QUOTE_THRESHOLD",
    "FacetSummary",
    "UserFacets",
    "SummaryReply",
    "quote_is_grounded",
    "profile_hash",
    "build_summary_prompt",
    "SummarizeStats",
    "FacetSummarizer",
    "FacetSummarizerConfig",
    "facet_biased_fraction",
    "evidence_reliability",
]

RELIABILITY_LEVELS = ("none", "weak", "moderate", "strong")
"""Ordinal reliability labels; their index is the integer label used by the graph."""
PLACEHOLDER = "No explicit profile information provided."
"""Neutral description of a none/weak facet (the paper's example text)."""
QUOTE_THRESHOLD = 90.0
"""Minimum rapidfuzz ``partial_ratio`` (0-100) for a quote to count as grounded."""
MIN_QUOTE_WORDS = 3

Reliability = Literal["none", "weak", "moderate", "strong"]


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"').split())


def quote_is_grounded(quote: str, text: str, threshold: float = QUOTE_THRESHOLD, min_words: int = MIN_QUOTE_WORDS
                      ) -> bool:
    """Whether ``quote`` occurs in ``text`` up to small edits (see the module docstring).

    Example:
        >>> text = "I honestly think kids deserve a fair start in life."
        >>> quote_is_grounded("kids deserve a fair start", text)
        True
        >>> quote_is_grounded("Kids deserve a fair  start!", text)  # case, spacing, punctuation
        True
        >>> quote_is_grounded("I donate to charity every month", text)
        False
    """
    q, t = _norm(quote).strip(" \"'"), _norm(text)
    if len(q.split()) < min_words:
        return False
    if q in t:
        return True
    from rapidfuzz import fuzz

    return fuzz.partial_ratio(q, t) >= threshold


class FacetSummary(BaseModel):
    """One facet of one user: summary, grounded quotes, reliability.

    ``summary`` is :data:`PLACEHOLDER` for none/weak facets; the model's own text is kept
    in ``llm_summary``.
    """

    model_config = ConfigDict(extra="forbid")
    facet: str
    summary: str
    quotes: list[str] = Field(default_factory=list, max_length=2)
    reliability: Reliability = "none"
    llm_summary: str = ""

    @property
    def level(self) -> int:
        """Integer reliability label (0 = none ... 3 = strong)."""
        return RELIABILITY_LEVELS.index(self.reliability)

    def text(self) -> str:
        """$t_u^{(m)} = [s_u^{(m)}; \\mathrm{ev}_u^{(m)}]$ (Eq. 4): the text that is embedded."""
        if self.reliability in ("none", "weak"):
            return PLACEHOLDER
        return " ".join([self.summary, *(f'"{q}"' for q in self.quotes)])


class UserFacets(BaseModel):
    """All facet summaries of one user, in schema order, with the hash of the history they came from."""

    model_config = ConfigDict(extra="forbid")
    user_id: str
    content_hash: str
    facets: list[FacetSummary]

    @property
    def reliability(self) -> list[int]:
        return [f.level for f in self.facets]


class SummaryReply(BaseModel):
    """What the LLM must return per (user, facet)."""

    model_config = ConfigDict(extra="ignore")
    summary: str = Field(..., min_length=1)
    quotes: list[str] = Field(default_factory=list)
    reliability: Reliability

    @field_validator("reliability", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("quotes", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            return [v] if v.strip() else []
        return [q for q in v if isinstance(q, str) and q.strip()] if isinstance(v, list) else v


def profile_hash(texts: Sequence[str]) -> str:
    """sha256 (16 hex digits) of a user's history texts, in order."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


SUMMARY_SYSTEM = (
    "You analyse a user's own messages along one persona facet. Reply with JSON only: "
    '{"summary": one or two sentences, "quotes": up to 2 short phrases copied exactly from the messages, '
    '"reliability": "none" | "weak" | "moderate" | "strong" (how much evidence the messages give)}.'
)


def build_summary_prompt(texts: Sequence[str], facet: FacetSpec) -> list[dict[str, str]]:
    """The chat for one (user, facet): the facet's definition and value specification, then the user's messages."""
    body = "\n".join(f"- {' '.join(t.split())}" for t in texts)
    return [{"role": "system", "content": SUMMARY_SYSTEM},
            {"role": "user", "content": f"Facet: {facet.name}\nDefinition: {facet.definition}\n"
                                        f"Values: {facet.values}\n\nThe user's messages:\n{body}\n\nJSON:"}]


def evidence_reliability(texts: Sequence[str], facets: Sequence[FacetSpec], encoder: Any,
                         facet_vectors: Any = None) -> list[int]:
    """Reliability levels (0-3) of one user's facets graded from the user's own ``texts``.

    Facet ``m`` scores the mean of the two highest cosine similarities between the messages
    and ``facets[m].describe()``; facets are ranked by score (ties by schema order): rank 0 is
    ``strong`` (3), rank 1 ``moderate`` (2), rank 2 ``weak`` (1), the rest ``none`` (0).  No
    message: every facet ``none``.  ``facet_vectors`` (``[M, d]``) skips encoding the facets.

    Example:
        >>> from personakit.facets import FacetSpec
        >>> enc = lambda t: [[1.0, 0.0] if "cat" in x else [0.0, 1.0] for x in t]
        >>> fs = [FacetSpec(name="Pets", definition="cats", values="v"), FacetSpec(name="Money", definition="pay", values="v")]
        >>> evidence_reliability(["my cat sleeps", "a cat"], fs, enc), evidence_reliability([], fs, enc)
        ([3, 2], [0, 0])
    """
    import numpy as np

    texts = [t for t in texts if t and t.strip()]
    if not texts:
        return [0] * len(facets)
    f = np.asarray(facet_vectors if facet_vectors is not None else encoder([spec.describe() for spec in facets]),
                   dtype=np.float64)  # (M, d)
    x = np.asarray(encoder(list(texts)), dtype=np.float64)  # (n, d)
    # not in place: ``facet_vectors`` may be the caller's own float64 array
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = np.sort(x @ f.T, axis=0)[::-1]  # (n, M), best message first
    score = sims[:2].mean(axis=0)  # (M,)
    order = sorted(range(len(facets)), key=lambda m: (-score[m], m))
    levels = [0] * len(facets)
    for rank, m in enumerate(order[:3]):
        levels[m] = 3 - rank
    return levels


@dataclass(frozen=True)
class SummarizeStats:
    """What the last :meth:`FacetSummarizer.summarize` call did.

    Attributes:
        users: users asked for.
        reused: users served from the store (unchanged history): no LLM call.
        summarized: users summarised in this call.
        prompts: (user, facet) prompts sent.
        failures: prompts that never validated (replaced by a ``none`` placeholder).
        dropped_quotes: ungrounded quotes removed.
        seconds: wall time.
    """

    users: int
    reused: int
    summarized: int
    prompts: int
    failures: int
    dropped_quotes: int
    seconds: float


class FacetSummarizer:
    """Summarise every user along every facet of a :class:`~personakit.facets.FacetSchema`.

    Args:
        generator: any :class:`~personakit.llm.TextGenerator` (``None`` with ``constrained``).
        schema: the facet schema.
        max_items: history items per user shown to the LLM (paper: 6, the most recent).
        max_chars_per_item: each item cut to this many characters.
        settings: decoding settings (default greedy, 160 new tokens).
        cache: LLM response cache (a :class:`~personakit.llm.ResponseCache` or a path).
        store: per-user result store (path or cache), keyed by user and content hash.
        quote_threshold: see :data:`QUOTE_THRESHOLD`.
        ungrounded: ``"retry"`` (invalid reply, re-asked with the error) or ``"drop"``.
        max_attempts: attempts per prompt.
        on_failure: ``"raise"`` (a :class:`~personakit.llm.StructuredOutputError` with the
            raw reply) or ``"placeholder"`` (the facet becomes ``none``).
        constrained: a :class:`~personakit.facets.constrained.SchemaGuidedGenerator`
            used instead of free generation (ungrounded quotes are then dropped).
        batch_size: prompts per generator call; with ``constrained``, the prompts of
            ``batch_size // num_facets`` users are filled as one batch (``1``: one prompt at a time).
        reliability: ``"llm"`` (the model's label, as in the paper) or ``"evidence"``
            (graded from the user's messages by :func:`evidence_reliability`; needs ``encoder``).
        encoder: texts → ``[n, d]`` embeddings, for ``reliability="evidence"``.

    Example:
        >>> import json
        >>> from personakit.llm import CallableGenerator
        >>> from personakit.facets import FacetSchema
        >>> schema = FacetSchema(facets=[{"name": "Tone", "definition": "d", "values": "v"}])
        >>> reply = json.dumps({"summary": "Warm.", "quotes": ["so happy to help"], "reliability": "strong"})
        >>> s = FacetSummarizer(CallableGenerator(lambda chat: reply), schema)
        >>> out = s.summarize([UserProfile(user_id="u", items=[{"id": "1", "text": "I am so happy to help!"}])])
        >>> out["u"].facets[0].quotes, out["u"].reliability
        (['so happy to help'], [3])
    """

    def __init__(self, generator: Optional[TextGenerator], schema: FacetSchema, *, max_items: Optional[int] = 6,
                 max_chars_per_item: int = 400, settings: Optional[GenerationSettings] = None,
                 cache: Union[ResponseCache, str, "os.PathLike[str]", None] = None,
                 store: Union[ResponseCache, str, "os.PathLike[str]", None] = None,
                 quote_threshold: float = QUOTE_THRESHOLD, ungrounded: Literal["retry", "drop"] = "retry",
                 max_attempts: int = 3, on_failure: Literal["raise", "placeholder"] = "raise",
                 constrained: Any = None, batch_size: int = 16, reliability: Literal["llm", "evidence"] = "llm",
                 encoder: Any = None):
        if generator is None and constrained is None:
            raise ValueError("FacetSummarizer: give a generator or a constrained SchemaGuidedGenerator")
        if reliability not in ("llm", "evidence"):
            raise ValueError(f"FacetSummarizer: reliability must be 'llm' or 'evidence', got {reliability!r}")
        if reliability == "evidence" and encoder is None:
            raise ValueError("FacetSummarizer: reliability='evidence' needs an encoder (texts -> [n, d] embeddings)")
        self.reliability, self.encoder = reliability, encoder
        self._facet_vectors: Any = None
        if ungrounded not in ("retry", "drop") or on_failure not in ("raise", "placeholder"):
            raise ValueError(f"FacetSummarizer: bad ungrounded={ungrounded!r} or on_failure={on_failure!r}")
        self.generator = generator
        if generator is not None and cache is not None:
            self.generator = CachedGenerator(generator, cache)
        self.schema = schema
        self.max_items, self.max_chars_per_item = max_items, max_chars_per_item
        self.settings = settings or GenerationSettings(max_new_tokens=160)
        self.store = store if store is None or isinstance(store, ResponseCache) else ResponseCache(store)
        self.quote_threshold, self.ungrounded = quote_threshold, ungrounded
        self.max_attempts, self.on_failure = max_attempts, on_failure
        self.constrained, self.batch_size = constrained, batch_size
        self.last_stats: Optional[SummarizeStats] = None

    # ------------------------------------------------------------------ helpers
    def user_texts(self, profile: UserProfile) -> list[str]:
        texts = [it.text[: self.max_chars_per_item] for it in profile.items]
        return texts[-self.max_items:] if self.max_items is not None else texts

    def store_key(self, profile: UserProfile) -> str:
        """(user, content hash, schema, settings): a change in any of them re-summarises the user."""
        payload = json.dumps({"u": profile.user_id, "h": profile_hash(self.user_texts(profile)),
                              "s": self.schema.fingerprint(), "g": self.settings.cache_fields(),
                              "m": getattr(self.generator, "model_id", None) or getattr(self.constrained, "model_id", ""),
                              "c": self.constrained is not None, "r": self.reliability, **self._dtype_key()},
                             sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _dtype_key(self) -> dict[str, str]:
        """``{"d": dtype}`` when the local model is not fp32 (bf16 replies can differ); fp32 keys stay as they were."""
        model = getattr(self.constrained, "model", None) or getattr(self.generator, "model", None)
        try:
            dtype = str(next(model.parameters()).dtype) if model is not None else "torch.float32"
        except (StopIteration, AttributeError, TypeError):
            return {}
        return {} if dtype == "torch.float32" else {"d": dtype}

    def _validator(self, texts: Sequence[str], dropped: list[int]):
        joined = "\n".join(texts)

        def check(value: Any) -> SummaryReply:
            reply = SummaryReply.model_validate(value)
            bad = [q for q in reply.quotes if not quote_is_grounded(q, joined, self.quote_threshold)]
            if bad and self.ungrounded == "retry" and self.constrained is None:
                raise ValueError(f"field 'quotes': {bad[0]!r} does not occur in the user's messages; "
                                 "copy quotes exactly or give none")
            kept = [q for q in reply.quotes if q not in bad]
            if len(kept) > 2:
                raise ValueError(f"field 'quotes': at most 2 quotes, got {len(kept)}")
            dropped[0] += len(bad)
            return reply.model_copy(update={"quotes": kept})

        return check

    # ------------------------------------------------------------------ main
    def _replies(self, profile: UserProfile, dropped: list[int]) -> list[Optional[SummaryReply]]:
        """One validated reply (or ``None`` after the last failed attempt) per facet of the schema."""
        return self._replies_many([profile], dropped)[0]

    def _replies_many(self, profiles: Sequence[UserProfile], dropped: list[int]) -> list[list[Optional[SummaryReply]]]:
        """:meth:`_replies` of several users; with ``constrained``, their prompts are decoded as one batch."""
        from personakit.llm.structured import StructuredOutputError, extract_json, generate_structured

        texts = [self.user_texts(p) for p in profiles]
        prompts: list[list[Prompt]] = [[build_summary_prompt(t, spec) for spec in self.schema.facets] for t in texts]
        checks = [self._validator(t, dropped) for t in texts]
        if self.constrained is None:
            return [generate_structured(self.generator, ps, check, self.settings,  # type: ignore[arg-type]
                                        max_attempts=self.max_attempts, progress=False, batch_size=self.batch_size,
                                        on_failure="raise" if self.on_failure == "raise" else "none")
                    for ps, check in zip(prompts, checks)]
        from personakit.facets.constrained import summary_skeleton

        # graded from the messages afterwards: the label slot need not weigh four options
        skeleton = summary_skeleton(levels=("none",)) if self.reliability == "evidence" else summary_skeleton()
        flat = [p for ps in prompts for p in ps]
        raws = iter(self.constrained.generate_json(flat, skeleton, batch_size=self.batch_size))
        out: list[list[Optional[SummaryReply]]] = []
        for ps, check in zip(prompts, checks):
            replies: list[Optional[SummaryReply]] = []
            for i in range(len(ps)):
                raw = next(raws)
                try:
                    replies.append(check(extract_json(raw)))
                except Exception as err:  # noqa: BLE001 - shown with the raw reply
                    if self.on_failure == "raise":
                        raise StructuredOutputError(i, raw, str(err), 1) from err
                    replies.append(None)
            out.append(replies)
        return out

    def summarize(self, profiles: Sequence[UserProfile], progress: bool = False) -> dict[str, UserFacets]:
        """``{user_id: UserFacets}`` for ``profiles``; users whose (history, schema, settings) are in the
        store are reused without any LLM call, every finished user is stored at once (resume)."""
        start = time.perf_counter()
        out: dict[str, UserFacets] = {}
        todo: list[UserProfile] = []
        for p in profiles:
            if not isinstance(p, UserProfile):
                raise TypeError(f"FacetSummarizer.summarize: expected UserProfile, got {type(p).__name__}")
            key = self.store_key(p)
            if self.store is not None and key in self.store:
                out[p.user_id] = UserFacets.model_validate_json(self.store.get(key))  # type: ignore[arg-type]
            else:
                todo.append(p)
        reused = len(out)
        failures = 0
        dropped = [0]
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc="facet summaries", unit="user")
        # schema-guided decoding fills the prompts of several users as one batch (batch_size prompts)
        group = max(1, self.batch_size // max(1, len(self.schema.facets))) if self.constrained is not None else 1
        for start_user in range(0, len(todo), group):
            chunk = todo[start_user:start_user + group]
            for p, replies in zip(chunk, self._replies_many(chunk, dropped)):
                self._finish(p, replies, out, bar)
                failures += sum(r is None for r in replies)
        if bar is not None:
            bar.close()
        self.last_stats = SummarizeStats(users=len(profiles), reused=reused, summarized=len(todo),
                                         prompts=len(todo) * len(self.schema.facets), failures=failures,
                                         dropped_quotes=dropped[0], seconds=time.perf_counter() - start)
        return {p.user_id: out[p.user_id] for p in profiles}

    def _finish(self, p: UserProfile, replies: list[Optional[SummaryReply]], out: dict[str, UserFacets],
                bar: Any) -> None:
        """Turn one user's replies into :class:`UserFacets`, store them, advance the bar."""
        if self.reliability == "evidence":
            if self._facet_vectors is None:
                self._facet_vectors = self.encoder([spec.describe() for spec in self.schema.facets])
            levels = evidence_reliability(self.user_texts(p), self.schema.facets, self.encoder, self._facet_vectors)
            replies = [None if r is None else r.model_copy(update={"reliability": RELIABILITY_LEVELS[lv]})
                       for r, lv in zip(replies, levels)]
        facets = []
        for spec, r in zip(self.schema.facets, replies):
            if r is None:
                facets.append(FacetSummary(facet=spec.name, summary=PLACEHOLDER, reliability="none"))
                continue
            placeholder = r.reliability in ("none", "weak")
            facets.append(FacetSummary(facet=spec.name, summary=PLACEHOLDER if placeholder else r.summary,
                                       quotes=r.quotes[:2], reliability=r.reliability, llm_summary=r.summary))
        uf = UserFacets(user_id=p.user_id, content_hash=profile_hash(self.user_texts(p)), facets=facets)
        out[p.user_id] = uf
        if self.store is not None:
            self.store.put(self.store_key(p), uf.model_dump_json())
        if bar is not None:
            bar.update(1)


def facet_biased_fraction(users: Sequence[UserFacets]) -> float:
    """Fraction of *facet-biased* users (CoPersona Table 4): at least one facet with support no
    stronger than ``moderate``, i.e. not every facet labelled ``strong``.

    Example:
        >>> a = UserFacets(user_id="a", content_hash="", facets=[FacetSummary(facet="x", summary="s", reliability="strong")])
        >>> b = UserFacets(user_id="b", content_hash="", facets=[FacetSummary(facet="x", summary="s", reliability="moderate")])
        >>> facet_biased_fraction([a, b])
        0.5
    """
    if not users:
        return 0.0
    return sum(1 for u in users if any(f.reliability != "strong" for f in u.facets)) / len(users)


class FacetSummarizerConfig(BaseConfig):
    """Config of :class:`FacetSummarizer` (generator and schema are passed to ``build``)."""

    _target_ = FacetSummarizer
    max_items: Optional[int] = Field(6, ge=1, description="History items per user (paper: 6).")
    max_chars_per_item: int = Field(400, ge=16, description="Characters kept per history item.")
    settings: GenerationSettings = Field(default_factory=lambda: GenerationSettings(max_new_tokens=160),
                                         description="Decoding settings.")
    cache: Optional[str] = Field(None, description="LLM response cache (JSON lines).")
    store: Optional[str] = Field(None, description="Per-user summary store (JSON lines).")
    quote_threshold: float = Field(QUOTE_THRESHOLD, ge=0, le=100, description="rapidfuzz partial_ratio threshold.")
    ungrounded: Literal["retry", "drop"] = Field("retry", description="Invented quotes: re-ask or drop.")
    max_attempts: int = Field(3, ge=1, description="Attempts per prompt.")
    on_failure: Literal["raise", "placeholder"] = Field("raise", description="After the last attempt.")
    batch_size: int = Field(16, ge=1, description="Prompts per generator call.")
    reliability: Literal["llm", "evidence"] = Field("llm", description="Reliability from the LLM or graded from the "
                                                    "user's messages (evidence_reliability; needs an encoder).")
