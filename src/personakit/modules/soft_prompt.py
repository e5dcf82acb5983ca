r"""Soft prompts of CoPersona (Zhang et al., 2026, §3.4 and Appendix C): projector, prepending, per-user cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
from pydantic import Field
from torch import Tensor, nn

from personakit.config import BaseConfig, atomic_write_bytes

__all__ = ["SoftPromptProjector", "SoftPromptProjectorConfig", "prepend_soft_prompt", "SoftPromptCache",
           "embedding_version"]


class SoftPromptProjector(nn.Module):
    r"""Map a user vector to $L$ virtual-token embeddings: $\mathbf{S}_u = \operatorname{reshape}(\mathrm{MLP}(h_u))$.

    CoPersona (Eq. 13) writes a linear map $\mathbf{S}_u = \operatorname{reshape}(W_p h_u)$;
    its Appendix C uses the two-layer MLP implemented here,

    $$
    \mathbf{S}_u = \operatorname{reshape}_{L \times H}\big(W_2 \tanh(W_1 h_u + b_1) + b_2\big),
    \qquad W_1 \in \mathbb{R}^{512 \times d_{\text{in}}},\ W_2 \in \mathbb{R}^{L H \times 512},
    $$

    with $L = 20$ virtual tokens and $H$ the LLM hidden size.  Prepend the result to the
    token embeddings with :func:`prepend_soft_prompt`; cache it per user with
    :class:`SoftPromptCache`.

    Args:
        in_dim: size $d_{\text{in}}$ of the user vector (e.g. ``M * out_dim`` of a ``FacetGraph``).
        hidden_size: the LLM hidden size $H$.
        num_virtual_tokens: $L$.
        bottleneck: width of the hidden layer (512 in the paper).

    Shapes:
        - input: ``[B, in_dim]``
        - output: ``[B, L, H]``

    Example:
        >>> proj = SoftPromptProjector(in_dim=12, hidden_size=16, num_virtual_tokens=4, bottleneck=8)
        >>> proj(torch.randn(3, 12)).shape
        torch.Size([3, 4, 16])

    Citation:
        Zhang, Wang, Madhu, Bui, Roznyatovskiy and Ying (2026). *CoPersona: Collaborative
        Persona Graphs for Robust LLM Personalization.* KDD '26.
    """

    def __init__(self, in_dim: int, hidden_size: int, num_virtual_tokens: int = 20, bottleneck: int = 512):
        super().__init__()
        if min(in_dim, hidden_size, num_virtual_tokens, bottleneck) < 1:
            raise ValueError(f"SoftPromptProjector: in_dim ({in_dim}), hidden_size ({hidden_size}), num_virtual_tokens "
                             f"({num_virtual_tokens}) and bottleneck ({bottleneck}) must be >= 1")
        self.in_dim, self.hidden_size = in_dim, hidden_size
        self.num_virtual_tokens, self.bottleneck = num_virtual_tokens, bottleneck
        self.down = nn.Linear(in_dim, bottleneck)
        self.up = nn.Linear(bottleneck, num_virtual_tokens * hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default ``nn.Linear`` initialisation for both layers."""
        self.down.reset_parameters()
        self.up.reset_parameters()

    def forward(self, user_vector: Tensor) -> Tensor:
        """Soft prompt of each user vector.

        Args:
            user_vector: ``[B, in_dim]`` (or ``[in_dim]`` for one user).

        Returns:
            ``[B, L, H]`` (or ``[L, H]``).
        """
        if user_vector.shape[-1] != self.in_dim:
            raise ValueError(f"SoftPromptProjector(in_dim={self.in_dim}): got input of shape {tuple(user_vector.shape)}")
        out = self.up(torch.tanh(self.down(user_vector)))  # (..., L H)
        return out.view(*user_vector.shape[:-1], self.num_virtual_tokens, self.hidden_size)  # (..., L, H)

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, hidden_size={self.hidden_size}, "
                f"num_virtual_tokens={self.num_virtual_tokens}, bottleneck={self.bottleneck}")


