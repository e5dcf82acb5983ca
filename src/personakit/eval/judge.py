r"""Pairwise LLM judge: GRAG's four preference questions, asked twice with the order swapped.

GRAG (§5.5, Table 5) compares two systems by showing an annotator the persona, the
conversation, the generic response $R_G$ and two candidate responses, "Response A"
and "Response B", and asking four questions, each answered *A*, *B* or *Similar*:

1. **naturalness**: which response makes more sense in the conversation (grammatical,
   fluent, coherent)?
2. **persona accuracy**: which response reflects the persona more faithfully, without
   contradicting it or inventing traits?
3. **value beyond the generic response**: which response adds more useful
   personalisation to what $R_G$ already says?
4. **balance**: which response uses the persona without costing the conversation
   helpfulness, engagement, relevance or appropriateness?

The paper then asks an LLM (Qwen2.5-32B-Instruct) the same questions.  LLM judges
prefer whichever response they see first (or second) more often than they should, so
:class:`PairwiseJudge` asks every pair **twice**, once with system 1 as Response A and
once with the order swapped, and counts a preference only when both orders agree
(:func:`reconcile_verdicts`).  The verdicts are JSON objects validated by
:class:`PairwiseVerdict` through :func:`~personakit.llm.generate_structured` (a reply that
fails is re-asked with the error); a pair whose verdict never validates is recorded as a
failure, not raised.  Per question, :class:`JudgeResult` reports win / tie / loss counts
and rates with Wilson score intervals (:func:`wilson_interval`).

The prompt wording is personakit's own, written from the questions of Table 5; the
paper does not publish its judge prompt.  Departures from the paper: the paper's judge
answers each pair once and its human annotators also gave a confidence rating (used to
filter answers); here each pair is asked in both orders and no confidence is asked.

Example:
    >>> import json
    >>> from personakit.llm import CallableGenerator
    >>> from personakit.types import Persona, ResponseExample, Turn
    >>> ex = ResponseExample(id="d1:1", persona=Persona(sentences=["I have two dogs."]),
    ...                      history=[Turn(speaker="user", text="Any plans today?")],
    ...                      response="Walking my dogs.", generic_response="Not much, just relaxing.")
    >>> def prefers_dogs(chat):  # a consistent fake judge: the response that mentions dogs wins
    ...     shown_first = chat[-1]["content"].split("Response A:")[1].split("Response B:")[0]
    ...     return json.dumps({q: "A" if "dogs" in shown_first else "B" for q in JUDGE_QUESTIONS})
    >>> result = judge_pairs(CallableGenerator(prefers_dogs), [ex], ["Walking my dogs."],
    ...                      ["Relaxing at home."], names=("ours", "baseline"))
    >>> result.questions["balance"].wins, result.questions["balance"].losses, result.n_failed
    (1, 0, 0)
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from personakit.config import BaseConfig
from personakit.eval.table import format_metrics_table
from personakit.llm.base import GenerationSettings, TextGenerator, _coerce_settings
from personakit.llm.cache import CachedGenerator, ResponseCache
from personakit.llm.structured import generate_structured
from personakit.types import ResponseExample

__all__ = [
    "JUDGE_QUESTIONS",
    "PairwiseVerdict",
    "PairJudgement",
    "JudgeQuestionResult",
    "JudgeResult",
    "PairwiseJudge",
    "PairwiseJudgeConfig",
    "build_judge_prompt",
    "reconcile_verdicts",
    "wilson_interval",
    "judge_pairs",
]

Choice = Literal["A", "B", "Similar"]
Outcome = Literal["win", "tie", "loss"]

JUDGE_QUESTIONS: dict[str, str] = {
    "naturalness": (
        "Which response reads more naturally as the next turn of this conversation: "
        "grammatical, fluent and coherent?"
    ),
    "persona_accuracy": (
        "Which response reflects the persona more accurately: it states only what the persona "
        "supports, and nothing that contradicts it or is not in it?"
    ),
    "generic_value": (
        "Which response adds more useful personalisation beyond what the generic response "
        "already says?"
    ),
    "balance": (
        "Which response brings in the persona without costing the conversation anything: it "
        "stays helpful, engaging, relevant and appropriate?"
    ),
}
"""The four questions (GRAG Table 5), keyed by the JSON field the judge answers them in."""

JUDGE_SYSTEM_PROMPT = (
    "You are an impartial judge of dialogue responses written by an agent that has a persona. "
    "You compare two candidate responses and answer each question with \"A\", \"B\" or \"Similar\". "
    "The order in which the responses are shown says nothing about their quality."
)
"""The system message of every judge prompt."""

_QUESTION_LABELS = {
    "naturalness": "naturalness",
    "persona_accuracy": "persona accuracy",
    "generic_value": "value beyond generic",
    "balance": "balance",
}

_CHOICE_ALIASES: dict[str, Choice] = {
    "a": "A",
    "response a": "A",
    "b": "B",
    "response b": "B",
    "similar": "Similar",
    "tie": "Similar",
    "same": "Similar",
    "equal": "Similar",
}


# ---------------------------------------------------------------------- verdict schema
class PairwiseVerdict(BaseModel):
    """One judge reply: ``"A"``, ``"B"`` or ``"Similar"`` for each of the four questions.

    ``A`` and ``B`` are the *positions* in the prompt (Response A is shown first), not
    the systems.  Values are read leniently: case, surrounding whitespace, quotes and a
    trailing full stop are ignored, ``"Response A"`` means ``"A"``, and ``"tie"``,
    ``"same"`` and ``"equal"`` mean ``"Similar"``.  Extra keys (an explanation, say)
    are ignored.

    Args:
        naturalness: the response that reads more naturally in the conversation.
        persona_accuracy: the response that reflects the persona more accurately.
        generic_value: the response that adds more beyond the generic response.
        balance: the response that uses the persona without hurting the conversation.

    Example:
        >>> PairwiseVerdict.model_validate({"naturalness": " a ", "persona_accuracy": "Response B",
        ...                                 "generic_value": "SIMILAR", "balance": "tie"})
        PairwiseVerdict(naturalness='A', persona_accuracy='B', generic_value='Similar', balance='Similar')
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    naturalness: Choice
    persona_accuracy: Choice
    generic_value: Choice
    balance: Choice

    @field_validator("naturalness", "persona_accuracy", "generic_value", "balance", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f'expected "A", "B" or "Similar", got {type(value).__name__} {value!r}')
        key = " ".join(value.strip().strip("\"'").rstrip(".").split()).casefold()
        if key not in _CHOICE_ALIASES:
            raise ValueError(f'expected "A", "B" or "Similar", got {value!r}')
        return _CHOICE_ALIASES[key]


