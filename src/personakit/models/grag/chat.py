r"""Chat-template prompts for decoder-only GRAG models: turns, the assistant cue and the end-of-turn token.

An instruct model such as SmolLM2-135M-Instruct answers fluently from step 0 when it
sees its own chat format: the persona (and, for PreSFT(TST) / PreGRAG, the generic
response) in the system message, the history as ``user`` / ``assistant`` turns (the
agent's own earlier turns are the assistant's), and the reply as the assistant's next
turn.  Its training target then ends with the template's **end-of-turn** token
(``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3), and generation stops there,
so a trained model answers one turn instead of running on into the next speaker's or
into instruction-style text.

These helpers read everything from the tokenizer's own ``chat_template``; nothing is
specific to one model family.

Example:
    >>> from personakit.types import Turn
    >>> chat_turns([Turn(speaker="u", text="Hi"), Turn(speaker="u", text="there"),
    ...             Turn(speaker="a", text="Hello!")], agent="a")
    [{'role': 'user', 'content': 'Hi\nthere'}, {'role': 'assistant', 'content': 'Hello!'}]
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from personakit.llm.base import merge_roles
from personakit.types import Turn

__all__ = ["has_chat_template", "chat_turns", "render_chat", "end_of_turn_text", "end_of_turn_ids",
           "stop_token_ids"]

_PROBE = "personakit-end-of-turn-probe"


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` carries a chat template (``apply_chat_template`` would work)."""
    return bool(getattr(tokenizer, "chat_template", None)) and callable(getattr(tokenizer, "apply_chat_template", None))


def chat_turns(history: Sequence[Turn], agent: Optional[str]) -> list[dict[str, str]]:
    """The history as chat messages: the agent's turns are ``assistant``, everyone else's ``user``.

    Consecutive turns of one role are merged (one message, lines joined by a newline), so
    roles alternate as chat templates expect; whitespace inside a turn is collapsed.
    """
    return merge_roles(("assistant" if turn.speaker == agent else "user", " ".join(turn.text.split()))
                       for turn in history)


def render_chat(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """``tokenizer.apply_chat_template(messages, tokenize=False, ...)`` with a clear error without a template."""
    if not has_chat_template(tokenizer):
        raise ValueError(f"{type(tokenizer).__name__} has no chat template; use prompt_format='plain'")
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def end_of_turn_text(tokenizer: Any) -> str:
    """What the chat template writes after an assistant message (stripped), e.g. ``"<|im_end|>"``.

    Found by rendering a probe conversation; ``""`` when the template writes nothing there.
    """
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    text = render_chat(tokenizer, messages, add_generation_prompt=False)
    at = text.rfind(_PROBE)
    if at < 0:
        return ""
    return text[at + len(_PROBE):].strip()


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant turn: the template's end-of-turn text, else the EOS token."""
    text = end_of_turn_text(tokenizer) if has_chat_template(tokenizer) else ""
    if text:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if ids:
            return ids
    eos = getattr(tokenizer, "eos_token_id", None)
    return [] if eos is None else [int(eos)]


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Token ids at which generation stops: the end-of-turn token (when it is one token), EOS, and
    the generation config's own EOS ids, without duplicates."""
    ids: list[int] = []
    eot = end_of_turn_ids(tokenizer)
    if len(eot) == 1:
        ids.append(eot[0])
    candidates: list[Any] = [getattr(tokenizer, "eos_token_id", None)]
    config_eos = getattr(generation_config, "eos_token_id", None)
    candidates += list(config_eos) if isinstance(config_eos, (list, tuple)) else [config_eos]
    for value in candidates:
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    return ids
