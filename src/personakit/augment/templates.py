"""Prompt templates for generic-response augmentation, stored as editable YAML data.

GRAG (section 3.1, Appendix A) asks a generic LLM for the reply $R_G$ an agent would
give *without* its persona: *"In the system prompts, we provide a description of the
task and the nature of the conversation, along with rules that instruct the LLM to
generate responses with a neutral style and emotional tone. [...] In the user prompts,
we provide the conversational history $H$ with the last utterance of the <user> role
isolated. During the generation process, the persona $P$ is withheld from the LLM
(unless explicitly discussed in $H$)."*  The paper prints its prompts only as figures
(Figure 5, SPC; other datasets differ in their "Chat Scenario and Goals"), so the
wording of the shipped templates is ours; their structure follows that description.

A template is one YAML file with these fields (see :class:`AugmentTemplate`):

``layout``
    how the history reaches the LLM: ``"single"`` (the paper's layout, the default: the
    history as ``Name: text`` lines inside one user message) or ``"chat"`` (the history as
    alternating chat turns, see below).
``system``
    the system message; format fields ``{scenario}``, ``{goals}``, ``{rules}``,
    ``{agent_name}``, ``{user_name}``.
``user``
    the user message; format fields ``{history}`` (every turn but the last),
    ``{last_user_utterance}`` (the turn to answer, isolated; required),
    ``{agent_name}``, ``{user_name}``.
``scenario``, ``goals``, ``rules``
    the chat scenario (text), the agent's goals and the neutral-tone rules (lists of
    strings, rendered as ``- item`` lines); format fields ``{agent_name}``, ``{user_name}``.
``agent_name``, ``user_name``
    how the two sides are named in the prompt (the dataset's speaker labels are not
    shown); ``history_line`` and ``empty_history`` shape the history block (single layout).
``opening_user``
    chat layout: the user message put before a history that starts with the agent's turn.

**The chat layout, for small instruct models.**  A 135M-parameter model such as the embedded
SmolLM2 follows a long system prompt and a transcript pasted into one user message badly:
it echoes the transcript format (a reply that starts with ``User:`` cleans up to nothing) or
names itself by the prompt's label ("I'm Agent in a friendly chat.").  With
``layout: chat`` the prompt is the conversation itself, the format such a model was
tuned on: a short system message, then the other speaker's turns as ``user`` messages and
the agent's own earlier turns as ``assistant`` messages (consecutive turns of one side
merged into one message, lines joined with a newline), and last the ``user`` text with
the turn to answer; the reply is the assistant's next turn.  The ``user`` text may then
be just ``"{last_user_utterance}"`` and may not use ``{history}``.  Chat templates expect
the turns to start with the user, so a history that starts with the agent's turn (after
``max_history_turns`` cut it, or in Persuasion-for-Good, where the persuader speaks first)
gets ``opening_user`` (default ``"Hi!"``, a neutral greeting that says nothing about
anyone) as its first message; folding that turn into the system message instead would
hide from the model that it said it.  On 200 SPC test turns with SmolLM2
(``benchmarks/scaffold_templates.py``) the chat layout left no reply empty against 31%
with the paper's layout; see :func:`recommended_template`.

There is deliberately **no persona field** in either layout: a template cannot put the
persona into the prompt, so the persona reaches the generic LLM only when a speaker said
it in the history.  Shipped templates (``personakit/augment/templates/*.yaml``):
``spc`` (Synthetic-Persona-Chat), ``convai2`` (ConvAI2 / PersonaChat), ``empathetic``
(EmpatheticDialogues), ``pfg`` (Persuasion-for-Good) and ``builtin`` (the built-in
sample corpus), in the paper's single-message layout, and each of them in the chat
layout as ``<name>-chat`` (``spc-chat``, ...).  Copy one, edit it and pass its path to
:func:`load_template`.

Example:
    >>> t = load_template("spc")
    >>> sorted(TEMPLATE_NAMES)[:4]
    ['builtin', 'builtin-chat', 'convai2', 'convai2-chat']
    >>> "{last_user_utterance}" in t.user
    True
    >>> load_template("ed-chat").layout
    'chat'
"""

from __future__ import annotations

import os
import string
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from personakit.config import BaseConfig, ConfigError, normalize_name
from personakit.llm.base import merge_roles