# ---------------------------------------------------------------------- pure functions
def reconcile_verdicts(first: Choice, second: Choice) -> Outcome:
    """Combine the two orders' answers to one question into system 1's outcome.

    ``first`` was given with system 1 shown as Response A, ``second`` with the order
    swapped (system 2 as Response A).  Each answer is first mapped to the system it
    prefers: in the first order ``A`` → system 1 and ``B`` → system 2; in the swapped
    order ``A`` → system 2 and ``B`` → system 1; ``Similar`` → neither.  Then:

    * both orders prefer system 1 → ``"win"``;
    * both orders prefer system 2 → ``"loss"``;
    * both answer ``Similar`` → ``"tie"``;
    * anything else → ``"tie"``: the orders disagree (the same *position* won twice,
      i.e. position bias) or one order prefers a system while the other calls them
      similar.

    This is the strict rule (a preference must survive the swap), as in MT-Bench's
    swapped pairwise judging (Zheng et al., 2023).

    Example:
        >>> reconcile_verdicts("A", "B"), reconcile_verdicts("B", "A"), reconcile_verdicts("A", "A")
        ('win', 'loss', 'tie')
    """
    preferred = _prefers(first, swapped=False)
    if preferred != _prefers(second, swapped=True):
        return "tie"
    return {1: "win", 2: "loss", 0: "tie"}[preferred]  # type: ignore[return-value]


