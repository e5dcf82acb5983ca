"""The text-generation interface shared by every personakit family.

A :class:`TextGenerator` turns a list of prompts into a list of completions.  A prompt is
either a plain string or a chat, a list of ``{"role": ..., "content": ...}`` messages.
Every backend (a local Hugging Face causal LM, an OpenAI-compatible HTTP endpoint, a Python
callable) implements one hook, :meth:`TextGenerator._generate_batch`; the base class owns
batching, ordering, progress reporting, stop sequences and validation, so all backends
behave the same way and wrappers such as :class:`~personakit.llm.cache.CachedGenerator`
work with any of them.

Example:
    >>> from personakit.llm import CallableGenerator, GenerationSettings
    >>> echo = CallableGenerator(lambda prompt: prompt.upper() + " STOP here")
    >>> echo.generate(["hi", "there"], GenerationSettings(stop=[" STOP"]))
    ['HI', 'THERE']
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from pydantic import Field, field_validator

from personakit.config import BaseConfig

__all__ = [
    "ChatMessage",
    "Prompt",
    "GenerationSettings",
    "GenerationError",
    "TextGenerator",
    "validate_prompt",
    "prompt_to_messages",
    "merge_roles",
    "messages_to_text",
    "apply_stop",
]

ChatMessage = Mapping[str, str]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""

Prompt = Union[str, Sequence[ChatMessage]]
"""A prompt: a plain string, or a chat as a list of messages."""

BatchCallback = Callable[[list[int], list[str]], None]

_ROLES = ("system", "user", "assistant")


class GenerationError(RuntimeError):
    """A backend failed to produce a completion (HTTP error, malformed reply, ...)."""


class GenerationSettings(BaseConfig):
    """Decoding settings shared by every :class:`TextGenerator`.

    ``temperature == 0`` means greedy decoding (deterministic; ``top_p``, ``top_k`` and
    ``seed`` are then ignored and left out of the cache key).  ``temperature > 0`` samples,
    seeded by ``seed`` so a rerun with the same settings and batches reproduces the output.

    Example:
        >>> GenerationSettings(max_new_tokens=32).do_sample
        False
        >>> GenerationSettings(temperature=0.7, top_p=0.9).do_sample
        True
    """

    max_new_tokens: int = Field(64, ge=1, description="Maximum number of generated tokens per prompt.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature; 0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (sampling only).")
    top_k: Optional[int] = Field(None, ge=1, description="Keep only the k most likely tokens (sampling only).")
    repetition_penalty: float = Field(
        1.0, gt=0.0, description="Penalty on repeated tokens (1.0 = none); local models only."
    )
    seed: int = Field(0, description="Random seed for sampling.")
    stop: list[str] = Field(
        default_factory=list,
        description="Stop sequences: the completion is cut before the first occurrence of any of them.",
    )
    strip: bool = Field(True, description="Strip leading and trailing whitespace from completions.")

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v: list[str]) -> list[str]:
        if any(s == "" for s in v):
            raise ValueError("stop sequences must be non-empty strings")
        return v

    @property
    def do_sample(self) -> bool:
        """Whether these settings sample (``temperature > 0``) rather than decode greedily."""
        return self.temperature > 0

    def cache_fields(self) -> dict[str, Any]:
        """The fields that determine the output, for cache keys.

        Sampling-only fields (``top_p``, ``top_k``, ``seed``) are dropped under greedy
        decoding, so greedy runs with different seeds share cache entries.
        """
        data = self.to_dict()
        if not self.do_sample:
            for name in ("top_p", "top_k", "seed"):
                data.pop(name, None)
        return data


def _coerce_settings(settings: GenerationSettings | Mapping[str, Any] | None) -> GenerationSettings:
    if settings is None:
        return GenerationSettings()
    if isinstance(settings, GenerationSettings):
        return settings
    if isinstance(settings, Mapping):
        return GenerationSettings.from_dict(dict(settings), source="generation settings")
    raise TypeError(f"settings must be GenerationSettings, a dict or None, got {type(settings).__name__}")


def validate_prompt(prompt: Any, index: int | None = None) -> Prompt:
    """Check that ``prompt`` is a string or a list of well-formed chat messages.

    Raises ``TypeError``/``ValueError`` naming the prompt index, the message and the field.
    """
    where = "prompt" if index is None else f"prompt {index}"
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, Sequence) or isinstance(prompt, (bytes, bytearray)):
        raise TypeError(f"{where}: expected a string or a list of chat messages, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError(f"{where}: the chat has no messages")
    for j, msg in enumerate(prompt):
        if not isinstance(msg, Mapping):
            raise TypeError(f"{where}, message {j}: expected a mapping with 'role' and 'content', got {type(msg).__name__}")
        role, content = msg.get("role"), msg.get("content")
        if role not in _ROLES:
            raise ValueError(f"{where}, message {j}: field 'role' must be one of {_ROLES}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"{where}, message {j}: field 'content' must be a string, got {type(content).__name__}")
    return prompt


def merge_roles(turns: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Chat messages from ``(role, text)`` turns, consecutive turns of one role merged (joined by a newline).

    Chat templates expect the roles to alternate; a conversation where one side speaks
    twice in a row becomes one message per side.

    Example:
        >>> merge_roles([("user", "Hi"), ("user", "there"), ("assistant", "Hello!")])
        [{'role': 'user', 'content': 'Hi\\nthere'}, {'role': 'assistant', 'content': 'Hello!'}]
    """
    messages: list[dict[str, str]] = []
    for role, text in turns:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + text
        else:
            messages.append({"role": role, "content": text})
    return messages