__all__ = [
    "AugmentTemplate",
    "TEMPLATE_NAMES",
    "TEMPLATE_ALIASES",
    "SYSTEM_FIELDS",
    "USER_FIELDS",
    "NAME_FIELDS",
    "SMALL_MODEL_PARAMETERS",
    "DEFAULT_GENERIC_MODEL",
    "DEFAULT_MAX_NEW_TOKENS",
    "default_template",
    "load_template",
    "recommended_template",
    "template_path",
]

SYSTEM_FIELDS: frozenset[str] = frozenset({"scenario", "goals", "rules", "agent_name", "user_name"})
"""Format fields allowed in a template's ``system`` text."""

USER_FIELDS: frozenset[str] = frozenset({"history", "last_user_utterance", "agent_name", "user_name"})
"""Format fields allowed in a template's ``user`` text."""

NAME_FIELDS: frozenset[str] = frozenset({"agent_name", "user_name"})
"""Format fields allowed in a template's ``scenario``, ``goals`` and ``rules``."""

_DATASETS: tuple[str, ...] = ("spc", "convai2", "empathetic", "pfg", "builtin")

TEMPLATE_NAMES: tuple[str, ...] = (*_DATASETS, *(f"{name}-chat" for name in _DATASETS))
"""Names of the shipped templates: one per supported dialogue dataset in the paper's
single-message layout (``"spc"``, ...) and in the chat layout for small models (``"spc-chat"``, ...)."""

_DATASET_ALIASES: dict[str, str] = {
    "spcjsonl": "spc",
    "spccsv": "spc",
    "syntheticpersonachat": "spc",
    "personachat": "convai2",
    "ed": "empathetic",
    "empatheticdialogues": "empathetic",
    "persuasionforgood": "pfg",
    "builtincorpus": "builtin",
}

TEMPLATE_ALIASES: dict[str, str] = {
    **_DATASET_ALIASES,
    **{f"{alias}chat": f"{name}-chat" for alias, name in _DATASET_ALIASES.items()},
}
"""Other accepted names (normalised: case, ``-``, ``_``, ``.`` and spaces ignored) → template name.
They cover the dataset names of :data:`personakit.data.DEFAULT_AGENTS` and
:data:`personakit.data.DATASET_READERS`, each also with ``-chat`` for the chat layout
(``"ed-chat"`` → ``"empathetic-chat"``)."""

_LOOKUP: dict[str, str] = {**{normalize_name(name): name for name in TEMPLATE_NAMES}, **TEMPLATE_ALIASES}

SMALL_MODEL_PARAMETERS: int = 1_000_000_000
"""Below this many parameters, :func:`recommended_template` picks the chat layout."""


def _format_fields(text: str) -> list[str]:
    """The replacement-field names of a ``str.format`` string (raises ``ValueError`` if malformed)."""
    names = []
    for _, field, spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if field == "" or not field.isidentifier():
            raise ValueError(
                f"replacement field {{{field}}} is not a plain name; write literal braces as '{{{{' and '}}}}'"
            )
        names.append(field)
    return names


def _check_name_fields(text: str, where: str) -> None:
    unknown = sorted(set(_format_fields(text)) - NAME_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown format field(s) {unknown}; scenario, goals and rules may use "
                         f"{sorted(NAME_FIELDS)} only")