class SoftPromptProjectorConfig(BaseConfig):
    """Config of :class:`SoftPromptProjector`."""

    _target_ = SoftPromptProjector

    in_dim: int = Field(..., ge=1, description="Size $d_{\\text{in}}$ of the user vector.")
    hidden_size: int = Field(..., ge=1, description="Hidden size $H$ of the language model.")
    num_virtual_tokens: int = Field(20, ge=1, description="Number of virtual tokens $L$ (20 in the paper).")
    bottleneck: int = Field(512, ge=1, description="Width of the hidden layer (512 in the paper).")


def prepend_soft_prompt(
    inputs_embeds: Tensor,
    attention_mask: Tensor | None,
    labels: Tensor | None,
    soft_prompt: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None]:
    r"""Prepend $L$ virtual tokens: $[\mathbf{S}_u; E_x]$, mask extended with ones, labels with $-100$.

    The virtual tokens go first in every row, before any left padding; the attention mask
    keeps the padding masked, so models that derive position ids from the mask (as
    Hugging Face ``generate`` does) see the virtual tokens and the text as one run.

    Args:
        inputs_embeds: ``[B, T, H]`` token embeddings.
        attention_mask: ``[B, T]`` (``None``: all ones).
        labels: ``[B, T]`` or ``None``.
        soft_prompt: ``[B, L, H]`` (or ``[L, H]``, shared by the batch); cast to the
            embeddings' dtype and device.

    Returns:
        ``(inputs_embeds [B, L + T, H], attention_mask [B, L + T], labels [B, L + T] or None)``.

    Example:
        >>> e, m, y = prepend_soft_prompt(torch.zeros(2, 3, 4), torch.ones(2, 3), torch.ones(2, 3).long(),
        ...                               torch.ones(2, 5, 4))
        >>> e.shape, m[0].tolist(), y[0].tolist()
        (torch.Size([2, 8, 4]), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [-100, -100, -100, -100, -100, 1, 1, 1])
    """
    if inputs_embeds.ndim != 3:
        raise ValueError(f"prepend_soft_prompt: inputs_embeds must be [B, T, H], got {tuple(inputs_embeds.shape)}")
    b, t, h = inputs_embeds.shape
    if soft_prompt.ndim == 2:
        soft_prompt = soft_prompt.unsqueeze(0).expand(b, -1, -1)
    if soft_prompt.ndim != 3 or soft_prompt.shape[0] != b or soft_prompt.shape[2] != h:
        raise ValueError(f"prepend_soft_prompt: soft_prompt must be [B, L, H] = [{b}, L, {h}], got "
                         f"{tuple(soft_prompt.shape)}")
    n_virtual = soft_prompt.shape[1]
    embeds = torch.cat([soft_prompt.to(dtype=inputs_embeds.dtype, device=inputs_embeds.device), inputs_embeds], 1)
    if attention_mask is None:
        attention_mask = torch.ones(b, t, dtype=torch.long, device=inputs_embeds.device)
    if tuple(attention_mask.shape) != (b, t):
        raise ValueError(f"prepend_soft_prompt: attention_mask must be [B, T] = [{b}, {t}], got "
                         f"{tuple(attention_mask.shape)}")
    ones = torch.ones(b, n_virtual, dtype=attention_mask.dtype, device=attention_mask.device)
    mask = torch.cat([ones, attention_mask], 1)  # (B, L + T)
    if labels is not None:
        if tuple(labels.shape) != (b, t):
            raise ValueError(f"prepend_soft_prompt: labels must be [B, T] = [{b}, {t}], got {tuple(labels.shape)}")
        ignore = torch.full((b, n_virtual), -100, dtype=labels.dtype, device=labels.device)
        labels = torch.cat([ignore, labels], 1)  # (B, L + T)
    return embeds, mask, labels


