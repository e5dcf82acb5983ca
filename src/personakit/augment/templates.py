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
    shown); ``history_line`` and ``empty_history`` shape the history block.

There is deliberately **no persona field**: a template cannot put the persona into the
prompt, so the persona reaches the generic LLM only when a speaker said it in the
history.  Shipped templates (``personakit/augment/templates/*.yaml``):
``spc`` (Synthetic-Persona-Chat), ``convai2`` (ConvAI2 / PersonaChat), ``empathetic``
(EmpatheticDialogues), ``pfg`` (Persuasion-for-Good) and ``builtin`` (the built-in
sample corpus).  Copy one, edit it and pass its path to :func:`load_template`.

Example:
    >>> t = load_template("spc")
    >>> sorted(TEMPLATE_NAMES)
    ['builtin', 'convai2', 'empathetic', 'pfg', 'spc']
    >>> "{last_user_utterance}" in t.user
    True
"""

from __future__ import annotations

import os
import string
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Optional, Union

from pydantic import Field, field_validator, model_validator

from personakit.config import BaseConfig, ConfigError, normalize_name

__all__ = [
    "AugmentTemplate",
    "TEMPLATE_NAMES",
    "TEMPLATE_ALIASES",
    "SYSTEM_FIELDS",
    "USER_FIELDS",
    "NAME_FIELDS",
    "load_template",
    "template_path",
]

SYSTEM_FIELDS: frozenset[str] = frozenset({"scenario", "goals", "rules", "agent_name", "user_name"})
"""Format fields allowed in a template's ``system`` text."""

USER_FIELDS: frozenset[str] = frozenset({"history", "last_user_utterance", "agent_name", "user_name"})
"""Format fields allowed in a template's ``user`` text."""

NAME_FIELDS: frozenset[str] = frozenset({"agent_name", "user_name"})
"""Format fields allowed in a template's ``scenario``, ``goals`` and ``rules``."""

TEMPLATE_NAMES: tuple[str, ...] = ("spc", "convai2", "empathetic", "pfg", "builtin")
"""Names of the shipped templates, one per supported dialogue dataset."""

TEMPLATE_ALIASES: dict[str, str] = {
    "spcjsonl": "spc",
    "spccsv": "spc",
    "syntheticpersonachat": "spc",
    "personachat": "convai2",
    "ed": "empathetic",
    "empatheticdialogues": "empathetic",
    "persuasionforgood": "pfg",
    "builtincorpus": "builtin",
}
"""Other accepted names (normalised: case, ``-``, ``_``, ``.`` and spaces ignored) → template name.
They cover the dataset names of :data:`personakit.data.DEFAULT_AGENTS` and
:data:`personakit.data.DATASET_READERS`."""


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

    The system message is ``system.format(scenario=..., goals=..., rules=..., agent_name=...,
    user_name=...)`` with ``goals`` and ``rules`` rendered as ``- item`` lines; the user
    message is ``user.format(history=..., last_user_utterance=..., agent_name=...,
    user_name=...)``.  History lines are ``history_line.format(speaker=..., text=...)``
    with the agent shown as ``agent_name`` and every other speaker as ``user_name``
    (dataset labels such as ``"User 2"`` or ``"persuader"`` never reach the LLM).

    Load one with :func:`load_template`; validation errors name the file and the field.

    Example:
        >>> t = AugmentTemplate(name="mini", system="{scenario}\\n{rules}", scenario="A chat.",
        ...                     user="{history}\\nLast: {last_user_utterance}", rules=["Be brief."])
        >>> t.render_system()
        'A chat.\\n- Be brief.'
    """

    name: str = Field("custom", description="Template name (shown in logs).")
    description: str = Field("", description="What the template is for (not sent to the LLM).")
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

    @field_validator("goals", "rules")
    @classmethod
    def _check_items(cls, v: list[str]) -> list[str]:
        for i, item in enumerate(v):
            if not item.strip():
                raise ValueError(f"item {i} is empty")
            _check_name_fields(item, f"item {i}")
        return [item.strip() for item in v]

    @field_validator("scenario")
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
    def _check_user(cls, v: str) -> str:
        fields = _format_fields(v)
        unknown = sorted(set(fields) - USER_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown format field(s) {unknown}; the user text may use {sorted(USER_FIELDS)} "
                "(the persona is never available to a generic-response prompt)"
            )
        if "last_user_utterance" not in fields:
            raise ValueError("must contain {last_user_utterance}, the user turn to answer")
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
        """The user message: the earlier turns and, isolated, the turn to answer."""
        return self.user.format(
            history=self.render_history(history),
            last_user_utterance=last_user_utterance,
            agent_name=self.agent_name,
            user_name=self.user_name,
        ).strip()


# ------------------------------------------------------------------ loading
def _canonical(name: str) -> Optional[str]:
    key = normalize_name(name)
    if key in TEMPLATE_NAMES:
        return key
    return TEMPLATE_ALIASES.get(key)


def template_path(name: str) -> Path:
    """Path of a shipped template file (``spc``, ``convai2``, ``empathetic``, ``pfg``, ``builtin`` or an alias).

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
            ``"empathetic"``, ``"pfg"``, ``"builtin"``, or an alias such as ``"ed"``,
            ``"persuasion_for_good"``), the path of a ``.yaml``/``.yml``/``.json`` file,
            or an :class:`AugmentTemplate` (returned as is).

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
