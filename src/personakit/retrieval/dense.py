r"""Dense (bi-encoder) retriever: dot product between query and entry embeddings.

The Contriever baseline of LaMP and ROPG/RSPG (Salemi et al., SIGIR 2024, section 4.3:
"Contriever encodes the query and document text using an encoder with shared
parameters and applies dot product to compute the relevance score"; exact kNN over
each user profile):

$$ s(q, d) = E(q)^\top E(d), $$

with $E$ any sentence-transformers model or Hugging Face encoder with mean pooling
(:mod:`personakit.retrieval.encoders`).  With ``normalize=True`` both embeddings are
L2-normalised first, so $s$ is the cosine similarity (the embedded MiniLM / mpnet are
trained for that); Contriever itself uses the raw dot product (``normalize=False``).

Profile embeddings are computed once per distinct profile: they are cached in memory
by user id and content (:class:`~personakit.retrieval.base.Retriever`) and, with
``cache_dir``, on disk as safetensors files named by a digest of the encoder name and
the entry texts, written atomically.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from personakit.config import BaseConfig, atomic_write_bytes
from personakit.retrieval.base import IndexedProfile, Retriever
from personakit.retrieval.encoders import TextEncoder, as_text_encoder
from personakit.types import ProfileItem

__all__ = ["DenseRetriever", "DenseConfig"]


def _digest(namespace: str, texts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(namespace.encode("utf-8") + b"\x00")
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "encoder"


class DenseRetriever(Retriever):
    r"""Bi-encoder retrieval over one user's profile: $s(q, d) = E(q)^\top E(d)$.

    Args:
        encoder: A name or local path (``"minilm"``, ``"mpnet"``, a sentence-transformers
            or HF encoder folder; loaded on first use with
            :func:`personakit.backbones.load_sentence_encoder`), a ``SentenceTransformer``,
            a ``(model, tokenizer)`` pair (mean pooling), a
            :class:`~personakit.retrieval.encoders.TextEncoder`, or a callable
            ``list[str] -> Tensor (n, D)``.
        batch_size: Texts per encoder call when indexing and encoding queries.
        normalize: L2-normalise embeddings (cosine similarity).
        cache_dir: Folder for on-disk profile embeddings (``None``: memory only).  Files
            are keyed by the encoder's name and the texts; when you pass an encoder
            object, its ``name`` (class or ``name_or_path``) is the key, so use a
            separate folder per set of weights.
        device: Device for an encoder loaded by name (``None``: sentence-transformers' choice).

    Shapes:
        ``score(query, profile)``: ``(n_items,)`` float64;
        ``encode_queries(texts)`` / ``encode_documents(texts)``: ``(n, D)`` with gradients.

    Training (ROPG): :meth:`encode_queries` / :meth:`encode_documents` run the encoder
    module with gradients; :attr:`module` exposes its parameters.  Cached profile
    embeddings are not refreshed when the weights change: call :meth:`clear_cache`
    (and use a new ``cache_dir``) after an update.

    Example:
        >>> import torch
        >>> def bag_of_letters(texts):  # a toy encoder: letter counts
        ...     return torch.tensor([[t.count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts],
        ...                         dtype=torch.float32)
        >>> dense = DenseRetriever(encoder=bag_of_letters)
        >>> [r.index for r in dense.retrieve("zzz", ["aaa", "zzz top", "buzz"], k=2)]
        [1, 2]
    """

    def __init__(self, encoder: str | os.PathLike[str] | Any = "minilm", batch_size: int = 32, normalize: bool = True,
                 cache_dir: str | os.PathLike[str] | None = None, device: str | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.encoder_spec = encoder
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = device
        self._encoder: TextEncoder | None = None if isinstance(encoder, (str, os.PathLike)) else as_text_encoder(encoder)

    # ----------------------------------------------------------- encoder access
    @property
    def encoder(self) -> TextEncoder:
        """The :class:`~personakit.retrieval.encoders.TextEncoder` (loaded on first use)."""
        if self._encoder is None:
            self._encoder = as_text_encoder(self.encoder_spec, device=self.device)
        return self._encoder

    @property
    def module(self) -> torch.nn.Module:
        """The encoder as an ``nn.Module`` (its ``parameters()`` are what ROPG trains)."""
        return self.encoder

    def _post(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb, dim=-1) if self.normalize else emb

    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        """Query embeddings ``(n, D)`` with gradients (differentiable path for training)."""
        return self._post(self.encoder(list(texts)))

    def encode_documents(self, texts: Sequence[str]) -> torch.Tensor:
        """Document embeddings ``(n, D)`` with gradients (shared encoder, as in Contriever)."""
        return self._post(self.encoder(list(texts)))

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Inference embeddings ``(n, D)`` (no gradient, CPU float32, normalised if configured)."""
        texts = list(texts)
        if not texts:
            return torch.zeros(0, 0)
        return self._post(self.encoder.embed(texts, batch_size=self.batch_size).float())

    # ------------------------------------------------------------------ hooks
    def _cache_file(self, texts: list[str]) -> Path | None:
        if self.cache_dir is None:
            return None
        name = self.encoder_spec if isinstance(self.encoder_spec, (str, os.PathLike)) else self.encoder.name
        name = str(name)
        return self.cache_dir / _slug(name) / f"{_digest(name, texts)}.safetensors"

    def _build_index(self, items: list[ProfileItem], user_id: str | None) -> torch.Tensor:
        texts = [it.text for it in items]
        if not texts:
            return torch.zeros(0, 0)
        path = self._cache_file(texts)
        if path is not None and path.is_file():
            from safetensors.torch import load

            try:
                raw = load(path.read_bytes())["embeddings"]
                if raw.shape[0] == len(texts):
                    return self._post(raw.float())  # (N, D)
            except Exception:  # a corrupt or foreign file: recompute and overwrite
                pass
        raw = self.encoder.embed(texts, batch_size=self.batch_size).float()  # (N, D) unnormalised
        if path is not None:
            from safetensors.torch import save

            atomic_write_bytes(path, save({"embeddings": raw.contiguous()}, metadata={"encoder": path.parent.name,
                                                                                        "n": str(len(texts))}))
        return self._post(raw)

    def _prepare_queries(self, queries: list[str]) -> list[torch.Tensor]:
        emb = self.embed(queries)  # (Q, D)
        return list(emb)

    def _score_prepared(self, prepared: list[torch.Tensor], indexed: IndexedProfile) -> np.ndarray:
        docs: torch.Tensor = indexed.state  # (N, D)
        if len(indexed) == 0:
            return np.zeros((len(prepared), 0), dtype=np.float64)
        q = torch.stack(prepared)  # (Q, D)
        if q.shape[1] != docs.shape[1]:
            raise ValueError(f"query embeddings have {q.shape[1]} dimensions, profile embeddings {docs.shape[1]}")
        return (q @ docs.T).double().numpy()  # (Q, N)

    def extra_repr(self) -> str:
        enc = self.encoder_spec if isinstance(self.encoder_spec, (str, os.PathLike)) else type(self.encoder_spec).__name__
        return f"encoder={str(enc)!r}, batch_size={self.batch_size}, normalize={self.normalize}"


class DenseConfig(BaseConfig):
    """Config of :class:`DenseRetriever` (an encoder object is passed to ``build(encoder=...)``)."""

    _target_ = DenseRetriever

    encoder: str = Field("minilm", description="Embedded name ('minilm', 'mpnet') or local sentence-transformers/HF folder.")
    batch_size: int = Field(32, ge=1, description="Texts per encoder call.")
    normalize: bool = Field(True, description="L2-normalise embeddings (cosine similarity).")
    cache_dir: Optional[str] = Field(None, description="Folder for on-disk profile embeddings (None: memory only).")
    device: Optional[str] = Field(None, description="Device for an encoder loaded by name.")
