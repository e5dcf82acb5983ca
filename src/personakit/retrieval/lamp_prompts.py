r"""LaMP prompt construction $\phi_p(x, L)$ and query construction $\phi_q(x)$ (ROPG/RSPG paper, Table 2).

Salemi et al., "Optimization Methods for Personalizing Large Language Models through
Retrieval Augmentation" (SIGIR 2024), section 3: a retriever $R$ ranks the user's
profile $P_u$ for the query $\phi_q(x)$ built from the *non-template part* of the
input $x$, and the prompt generation function $\phi_p(x, L)$ turns the retrieved
entries $L = [P_1, \dots, P_k]$ into the LLM prompt.  $\phi_p$ applies a
per-profile-entry prompt (PPEP) to each entry and an aggregated input prompt (AIP)
to the list and the input (Table 2, following LaMP, Salemi et al. 2023):

| task | PPEP($P_i$) | AIP |
|---|---|---|
| LaMP-1 citation | ``"{title}"`` | the joined entries inserted after the paper's title in $x$ |
| LaMP-2 movie tagging | ``the tag for the movie: "{description}" is "{tag}"`` | ``{entries}. {x}`` |
| LaMP-2 news (first release) | ``the category for the article: "{text}" is "{category}"`` | ``{entries}. {x}`` |
| LaMP-3 rating | ``{score} is the score for "{text}"`` | ``{entries}. {x}`` |
| LaMP-4 headline | ``"{title}" is the title for "{text}"`` | ``{entries}. {x}`` |
| LaMP-5 scholarly title | ``"{title}" is the title for "{abstract}"`` | ``{entries}. Following the given patterns {x}`` |
| LaMP-6 email subject | ``"{title}" is the title for "{text}"`` | ``{entries}. {x}`` |
| LaMP-7 tweet | ``"{text}"`` | ``{entries} are written by a person. Following the given patterns {x}`` |
| PFG-LaMP (personakit) | ``"{text}"`` | ``{entries} are messages this persuader wrote in earlier conversations. Following the given patterns, write the persuader's next reply in this conversation:`` ``\n{x}\nPersuader:`` (output: :func:`clean_pfg_reply`) |

``{entries}`` is ``concat([PPEP(P_1), …, PPEP(P_k)], ", and ")``.  The queries
$\phi_q(x)$ (LaMP's official code): LaMP-1 the two candidate reference titles (the
2nd and 3rd quoted strings of the input), LaMP-2 the text after ``description:``
(news: ``article:``), LaMP-3 after ``review:``, LaMP-4 after ``article:``, LaMP-5
after ``paper:`` (the abstract), LaMP-6 and LaMP-7 after the first ``:``; PFG-LaMP
the conversation with its ``Persuadee:`` / ``Persuader:`` labels removed.  When the
marker is missing, the whole input is the query.

**Truncation departs from LaMP's code** (which cuts every entry to an equal share of
the budget, mid-sentence): here the input is never cut and entries are kept *whole*.
Entries are taken in the given (retrieval) order; an entry is added when the whole
prompt, counted with the tokenizer, still fits in ``max_tokens``, and skipped
otherwise (a later, shorter entry may still fit).  When the input alone exceeds the
budget the prompt is the no-profile prompt.  With no entry the prompt is the input
itself for LaMP (the paper's "No Personalization" baseline) and the instruction plus
the conversation for PFG-LaMP.

**PFG-LaMP output post-processing** (personakit; LaMP-1 … LaMP-7 have none, their outputs
reach EVAL as generated): the template's ``postprocess`` is :func:`clean_pfg_reply`, which
strips a leading ``Persuader:`` / ``Persuadee:`` label and cuts the output where a new
speaker label begins; :meth:`LaMPPromptBuilder.postprocess` applies it and
:class:`~personakit.training.feedback.LLMFeedbackScorer` calls it before EVAL.  Why: the
prompt reaches an instruct model through its chat template as one user message ending with
``Persuader:``, and the model continues the transcript rather than answering as the
persuader; on 60 test inputs SmolLM2-135M-Instruct began 70% of its outputs with
``Persuadee:`` (``benchmarks/pfg_lamp_prompts.py``).  A system message that makes the
assistant the persuader (no trailing label) cut that to 13% and raised ROUGE-1 from 0.119 to
0.147 (p = 0.04, one sample of 60), but did not make the retrieved entries help (profile
effect -0.018, not significant), so the template is unchanged.

LaMP-1's ``add_to_paper_title``: the official code inserts ``", and " + entries``
right after the *word* ``title``; here the entries go after the paper's quoted title
(``…the title "X", and "P1", and "P2", which reference…``), which reads as the paper
describes; without a quoted title they follow the word ``title``, and without that
they are prepended.  PPEP strings are as in the paper without the trailing space of
the official templates.

Example:
    >>> from personakit.types import ProfileExample, ProfileItem, UserProfile
    >>> ex = ProfileExample(id="1", task="LaMP-4", input="Generate a headline for the following article: Rain hits town.",
    ...                     profile=UserProfile(user_id="u", items=[]))
    >>> builder = LaMPPromptBuilder("LaMP-4", max_tokens=64)
    >>> builder.query(ex)
    'Rain hits town.'
    >>> item = ProfileItem(id="a", text="Storm floods streets.", fields={"title": "Flood!"})
    >>> builder.build(ex, [item])
    '"Flood!" is the title for "Storm floods streets.". Generate a headline for the following article: Rain hits town.'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from pydantic import Field

from personakit.config import BaseConfig
from personakit.data.lamp import normalize_lamp_task
from personakit.data.pfg_lamp import PFG_LAMP_TASK
from personakit.types import ProfileExample, ProfileItem

__all__ = [
    "LaMPTemplate",
    "LAMP_TEMPLATES",
    "PFG_LAMP_TASK",
    "LaMPPromptBuilder",
    "get_lamp_template",
    "register_lamp_template",
    "lamp_query",
    "count_tokens",
    "TokenCounter",
    "LaMPPromptConfig",
    "clean_pfg_reply",
]

EntryFormat = Union[str, Callable[[ProfileItem], str]]
AggregateFormat = Union[str, Callable[[str, str], str]]
TokenCounter = Callable[[str], Any]
"""A tokenizer callable: returns a count, a list of ids, or a mapping with ``input_ids`` (a HF tokenizer)."""


@dataclass(frozen=True)
class LaMPTemplate:
    """The prompt templates and the query function of one task.

    Args:
        task: the task name.
        entry: the per-profile-entry prompt (PPEP): a format string over the entry's
            fields plus ``text`` (``'"{title}" is the title for "{text}"'``), or a
            function ``ProfileItem -> str``.
        aggregate: the aggregated input prompt (AIP): a format string with
            ``{entries}`` and ``{input}``, or a function ``(entries, input) -> str``.
        query: ``input -> query`` (the non-template part of the input).
        separator: placed between the PPEPs (``", and "`` in the paper).
        empty: the prompt when no entry is used, a format string with ``{input}``.
        postprocess: ``output -> output`` applied to the LLM's completion before EVAL
            (``None``: the output as generated; LaMP-1 … LaMP-7 have none).
    """

    task: str
    entry: EntryFormat
    aggregate: AggregateFormat
    query: Callable[[str], str]
    separator: str = ", and "
    empty: str = "{input}"
    postprocess: Optional[Callable[[str], str]] = None

    def format_entry(self, item: ProfileItem) -> str:
        """PPEP of one entry.

        Raises:
            ValueError: the template needs a field the entry does not have.
        """
        if callable(self.entry):
            return self.entry(item)
        return _format_fields(self.entry, item, self.task)

    def format_prompt(self, entries: Sequence[str], text: str) -> str:
        """AIP of formatted entries and the input; the ``empty`` prompt when there are none."""
        if not entries:
            return self.empty.format(input=text)
        joined = self.separator.join(entries)
        if callable(self.aggregate):
            return self.aggregate(joined, text)
        return self.aggregate.format(entries=joined, input=text)


def _format_fields(template: str, item: ProfileItem, task: str) -> str:
    values = {k: ("" if v is None else v) for k, v in item.fields.items()}
    values["text"] = item.text
    values.setdefault("date", item.timestamp.date().isoformat() if item.timestamp is not None else "")
    try:
        return template.format(**values)
    except KeyError as err:
        raise ValueError(
            f"{task} prompt: profile entry {item.id!r} has no field {err.args[0]!r} "
            f"(needed by the template {template!r}; its fields: {sorted(item.fields)})"
        ) from None


# ------------------------------------------------------------------ queries
def _after(marker: str) -> Callable[[str], str]:
    def query(text: str) -> str:
        pos = text.find(marker)
        return text.strip() if pos == -1 else text[pos + len(marker):].strip()

    query.__name__ = f"after_{marker.rstrip(':')}"
    return query


_QUOTED = re.compile(r'"(.*?)"', re.DOTALL)


def _citation_query(text: str) -> str:
    """LaMP-1: the two candidate references (quoted strings 2 and 3; the 1st is the paper's title)."""
    quoted = _QUOTED.findall(text)
    if len(quoted) >= 3:
        return f"{quoted[1]} {quoted[2]}".strip()
    return " ".join(quoted).strip() or text.strip()


def _tagging_query(text: str) -> str:
    """LaMP-2: after ``description:`` (movies) or ``article:`` (news categorisation)."""
    for marker in ("description:", "article:"):
        pos = text.find(marker)
        if pos != -1:
            return text[pos + len(marker):].strip()
    return text.strip()


_SPEAKER_LABEL = re.compile(r"^\s*(?:persuadee|persuader)\s*:\s*", re.IGNORECASE | re.MULTILINE)


def _conversation_query(text: str) -> str:
    """PFG-LaMP: the conversation without the speaker labels, one line per turn joined by spaces."""
    lines = [line.strip() for line in _SPEAKER_LABEL.sub("", text).splitlines()]
    return " ".join(line for line in lines if line)


_OWN_LABEL = re.compile(r"^\s*\**\s*persuader\s*\**\s*:\s*\**\s*", re.IGNORECASE)
_OTHER_LABEL = re.compile(r"^\s*\**\s*persuadee\s*\**\s*:\s*\**", re.IGNORECASE)
_NEW_TURN = re.compile(r"\**\s*Persuade[er]\s*\**\s*:")  # capitalised, as the prompt writes the labels


def clean_pfg_reply(text: str, wrong_role: str = "keep") -> str:
    """PFG-LaMP output post-processing: the persuader's reply without the transcript format.

    A small chat model asked for the persuader's next reply often writes the transcript
    format back: a leading speaker label (``"Persuader: ..."``, or the wrong role,
    ``"Persuadee: ..."``: 70% of SmolLM2-135M's outputs with the PFG-LaMP prompt, see
    ``benchmarks/results/pfg_lamp_prompts.md``) or a new turn (``"... Persuadee: ..."``).
    This strips the leading ``Persuader:`` label (repeatedly) and a leading ``Persuadee:``
    label, and cuts the text where a ``Persuadee:`` or ``Persuader:`` label begins later
    (capitalised, as the prompt writes it, so that "I am the persuader: ..." is kept).
    Whitespace is collapsed.

    Args:
        text: the LLM's output (after its stop sequences).
        wrong_role: what to do with an output that *starts* with the persuadee's label:
            ``"keep"`` (default: strip the label, keep the text up to the next label) or
            ``"drop"`` (the wrong role: ``""``).  Measured on 60 PFG-LaMP test inputs,
            ``"keep"`` raises ROUGE-1 slightly over the raw output (+0.003, 95% interval
            [+0.002, +0.004]) while ``"drop"`` lowers it (0.119 -> 0.040): the text after a
            wrong label is mostly still a persuader-like reply.

    Example:
        >>> clean_pfg_reply("Persuader: I completely understand your concern.")
        'I completely understand your concern.'
        >>> clean_pfg_reply("Sure, it helps kids. Persuadee: ok"), clean_pfg_reply("Persuadee: The point is")
        ('Sure, it helps kids.', 'The point is')
        >>> clean_pfg_reply("Persuadee: The point is", wrong_role="drop")
        ''
    """
    if wrong_role not in ("drop", "keep"):
        raise ValueError(f"wrong_role must be 'drop' or 'keep', got {wrong_role!r}")
    prev = None
    while prev != text:
        prev, text = text, _OWN_LABEL.sub("", text, count=1)
    other = _OTHER_LABEL.match(text)
    if other is not None:
        if wrong_role == "drop":
            return ""
        text = text[other.end():]
    m = _NEW_TURN.search(text)
    if m is not None:
        text = text[:m.start()]
    return " ".join(text.split())


# ------------------------------------------------------------------ aggregation
def _add_to_paper_title(entries: str, text: str) -> str:
    """LaMP-1 ``add_to_paper_title``: ``", and " + entries`` after the paper's (quoted) title."""
    pos = text.find("title")
    if pos == -1:
        return f"{entries}. {text}"
    end = pos + len("title")
    m = _QUOTED.search(text, end)
    if m is not None and not text[end:m.start()].strip():
        end = m.end()
    return f"{text[:end]}, and {entries}{text[end:]}"


def _tagging_entry(item: ProfileItem) -> str:
    if "tag" in item.fields or "category" not in item.fields:
        return _format_fields('the tag for the movie: "{text}" is "{tag}"', item, "LaMP-2")
    return _format_fields('the category for the article: "{text}" is "{category}"', item, "LaMP-2")


_TITLE_FOR_TEXT = '"{title}" is the title for "{text}"'

LAMP_TEMPLATES: dict[str, LaMPTemplate] = {
    "LaMP-1": LaMPTemplate("LaMP-1", '"{title}"', _add_to_paper_title, _citation_query),
    "LaMP-2": LaMPTemplate("LaMP-2", _tagging_entry, "{entries}. {input}", _tagging_query),
    "LaMP-3": LaMPTemplate("LaMP-3", '{score} is the score for "{text}"', "{entries}. {input}", _after("review:")),
    "LaMP-4": LaMPTemplate("LaMP-4", _TITLE_FOR_TEXT, "{entries}. {input}", _after("article:")),
    "LaMP-5": LaMPTemplate(
        "LaMP-5", '"{title}" is the title for "{text}"', "{entries}. Following the given patterns {input}", _after("paper:")
    ),
    "LaMP-6": LaMPTemplate("LaMP-6", _TITLE_FOR_TEXT, "{entries}. {input}", _after(":")),
    "LaMP-7": LaMPTemplate(
        "LaMP-7", '"{text}"', "{entries} are written by a person. Following the given patterns {input}", _after(":")
    ),
    PFG_LAMP_TASK: LaMPTemplate(
        PFG_LAMP_TASK,
        '"{text}"',
        "{entries} are messages this persuader wrote in earlier conversations. Following the given patterns, "
        "write the persuader's next reply in this conversation:\n{input}\nPersuader:",
        _conversation_query,
        empty="Write the persuader's next reply in this conversation:\n{input}\nPersuader:",
        postprocess=clean_pfg_reply,
    ),
}
"""Templates of LaMP-1 … LaMP-7 (paper Table 2) and of ``PFG-LaMP``.  LaMP-5's abstract is
:attr:`ProfileItem.text` (``read_lamp`` stores it there), hence ``{text}``."""


def register_lamp_template(template: LaMPTemplate, *, overwrite: bool = False) -> None:
    """Add a task's templates (e.g. a new LaMP-style dataset) so :class:`LaMPPromptBuilder` accepts its name.

    Raises:
        ValueError: the name is taken and ``overwrite`` is false.
    """
    if template.task in LAMP_TEMPLATES and not overwrite:
        raise ValueError(f"a template for task {template.task!r} is already registered; pass overwrite=True")
    LAMP_TEMPLATES[template.task] = template


def _task_key(task: str) -> str:
    if task in LAMP_TEMPLATES:
        return task
    if isinstance(task, str) and re.fullmatch(r"pfg[\s_\-]?lamp", task.strip(), re.IGNORECASE):
        return PFG_LAMP_TASK
    try:
        return normalize_lamp_task(task)
    except ValueError:
        raise ValueError(f"no prompt template for task {task!r}; known: {', '.join(LAMP_TEMPLATES)}") from None


def get_lamp_template(task: Union[str, int]) -> LaMPTemplate:
    """The :class:`LaMPTemplate` of a task (``"LaMP-4"``, ``"LaMP_4"``, ``4``, ``"PFG-LaMP"``)."""
    key = _task_key(task)  # type: ignore[arg-type]
    if key not in LAMP_TEMPLATES:
        raise ValueError(f"no prompt template for task {task!r}; known: {', '.join(LAMP_TEMPLATES)}")
    return LAMP_TEMPLATES[key]


def lamp_query(task: Union[str, int], text: str) -> str:
    """$\\phi_q(x)$: the retrieval query of an input (its non-template part).

    Example:
        >>> lamp_query("LaMP-3", "What is the score of the following review? review: Great blender.")
        'Great blender.'
    """
    return get_lamp_template(task).query(text)


def count_tokens(text: str, tokenizer: Optional[TokenCounter] = None) -> int:
    """Number of tokens of ``text``: whitespace-separated words by default.

    ``tokenizer`` may return an ``int``, a sequence of ids, or a mapping with
    ``input_ids`` (a Hugging Face tokenizer called on a string).

    Example:
        >>> count_tokens("a b  c"), count_tokens("abc", lambda s: list(s))
        (3, 3)
    """
    if tokenizer is None:
        return len(text.split())
    out = tokenizer(text)
    if isinstance(out, bool):
        raise TypeError("the tokenizer returned a bool; expected a count, a list of ids or a mapping with 'input_ids'")
    if isinstance(out, int):
        return out
    if isinstance(out, Mapping) or hasattr(out, "keys"):
        out = out["input_ids"]
    return len(out)


class LaMPPromptBuilder:
    r"""Build $\phi_q(x)$ and $\phi_p(x, L)$ for a LaMP task within a token budget.

    See the module docstring for the templates and the truncation rule: the input is
    never cut, entries are kept whole in retrieval order, an entry that would push the
    prompt over ``max_tokens`` is skipped.

    Args:
        task: ``"LaMP-1"`` … ``"LaMP-7"`` (any spelling :func:`~personakit.data.normalize_lamp_task`
            accepts), ``"PFG-LaMP"``, another registered name, or a :class:`LaMPTemplate`.
        max_tokens: budget of the whole prompt in tokens (512 in the paper).
        tokenizer: token counter (see :func:`count_tokens`); whitespace words by default.
        max_items: use at most this many entries (``None``: as many as fit).

    Example:
        >>> from personakit.types import ProfileExample, ProfileItem, UserProfile
        >>> ex = ProfileExample(id="1", task="LaMP-7", input="Paraphrase the following tweet: so tired today",
        ...                     profile=UserProfile(user_id="u"))
        >>> items = [ProfileItem(id=str(i), text=t) for i, t in enumerate(["long day lol", "need coffee"])]
        >>> LaMPPromptBuilder("LaMP-7", max_tokens=20).build(ex, items)
        '"long day lol" are written by a person. Following the given patterns Paraphrase the following tweet: so tired today'
    """

    def __init__(
        self,
        task: Union[str, int, LaMPTemplate],
        max_tokens: int = 512,
        tokenizer: Optional[TokenCounter] = None,
        max_items: Optional[int] = None,
    ):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_items is not None and max_items < 0:
            raise ValueError(f"max_items must be >= 0 or None, got {max_items}")
        self.template = task if isinstance(task, LaMPTemplate) else get_lamp_template(task)
        self.task = self.template.task
        self.max_tokens = max_tokens
        self.tokenizer = tokenizer
        self.max_items = max_items

    def count(self, text: str) -> int:
        """Tokens of ``text`` under this builder's tokenizer."""
        return count_tokens(text, self.tokenizer)

    def _check_task(self, example: ProfileExample) -> None:
        if example.task == self.task:
            return
        try:
            same = _task_key(example.task) == self.task
        except ValueError:
            same = False
        if not same:
            raise ValueError(f"example {example.id!r} is a {example.task!r} example, but this builder is for {self.task!r}")

    def postprocess(self, output: str) -> str:
        """The LLM's completion as EVAL should read it (the template's ``postprocess``; unchanged without one)."""
        return output if self.template.postprocess is None else self.template.postprocess(output)

    def query(self, example: ProfileExample) -> str:
        r"""$\phi_q(x)$: the retrieval query of the example's input."""
        self._check_task(example)
        return self.template.query(example.input)

    def select(self, example: ProfileExample, items: Sequence[Any]) -> list[ProfileItem]:
        """The entries :meth:`build` keeps, in order (whole entries that fit the budget)."""
        return self._assemble(example, items)[1]

    def build(self, example: ProfileExample, items: Sequence[Any]) -> str:
        r"""$\phi_p(x, L)$: the prompt for the example with the retrieved entries ``items``.

        Args:
            example: the task input (its ``input`` is used, never cut).
            items: retrieved entries, best first: :class:`~personakit.types.ProfileItem`
                or :class:`~personakit.retrieval.RetrievedItem`.
        """
        return self._assemble(example, items)[0]

    def _assemble(self, example: ProfileExample, items: Sequence[Any]) -> tuple[str, list[ProfileItem]]:
        self._check_task(example)
        text = example.input
        chosen: list[ProfileItem] = []
        entries: list[str] = []
        prompt = self.template.format_prompt([], text)
        limit = len(items) if self.max_items is None else min(self.max_items, len(items))
        for obj in items:
            if len(chosen) >= limit:
                break
            item = obj.item if hasattr(obj, "item") and not isinstance(obj, ProfileItem) else obj
            if not isinstance(item, ProfileItem):
                raise TypeError(f"items must be ProfileItem or RetrievedItem, got {type(obj).__name__}")
            entry = self.template.format_entry(item)
            if self.count(entry) > self.max_tokens:  # cheap rejection before rendering the prompt
                continue
            candidate = self.template.format_prompt(entries + [entry], text)
            if self.count(candidate) <= self.max_tokens:
                chosen.append(item)
                entries.append(entry)
                prompt = candidate
        return prompt, chosen

    def __repr__(self) -> str:
        return f"LaMPPromptBuilder(task={self.task!r}, max_tokens={self.max_tokens}, max_items={self.max_items})"


class LaMPPromptConfig(BaseConfig):
    """Config of :class:`LaMPPromptBuilder` (the tokenizer is passed to ``build(tokenizer=...)``).

    Example:
        >>> LaMPPromptConfig(task="LaMP-4", max_tokens=256).build()
        LaMPPromptBuilder(task='LaMP-4', max_tokens=256, max_items=None)
    """

    _target_ = LaMPPromptBuilder
    task: str = Field(..., description="Task name: 'LaMP-1' ... 'LaMP-7', 'PFG-LaMP' or a registered template.")
    max_tokens: int = Field(512, ge=1, description="Token budget of the whole prompt (512 in the paper).")
    max_items: Optional[int] = Field(None, ge=0, description="Use at most this many entries (None: as many as fit).")