class AugmentTemplate(BaseConfig):
    """A generic-response prompt template (GRAG section 3.1): system and user message texts.

    :meth:`render_messages` builds the chat for one example.  In the single layout (the
    paper's) it is a system and a user message; in the chat layout (``layout="chat"``)
    the history travels as alternating ``user`` / ``assistant`` turns between the two
    (see the module docstring).  The system message is ``system.format(scenario=...,
    goals=..., rules=..., agent_name=..., user_name=...)`` with ``goals`` and ``rules``
    rendered as ``- item`` lines; the user message is ``user.format(history=...,
    last_user_utterance=..., agent_name=..., user_name=...)``.  History lines are ``history_line.format(speaker=..., text=...)``
    with the agent shown as ``agent_name`` and every other speaker as ``user_name``
    (dataset labels such as ``"User 2"`` or ``"persuader"`` never reach the LLM).
    In the chat layout the user message has no ``{history}`` and ``history_line`` and
    ``empty_history`` are not used.

    Load one with :func:`load_template`; validation errors name the file and the field.

    Example:
        >>> t = AugmentTemplate(name="mini", system="{scenario}\\n{rules}", scenario="A chat.",
        ...                     user="{history}\\nLast: {last_user_utterance}", rules=["Be brief."])
        >>> t.render_system()
        'A chat.\\n- Be brief.'
        >>> chat = AugmentTemplate(layout="chat", system="Chat briefly.", user="{last_user_utterance}")
        >>> [m["role"] for m in chat.render_messages([(False, "Hi"), (True, "Hey"), (False, "Hm")], "How?")]
        ['system', 'user', 'assistant', 'user']
    """

    name: str = Field("custom", description="Template name (shown in logs).")
    description: str = Field("", description="What the template is for (not sent to the LLM).")
    layout: Literal["single", "chat"] = Field(
        "single", description="'single': the history as lines in one user message (the paper's); "
                              "'chat': the history as alternating user/assistant turns (small models).")
    system: str = Field(..., min_length=1, description="System message text with format fields.")
    user: str = Field(..., min_length=1, description="User message text with format fields.")
    scenario: str = Field("", description="The chat scenario: who talks with whom, and why.")
    goals: list[str] = Field(default_factory=list, description="The agent's goals in this chat.")
    rules: list[str] = Field(default_factory=list, description="Rules for a neutral reply (tone, length, format).")
    agent_name: str = Field("Agent", min_length=1, description="How the responding agent is named in the prompt.")
    user_name: str = Field("User", min_length=1, description="How every other speaker is named in the prompt.")
    history_line: str = Field("{speaker}: {text}", description="Format of one history line (fields speaker, text).")
    empty_history: str = Field(
        "(none: this is the first message of the conversation)",
        description="Shown as {history} when the user's last message is the only turn.",
    )
    opening_user: str = Field(
        "Hi!", min_length=1,
        description="Chat layout: the user message put before a history that starts with the agent's turn.",
    )

    @field_validator("goals", "rules")
    @classmethod
    def _check_items(cls, v: list[str]) -> list[str]:
        for i, item in enumerate(v):
            if not item.strip():
                raise ValueError(f"item {i} is empty")
            _check_name_fields(item, f"item {i}")
        return [item.strip() for item in v]

    @field_validator("scenario", "opening_user")
    @classmethod
    def _check_scenario(cls, v: str) -> str:
        _check_name_fields(v, "the text")
        return v

    @field_validator("system")
    @classmethod
    def _check_system(cls, v: str) -> str:
        unknown = sorted(set(_format_fields(v)) - SYSTEM_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown format field(s) {unknown}; the system text may use {sorted(SYSTEM_FIELDS)} "
                "(the persona is never available to a generic-response prompt)"
            )
        return v

    @field_validator("user")
    @classmethod
    def _check_user(cls, v: str, info: ValidationInfo) -> str:
        fields = _format_fields(v)
        unknown = sorted(set(fields) - USER_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown format field(s) {unknown}; the user text may use {sorted(USER_FIELDS)} "
                "(the persona is never available to a generic-response prompt)"
            )
        if "last_user_utterance" not in fields:
            raise ValueError("must contain {last_user_utterance}, the user turn to answer")
        if "history" in fields and info.data.get("layout") == "chat":
            raise ValueError("the chat layout sends the history as chat turns, so the user text may not use "
                             "{history}; use layout 'single' for a history block")
        return v

    @field_validator("history_line")
    @classmethod
    def _check_history_line(cls, v: str) -> str:
        fields = set(_format_fields(v))
        if fields - {"speaker", "text"} or "text" not in fields:
            raise ValueError("must contain {text} and may contain {speaker}, nothing else")
        return v

    @model_validator(mode="after")
    def _distinct_names(self) -> "AugmentTemplate":
        if self.agent_name.strip() == self.user_name.strip():
            raise ValueError(f"fields 'agent_name' and 'user_name' are both {self.agent_name!r}; they must differ")
        return self

    # ---------------------------------------------------------------- render
    @staticmethod
    def _bullets(items: list[str]) -> str:
        return "\n".join(f"- {item}" for item in items)

    def _names(self, text: str) -> str:
        return text.format(agent_name=self.agent_name, user_name=self.user_name)

    def render_system(self) -> str:
        """The system message (the same for every example)."""
        return self.system.format(
            scenario=self._names(self.scenario.strip()),
            goals=self._bullets([self._names(g) for g in self.goals]),
            rules=self._bullets([self._names(r) for r in self.rules]),
            agent_name=self.agent_name,
            user_name=self.user_name,
        ).strip()

    def render_history(self, turns: list[tuple[bool, str]]) -> str:
        """History lines for ``(is_agent, text)`` pairs; :attr:`empty_history` when there are none."""
        if not turns:
            return self.empty_history
        return "\n".join(
            self.history_line.format(speaker=self.agent_name if is_agent else self.user_name, text=text)
            for is_agent, text in turns
        )

    def render_user(self, history: list[tuple[bool, str]], last_user_utterance: str) -> str:
        """The last user message: the turn to answer, isolated (single layout: after the earlier turns)."""
        return self.user.format(
            history=self.render_history(history) if self.layout == "single" else "",
            last_user_utterance=last_user_utterance,
            agent_name=self.agent_name,
            user_name=self.user_name,
        ).strip()

    def render_turns(self, history: list[tuple[bool, str]], last_user_utterance: str) -> list[dict[str, str]]:
        """Chat layout: the conversation as ``user`` / ``assistant`` messages, without the system message.

        The agent's turns become ``assistant`` messages and every other turn a ``user``
        message; consecutive turns of one side are merged into one message (lines joined
        with a newline), so roles alternate; the last message is :meth:`render_user`'s.  A
        history that starts with the agent's turn gets :attr:`opening_user` first.
        """
        turns = [("assistant" if is_agent else "user", text) for is_agent, text in history]
        turns.append(("user", self.render_user([], last_user_utterance)))
        if turns[0][0] == "assistant":
            turns.insert(0, ("user", self._names(self.opening_user.strip())))
        return merge_roles(turns)

    def render_messages(self, history: list[tuple[bool, str]], last_user_utterance: str) -> list[dict[str, str]]:
        """The whole chat for one example: the system message, then the history and the turn to answer.

        Args:
            history: ``(is_agent, text)`` for every turn before the last, oldest first.
            last_user_utterance: the user turn to answer.
        """
        system = {"role": "system", "content": self.render_system()}
        if self.layout == "chat":
            return [system, *self.render_turns(history, last_user_utterance)]
        return [system, {"role": "user", "content": self.render_user(history, last_user_utterance)}]


