"""Structured (JSON) output: parse, validate, and retry with the validation error.

CoPersona's facet schema induction and facet summarisation ask an LLM for JSON and
"parse and validate the JSON strictly; retry with the validation error; fail with a
clear message" (SPEC §6).  :func:`generate_structured` does this for any
:class:`~personakit.llm.TextGenerator`: each reply is parsed with :func:`extract_json`
and checked by a pydantic model or a validation function; the prompts whose reply
fails are sent again, as a chat that shows the model its previous reply and the error,
until they pass or ``max_attempts`` is reached.

Example:
    >>> from pydantic import BaseModel
    >>> from personakit.llm import CallableGenerator
    >>> class Facet(BaseModel):
    ...     name: str
    ...     definition: str
    >>> replies = iter(['{"name": "diet"}', 'Sure! {"name": "diet", "definition": "what they eat"}'])
    >>> gen = CallableGenerator(lambda chat: next(replies))
    >>> generate_structured(gen, ["Describe one facet as JSON."], Facet)
    [Facet(name='diet', definition='what they eat')]
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, TypeVar, Union

from pydantic import BaseModel, ValidationError

from personakit.llm.base import GenerationError, GenerationSettings, Prompt, TextGenerator, prompt_to_messages

__all__ = ["StructuredOutputError", "extract_json", "generate_structured"]

T = TypeVar("T")
Validator = Union[type[BaseModel], Callable[[Any], Any]]

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)

RETRY_MESSAGE = (
    "Your reply could not be used: {error}\n"
    "Reply again with only the corrected JSON, no other text."
)
"""The user message appended after a failed reply (``{error}`` is filled in)."""


class StructuredOutputError(GenerationError):
    """A reply still failed to parse or validate after every attempt.

    Attributes:
        index: the prompt's position in the input list.
        reply: the last reply.
        error: the last parse or validation error, as text.
    """

    def __init__(self, index: int, reply: str, error: str, attempts: int):
        self.index, self.reply, self.error, self.attempts = index, reply, error, attempts
        snippet = reply if len(reply) <= 300 else reply[:300] + "..."
        super().__init__(
            f"prompt {index}: no valid structured reply after {attempts} attempt{'s' if attempts != 1 else ''}; "
            f"last error: {error}; last reply: {snippet!r}"
        )


def extract_json(text: str) -> Any:
    """Parse the JSON value in a model reply.

    Tries, in order: the whole reply; the content of a Markdown code fence; the first
    balanced ``{...}`` or ``[...]`` span that parses.

    Raises:
        ValueError: no JSON value could be found.

    Example:
        >>> extract_json('Here you go:\\n```json\\n{"a": [1, 2]}\\n```')
        {'a': [1, 2]}
        >>> extract_json('The answer is {"ok": true}. Anything else?')
        {'ok': True}
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block.strip())
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(text, i)
                return value
            except json.JSONDecodeError:
                continue
    raise ValueError("the reply contains no JSON object or array")


def _validate(value: Any, validator: Validator) -> Any:
    if isinstance(validator, type) and issubclass(validator, BaseModel):
        return validator.model_validate(value)
    return validator(value)


def _error_text(err: Exception) -> str:
    if isinstance(err, ValidationError):
        parts = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "<root>"
            parts.append(f"field {loc!r}: {e['msg']}")
        return "; ".join(parts)
    return str(err) or type(err).__name__


def generate_structured(
    generator: TextGenerator,
    prompts: Sequence[Prompt],
    validator: Validator,
    settings: GenerationSettings | Mapping[str, Any] | None = None,
    *,
    max_attempts: int = 3,
    on_failure: Literal["raise", "none"] = "raise",
    batch_size: Optional[int] = None,
    progress: Optional[bool] = None,
) -> list[Any]:
    """Generate one validated JSON value per prompt, retrying failures with the error.

    Args:
        generator: any text generator.
        prompts: strings or chats asking for JSON.
        validator: a pydantic model class (the reply is validated into an instance) or
            a function that takes the parsed JSON and returns the value to keep,
            raising ``ValueError``/``TypeError``/``ValidationError`` when it is invalid.
        settings: decoding settings.  Retries use the same settings; with greedy
            decoding the retry chat (which shows the error) is what changes the reply.
        max_attempts: attempts per prompt, the first included.
        on_failure: ``"raise"`` a :class:`StructuredOutputError` naming the first prompt
            that never passed, or put ``None`` in its place.
        batch_size, progress: passed to ``generator.generate``.

    Returns:
        One validated value (or ``None``) per prompt, in order.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if on_failure not in ("raise", "none"):
        raise ValueError(f"on_failure must be 'raise' or 'none', got {on_failure!r}")
    results: list[Any] = [None] * len(prompts)
    chats: dict[int, Prompt] = dict(enumerate(prompts))
    last: dict[int, tuple[str, str]] = {}
    for _attempt in range(max_attempts):
        if not chats:
            break
        pending = sorted(chats)
        replies = generator.generate(
            [chats[i] for i in pending], settings, batch_size=batch_size, progress=progress
        )
        for i, reply in zip(pending, replies):
            try:
                results[i] = _validate(extract_json(reply), validator)
            except (ValueError, TypeError, ValidationError) as err:
                error = _error_text(err)
                last[i] = (reply, error)
                chats[i] = prompt_to_messages(chats[i]) + [
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": RETRY_MESSAGE.format(error=error)},
                ]
            else:
                del chats[i]
                last.pop(i, None)
    if chats and on_failure == "raise":
        first = min(chats)
        reply, error = last[first]
        raise StructuredOutputError(first, reply, error, max_attempts)
    return results