def prompt_to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A prompt as a chat: a string becomes a single user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def messages_to_text(prompt: Prompt, add_generation_prompt: bool = True) -> str:
    """Plain-text rendering of a prompt for models without a chat template.

    A string is returned unchanged; a chat becomes ``"System: ...\\n\\nUser: ...\\n\\nAssistant:"``.
    """
    if isinstance(prompt, str):
        return prompt
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in prompt]
    if add_generation_prompt:
        parts.append("Assistant:")
    return "\n\n".join(parts)


def apply_stop(text: str, stop: Sequence[str] = (), strip: bool = True) -> str:
    """Cut ``text`` before the earliest stop sequence (leading whitespace ignored), then strip.

    Example:
        >>> apply_stop("  Hello there.\\nUser: hi", ["\\n"])
        'Hello there.'
    """
    if strip:
        text = text.lstrip()
    cut = len(text)
    for s in stop:
        pos = text.find(s)
        if pos != -1:
            cut = min(cut, pos)
    text = text[:cut]
    return text.strip() if strip else text


class TextGenerator(ABC):
    """Base class of every text generator: ``generate`` batches, a backend fills one batch.

    Subclasses implement :meth:`_generate_batch` and may override :meth:`_batch_order`
    (e.g. to group prompts of similar length).  :meth:`generate` validates the prompts,
    splits them into batches of ``batch_size`` in that order, calls the hook, applies the
    stop sequences, restores the input order and reports progress with tqdm.

    Args:
        model_id: a name for the model behind the generator; part of every cache key.
        batch_size: default number of prompts per call of :meth:`_generate_batch`.

    Example:
        >>> class Reverse(TextGenerator):
        ...     def _generate_batch(self, prompts, settings):
        ...         return [p[::-1] for p in prompts]
        >>> Reverse(model_id="reverse").generate(["abc", "de"])
        ['cba', 'ed']
    """

    def __init__(self, model_id: str, batch_size: int = 8):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id = model_id
        self.batch_size = batch_size

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _generate_batch(self, prompts: list[Prompt], settings: GenerationSettings) -> list[str]:
        """Generate one completion per prompt (raw: stop sequences are applied by the caller)."""

    def _batch_order(self, prompts: list[Prompt]) -> list[int]:
        """The order in which prompts are batched (a permutation of their indices)."""
        return list(range(len(prompts)))

    # ------------------------------------------------------------------ API
    def generate(
        self,
        prompts: Sequence[Prompt],
        settings: GenerationSettings | Mapping[str, Any] | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
        on_batch: BatchCallback | None = None,
    ) -> list[str]:
        """Generate one completion per prompt, in the order of ``prompts``.

        Args:
            prompts: strings and/or chats (lists of ``{"role", "content"}`` messages).
            settings: decoding settings (a :class:`GenerationSettings` or a dict);
                default ``GenerationSettings()`` (greedy, 64 new tokens).
            batch_size: prompts per backend call; default ``self.batch_size``.
            progress: show a tqdm progress bar; ``None`` shows one when there are more
                than 4 batches.
            on_batch: called after every completed batch with the indices (into
                ``prompts``) and the completions of that batch; used to persist results
                as they arrive (see :class:`~personakit.llm.cache.CachedGenerator`).

        Returns:
            The completions, with stop sequences applied.
        """
        if isinstance(prompts, (str, bytes)):
            raise TypeError("generate() takes a list of prompts; use generate_one(prompt) for a single prompt")
        prompts = [validate_prompt(p, i) for i, p in enumerate(prompts)]
        settings = _coerce_settings(settings)
        if not prompts:
            return []
        size = batch_size or self.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        order = self._batch_order(prompts)
        if sorted(order) != list(range(len(prompts))):
            raise RuntimeError(f"{type(self).__name__}._batch_order did not return a permutation of the prompts")
        n_batches = math.ceil(len(prompts) / size)
        show = progress if progress is not None else n_batches > 4
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), desc=f"generating ({self.model_id})", unit="prompt")
        outputs: list[str | None] = [None] * len(prompts)
        try:
            for start in range(0, len(prompts), size):
                idx = order[start:start + size]
                raw = self._generate_batch([prompts[i] for i in idx], settings)
                if len(raw) != len(idx):
                    raise GenerationError(
                        f"{type(self).__name__} returned {len(raw)} completions for a batch of {len(idx)} prompts"
                    )
                done = []
                for i, text in zip(idx, raw):
                    if not isinstance(text, str):
                        raise GenerationError(
                            f"{type(self).__name__} returned a {type(text).__name__} for prompt {i}, expected str"
                        )
                    outputs[i] = apply_stop(text, settings.stop, settings.strip)
                    done.append(outputs[i])
                if on_batch is not None:
                    on_batch(list(idx), done)
                if bar is not None:
                    bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return outputs  # type: ignore[return-value]

    def generate_one(
        self, prompt: Prompt, settings: GenerationSettings | Mapping[str, Any] | None = None
    ) -> str:
        """Generate the completion of a single prompt."""
        return self.generate([prompt], settings, progress=False)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, batch_size={self.batch_size})"
