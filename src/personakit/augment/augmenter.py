"""GRAG's generic-response augmentation: :class:`GenericResponseAugmenter`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from pydantic import Field

from personakit.augment.postprocess import clean_generic_response
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
        generated: prompts sent to the generator in this call.
        cached: prompts answered from the cache.
        empty: examples whose cleaned generic response is empty.
        seconds: wall time of the call.
    """

    examples: int
    prompts: int
    generated: int
    cached: int
    empty: int
    seconds: float


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
    reaches the LLM only where a speaker said it in $H$.  The reply is cleaned by
    :func:`~personakit.augment.postprocess.clean_generic_response` (role prefixes,
    quotes and any further turns the model wrote are removed).

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
    :meth:`from_pretrained` runs anywhere but is a weak generic LLM (it often echoes the
    transcript format, and some replies clean up to ``""``); for real augmentation serve
    a 7-8B instruct model behind an OpenAI-compatible endpoint (vLLM, llama.cpp server).

    Args:
        generator: the generic LLM.
        template: a template name (``"spc"``, ``"convai2"``, ``"empathetic"``, ``"pfg"``,
            ``"builtin"``), the path of a YAML template, or an :class:`AugmentTemplate`.
        settings: decoding settings; default greedy with 64 new tokens.
        cache: a :class:`~personakit.llm.ResponseCache` or the path of its JSON-lines
            file; ``None`` keeps nothing between runs.
        batch_size: prompts per generator call (and per durable cache write).
        max_history_turns: show only the last this many turns of the history (the last
            user utterance included); ``None`` shows all.

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
        self.generator = generator
        self.template = load_template(template)
        self.settings = _coerce_settings(settings)
        if cache is None or isinstance(cache, ResponseCache):
            self.cache = cache
        else:
            self.cache = ResponseCache(cache)
        self.batch_size = batch_size
        self.max_history_turns = max_history_turns
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

        Example:
            >>> aug = GenericResponseAugmenter.from_pretrained("smollm2", template="builtin")  # doctest: +SKIP
        """
        from personakit.llm.hf import HFGenerator

        generator = HFGenerator.from_pretrained(
            name_or_path, dtype=dtype, device=device, batch_size=batch_size, max_input_tokens=max_input_tokens,
            prefill_batch_size=prefill_batch_size,
        )
        return cls(generator, template=template, settings=settings, cache=cache, batch_size=batch_size,
                   max_history_turns=max_history_turns)

    # ------------------------------------------------------------------ prompts
    def build_prompt(self, example: ResponseExample) -> list[dict[str, str]]:
        """The chat sent to the generic LLM for ``example``: a system and a user message.

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
        return [
            {"role": "system", "content": self.template.render_system()},
            {"role": "user", "content": self.template.render_user(turns, " ".join(last.text.split()))},
        ]

    def clean(self, text: str) -> str:
        """Post-process one raw completion (see :func:`~personakit.augment.postprocess.clean_generic_response`)."""
        return clean_generic_response(text, self.template.agent_name, self.template.user_name)

    # --------------------------------------------------------------- augment
    def generate(self, examples: Sequence[ResponseExample], progress: bool = True) -> list[str]:
        """The cleaned generic response of each example, in order (through the cache when there is one)."""
        start = time.perf_counter()
        examples = list(examples)
        prompts = [self.build_prompt(ex) for ex in examples]
        if self.cache is not None:
            generator: TextGenerator = CachedGenerator(self.generator, self.cache)
        else:
            generator = self.generator
        raw = generator.generate(prompts, self.settings, batch_size=self.batch_size, progress=progress)
        texts = [self.clean(t) for t in raw]
        if isinstance(generator, CachedGenerator):
            generated, cached = generator.misses, generator.hits
        else:
            generated, cached = len(prompts), 0
        distinct = len({cache_key(p, self.generator.model_id, self.settings) for p in prompts})
        self.last_stats = AugmentStats(
            examples=len(examples),
            prompts=distinct,
            generated=generated,
            cached=cached,
            empty=sum(1 for t in texts if not t),
            seconds=time.perf_counter() - start,
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
            f"cache={self.cache!r}, batch_size={self.batch_size})"
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
