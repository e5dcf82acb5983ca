r"""LLM feedback for retriever training and retriever selection (ROPG / RSPG), batched and cached.

Salemi et al., "Optimization Methods for Personalizing Large Language Models through
Retrieval Augmentation" (SIGIR 2024).  Both retriever trainers need, for an input
$(x, y)$ and each candidate document $d$ of the user's profile, the score of the
frozen LLM $M$ prompted with that single document (sections 4.1–4.2):

$$
s(d) = \mathrm{EVAL}\big(y,\ M(\phi_p(x, [d]))\big)
$$

ROPG-RL's reward (eq. 2) is $s(d) - s(d_b)$ and ROPG-KD's target distribution is
$\operatorname{softmax}_d\, s(d)$ over the top-$l$ candidates.  RSPG (section 5, eq. 5)
needs, for each retriever $R_i$, the score of the full prompt built from its result list,
$\mathrm{EVAL}(y, M(\phi_p(x, R_i(\phi_q(x); P_u))))$, and, for RSPG-Post, the LLM's
output itself.

Since $M$ is frozen these scores never change, so the paper precomputes them once
("we can pre-compute the rewards for each document in the profile").
:class:`LLMFeedbackScorer` does exactly that: it builds every prompt, removes
duplicates, generates all of them in one batched call of any
:class:`~personakit.llm.TextGenerator` (the embedded SmolLM2 through
:class:`~personakit.llm.HFGenerator` by default, an OpenAI-compatible endpoint, or a
Python callable), and stores each completed batch in a persistent
:class:`~personakit.llm.ResponseCache` through :class:`~personakit.llm.CachedGenerator`:
a second pass, another epoch or an interrupted run served again generates only the
prompts it has not seen.  EVAL is recomputed from the cached outputs each time (it
costs microseconds), so the response cache is the only cache.

Example:
    >>> from personakit.llm import CallableGenerator
    >>> from personakit.types import ProfileExample, ProfileItem, UserProfile
    >>> ex = ProfileExample(id="1", task="LaMP-7", input="Paraphrase the following tweet: so tired",
    ...                     profile=UserProfile(user_id="u"), target="so very tired")
    >>> docs = [ProfileItem(id="a", text="so very happy"), ProfileItem(id="b", text="lol")]
    >>> # a stand-in "LLM" that copies the quoted profile entry
    >>> llm = CallableGenerator(lambda p: p.split('"')[1] if '"' in p else "", model_id="copy")
    >>> scorer = LLMFeedbackScorer(llm, "LaMP-7")
    >>> [s.round(3).tolist() for s in scorer.score_candidates([ex], [docs])]
    [[0.667, 0.0]]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from personakit.eval.lamp import lamp_eval_fn
from personakit.llm import CachedGenerator, GenerationSettings, Prompt, ResponseCache, TextGenerator
from personakit.llm.cache import cache_key
from personakit.retrieval.lamp_prompts import LaMPPromptBuilder
from personakit.types import ProfileExample, ProfileItem

__all__ = ["LLMFeedbackScorer", "PromptScores", "feedback_settings", "DEFAULT_FEEDBACK_MODEL"]

DEFAULT_FEEDBACK_MODEL = "smollm2-135m-instruct"
"""The embedded LLM used when no generator is given."""

_NEW_TOKENS = {"LaMP-1": 8, "LaMP-2": 8, "LaMP-3": 4, "LaMP-4": 32, "LaMP-5": 32, "LaMP-6": 32, "LaMP-7": 48,
               "PFG-LaMP": 48}


def feedback_settings(task: str, **overrides: Any) -> GenerationSettings:
    """Greedy decoding with a task-sized ``max_new_tokens`` (8 for labels, 4 for ratings, 32–48 for text).

    Example:
        >>> feedback_settings("LaMP-3").max_new_tokens, feedback_settings("LaMP-4", max_new_tokens=16).max_new_tokens
        (4, 16)
    """
    return GenerationSettings(**{"max_new_tokens": _NEW_TOKENS.get(task, 32), "temperature": 0.0, **overrides})


@dataclass
class PromptScores:
    """Prompts, the LLM's outputs and their EVAL scores, one list per example.

    Attributes:
        prompts: ``prompts[i][j]``: the j-th prompt of example i.
        outputs: ``outputs[i][j]``: the LLM's completion of that prompt.
        scores: ``scores[i]``: float64 array of shape ``(len(prompts[i]),)``.
    """

    prompts: list[list[Prompt]]
    outputs: list[list[str]]
    scores: list[np.ndarray]


PromptBuilderLike = Union[LaMPPromptBuilder, str, Any]


class LLMFeedbackScorer:
    r"""Score documents (ROPG) and full prompts (RSPG) with a frozen LLM, batched and cached.

    Args:
        generator: any :class:`~personakit.llm.TextGenerator`; ``None`` loads the embedded
            SmolLM2-135M-Instruct (:class:`~personakit.llm.HFGenerator`, batch 16) on first use.
        prompt_builder: a :class:`~personakit.retrieval.lamp_prompts.LaMPPromptBuilder`, a task
            name (``"LaMP-4"``, ``"PFG-LaMP"``; built with the default budget), or any object
            with ``build(example, items) -> prompt`` (and a ``task`` attribute when
            ``eval_fn`` is omitted).
        eval_fn: ``(prediction, target) -> float``, higher is better; default
            :func:`~personakit.eval.lamp.lamp_eval_fn` of the builder's task.
        cache: a :class:`~personakit.llm.ResponseCache`, the path of its JSON-lines file,
            or ``None`` (no persistence).
        settings: decoding settings; default :func:`feedback_settings` of the task (greedy).
        batch_size: prompts per generation batch; default the generator's.
        progress: show a progress bar (``None``: when there are more than 4 batches).
        postprocess: ``output -> output`` applied to every completion before EVAL (and in
            the returned ``outputs``); ``"builder"`` (default): the prompt builder's
            ``postprocess`` when it has one (PFG-LaMP:
            :func:`~personakit.retrieval.lamp_prompts.clean_pfg_reply`), else none;
            ``None``: the completions as generated.  The response cache always holds the
            completions as generated.

    Example:
        >>> scorer = LLMFeedbackScorer(prompt_builder="PFG-LaMP", cache="feedback.jsonl")  # doctest: +SKIP
        >>> scores = scorer.score_candidates(examples, [ex.profile.items[:16] for ex in examples])  # doctest: +SKIP
    """

    def __init__(
        self,
        generator: Optional[TextGenerator] = None,
        prompt_builder: PromptBuilderLike = None,
        eval_fn: Optional[Callable[[str, str], float]] = None,
        cache: Union[ResponseCache, str, os.PathLike, None] = None,
        settings: Union[GenerationSettings, Mapping[str, Any], None] = None,
        *,
        batch_size: Optional[int] = None,
        progress: Optional[bool] = None,
        postprocess: Union[str, Callable[[str], str], None] = "builder",
    ):
        if prompt_builder is None:
            raise ValueError("prompt_builder is required: a LaMPPromptBuilder, a task name or an object with build()")
        if isinstance(prompt_builder, str):
            prompt_builder = LaMPPromptBuilder(prompt_builder)
        if not callable(getattr(prompt_builder, "build", None)):
            raise TypeError(f"prompt_builder must have a build(example, items) method, got {type(prompt_builder).__name__}")
        self.prompt_builder = prompt_builder
        task = getattr(prompt_builder, "task", None)
        if eval_fn is None:
            if task is None:
                raise ValueError("eval_fn is required when the prompt builder has no 'task' attribute")
            eval_fn = lamp_eval_fn(task)
        if not callable(eval_fn):
            raise TypeError(f"eval_fn must be callable, got {type(eval_fn).__name__}")
        self.eval_fn = eval_fn
        if settings is None:
            settings = feedback_settings(task) if task is not None else GenerationSettings()
        elif not isinstance(settings, GenerationSettings):
            settings = GenerationSettings.from_dict(dict(settings), source="feedback generation settings")
        self.settings = settings
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.progress = progress
        if isinstance(postprocess, str):
            if postprocess != "builder":
                raise ValueError(f"postprocess must be 'builder', a callable or None, got {postprocess!r}")
            postprocess = getattr(prompt_builder, "postprocess", None)
        if postprocess is not None and not callable(postprocess):
            raise TypeError(f"postprocess must be callable or None, got {type(postprocess).__name__}")
        self.postprocess: Optional[Callable[[str], str]] = postprocess
        if isinstance(cache, (str, os.PathLike)):
            cache = ResponseCache(cache)
        if cache is not None and not isinstance(cache, ResponseCache):
            raise TypeError(f"cache must be a ResponseCache, a path or None, got {type(cache).__name__}")
        self.cache: Optional[ResponseCache] = cache
        self._base = generator
        self._generator: Optional[TextGenerator] = None
        self.generated = 0  # prompts sent to the LLM over this scorer's life (cache misses)
        self.requested = 0  # distinct prompts asked for

    # ---------------------------------------------------------------- generator
    @property
    def generator(self) -> TextGenerator:
        """The generator actually called: the given one (or SmolLM2), behind the cache when there is one."""
        if self._generator is None:
            base = self._base
            if base is None:
                from personakit.llm import HFGenerator

                base = HFGenerator.from_pretrained(DEFAULT_FEEDBACK_MODEL, batch_size=16)
                self._base = base
            if self.cache is not None and not isinstance(base, CachedGenerator):
                self._generator = CachedGenerator(base, self.cache)
            else:
                self._generator = base
        return self._generator

    @property
    def eval_name(self) -> str:
        """A name for the EVAL function (``LaMPEval.name``, else the function's name)."""
        return str(getattr(self.eval_fn, "name", getattr(self.eval_fn, "__name__", type(self.eval_fn).__name__)))

    def generate(self, prompts: Sequence[Prompt]) -> list[str]:
        """Completions of ``prompts`` (duplicates generated once, cached when there is a cache)."""
        unique: dict[str, int] = {}
        order: list[Prompt] = []
        index: list[int] = []
        for p in prompts:
            key = cache_key(p, "", self.settings)  # identity of the prompt, for de-duplication
            if key not in unique:
                unique[key] = len(order)
                order.append(p)
            index.append(unique[key])
        if not order:
            return []
        gen = self.generator
        hits_before = getattr(gen, "hits", None)
        outputs = gen.generate(order, self.settings, batch_size=self.batch_size, progress=self.progress)
        self.requested += len(order)
        if isinstance(gen, CachedGenerator) and hits_before is not None:
            self.generated += len(order) - (gen.hits - hits_before)
        else:
            self.generated += len(order)
        return [outputs[i] for i in index]

    # ---------------------------------------------------------------- prompts
    def _check(self, examples: Sequence[ProfileExample], lists: Sequence[Sequence[Any]], what: str) -> None:
        if len(examples) != len(lists):
            raise ValueError(f"{len(examples)} examples but {len(lists)} {what} lists; give one list per example")
        for ex in examples:
            if ex.target is None:
                raise ValueError(f"example {ex.id!r} has no target: LLM feedback needs the gold output (field 'target')")

    def candidate_prompts(
        self, examples: Sequence[ProfileExample], candidates: Sequence[Sequence[ProfileItem]]
    ) -> list[list[Prompt]]:
        r"""$\phi_p(x_i, [d])$ for every candidate document $d$ of every example $i$."""
        if len(examples) != len(candidates):
            raise ValueError(f"{len(examples)} examples but {len(candidates)} candidate lists; give one list per example")
        return [[self.prompt_builder.build(ex, [d]) for d in docs] for ex, docs in zip(examples, candidates)]

    def _evaluate(self, examples: Sequence[ProfileExample], outputs: list[list[str]]) -> list[np.ndarray]:
        scores = []
        for ex, outs in zip(examples, outputs):
            try:
                row = [float(self.eval_fn(o, ex.target)) for o in outs]  # type: ignore[arg-type]
            except ValueError as err:
                raise ValueError(f"example {ex.id!r}: {self.eval_name}: {err}") from err
            scores.append(np.asarray(row, dtype=np.float64))  # (n_candidates,)
        return scores

    # ---------------------------------------------------------------- scoring
    def score_prompts(self, examples: Sequence[ProfileExample], prompts: Sequence[Sequence[Prompt]]) -> PromptScores:
        r"""EVAL of the LLM's output for each given prompt: ``prompts[i]`` are example i's prompts.

        For RSPG, ``prompts[i][r]`` is the prompt built from retriever $r$'s result list;
        the returned ``outputs`` are what RSPG-Post reads and ``scores[i]`` (shape
        ``(len(prompts[i]),)``) the EVAL that its target distribution (eq. 5) softmaxes.
        ``outputs`` are post-processed (``postprocess``) before EVAL.
        """
        self._check(examples, prompts, "prompt")
        flat = [p for ps in prompts for p in ps]
        out_flat = self.generate(flat)
        if self.postprocess is not None:
            out_flat = [self.postprocess(o) for o in out_flat]
        outputs: list[list[str]] = []
        start = 0
        for ps in prompts:
            outputs.append(out_flat[start:start + len(ps)])
            start += len(ps)
        return PromptScores(prompts=[list(ps) for ps in prompts], outputs=outputs, scores=self._evaluate(examples, outputs))

    def score_item_lists(
        self, examples: Sequence[ProfileExample], item_lists: Sequence[Sequence[Sequence[ProfileItem]]]
    ) -> PromptScores:
        r"""RSPG: ``item_lists[i][r]`` is retriever $r$'s result list for example $i$; each becomes one full prompt."""
        self._check(examples, item_lists, "item")
        prompts = [[self.prompt_builder.build(ex, items) for items in lists] for ex, lists in zip(examples, item_lists)]
        return self.score_prompts(examples, prompts)

    def score_candidates(
        self, examples: Sequence[ProfileExample], candidates: Sequence[Sequence[ProfileItem]]
    ) -> list[np.ndarray]:
        r"""ROPG: $s_i(d) = \mathrm{EVAL}(y_i, M(\phi_p(x_i, [d])))$ for each candidate $d$ of each example $i$.

        All (example, document) prompts are generated together in batches (duplicates once,
        cached prompts not at all).

        Args:
            examples: inputs with their targets.
            candidates: ``candidates[i]``: the documents to score for example i (e.g. the
                initial retriever's top-$l$), :class:`~personakit.types.ProfileItem` or
                :class:`~personakit.retrieval.RetrievedItem`.

        Returns:
            One float64 array of shape ``(len(candidates[i]),)`` per example.
        """
        self._check(examples, candidates, "candidate")
        return self.score_prompts(examples, self.candidate_prompts(examples, candidates)).scores

    def __repr__(self) -> str:
        gen = self._base if self._base is not None else f"<{DEFAULT_FEEDBACK_MODEL}, loaded on first use>"
        return (f"LLMFeedbackScorer(generator={gen!r}, task={getattr(self.prompt_builder, 'task', None)!r}, "
                f"eval={self.eval_name!r}, cache={self.cache!r})")
