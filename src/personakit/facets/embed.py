r"""CoPersona per-facet embeddings $e_u^{(m)}$ (§3.1).

Each facet description $t_u^{(m)} = [s_u^{(m)}; \mathrm{ev}_u^{(m)}]$
(:meth:`~personakit.facets.FacetSummary.text`, the placeholder for none/weak facets) is
embedded with a sentence encoder and L2-normalised, giving ``[N, M, d]`` embeddings and
the ``[N, M]`` integer reliability labels (0 = none ... 3 = strong) that the multiplex
graph and :class:`~personakit.graph.FacetGraph` read.

:class:`FacetEmbedder` caches embeddings by the sha256 of the text, so after an
incremental update only new or changed descriptions are encoded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from personakit.facets.summarize import UserFacets

__all__ = ["FacetEmbeddings", "FacetEmbedder", "embed_facets"]

Encoder = Callable[[list[str]], Any]


@dataclass
class FacetEmbeddings:
    """Facet embeddings of a population.

    Attributes:
        user_ids: ``N`` user ids (row order).
        facet_names: ``M`` facet names.
        embeddings: ``[N, M, d]`` float32, L2-normalised along ``d``.
        reliability: ``[N, M]`` long, 0..3.
    """

    user_ids: list[str]
    facet_names: list[str]
    embeddings: torch.Tensor
    reliability: torch.Tensor

    def index(self, user_id: str) -> int:
        return self.user_ids.index(user_id)


def _encode(encoder: Any, texts: list[str], batch_size: int) -> np.ndarray:
    if hasattr(encoder, "encode"):
        out = encoder.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    else:
        out = encoder(texts)
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    arr = np.asarray(out, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(texts):
        raise ValueError(f"encoder returned shape {arr.shape} for {len(texts)} texts; expected [n, d]")
    return arr


class FacetEmbedder:
    """Embed facet descriptions with a sentence encoder; L2-normalise; cache by text.

    Args:
        encoder: a ``SentenceTransformer`` (its ``encode``) or a function texts → ``[n, d]``.
        batch_size: texts per encoder call (paper: 32).

    Example:
        >>> from personakit.facets import FacetSummary, UserFacets
        >>> uf = UserFacets(user_id="u", content_hash="h", facets=[
        ...     FacetSummary(facet="a", summary="Warm.", reliability="strong"),
        ...     FacetSummary(facet="b", summary="x", reliability="none")])
        >>> calls = []
        >>> emb = FacetEmbedder(lambda ts: calls.append(ts) or [[3.0, 4.0]] * len(ts))
        >>> out = emb.embed([uf])
        >>> out.embeddings.shape, out.embeddings[0, 0].tolist(), out.reliability.tolist()
        (torch.Size([1, 2, 2]), [0.6000000238418579, 0.800000011920929], [[3, 0]])
        >>> _ = emb.embed([uf]); len(calls)  # cached: no second encoder call
        1
    """

    def __init__(self, encoder: Encoder, batch_size: int = 32):
        self.encoder = encoder
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}
        self.encoded = 0

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``[n, d]`` L2-normalised embeddings of ``texts`` (only uncached texts are encoded)."""
        keys = [self._key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in self._cache:
                missing.setdefault(k, t)
        if missing:
            arr = _encode(self.encoder, list(missing.values()), self.batch_size)
            arr = arr / np.clip(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12, None)
            self._cache.update(zip(missing.keys(), arr))
            self.encoded += len(missing)
        return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def embed(self, users: Sequence[UserFacets], facet_names: Optional[Sequence[str]] = None) -> FacetEmbeddings:
        """Embeddings ``[N, M, d]`` and reliability ``[N, M]`` of ``users`` (all with the same facets)."""
        if not users:
            raise ValueError("FacetEmbedder.embed: no users")
        names = list(facet_names) if facet_names is not None else [f.facet for f in users[0].facets]
        for u in users:
            if [f.facet for f in u.facets] != names:
                raise ValueError(f"user {u.user_id!r}: facets {[f.facet for f in u.facets]} differ from {names}")
        texts = [f.text() for u in users for f in u.facets]
        flat = torch.from_numpy(self.embed_texts(texts))  # (N * M, d)
        emb = flat.view(len(users), len(names), -1)  # (N, M, d)
        rel = torch.tensor([u.reliability for u in users], dtype=torch.long)  # (N, M)
        return FacetEmbeddings([u.user_id for u in users], names, emb, rel)


def embed_facets(users: Sequence[UserFacets], encoder: Encoder, batch_size: int = 32) -> FacetEmbeddings:
    """One-shot :meth:`FacetEmbedder.embed`."""
    return FacetEmbedder(encoder, batch_size).embed(users)