# ------------------------------------------------------------------ loading
def _canonical(name: str) -> Optional[str]:
    return _LOOKUP.get(normalize_name(name))


def template_path(name: str) -> Path:
    """Path of a shipped template file (a name of :data:`TEMPLATE_NAMES` or an alias).

    Copy the file to start a template of your own.

    Raises:
        KeyError: ``name`` is not a shipped template.
    """
    canonical = _canonical(name)
    if canonical is None:
        raise KeyError(f"unknown augmentation template {name!r}; shipped templates: {', '.join(TEMPLATE_NAMES)} "
                       "(or pass the path of a .yaml file)")
    return Path(str(resources.files(__package__).joinpath("templates", f"{canonical}.yaml")))


@lru_cache(maxsize=None)
def _load_shipped(canonical: str) -> AugmentTemplate:
    return AugmentTemplate.from_yaml(template_path(canonical))


def load_template(name_or_path: Union[str, os.PathLike[str], AugmentTemplate]) -> AugmentTemplate:
    """Load a generic-response template by name or from a YAML (or JSON) file.

    Args:
        name_or_path: a shipped template name (``"spc"``, ``"convai2"``,
            ``"empathetic"``, ``"pfg"``, ``"builtin"``, each also with ``-chat`` for the
            chat layout, or an alias such as ``"ed"``, ``"persuasion_for_good"``), the
            path of a ``.yaml``/``.yml``/``.json`` file, or an :class:`AugmentTemplate`
            (returned as is).

    Returns:
        The validated template (a fresh copy, safe to modify).

    Raises:
        personakit.config.ConfigError: the file is not valid YAML or a field is
            missing or invalid; the message names the file and the field.
        FileNotFoundError: a path that does not exist.
        KeyError: an unknown template name.

    Example:
        >>> load_template("ed").name
        'empathetic'
    """
    if isinstance(name_or_path, AugmentTemplate):
        return name_or_path
    text = os.fspath(name_or_path)
    path = Path(text)
    looks_like_path = isinstance(name_or_path, os.PathLike) or path.suffix.lower() in {".yaml", ".yml", ".json"} \
        or os.sep in text
    if not looks_like_path:
        canonical = _canonical(text)
        if canonical is not None:
            return _load_shipped(canonical).model_copy(deep=True)
        if not path.exists():
            raise KeyError(f"unknown augmentation template {text!r}; shipped templates: {', '.join(TEMPLATE_NAMES)} "
                           "(or pass the path of a .yaml file)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: template file not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return AugmentTemplate.from_json(path)
    if suffix not in {".yaml", ".yml"}:
        raise ConfigError(f"{path}: unknown template format {suffix!r} (use .yaml, .yml or .json)")
    return AugmentTemplate.from_yaml(path)


def recommended_template(dataset: str, model_parameters: Optional[int] = None) -> str:
    """The shipped template to use for ``dataset`` with a generic LLM of ``model_parameters`` parameters.

    Small instruct models (fewer than :data:`SMALL_MODEL_PARAMETERS`, 1B) get the chat
    layout (``"<dataset>-chat"``): on 200 Synthetic-Persona-Chat test turns with the
    embedded SmolLM2-135M-Instruct (greedy, 32 new tokens) ``spc-chat`` left no first
    reply empty (``spc``: 31%), never used a speaker label (``spc``: 40% of the replies)
    and raised ROUGE-1 / BERTScore-F1 against the reference reply from 0.136 / 0.301 to
    0.205 / 0.388 (``benchmarks/results/scaffold_templates.md``).  Larger
    models, or an unknown size (``None``, e.g. an endpoint), get the paper's
    single-message layout.

    Args:
        dataset: a template or dataset name or alias (``"spc"``, ``"ed"``,
            ``"persuasion_for_good"``, ``"builtin"``; a ``-chat`` name is reduced to its
            dataset).
        model_parameters: the generic LLM's parameter count, e.g.
            ``sum(p.numel() for p in model.parameters())``; ``None`` if unknown.

    Raises:
        KeyError: ``dataset`` has no shipped template.

    Example:
        >>> recommended_template("spc", 135_000_000)
        'spc-chat'
        >>> recommended_template("ED", 8_000_000_000), recommended_template("pfg")
        ('empathetic', 'pfg')
    """
    canonical = _canonical(dataset)
    if canonical is None:
        raise KeyError(f"unknown dataset {dataset!r} for a generic-response template; known: {', '.join(_DATASETS)}")
    base = canonical.removesuffix("-chat")
    small = model_parameters is not None and model_parameters < SMALL_MODEL_PARAMETERS
    return f"{base}-chat" if small else base


DEFAULT_GENERIC_MODEL = "smollm2"
"""The generic LLM of ``personakit augment`` and of the GRAG recipe when none is named: the embedded
SmolLM2-135M-Instruct."""

DEFAULT_MAX_NEW_TOKENS = 32
"""Maximum length of a generic response in tokens, for ``personakit augment --max-new-tokens`` and the
GRAG recipe's ``augment.max_new_tokens``: a generic reply is one short turn (the template comparison of
:func:`recommended_template` used 32), and a stop at the first newline ends most replies sooner."""


def default_template(dataset: str, model: Optional[str] = DEFAULT_GENERIC_MODEL) -> str:
    """The template used when none is given, for ``dataset`` and the generic LLM ``model``.

    The one rule of ``personakit augment`` and of the GRAG recipe: an embedded model (the
    135M SmolLM2, below :data:`SMALL_MODEL_PARAMETERS`) gets the chat layout
    (``"<dataset>-chat"``); any other model (a local folder, a hub id) or an endpoint
    (``model=None``), whose size is not known here, gets the paper's single-message layout.
    See :func:`recommended_template`.

    Example:
        >>> default_template("spc"), default_template("builtin", "smollm2-135m-instruct")
        ('spc-chat', 'builtin-chat')
        >>> default_template("convai2", None), default_template("pfg", "/models/llama-3.1-8b")
        ('convai2', 'pfg')
    """
    from personakit.backbones.registry import find_embedded

    embedded = model is not None and find_embedded(str(model)) is not None
    return recommended_template(dataset, SMALL_MODEL_PARAMETERS - 1 if embedded else None)
