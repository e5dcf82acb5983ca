r"""Text encoders for dense retrieval: one small interface over sentence-transformers
models, Hugging Face bi-encoders with mean pooling, and plain callables.

A :class:`TextEncoder` has two paths:

* :meth:`TextEncoder.embed` — inference: batched, no gradient, returns a CPU float32
  tensor ``(n, D)``; used to index profiles and encode queries.
* :meth:`TextEncoder.forward` — differentiable: one forward pass over ``texts`` with
  gradients, on the module's device; used to train a retriever (ROPG).

Mean pooling (Contriever, Izacard et al. 2022; Sentence-BERT, Reimers & Gurevych 2019):
$e(x) = \sum_i m_i h_i / \sum_i m_i$ over the last hidden states $h_i$ and attention
mask $m_i$.

:func:`as_text_encoder` turns whatever the user has into a :class:`TextEncoder`:
a ``SentenceTransformer``, a ``(model, tokenizer)`` pair, a callable
``list[str] -> Tensor``, or a name / path loaded with
:func:`personakit.backbones.load_sentence_encoder`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch
from torch import nn

__all__ = ["TextEncoder", "CallableEncoder", "SentenceTransformerEncoder", "MeanPoolingEncoder", "as_text_encoder",
           "mean_pool"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""Masked mean over tokens: $\sum_i m_i h_i / \max(1, \sum_i m_i)$.

    Shapes:
        hidden ``(B, T, D)``, mask ``(B, T)`` → ``(B, D)``.
    """
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)


class TextEncoder(nn.Module):
    """Base class: ``forward(texts) -> (n, D)`` with gradients; :meth:`embed` without."""

    def forward(self, texts: Sequence[str]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Inference embeddings ``(n, D)``, float32 on the CPU, computed ``batch_size`` texts at a time."""
        texts = list(texts)
        if not texts:
            return torch.zeros(0, 0)
        parts = [self.forward(texts[i:i + batch_size]).detach().float().cpu() for i in range(0, len(texts), batch_size)]
        return torch.cat(parts, 0)  # (n, D)

    @property
    def name(self) -> str:
        """A stable identifier (used to key on-disk caches)."""
        return type(self).__qualname__


class CallableEncoder(TextEncoder):
    """Wrap a callable ``list[str] -> Tensor | ndarray (n, D)`` (gradients if the callable keeps them)."""

    def __init__(self, fn: Callable[[list[str]], Any], name: str | None = None):
        super().__init__()
        self.fn = fn
        self._name = name or getattr(fn, "__qualname__", type(fn).__qualname__)
        if isinstance(fn, nn.Module):
            self.module = fn  # registers its parameters

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.fn(list(texts))
        out = out if isinstance(out, torch.Tensor) else torch.as_tensor(out)
        if out.dim() != 2 or out.shape[0] != len(texts):
            raise ValueError(f"encoder {self._name!r} returned shape {tuple(out.shape)} for {len(texts)} texts; expected (n, D)")
        return out

    @property
    def name(self) -> str:
        return self._name


class SentenceTransformerEncoder(TextEncoder):
    """A ``sentence_transformers.SentenceTransformer`` (its own pooling and normalisation)."""

    def __init__(self, model: nn.Module, name: str | None = None):
        super().__init__()
        self.model = model
        self._name = name or str(getattr(model, "name_or_path", None) or type(model).__qualname__)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        features = self.model.tokenize(list(texts))
        device = next(self.model.parameters()).device
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return self.model(features)["sentence_embedding"]  # (n, D)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        texts = list(texts)
        if not texts:
            return torch.zeros(0, 0)
        out = self.model.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
        return out.detach().float().cpu()  # (n, D)

    @property
    def name(self) -> str:
        return self._name


class MeanPoolingEncoder(TextEncoder):
    """A Hugging Face encoder (``AutoModel``) with mean pooling over its last hidden states.

    Args:
        model: The transformer; its output has ``last_hidden_state`` ``(B, T, D)``.
        tokenizer: Its tokenizer.
        max_length: Truncation length in tokens.
        name: Identifier for on-disk caches (default: the model's ``name_or_path``).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int = 512, name: str | None = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._name = name or str(getattr(model, "name_or_path", None) or type(model).__qualname__)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return mean_pool(hidden, batch["attention_mask"])  # (B, D)

    @property
    def name(self) -> str:
        return self._name

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}"


def as_text_encoder(encoder: Any, device: str | None = None) -> TextEncoder:
    """Turn ``encoder`` into a :class:`TextEncoder`.

    Args:
        encoder: A :class:`TextEncoder`; a ``SentenceTransformer`` (anything with
            ``encode`` and ``tokenize`` that is an ``nn.Module``); a ``(model,
            tokenizer)`` pair (mean pooling); a callable ``list[str] -> (n, D)``; or a
            name / local path for :func:`personakit.backbones.load_sentence_encoder`
            (``"minilm"``, ``"mpnet"``, a sentence-transformers folder, or a plain HF
            encoder folder, which sentence-transformers mean-pools).
        device: Device for a model loaded by name.
    """
    if isinstance(encoder, TextEncoder):
        return encoder
    if isinstance(encoder, (str, os.PathLike)):
        from personakit.backbones import load_sentence_encoder

        return SentenceTransformerEncoder(load_sentence_encoder(encoder, device=device), name=str(encoder))
    if isinstance(encoder, nn.Module) and hasattr(encoder, "encode") and hasattr(encoder, "tokenize"):
        return SentenceTransformerEncoder(encoder)
    if isinstance(encoder, tuple) and len(encoder) == 2 and isinstance(encoder[0], nn.Module):
        return MeanPoolingEncoder(encoder[0], encoder[1])
    if callable(encoder):
        return CallableEncoder(encoder)
    raise TypeError(
        "encoder must be a name or path, a SentenceTransformer, a (model, tokenizer) pair, a TextEncoder or a "
        f"callable list[str] -> Tensor; got {type(encoder).__name__}"
    )
