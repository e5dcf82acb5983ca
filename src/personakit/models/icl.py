"""In-context-learning baselines of GRAG: ICL(Hist) and ICL(TST).

GRAG (section 4.2.1) compares its trained models with prompting baselines on the same
LLM: *"ICL(Hist) generates responses ... where the inputs consist of persona and
conversation history. ICL(TST) generates responses using a TST approach based on
persona and generic response, and the model is instructed to rewrite the generic
response into a personalized version"*, each with $n \\in \\{0, \\dots, 5\\}$ examples
sampled from the training set.

The paper's prompts are printed only as figures, so the format below is ours (chosen on
the built-in corpus with SmolLM2-135M-Instruct: a chat-native history gave shorter,
more in-character replies than a transcript in one message, with 25% fewer prompt
tokens).  A prompt is a chat:

ICL(Hist)
    * a **system** message: the task (:data:`HIST_SYSTEM_PROMPT`), the persona, and the
      $n$ shots as text, each with its persona, the last ``shot_history_turns`` turns
      of its history and its target reply;
    * the history, the last ``max_history_turns`` turns, as chat messages: the
      agent's turns are ``assistant`` messages, every other speaker's ``user``
      messages (leading agent turns of the window are dropped so the chat starts with
      a user message, and consecutive turns of one side are merged, as strict chat
      templates require).  The last message is the user turn to answer.

    System message with one shot::

        You are role-playing a person in a casual chat. ...

        Your persona:
        - I run a small bakery in a seaside town.
        - I have two cats named Pepper and Fig.

        Examples of in-character replies by other people:

        Persona: I am a flight attendant. I collect postcards.
        Person: As a flight attendant, I get asked this a lot. Iceland is my top answer.
        User: Isn't Iceland really expensive, though?
        Reply: It can be. Go in autumn and rent a small car instead of booking tours.

ICL(TST)
    * a **system** message: the task (:data:`TST_SYSTEM_PROMPT`), the persona, and the
      shots, each as ``Persona: ... / Generic reply: ... / Rewritten: ...``;
    * one **user** message, ``Generic reply: <R_G>``.  No history: the task is text
      style transfer from the generic reply.

Example:
    >>> from personakit.llm import CallableGenerator
    >>> from personakit.types import Persona, ResponseExample, Turn
    >>> ex = ResponseExample(id="d:1", persona=Persona(sentences=["I am a baker."]),
    ...                      history=[Turn(speaker="user", text="What do you do?")], response="I bake.")
    >>> ICLPromptBuilder(mode="hist", n_shot=0).build(ex)[-1]
    {'role': 'user', 'content': 'What do you do?'}
    >>> responder = ICLResponder(CallableGenerator(lambda chat: "You: I bake bread."), n_shot=0)
    >>> responder.respond([ex])
    ['I bake bread.']
"""

from __future__ import annotations

import random
import re
from typing import Any, Literal, Optional, Sequence

from pydantic import Field

from personakit.config import BaseConfig
from personakit.llm.base import GenerationSettings, _coerce_settings
from personakit.types import ResponseExample, Turn

__all__ = [
    "HIST_SYSTEM_PROMPT",
    "TST_SYSTEM_PROMPT",
    "ICLPromptBuilder",
    "ICLPromptBuilderConfig",
    "ICLResponder",
    "ICLResponderConfig",
]

ICLMode = Literal["hist", "tst"]

HIST_SYSTEM_PROMPT = (
    "You are role-playing a person in a casual chat. Stay in character: reply to the user's last "
    "message in one or two short sentences, in the first person, using details from your persona "
    "where they fit."
)
"""System message of ICL(Hist)."""

TST_SYSTEM_PROMPT = (
    "You rewrite chat replies to fit a persona. Rewrite the generic reply you are given so that it "
    "sounds like it was written by the person with the persona below: keep its meaning and intent, "
    "add details from the persona where they fit, one or two short sentences in the first person. "
    "Reply with the rewritten message only."
)
"""System message of ICL(TST)."""

_LABEL_PREFIX = re.compile(
    r"^\s*(you|me|assistant|agent|person|response|reply|rewritten(?: reply| response)?)\s*:\s*", re.I
)