def embedding_version(*tensors: Tensor) -> str:
    """A short content hash (SHA-256, 16 hex digits) of tensors' shapes, dtypes and values.

    Used as the version of a user's graph embedding in :class:`SoftPromptCache`: it
    changes whenever the embedding changes.
    """
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


class SoftPromptCache:
    """Per-user soft prompts for inference, invalidated when the user's graph embedding changes.

    CoPersona generates the soft prompt "once per user and caches it for reuse" (Appendix
    C).  Each entry stores a *version*: a string naming what the prompt was computed from
    (by default :func:`embedding_version` of the user's collaborative persona vector).
    :meth:`get` returns the prompt only when the version matches, so a user whose graph
    embedding changed is recomputed.  :meth:`save` writes one safetensors file atomically
    (versions in its metadata); :meth:`load` reads it back.

    Example:
        >>> cache = SoftPromptCache()
        >>> vector = torch.ones(6)
        >>> prompt = cache.get_or_compute("u1", vector, lambda v: v.view(2, 3) * 2)
        >>> cache.get("u1", embedding_version(vector)) is not None
        True
        >>> cache.get("u1", embedding_version(vector + 1)) is None  # stale: dropped
        True
    """

    _FORMAT = "personakit.soft_prompt_cache/1"

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, Tensor]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, user_id: object) -> bool:
        return str(user_id) in self._entries

    def user_ids(self) -> list[str]:
        """Cached user ids, in insertion order."""
        return list(self._entries)

    def version(self, user_id: str) -> str | None:
        """Version stored for ``user_id`` (``None`` if not cached)."""
        entry = self._entries.get(str(user_id))
        return None if entry is None else entry[0]

    def put(self, user_id: str, soft_prompt: Tensor, version: str) -> None:
        """Store ``soft_prompt`` (``[L, H]``, detached, on CPU) for ``user_id`` at ``version``."""
        if not isinstance(version, str) or not version:
            raise ValueError(f"SoftPromptCache.put({user_id!r}): version must be a non-empty string")
        self._entries[str(user_id)] = (version, soft_prompt.detach().cpu().contiguous())

    def get(self, user_id: str, version: str | None = None) -> Tensor | None:
        """The cached prompt, or ``None`` when absent or stored for another version (then dropped).

        ``version=None`` returns whatever is cached, without checking.
        """
        key = str(user_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if version is not None and entry[0] != version:
            del self._entries[key]
            return None
        return entry[1]

    def get_or_compute(self, user_id: str, embedding: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """The prompt for ``embedding``: cached if its version matches, else ``compute(embedding)`` (stored)."""
        version = embedding_version(embedding)
        cached = self.get(user_id, version)
        if cached is not None:
            return cached
        with torch.no_grad():
            prompt = compute(embedding)
        self.put(user_id, prompt, version)
        return self._entries[str(user_id)][1]

    def invalidate(self, user_id: str | None = None) -> None:
        """Drop one user's entry (``None``: all entries)."""
        if user_id is None:
            self._entries.clear()
        else:
            self._entries.pop(str(user_id), None)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write every entry to one safetensors file, atomically."""
        from safetensors.torch import save

        tensors = {f"{i}": prompt for i, (_, prompt) in enumerate(self._entries.values())}
        meta = {"format": self._FORMAT,
                "entries": json.dumps([[uid, ver] for uid, (ver, _) in self._entries.items()])}
        return atomic_write_bytes(path, save(tensors, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "SoftPromptCache":
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        cache = cls()
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") != cls._FORMAT:
                    raise ValueError(f"{path}: not a SoftPromptCache file (metadata format {meta.get('format')!r})")
                entries = json.loads(meta["entries"])
                for i, (uid, ver) in enumerate(entries):
                    cache._entries[str(uid)] = (str(ver), fh.get_tensor(f"{i}"))
        except (KeyError, json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{path}: malformed SoftPromptCache metadata ({err})") from err
        return cache
