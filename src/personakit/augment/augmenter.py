"""GRAG's generic-response augmentation: :class:`GenericResponseAugmenter`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from pydantic import Field

from personakit.augment.postprocess import clean_generic_response, speaker_label_leak
from personakit.augment.templates import AugmentTemplate, load_template
from personakit.config import BaseConfig
from personakit.llm.base import GenerationSettings, TextGenerator, _coerce_settings
from personakit.llm.cache import CachedGenerator, ResponseCache, cache_key
from personakit.types import ResponseExample

__all__ = ["AugmentStats", "GenericResponseAugmenter", "GenericResponseAugmenterConfig"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class AugmentStats:
    """What the last :meth:`GenericResponseAugmenter.augment` call did.

    Attributes:
        examples: examples augmented.
        prompts: distinct prompts among them (identical prompts are generated once when
            a cache is used).
        generated: prompts sent to the generator in this call, retries included.
        cached: prompts answered from the cache, retries included.
        empty: examples whose final generic response is empty (``0`` unless
            ``fallback=None``).
        first_empty: examples whose first reply cleaned up to nothing (before any retry).
        retried: examples sent to at least one retry (``first_empty`` when
            ``empty_retries > 0``, else ``0``).
        fallback: examples whose replies all cleaned up to nothing and that got the
            fallback text.
        label_leaks: first replies that showed the prompt's speaker labels (see
            :func:`~personakit.augment.postprocess.speaker_label_leak`; the clean-up
            removes role prefixes, later turns and self-naming by a label).
        seconds: wall time of the call.
    """

    examples: int
    prompts: int
    generated: int
    cached: int
    empty: int
    seconds: float
    first_empty: int = 0
    retried: int = 0
    fallback: int = 0
    label_leaks: int = 0


class GenericResponseAugmenter:
    """Write the generic response $R_G$ of every example with a generic LLM (GRAG section 3.1).

    GRAG augments each training point (persona $P$, history $H$ ending with a user turn,
    personalised reply $R_P$) with the reply $R_G$ that a general-purpose LLM gives to
    $H$ *without seeing $P$*: a content scaffold that the task model then personalises.
    For every example, :meth:`build_prompt` makes a chat from the template
    (:mod:`personakit.augment.templates`):

    * **system**: the task, the chat scenario and the agent's goals, and the rules for a
      neutral style and emotional tone;
    * **user**: the history before the last turn (the agent shown as the template's
      ``agent_name``, everyone else as ``user_name``) and, isolated, the last user
      utterance to answer.

    The persona is never part of the prompt (templates have no persona field), so it
    reaches the LLM only where a speaker said it in $H$.  With a template of the chat layout
    (``"spc-chat"``, ...; see :mod:`personakit.augment.templates`) the history travels as
    alternating ``user`` / ``assistant`` turns instead, which small models follow far better.
    The reply is cleaned by :func:`~personakit.augment.postprocess.clean_generic_response`
    (role prefixes, quotes, any further turns the model wrote and self-naming by a speaker
    label are removed).

    **No empty $R_G$.**  A reply that cleans up to nothing (a small model that starts with
    a ``"User:"`` turn or writes only a note) is asked again up to ``empty_retries`` times
    with sampling on (``retry_temperature``, seed ``settings.seed + attempt``, so each
    attempt is reproducible and cached under its own key); a reply still empty after that
    gets ``fallback``, a short neutral text that says nothing about anyone (default
    ``"Okay."``).  :attr:`last_stats` counts the first empties, the retries, the fallbacks
    and the speaker-label leaks.  ``fallback=None`` keeps such replies empty.

    Any :class:`~personakit.llm.TextGenerator` is a backend: a local Hugging Face causal
    LM (:class:`~personakit.llm.HFGenerator`, batched and left-padded; see
    :meth:`from_pretrained`), an OpenAI-compatible endpoint such as vLLM, llama.cpp
    server or TGI (:class:`~personakit.llm.OpenAICompatibleGenerator`), or a Python
    function (:class:`~personakit.llm.CallableGenerator`).  With a ``cache``, every
    completed batch is appended to a :class:`~personakit.llm.ResponseCache` keyed by
    (prompt, model id, generation settings): killing a run loses at most the batch in
    flight, and a rerun generates only what is missing (a finished dataset costs nothing
    to rerun).  The cache stores the raw completion, so changing the clean-up never
    invalidates it.

    Departures from the paper: the paper's prompts are printed only as figures, so the
    template wording is ours; the paper used 4-bit Llama-3.1-8B-Instruct, the default
    here is whatever generator you pass.  The embedded SmolLM2-135M-Instruct of
    :meth:`from_pretrained` runs anywhere but is a weak generic LLM: with the paper's
    single-message layout it often echoes the transcript format (replies that clean up to
    ``""``) or names itself by the prompt's label; give it a ``-chat`` template
    (:func:`~personakit.augment.templates.recommended_template`).  For real augmentation
    serve a 7-8B instruct model behind an OpenAI-compatible endpoint (vLLM, llama.cpp
    server).  The paper says nothing of empty replies; the retries and the fallback are ours.

    Args:
        generator: the generic LLM.
        template: a template name (``"spc"``, ``"convai2"``, ``"empathetic"``, ``"pfg"``,
            ``"builtin"``, or one of them with ``-chat``, the chat layout for small models;
            see :func:`~personakit.augment.templates.recommended_template`), the path of a
            YAML template, or an :class:`AugmentTemplate`.
        settings: decoding settings; default greedy with 64 new tokens.
        cache: a :class:`~personakit.llm.ResponseCache` or the path of its JSON-lines
            file; ``None`` keeps nothing between runs.
        batch_size: prompts per generator call (and per durable cache write).
        max_history_turns: show only the last this many turns of the history (the last
            user utterance included); ``None`` shows all.
        empty_retries: how many more times a reply that cleans up to nothing is asked
            for, sampling; ``0`` never retries.
        retry_temperature: sampling temperature of the retries (> 0).
        fallback: the generic response of an example whose every reply was empty; a
            short neutral text (nothing personal), or ``None`` to keep it empty.

    Example:
        >>> from personakit.llm import CallableGenerator
        >>> from personakit.types import Persona, ResponseExample, Turn
        >>> ex = ResponseExample(id="d:1", persona=Persona(sentences=["I am a chef."]),
        ...                      history=[Turn(speaker="user", text="What do you do for work?")],
        ...                      response="I'm a chef!")
        >>> augmenter = GenericResponseAugmenter(CallableGenerator(lambda chat: 'Agent: "I work in an office."'),
        ...                                      template="builtin")
        >>> [out] = augmenter.augment([ex], progress=False)
        >>> out.generic_response
        'I work in an office.'
        >>> any("chef" in m["content"] for m in augmenter.build_prompt(ex))
        False
    """

    def __init__(
        self,
        generator: TextGenerator,
        template: Union[str, PathLike, AugmentTemplate] = "spc",
        settings: Optional[GenerationSettings] = None,
        cache: Union[ResponseCache, PathLike, None] = None,
        batch_size: int = 16,
        max_history_turns: Optional[int] = None,
        empty_retries: int = 2,
        retry_temperature: float = 0.7,
        fallback: Optional[str] = "Okay.",
    ):
        if not isinstance(generator, TextGenerator):
            raise TypeError(
                f"generator must be a personakit.llm.TextGenerator, got {type(generator).__name__}; "
                "wrap a function with personakit.llm.CallableGenerator"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_history_turns is not None and max_history_turns < 1:
            raise ValueError(f"max_history_turns must be >= 1 or None, got {max_history_turns}")
        if empty_retries < 0:
            raise ValueError(f"empty_retries must be >= 0, got {empty_retries}")
        if not retry_temperature > 0:
            raise ValueError(f"retry_temperature must be > 0 (a greedy retry repeats the empty reply), "
                             f"got {retry_temperature}")
        if fallback is not None and not fallback.strip():
            raise ValueError("fallback must be a non-empty text or None (None keeps empty replies empty)")
        self.generator = generator
        self.template = load_template(template)
        self.settings = _coerce_settings(settings)
        if cache is None or isinstance(cache, ResponseCache):
            self.cache = cache
        else:
            self.cache = ResponseCache(cache)
        self.batch_size = batch_size
        self.max_history_turns = max_history_turns
        self.empty_retries = empty_retries
        self.retry_temperature = retry_temperature
        self.fallback = fallback
        self.last_stats: Optional[AugmentStats] = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "smollm2",
        *,
        template: Union[str, PathLike, AugmentTemplate] = "spc",
        settings: Optional[GenerationSettings] = None,
        cache: Union[ResponseCache, PathLike, None] = None,
        batch_size: int = 16,
        max_history_turns: Optional[int] = None,
        empty_retries: int = 2,
        retry_temperature: float = 0.7,
        fallback: Optional[str] = "Okay.",
        dtype: Any = None,
        device: Any = None,
        max_input_tokens: Optional[int] = None,
        prefill_batch_size: Optional[int] = None,
    ) -> "GenericResponseAugmenter":
        """An augmenter over a local causal LM (:meth:`personakit.llm.HFGenerator.from_pretrained`).

        Args:
            name_or_path: an embedded model (``"smollm2"``), a local folder or a hub id.
            dtype, device: passed to the loader.
            max_input_tokens: keep at most this many prompt tokens (the end of the prompt).
            prefill_batch_size: prefill the prompts this many at a time while all
                ``batch_size`` rows decode together (see :class:`~personakit.llm.HFGenerator`;
                on a CPU, ``batch_size=48, prefill_batch_size=16`` is about 1.4× faster than
                ``batch_size=16``); ``None`` prefills each batch at once.
            template, settings, cache, batch_size, max_history_turns: as in the constructor.
            empty_retries, retry_temperature, fallback: as in the constructor.

        Example:
            >>> aug = GenericResponseAugmenter.from_pretrained("smollm2", template="builtin")  # doctest: +SKIP
        """
        from personakit.llm.hf import HFGenerator

        generator = HFGenerator.from_pretrained(
            name_or_path, dtype=dtype, device=device, batch_size=batch_size, max_input_tokens=max_input_tokens,
            prefill_batch_size=prefill_batch_size,
        )
        return cls(generator, template=template, settings=settings, cache=cache, batch_size=batch_size,
                   max_history_turns=max_history_turns, empty_retries=empty_retries,
                   retry_temperature=retry_temperature, fallback=fallback)

    # ------------------------------------------------------------------ prompts
    def build_prompt(self, example: ResponseExample) -> list[dict[str, str]]:
        """The chat sent to the generic LLM for ``example`` (:meth:`AugmentTemplate.render_messages`).

        Single layout: a system and a user message; chat layout: the system message, the
        history as alternating user / assistant turns and the turn to answer.

        The history is cut to the last ``max_history_turns`` turns; whitespace inside each
        turn is collapsed (one line per turn).  Nothing else of the example (persona,
        user persona, metadata, target response) is used.
        """
        if not isinstance(example, ResponseExample):
            raise TypeError(f"expected a ResponseExample, got {type(example).__name__}")
        history = example.history
        if self.max_history_turns is not None:
            history = history[-self.max_history_turns:]
        *earlier, last = history
        turns = [(t.speaker == example.agent, " ".join(t.text.split())) for t in earlier]
        return self.template.render_messages(turns, " ".join(last.text.split()))

    def clean(self, text: str) -> str:
        """Post-process one raw completion (see :func:`~personakit.augment.postprocess.clean_generic_response`)."""
        return clean_generic_response(text, self.template.agent_name, self.template.user_name)

    def leaks_label(self, text: str) -> bool:
        """Whether a raw completion shows the template's speaker labels (see
        :func:`~personakit.augment.postprocess.speaker_label_leak`)."""
        return speaker_label_leak(text, self.template.agent_name, self.template.user_name)

    def retry_settings(self, attempt: int) -> GenerationSettings:
        """Decoding settings of retry ``attempt`` (1, 2, ...): sampling at ``retry_temperature``,
        seed ``settings.seed + attempt`` (so every attempt has its own cache key)."""
        return self.settings.model_copy(update={"temperature": self.retry_temperature,
                                                "seed": self.settings.seed + attempt})

    # --------------------------------------------------------------- augment
    def generate(self, examples: Sequence[ResponseExample], progress: bool = True) -> list[str]:
        """The cleaned generic response of each example, in order (through the cache when there is one).

        Replies that clean up to nothing are retried and then replaced by ``fallback``
        (see the class docstring); :attr:`last_stats` counts what happened.
        """
        start = time.perf_counter()
        examples = list(examples)
        prompts = [self.build_prompt(ex) for ex in examples]
        if self.cache is not None:
            generator: TextGenerator = CachedGenerator(self.generator, self.cache)
        else:
            generator = self.generator
        raw = generator.generate(prompts, self.settings, batch_size=self.batch_size, progress=progress)
        sent = len(prompts)
        texts = [self.clean(t) for t in raw]
        leaks = sum(1 for t in raw if self.leaks_label(t))
        todo = [i for i, t in enumerate(texts) if not t]
        first_empty = len(todo)
        retried = first_empty if self.empty_retries else 0
        for attempt in range(1, self.empty_retries + 1):
            if not todo:
                break
            again = generator.generate([prompts[i] for i in todo], self.retry_settings(attempt),
                                       batch_size=self.batch_size, progress=False)
            sent += len(todo)
            for i, t in zip(todo, again):
                texts[i] = self.clean(t)
            todo = [i for i in todo if not texts[i]]
        if self.fallback is not None:
            for i in todo:
                texts[i] = self.fallback
        if isinstance(generator, CachedGenerator):
            generated, cached = generator.misses, generator.hits
        else:
            generated, cached = sent, 0
        distinct = len({cache_key(p, self.generator.model_id, self.settings) for p in prompts})
        self.last_stats = AugmentStats(
            examples=len(examples),
            prompts=distinct,
            generated=generated,
            cached=cached,
            empty=sum(1 for t in texts if not t),
            seconds=time.perf_counter() - start,
            first_empty=first_empty,
            retried=retried,
            fallback=len(todo) if self.fallback is not None else 0,
            label_leaks=leaks,
        )
        return texts

    def augment(self, examples: Sequence[ResponseExample], progress: bool = True) -> list[ResponseExample]:
        """Copies of ``examples`` with ``generic_response`` filled (the inputs are not modified).

        Args:
            examples: the examples (e.g. from :func:`personakit.data.dialogues_to_examples`).
            progress: show a progress bar while generating.

        Returns:
            New examples, in the input order; :attr:`last_stats` tells how many replies
            were generated and how many came from the cache.
        """
        examples = list(examples)
        texts = self.generate(examples, progress=progress)
        return [ex.model_copy(update={"generic_response": text}, deep=True) for ex, text in zip(examples, texts)]

    def __repr__(self) -> str:
        return (
            f"GenericResponseAugmenter(generator={self.generator!r}, template={self.template.name!r}, "
            f"cache={self.cache!r}, batch_size={self.batch_size}, empty_retries={self.empty_retries})"
        )


class GenericResponseAugmenterConfig(BaseConfig):
    """Config of :class:`GenericResponseAugmenter` (the generator is passed to :meth:`build`).

    Example:
        >>> from personakit.llm import CallableGenerator
        >>> cfg = GenericResponseAugmenterConfig(template="empathetic", settings={"max_new_tokens": 32})
        >>> cfg.build(generator=CallableGenerator(str)).template.name
        'empathetic'
    """

    _target_ = GenericResponseAugmenter

    template: str = Field("spc", description="Shipped template name or path of a YAML template.")
    settings: GenerationSettings = Field(default_factory=GenerationSettings, description="Decoding settings.")
    cache: Optional[str] = Field(None, description="Path of the response cache (JSON lines); None for no cache.")
    batch_size: int = Field(16, ge=1, description="Prompts per generator call and per cache write.")
    max_history_turns: Optional[int] = Field(None, ge=1, description="Show only the last N history turns.")
    empty_retries: int = Field(2, ge=0, description="Retries, sampling, of a reply that cleans up to nothing.")
    retry_temperature: float = Field(0.7, gt=0.0, description="Sampling temperature of the retries.")
    fallback: Optional[str] = Field(
        "Okay.", description="R_G of an example whose every reply was empty (None: keep it empty).")