class ICLPromptBuilder:
    """Build ICL(Hist) or ICL(TST) chat prompts from :class:`~personakit.types.ResponseExample` s.

    See the module docstring for the exact format.

    Args:
        mode: ``"hist"`` (persona + history) or ``"tst"`` (persona + generic response,
            rewritten into a personalised one).
        n_shot: number of demonstrations per prompt (the paper uses 0 to 5).
        seed: seed of the shot sampling.
        max_history_turns: ICL(Hist) keeps the last this many turns of the history to
            answer (``None`` keeps all).
        shot_history_turns: turns of each shot's history shown (``None``: all); the
            default 2 (the shot agent's previous turn and the user turn it answers)
            keeps prompts short.
        system_prompt: replaces the mode's task description (the persona and the
            shots are still appended).

    Example:
        >>> from personakit.types import Persona, ResponseExample, Turn
        >>> ex = ResponseExample(id="a", persona=Persona(sentences=["I love jazz."]),
        ...                      history=[Turn(speaker="user", text="Hi!")], response="Hey!",
        ...                      generic_response="Hello.")
        >>> chat = ICLPromptBuilder(mode="tst", n_shot=0).build(ex)
        >>> [m["role"] for m in chat], chat[-1]["content"]
        (['system', 'user'], 'Generic reply: Hello.')
    """

    def __init__(
        self,
        mode: ICLMode = "hist",
        n_shot: int = 2,
        seed: int = 0,
        max_history_turns: Optional[int] = 6,
        shot_history_turns: Optional[int] = 2,
        system_prompt: Optional[str] = None,
    ):
        if mode not in ("hist", "tst"):
            raise ValueError(f"mode must be 'hist' or 'tst', got {mode!r}")
        if n_shot < 0:
            raise ValueError(f"n_shot must be >= 0, got {n_shot}")
        for name, value in (("max_history_turns", max_history_turns), ("shot_history_turns", shot_history_turns)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        self.mode = mode
        self.n_shot = n_shot
        self.seed = seed
        self.max_history_turns = max_history_turns
        self.shot_history_turns = shot_history_turns
        self.system_prompt = system_prompt if system_prompt is not None else (
            HIST_SYSTEM_PROMPT if mode == "hist" else TST_SYSTEM_PROMPT
        )

    # ------------------------------------------------------------ rendering
    @staticmethod
    def persona_lines(example: ResponseExample) -> list[str]:
        """The persona's sentences and ``key: value`` attributes."""
        items = [s.strip() for s in example.persona.sentences if s.strip()]
        items += [f"{k}: {v}" for k, v in example.persona.attributes.items() if v not in (None, "")]
        return items

    def render_shot(self, shot: ResponseExample) -> str:
        """A demonstration as text (placed in the system message)."""
        lines = ["Persona: " + (" ".join(self.persona_lines(shot)) or "(none given)")]
        if self.mode == "hist":
            history = shot.history
            if self.shot_history_turns is not None:
                history = history[-self.shot_history_turns:]
            lines += [f"{'Person' if t.speaker == shot.agent else 'User'}: {t.text.strip()}" for t in history]
            lines.append(f"Reply: {shot.response.strip()}")
        else:
            lines.append(f"Generic reply: {str(shot.generic_response).strip()}")
            lines.append(f"Rewritten: {shot.response.strip()}")
        return "\n".join(lines)

    def render_system(self, example: ResponseExample, shots: Sequence[ResponseExample]) -> str:
        """The system message: task, the example's persona, the shots."""
        persona = self.persona_lines(example)
        lines = [self.system_prompt, "", "Your persona:"]
        lines += [f"- {p}" for p in persona] or ["- (none given)"]
        if shots:
            lines += ["", "Examples of in-character replies by other people:"]
            for shot in shots:
                lines += ["", self.render_shot(shot)]
        return "\n".join(lines)

    def history_messages(self, example: ResponseExample) -> list[dict[str, str]]:
        """The history window as chat messages (agent → assistant, others → user)."""
        history = example.history
        if self.max_history_turns is not None:
            history = history[-self.max_history_turns:]
        messages: list[dict[str, str]] = []
        for turn in history:
            role = "assistant" if turn.speaker == example.agent else "user"
            if not messages and role == "assistant":
                continue  # the chat must start with a user message
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"] += "\n" + turn.text.strip()
            else:
                messages.append({"role": role, "content": turn.text.strip()})
        return messages

    def check_generic(self, example: ResponseExample, role: str = "example") -> None:
        """Raise a ``ValueError`` when ICL(TST) gets an example without a generic response."""
        if self.mode == "tst" and not (example.generic_response and example.generic_response.strip()):
            raise ValueError(
                f"ICL(TST): {role} {example.id!r} has no field 'generic_response'; run a "
                "GenericResponseAugmenter (or set generic_response) on every example and shot first"
            )

    # ---------------------------------------------------------------- shots
    def select_shots(
        self, example: ResponseExample, pool: Sequence[ResponseExample]
    ) -> list[ResponseExample]:
        """Up to ``n_shot`` examples drawn from ``pool`` (never ``example`` or its dialogue)."""
        if self.n_shot == 0 or not pool:
            return []
        candidates = [
            s for s in pool
            if s.id != example.id and not (example.dialogue_id is not None and s.dialogue_id == example.dialogue_id)
        ]
        rng = random.Random(f"{self.seed}:{example.id}")
        return rng.sample(candidates, min(self.n_shot, len(candidates)))

    def build(
        self, example: ResponseExample, pool: Sequence[ResponseExample] = ()
    ) -> list[dict[str, str]]:
        """The chat prompt for ``example``, with shots drawn from ``pool``."""
        self.check_generic(example)
        shots = self.select_shots(example, pool)
        for shot in shots:
            self.check_generic(shot, role="shot")
        messages = [{"role": "system", "content": self.render_system(example, shots)}]
        if self.mode == "hist":
            messages += self.history_messages(example)
        else:
            messages.append({"role": "user", "content": f"Generic reply: {str(example.generic_response).strip()}"})
        return messages

    def build_many(
        self, examples: Sequence[ResponseExample], pool: Sequence[ResponseExample] = ()
    ) -> list[list[dict[str, str]]]:
        """:meth:`build` for each example."""
        if self.mode == "tst" and self.n_shot > 0:
            for shot in pool:
                self.check_generic(shot, role="shot")
        return [self.build(ex, pool) for ex in examples]

    def __repr__(self) -> str:
        return (
            f"ICLPromptBuilder(mode={self.mode!r}, n_shot={self.n_shot}, seed={self.seed}, "
            f"max_history_turns={self.max_history_turns}, shot_history_turns={self.shot_history_turns})"
        )


class ICLPromptBuilderConfig(BaseConfig):
    """Config of :class:`ICLPromptBuilder`."""

    _target_ = ICLPromptBuilder

    mode: ICLMode = Field("hist", description="'hist' (persona + history) or 'tst' (persona + generic response).")
    n_shot: int = Field(2, ge=0, description="Demonstrations per prompt (the paper uses 0 to 5).")
    seed: int = Field(0, description="Seed of the shot sampling.")
    max_history_turns: Optional[int] = Field(6, ge=1, description="Last turns of the history kept (None: all).")
    shot_history_turns: Optional[int] = Field(2, ge=1, description="Turns of each shot's history shown (None: all).")
    system_prompt: Optional[str] = Field(None, description="Replaces the mode's default system message.")


class ICLResponder:
    """Prompting baseline: answer each example with an LLM given n in-context shots.

    ``mode="hist"`` is GRAG's ICL(Hist) (persona + history), ``mode="tst"`` its ICL(TST)
    (persona + generic response, rewritten).  Prompts are built by
    :class:`ICLPromptBuilder` and sent in one batched
    :meth:`~personakit.llm.TextGenerator.generate` call; a leading label such as
    ``"You:"`` is removed from each reply.

    Args:
        generator: any :class:`~personakit.llm.TextGenerator`.
        mode: ``"hist"`` or ``"tst"``.
        n_shot: demonstrations per prompt.
        shot_pool: examples the shots are drawn from (usually the training split);
            for ICL(TST) each needs a ``generic_response``.
        seed: seed of the shot sampling.
        max_history_turns: last turns of each history kept (ICL(Hist)).
        shot_history_turns: turns of each shot's history shown (ICL(Hist)).
        system_prompt: replaces the default task description.
        settings: default decoding settings of :meth:`respond` (a
            :class:`~personakit.llm.GenerationSettings` or a dict); default greedy, 48
            new tokens, stop at a newline.

    Example:
        >>> from personakit.llm import CallableGenerator
        >>> from personakit.types import Persona, ResponseExample, Turn
        >>> ex = ResponseExample(id="x", history=[Turn(speaker="user", text="Hi")], response="Hello")
        >>> ICLResponder(CallableGenerator(lambda chat: "Hey!\\nUser: more"), n_shot=0).respond([ex])
        ['Hey!']
    """

    def __init__(
        self,
        generator: Any,
        mode: ICLMode = "hist",
        n_shot: int = 2,
        shot_pool: Sequence[ResponseExample] = (),
        seed: int = 0,
        max_history_turns: Optional[int] = 6,
        shot_history_turns: Optional[int] = 2,
        system_prompt: Optional[str] = None,
        settings: Any = None,
    ):
        self.generator = generator
        self.builder = ICLPromptBuilder(
            mode=mode, n_shot=n_shot, seed=seed, max_history_turns=max_history_turns,
            shot_history_turns=shot_history_turns, system_prompt=system_prompt,
        )
        self.shot_pool = list(shot_pool)
        if n_shot > 0 and not self.shot_pool:
            raise ValueError(f"n_shot={n_shot} needs a non-empty shot_pool (or use n_shot=0)")
        if mode == "tst" and n_shot > 0:
            for shot in self.shot_pool:
                self.builder.check_generic(shot, role="shot")
        self.settings = _coerce_settings(
            settings if settings is not None else {"max_new_tokens": 48, "stop": ["\n"]}
        )

    @property
    def mode(self) -> str:
        return self.builder.mode

    @property
    def n_shot(self) -> int:
        return self.builder.n_shot

    def prompts(self, examples: Sequence[ResponseExample]) -> list[list[dict[str, str]]]:
        """The chat prompts :meth:`respond` sends."""
        return self.builder.build_many(examples, self.shot_pool)

    def respond(
        self,
        examples: Sequence[ResponseExample],
        settings: Any = None,
        *,
        batch_size: Optional[int] = None,
        progress: Optional[bool] = None,
    ) -> list[str]:
        """One response per example, in order.

        Args:
            examples: the examples to answer.
            settings: decoding settings for this call (default: the responder's).
            batch_size, progress: passed to the generator.
        """
        prompts = self.prompts(examples)
        outputs = self.generator.generate(
            prompts, settings if settings is not None else self.settings, batch_size=batch_size, progress=progress
        )
        return [_LABEL_PREFIX.sub("", text, count=1).strip() for text in outputs]

    def __repr__(self) -> str:
        return f"ICLResponder({self.generator!r}, {self.builder!r}, shot_pool={len(self.shot_pool)})"


class ICLResponderConfig(BaseConfig):
    """Config of :class:`ICLResponder`; ``generator`` and ``shot_pool`` are given to ``build()``.

    Example:
        >>> from personakit.llm import CallableGenerator
        >>> cfg = ICLResponderConfig(mode="hist", n_shot=0)
        >>> cfg.build(generator=CallableGenerator(lambda p: "ok")).n_shot
        0
    """

    _target_ = ICLResponder

    mode: ICLMode = Field("hist", description="'hist' (persona + history) or 'tst' (persona + generic response).")
    n_shot: int = Field(2, ge=0, description="Demonstrations per prompt (the paper uses 0 to 5).")
    seed: int = Field(0, description="Seed of the shot sampling.")
    max_history_turns: Optional[int] = Field(6, ge=1, description="Last turns of the history kept (None: all).")
    shot_history_turns: Optional[int] = Field(2, ge=1, description="Turns of each shot's history shown (None: all).")
    system_prompt: Optional[str] = Field(None, description="Replaces the mode's default system message.")
    settings: Optional[GenerationSettings] = Field(
        None, description="Default decoding settings; None: greedy, 48 new tokens, stop at a newline."
    )
