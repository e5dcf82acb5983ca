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
        index: the position, in the input list, of the first prompt that never passed.
        reply: that prompt's last reply.
        error: its last parse or validation error, as text.
        attempts: attempts per prompt.
        results: one value per prompt: the validated value of every prompt that passed,
            ``None`` for those that did not (so a caller can keep the valid ones).
        failed: the positions of all the prompts that never passed.
    """

    def __init__(
        self,
        index: int,
        reply: str,
        error: str,
        attempts: int,
        results: Optional[list[Any]] = None,
        failed: Optional[list[int]] = None,
    ):
        self.index, self.reply, self.error, self.attempts = index, reply, error, attempts
        self.results = results if results is not None else []
        self.failed = failed if failed is not None else [index]
        snippet = reply if len(reply) <= 300 else reply[:300] + "..."
        others = f" ({len(self.failed) - 1} other prompt(s) failed too)" if len(self.failed) > 1 else ""
        super().__init__(
            f"prompt {index}: no valid structured reply after {attempts} attempt{'s' if attempts != 1 else ''}; "
            f"last error: {error}; last reply: {snippet!r}{others}"
        )


MAX_JSON_DEPTH = 100
"""Deepest bracket nesting :func:`extract_json` parses by default (deeper values are rejected)."""


def extract_json(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse the JSON value in a model reply.

    Tries, in order: the whole reply; the content of a Markdown code fence; the first
    balanced ``{...}`` or ``[...]`` span that parses.  The spans are found in one pass
    over the text (brackets inside JSON strings do not count), so the time grows about
    linearly with the reply, unclosed brackets included, and a value nested deeper than
    ``max_depth`` levels is rejected with a ``ValueError`` instead of exhausting the
    recursion limit of the JSON parser.

    Args:
        text: the model reply.
        max_depth: the deepest bracket nesting accepted.

    Raises:
        ValueError: no JSON value could be found, or it is nested too deeply.

    Example:
        >>> extract_json('Here you go:\\n```json\\n{"a": [1, 2]}\\n```')
        {'a': [1, 2]}
        >>> extract_json('The answer is {"ok": true}. Anything else?')
        {'ok': True}
    """
    too_deep = False
    stripped = text.strip()
    if _nesting_depth(stripped) <= max_depth:
        try:
            return json.loads(stripped)
        except (json.JSONDecodeError, RecursionError):
            pass
    else:
        too_deep = True
    if "```" in text:
        for block in _FENCE.findall(text):
            block = block.strip()
            if _nesting_depth(block) > max_depth:
                too_deep = True
                continue
            try:
                return json.loads(block)
            except (json.JSONDecodeError, RecursionError):
                continue
    inside_too_deep = 0  # spans nested in a too-deep one are fragments of it, not candidates
    for start, end, depth in _balanced_spans(text):
        if start < inside_too_deep:
            continue
        if depth > max_depth:
            too_deep = True
            inside_too_deep = end
            continue
        try:
            return json.loads(text[start:end])
        except (json.JSONDecodeError, RecursionError):
            continue
    if too_deep:
        raise ValueError(f"the reply contains no usable JSON: its brackets are nested deeper than {max_depth} levels")
    raise ValueError("the reply contains no JSON object or array")


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting in ``text`` (brackets in strings counted too: an upper bound)."""
    depth = best = 0
    for ch in text:
        if ch in "{[":
            depth += 1
            if depth > best:
                best = depth
        elif ch in "}]" and depth:
            depth -= 1
    return best


_OPENER = {"}": "{", "]": "["}


_SPECIAL = re.compile(r'[{}\[\]"]')
_STRING_REST = re.compile(r'(?:[^"\\\n]|\\.)*')  # the body of a JSON string, up to its closing quote


def _balanced_spans(text: str) -> list[tuple[int, int, int]]:
    """Every balanced ``{...}``/``[...]`` span as ``(start, end, depth)``, by start.

    One pass with a stack of open brackets.  Inside a span, a ``"`` opens a JSON string
    that ends at the next unescaped ``"`` (or, as JSON strings cannot hold one, at a
    newline); brackets inside it are ignored.  A closing bracket that does not match
    the innermost open one drops the open ones.  ``depth`` is the deepest nesting inside
    the span (1 for ``{}``).
    """
    spans: list[tuple[int, int, int]] = []
    starts: list[int] = []  # the open brackets: position, character, deepest level reached inside
    kinds: list[str] = []
    deepest: list[int] = []
    search = _SPECIAL.search
    match = search(text)
    while match is not None:
        i = match.start()
        ch = text[i]
        if ch == '"':
            if starts:  # skip the string: its brackets do not count
                i = _STRING_REST.match(text, i + 1).end()
        elif ch == "{" or ch == "[":
            starts.append(i)
            kinds.append(ch)
            deepest.append(len(starts))
        elif starts and kinds[-1] == _OPENER[ch]:
            start, level, inner = starts.pop(), len(starts), deepest.pop()
            kinds.pop()
            spans.append((start, i + 1, inner - level))
            if deepest and inner > deepest[-1]:
                deepest[-1] = inner
        else:
            starts.clear()
            kinds.clear()
            deepest.clear()
        match = search(text, i + 1)
    spans.sort()
    return spans


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
    if isinstance(err, (ValueError, TypeError)):
        return str(err) or type(err).__name__
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


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
            raising an exception (e.g. ``ValueError``, ``KeyError``) when it is invalid.
            Any exception from parsing or validation counts as a failed attempt: the
            prompt is retried with the error, and the other prompts are not affected.
        settings: decoding settings.  Retries use the same settings; with greedy
            decoding the retry chat (which shows the error) is what changes the reply.
        max_attempts: attempts per prompt, the first included.
        on_failure: ``"raise"`` a :class:`StructuredOutputError` naming the first prompt
            that never passed (its ``results`` keeps the valid values of the others),
            or put ``None`` in the place of each prompt that never passed.
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
            except Exception as err:  # noqa: BLE001 - any parse or validator error is a failed attempt
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
        raise StructuredOutputError(first, reply, error, max_attempts, results=results, failed=sorted(chats))
    return results
