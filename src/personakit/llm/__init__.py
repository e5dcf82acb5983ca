"""One text-generation interface for every family (SPEC §1).

* :class:`TextGenerator`: the base class (``generate(prompts, settings) -> list[str]``).
* :class:`HFGenerator`: a local Hugging Face causal LM, batched.
  Its prompt pass (shared prefixes, reused prefills) is
  :class:`~personakit.llm.prefix_cache.PrefixCacheEngine`, in :mod:`personakit.llm.prefix_cache`.
* :class:`OpenAICompatibleGenerator`: any OpenAI-compatible HTTP endpoint.
* :class:`CallableGenerator`: a Python function.
* :class:`ResponseCache` / :class:`CachedGenerator`: a persistent, crash-safe cache.
* :func:`generate_structured`: JSON output validated by a pydantic model, retried with the error.

Importing this package does not import torch or transformers.
"""

from personakit.llm.base import (
    ChatMessage,
    GenerationError,
    GenerationSettings,
    Prompt,
    TextGenerator,
    apply_stop,
    messages_to_text,
    prompt_to_messages,
    validate_prompt,
)
from personakit.llm.cache import CachedGenerator, ResponseCache, cache_key
from personakit.llm.callable import CallableGenerator
from personakit.llm.hf import HFGenerator
from personakit.llm.openai import OpenAICompatibleGenerator
from personakit.llm.structured import StructuredOutputError, extract_json, generate_structured

__all__ = [
    "ChatMessage",
    "Prompt",
    "GenerationSettings",
    "GenerationError",
    "TextGenerator",
    "HFGenerator",
    "CallableGenerator",
    "OpenAICompatibleGenerator",
    "ResponseCache",
    "CachedGenerator",
    "cache_key",
    "generate_structured",
    "extract_json",
    "StructuredOutputError",
    "apply_stop",
    "messages_to_text",
    "prompt_to_messages",
    "validate_prompt",
]