def _prefers(choice: Choice, swapped: bool) -> int:
    """The system (1 or 2, 0 for neither) an answer prefers, given the order it was asked in."""
    return {"A": 2 if swapped else 1, "B": 1 if swapped else 2, "Similar": 0}[choice]


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    r"""Wilson score interval for a binomial proportion.

    With $\hat p = k/n$ and $z$ the standard normal quantile at $1 - (1 - c)/2$,

    $$
    \frac{\hat p + \frac{z^2}{2n}}{1 + \frac{z^2}{n}} \pm
    \frac{z}{1 + \frac{z^2}{n}} \sqrt{\frac{\hat p (1 - \hat p)}{n} + \frac{z^2}{4n^2}}
    $$

    (Wilson, 1927).  Unlike the normal-approximation interval it stays inside $[0, 1]$
    and does not collapse to a point at $k = 0$ or $k = n$.

    Args:
        successes: $k$, the number of successes.
        n: the number of trials; with ``n == 0`` the interval is ``(nan, nan)``.
        confidence: $c$, the coverage, in $(0, 1)$.

    Returns:
        ``(low, high)``.

    Example:
        >>> low, high = wilson_interval(8, 10)
        >>> round(low, 4), round(high, 4)
        (0.4902, 0.9433)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"wilson_interval: confidence must be in (0, 1), got {confidence}")
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return math.nan, math.nan
    z = statistics.NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges, no rounding residue
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def build_judge_prompt(
    example: ResponseExample,
    response_a: str,
    response_b: str,
    generic_response: Optional[str] = None,
    max_history_turns: Optional[int] = 6,
    question: Optional[str] = None,
) -> list[dict[str, str]]:
    """The judge chat for one ordered pair: a system message and a user message.

    The user message shows the agent's persona, the last ``max_history_turns`` turns
    (the agent's turns labelled ``Agent``, the others ``User``), the generic response,
    Response A, Response B and the four questions, and asks for a JSON object with the
    keys of :data:`JUDGE_QUESTIONS`.

    Args:
        example: the example (persona, history; its ``generic_response`` is the default).
        response_a: shown first, as Response A.
        response_b: shown second, as Response B.
        generic_response: $R_G$; default ``example.generic_response``.
        max_history_turns: the most recent turns to show; ``None`` shows all.
        question: a key of :data:`JUDGE_QUESTIONS` to ask that question alone, answered
            with one word (``A``, ``B`` or ``Similar``: the ``answer="choice"`` mode);
            ``None`` asks all four for a JSON object.

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``.

    Raises:
        ValueError: there is no generic response (the third question needs one).
    """
    generic = example.generic_response if generic_response is None else generic_response
    if generic is None:
        raise ValueError(
            f"example {example.id!r} has no generic_response; pass generic_responses= to the judge "
            "(the 'value beyond the generic response' question needs one)"
        )
    history = example.history if max_history_turns is None else example.history[-max_history_turns:]
    turns = "\n".join(f"{'Agent' if t.speaker == example.agent else 'User'}: {t.text.strip()}" for t in history)
    context = (
        f"Persona of the agent:\n{example.persona.to_text() or '(none)'}\n\n"
        f"Conversation (most recent turn last):\n{turns}\n\n"
        f"Generic response (what an agent without a persona might say):\n{generic.strip()}\n\n"
        f"Response A:\n{response_a.strip()}\n\n"
        f"Response B:\n{response_b.strip()}\n\n"
    )
    if question is not None:
        if question not in JUDGE_QUESTIONS:
            raise ValueError(f"build_judge_prompt: unknown question {question!r}; use one of {list(JUDGE_QUESTIONS)}")
        user = context + (f"{JUDGE_QUESTIONS[question]}\nAnswer with one word: A, B, or Similar when neither "
                          "is clearly better.")
        return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]
    questions = "\n".join(f"- {key}: {text}" for key, text in JUDGE_QUESTIONS.items())
    keys = ", ".join(f'"{key}": ...' for key in JUDGE_QUESTIONS)
    user = context + (
        "Compare the two candidate responses. Answer each question with \"A\", \"B\", or \"Similar\" "
        "when neither is clearly better.\n"
        f"{questions}\n\n"
        f"Reply with only a JSON object with exactly these keys: {{{keys}}}"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class PairJudgement:
    """The judge's verdicts on one pair.

    Attributes:
        index: position of the pair in the input.
        id: the example's id.
        first: the verdict with system 1 shown as Response A (``None``: never valid).
        second: the verdict with the order swapped, system 2 as Response A.
        outcomes: system 1's reconciled outcome per question (``"win"``, ``"tie"`` or
            ``"loss"``); ``None`` when either verdict failed.
    """

    index: int
    id: str
    first: Optional[PairwiseVerdict]
    second: Optional[PairwiseVerdict]
    outcomes: Optional[dict[str, Outcome]]

    @property
    def failed(self) -> bool:
        """Whether no outcome could be reconciled (a verdict never validated)."""
        return self.outcomes is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "first": None if self.first is None else self.first.model_dump(),
            "second": None if self.second is None else self.second.model_dump(),
            "outcomes": None if self.outcomes is None else dict(self.outcomes),
        }


@dataclass(frozen=True)
class JudgeQuestionResult:
    """Counts and rates for one question, from system 1's side.

    Rates are over the judged pairs ($n$ = wins + ties + losses; failed pairs are left
    out).  Two Wilson intervals are given: ``win_rate_interval`` for the win rate over
    all judged pairs, and ``decided_win_rate_interval`` for the win rate among the
    *decided* pairs (wins + losses, ties left out), which is the one to read for "is
    system 1 preferred?": it excludes 0.5 when the preference is significant at the
    chosen level.

    Attributes:
        question: the question key (see :data:`JUDGE_QUESTIONS`).
        wins, ties, losses: reconciled outcomes of system 1.
        consistent: judged pairs whose two orders gave the same answer (before the tie
            rule); ``consistency`` near 1 means little position bias.
        confidence: coverage of the intervals.
    """

    question: str
    wins: int
    ties: int
    losses: int
    consistent: int
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def decided(self) -> int:
        return self.wins + self.losses

    @property
    def win_rate(self) -> float:
        return _ratio(self.wins, self.n)

    @property
    def tie_rate(self) -> float:
        return _ratio(self.ties, self.n)

    @property
    def loss_rate(self) -> float:
        return _ratio(self.losses, self.n)

    @property
    def decided_win_rate(self) -> float:
        return _ratio(self.wins, self.decided)

    @property
    def consistency(self) -> float:
        return _ratio(self.consistent, self.n)

    @property
    def win_rate_interval(self) -> tuple[float, float]:
        return wilson_interval(self.wins, self.n, self.confidence)

    @property
    def decided_win_rate_interval(self) -> tuple[float, float]:
        return wilson_interval(self.wins, self.decided, self.confidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "n": self.n,
            "wins": self.wins,
            "ties": self.ties,
            "losses": self.losses,
            "win_rate": self.win_rate,
            "tie_rate": self.tie_rate,
            "loss_rate": self.loss_rate,
            "win_rate_interval": list(self.win_rate_interval),
            "decided": self.decided,
            "decided_win_rate": self.decided_win_rate,
            "decided_win_rate_interval": list(self.decided_win_rate_interval),
            "consistent": self.consistent,
            "consistency": self.consistency,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class JudgeResult:
    """The outcome of judging system 1 against system 2 on a set of pairs.

    Attributes:
        names: the two systems' names (``names[0]`` is system 1, whose wins are counted).
        questions: a :class:`JudgeQuestionResult` per question key.
        examples: the per-pair :class:`PairJudgement`, in input order.
        max_attempts: attempts per verdict, for the report.
    """

    names: tuple[str, str]
    questions: dict[str, JudgeQuestionResult]
    examples: list[PairJudgement] = field(default_factory=list)
    max_attempts: int = 3

    @property
    def n(self) -> int:
        """Number of pairs (judged and failed)."""
        return len(self.examples)

    @property
    def n_failed(self) -> int:
        """Pairs without an outcome: a verdict of either order never validated."""
        return sum(ex.failed for ex in self.examples)

    @property
    def failed_ids(self) -> list[str]:
        return [ex.id for ex in self.examples if ex.failed]

    def to_dict(self, include_examples: bool = True) -> dict[str, Any]:
        """JSON-compatible dict (``nan`` stays a float; write with ``allow_nan``)."""
        out: dict[str, Any] = {
            "names": list(self.names),
            "n": self.n,
            "n_failed": self.n_failed,
            "max_attempts": self.max_attempts,
            "questions": {key: q.to_dict() for key, q in self.questions.items()},
        }
        if include_examples:
            out["examples"] = [ex.to_dict() for ex in self.examples]
        return out

    def to_markdown(self, digits: int = 1) -> str:
        """A markdown table, one row per question, and a line on failed pairs.

        Rates are percentages with their Wilson intervals in brackets; "decided" is the
        win rate of system 1 among the pairs that were not ties.
        """
        first, second = self.names
        rows: dict[str, dict[str, str]] = {}
        for key, q in self.questions.items():
            rows[_QUESTION_LABELS.get(key, key)] = {
                "n": str(q.n),
                f"{first} wins": str(q.wins),
                "ties": str(q.ties),
                f"{second} wins": str(q.losses),
                f"{first} win rate": _percent(q.win_rate, q.win_rate_interval, digits),
                f"{first} decided win rate": _percent(q.decided_win_rate, q.decided_win_rate_interval, digits),
                "consistent": _percent(q.consistency, None, digits),
            }
        table = format_metrics_table(rows, first_column="question")
        level = next(iter(self.questions.values())).confidence if self.questions else 0.95
        return (
            f"{table}\n\n{self.n - self.n_failed} of {self.n} pairs judged in both orders; "
            f"{self.n_failed} failed (no valid verdict after {self.max_attempts} attempts). "
            f"Brackets: {100 * level:g}% Wilson intervals."
        )


def _ratio(k: int, n: int) -> float:
    return k / n if n else math.nan


def _percent(rate: float, interval: Optional[tuple[float, float]], digits: int) -> str:
    if math.isnan(rate):
        return "–"
    text = f"{100 * rate:.{digits}f}%"
    if interval is not None:
        text += f" [{100 * interval[0]:.{digits}f}, {100 * interval[1]:.{digits}f}]"
    return text


# ---------------------------------------------------------------------- the judge
class PairwiseJudge:
    """Ask an LLM GRAG's four questions about pairs of responses, in both orders.

    For every example the judge gets two prompts (:func:`build_judge_prompt`): system
    1's response as Response A and system 2's as Response B, then the order swapped.
    All prompts go to the generator in one :func:`~personakit.llm.generate_structured`
    call (batched by the generator); each reply must validate as a
    :class:`PairwiseVerdict`, and a reply that does not is re-asked with the error, up
    to ``max_attempts`` times.  A pair with a verdict that never validates is recorded
    as failed (see :attr:`JudgeResult.n_failed`) and left out of the rates.  The two
    verdicts are combined per question by :func:`reconcile_verdicts` (a preference
    counts only when both orders agree; anything else is a tie).

    Use a large instruction-tuned model behind an OpenAI-compatible endpoint for real
    evaluations; the embedded SmolLM2-135M is a very weak judge (strong position bias,
    near-random answers), good only for smoke tests.

    **Answer modes.** ``answer="json"`` (the default) asks the four questions at once for a
    JSON verdict, as above.  ``answer="choice"`` suits small local models, which rarely
    write valid JSON (the embedded SmolLM2 never did): each question is asked alone
    (:func:`build_judge_prompt` with ``question=``) and the answer is read from the
    model's next-token likelihoods, the most likely of the first tokens of ``A``, ``B`` and
    ``Similar`` (so every verdict is valid and nothing is generated).  It needs a local
    :class:`~personakit.llm.HFGenerator` (its ``prefill`` and ``tokenizer``); the cache is
    not used (a prompt pass per question is cheap).

    Args:
        generator: any text generator (:class:`~personakit.llm.HFGenerator`,
            :class:`~personakit.llm.OpenAICompatibleGenerator`,
            :class:`~personakit.llm.CallableGenerator`, ...).
        settings: decoding settings; default greedy with 128 new tokens.
        max_attempts: attempts per verdict, the first included.
        batch_size: prompts per generator call.
        cache: a :class:`~personakit.llm.ResponseCache` or the path of its file; the
            generator is wrapped in a :class:`~personakit.llm.CachedGenerator`, so a rerun
            (or a resumed, interrupted run) asks only what is not stored yet.
        max_history_turns: most recent history turns shown to the judge (``None``: all).
        confidence: coverage of the Wilson intervals.
        answer: ``"json"`` or ``"choice"`` (see above).

    Example:
        >>> import json
        >>> from personakit.llm import CallableGenerator
        >>> from personakit.types import ResponseExample, Turn
        >>> ex = ResponseExample(id="x", history=[Turn(speaker="user", text="Hi!")],
        ...                      response="Hello!", generic_response="Hello.")
        >>> always_a = CallableGenerator(lambda chat: json.dumps({q: "A" for q in JUDGE_QUESTIONS}))
        >>> result = PairwiseJudge(always_a).judge([ex], ["Hey there!"], ["Hi."])
        >>> result.questions["naturalness"].ties  # "A" in both orders: position bias, a tie
        1
        >>> print(result.to_markdown().splitlines()[0])
        | question | n | A wins | ties | B wins | A win rate | A decided win rate | consistent |
    """

    def __init__(
        self,
        generator: TextGenerator,
        settings: GenerationSettings | Mapping[str, Any] | None = None,
        max_attempts: int = 3,
        batch_size: int = 8,
        cache: Union[ResponseCache, str, os.PathLike[str], None] = None,
        max_history_turns: Optional[int] = 6,
        confidence: float = 0.95,
        answer: str = "json",
    ):
        if not isinstance(generator, TextGenerator):
            raise TypeError(f"PairwiseJudge: generator must be a TextGenerator, got {type(generator).__name__}")
        if max_attempts < 1:
            raise ValueError(f"PairwiseJudge: max_attempts must be >= 1, got {max_attempts}")
        if batch_size < 1:
            raise ValueError(f"PairwiseJudge: batch_size must be >= 1, got {batch_size}")
        if max_history_turns is not None and max_history_turns < 1:
            raise ValueError(f"PairwiseJudge: max_history_turns must be >= 1 or None, got {max_history_turns}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"PairwiseJudge: confidence must be in (0, 1), got {confidence}")
        if answer not in ("json", "choice"):
            raise ValueError(f"PairwiseJudge: answer must be 'json' or 'choice', got {answer!r}")
        if answer == "choice" and not (callable(getattr(generator, "prefill", None))
                                       and getattr(generator, "tokenizer", None) is not None):
            raise ValueError("PairwiseJudge: answer='choice' reads next-token likelihoods and needs a local "
                             f"HFGenerator (with prefill and a tokenizer), got {type(generator).__name__}")
        self.answer = answer
        self._local = generator
        self.generator = generator if cache is None else CachedGenerator(generator, cache)
        self.settings = GenerationSettings(max_new_tokens=128) if settings is None else _coerce_settings(settings)
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.max_history_turns = max_history_turns
        self.confidence = confidence

    def judge(
        self,
        examples: Sequence[ResponseExample],
        responses_a: Sequence[str],
        responses_b: Sequence[str],
        generic_responses: Optional[Sequence[str]] = None,
        names: tuple[str, str] = ("A", "B"),
        progress: Optional[bool] = None,
    ) -> JudgeResult:
        """Judge system 1 (``responses_a``) against system 2 (``responses_b``).

        Args:
            examples: the examples (persona, history, generic response).
            responses_a: system 1's response per example.
            responses_b: system 2's response per example.
            generic_responses: $R_G$ per example; default each example's
                ``generic_response``.
            names: the systems' names in the report (system 1 first).
            progress: passed to the generator (``None``: a bar for long runs).

        Returns:
            A :class:`JudgeResult`; wins are system 1's.

        Raises:
            ValueError: the inputs differ in length (the message names the argument),
                are empty, or an example has no generic response.
        """
        examples = list(examples)
        if not examples:
            raise ValueError("judge: examples is empty")
        for i, ex in enumerate(examples):
            if not isinstance(ex, ResponseExample):
                raise TypeError(f"judge: examples[{i}] is {type(ex).__name__}, expected a ResponseExample")
        columns = {"responses_a": responses_a, "responses_b": responses_b}
        if generic_responses is not None:
            columns["generic_responses"] = generic_responses
        for arg, values in columns.items():
            if isinstance(values, str):
                raise TypeError(f"judge: {arg} must be a list of strings, one per example, got a single string")
            if len(values) != len(examples):
                raise ValueError(
                    f"judge: {arg} has {len(values)} entries but examples has {len(examples)}; give one per example"
                )
        if len(names) != 2 or names[0] == names[1]:
            raise ValueError(f"judge: names must be two different names, got {names!r}")
        generics = list(generic_responses) if generic_responses is not None else [None] * len(examples)

        pairs = list(zip(responses_a, responses_b))
        ordered = pairs + [(b, a) for a, b in pairs]  # first every pair as given, then every pair swapped
        items = list(zip(ordered, examples * 2, generics * 2))
        if self.answer == "choice":
            verdicts: list[Optional[PairwiseVerdict]] = self._choose(items)
        else:
            prompts = [build_judge_prompt(ex, first, second, generic, self.max_history_turns)
                       for (first, second), ex, generic in items]
            verdicts = generate_structured(
                self.generator, prompts, PairwiseVerdict, self.settings, max_attempts=self.max_attempts,
                on_failure="none", batch_size=self.batch_size, progress=progress,
            )
        n = len(examples)
        judgements = [
            _judgement(i, ex.id, verdicts[i], verdicts[n + i]) for i, ex in enumerate(examples)
        ]
        return JudgeResult(
            names=(str(names[0]), str(names[1])),
            questions={key: self._tally(key, judgements) for key in JUDGE_QUESTIONS},
            examples=judgements,
            max_attempts=self.max_attempts,
        )

    def _choose(self, items: list) -> list[Optional[PairwiseVerdict]]:
        """``answer="choice"``: one prompt per ordered pair and question, answered by the likeliest choice."""
        tokenizer = self._local.tokenizer  # type: ignore[attr-defined]
        options = ("A", "B", "Similar")
        ids = [tokenizer(option, add_special_tokens=False)["input_ids"][0] for option in options]
        if len(set(ids)) != len(ids):
            raise ValueError(f"PairwiseJudge: the tokenizer starts {options} with the same token; use answer='json'")
        keys = list(JUDGE_QUESTIONS)
        prompts = [build_judge_prompt(ex, first, second, generic, self.max_history_turns, question=key)
                   for (first, second), ex, generic in items for key in keys]
        picks: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            logits = self._local.prefill(prompts[start:start + self.batch_size])  # type: ignore[attr-defined]
            picks += [options[int(row[ids].argmax())] for row in logits]
        return [PairwiseVerdict(**dict(zip(keys, picks[i * len(keys):(i + 1) * len(keys)])))
                for i in range(len(items))]

    def _tally(self, key: str, judgements: Sequence[PairJudgement]) -> JudgeQuestionResult:
        done = [j for j in judgements if j.outcomes is not None]
        outcomes = [j.outcomes[key] for j in done]  # type: ignore[index]
        consistent = sum(
            _prefers(getattr(j.first, key), swapped=False) == _prefers(getattr(j.second, key), swapped=True)
            for j in done
        )
        return JudgeQuestionResult(
            question=key, wins=outcomes.count("win"), ties=outcomes.count("tie"), losses=outcomes.count("loss"),
            consistent=consistent, confidence=self.confidence,
        )

    def __repr__(self) -> str:
        return (
            f"PairwiseJudge({self.generator!r}, answer={self.answer!r}, max_attempts={self.max_attempts}, "
            f"batch_size={self.batch_size}, max_history_turns={self.max_history_turns})"
        )


def _judgement(index: int, example_id: str, first: Optional[PairwiseVerdict],
               second: Optional[PairwiseVerdict]) -> PairJudgement:
    outcomes = None
    if first is not None and second is not None:
        outcomes = {key: reconcile_verdicts(getattr(first, key), getattr(second, key)) for key in JUDGE_QUESTIONS}
    return PairJudgement(index=index, id=example_id, first=first, second=second, outcomes=outcomes)


class PairwiseJudgeConfig(BaseConfig):
    """Config of :class:`PairwiseJudge` (the generator is passed to ``build``).

    Example:
        >>> from personakit.llm import CallableGenerator
        >>> PairwiseJudgeConfig(max_attempts=2).build(generator=CallableGenerator(str)).max_attempts
        2
    """

    _target_ = PairwiseJudge
    settings: GenerationSettings = Field(default_factory=lambda: GenerationSettings(max_new_tokens=128),
                                         description="Decoding settings of the judge.")
    max_attempts: int = Field(3, ge=1, description="Attempts per verdict, the first included.")
    batch_size: int = Field(8, ge=1, description="Prompts per generator call.")
    cache: Optional[str] = Field(None, description="Path of a response-cache file (JSON lines); None: no cache.")
    max_history_turns: Optional[int] = Field(6, ge=1, description="Most recent history turns shown; None: all.")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="Coverage of the Wilson intervals.")
    answer: Literal["json", "choice"] = Field(
        "json", description="'json': one JSON verdict per pair; 'choice': next-token likelihoods (local models).")


def judge_pairs(
    generator: TextGenerator,
    examples: Sequence[ResponseExample],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    generic_responses: Optional[Sequence[str]] = None,
    *,
    names: tuple[str, str] = ("A", "B"),
    settings: GenerationSettings | Mapping[str, Any] | None = None,
    max_attempts: int = 3,
    batch_size: int = 8,
    cache: Union[ResponseCache, str, os.PathLike[str], None] = None,
    max_history_turns: Optional[int] = 6,
    confidence: float = 0.95,
    answer: str = "json",
    progress: Optional[bool] = None,
) -> JudgeResult:
    """Functional form of :class:`PairwiseJudge`: build a judge and run :meth:`PairwiseJudge.judge`.

    Args:
        generator: any text generator.
        examples, responses_a, responses_b, generic_responses, names, progress: see
            :meth:`PairwiseJudge.judge`.
        settings, max_attempts, batch_size, cache, max_history_turns, confidence, answer: see
            :class:`PairwiseJudge`.

    Returns:
        A :class:`JudgeResult`.
    """
    judge = PairwiseJudge(generator, settings=settings, max_attempts=max_attempts, batch_size=batch_size,
                          cache=cache, max_history_turns=max_history_turns, confidence=confidence, answer=answer)
    return judge.judge(examples, responses_a, responses_b, generic_responses, names=names, progress=progress)
