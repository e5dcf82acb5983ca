"""LaMP benchmark reader (Salemi et al., 2023): ``*_questions.json`` and ``*_outputs.json``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from personakit.data._io import Loc, PathLike, load_json, parse_number, parse_timestamp, type_name
from personakit.data.errors import DataFormatError
from personakit.types import ProfileExample, ProfileItem, UserProfile

__all__ = ["LampTask", "LAMP_TASKS", "normalize_lamp_task", "read_lamp", "read_lamp_outputs", "lamp_retrieval_text"]


@dataclass(frozen=True)
class LampTask:
    """What a LaMP task's profile entries hold.

    Args:
        name: ``"LaMP-1"`` ... ``"LaMP-7"``.
        title: human-readable task name.
        text_field: the entry field that becomes :attr:`ProfileItem.text`.
        required: fields every profile entry must have (besides ``id``).
        corpus_fields: the fields the official code concatenates into the
            retrieval corpus (see :func:`lamp_retrieval_text`).
        numeric: fields parsed as numbers (``score`` in LaMP-3).
        alternative: a second entry layout of the same task name (LaMP-2 was first
            released as news categorisation, later replaced by movie tagging).
    """

    name: str
    title: str
    text_field: str
    required: tuple[str, ...]
    corpus_fields: tuple[str, ...]
    numeric: tuple[str, ...] = ()
    alternative: Optional["LampTask"] = None


LAMP_TASKS: dict[str, LampTask] = {
    "LaMP-1": LampTask("LaMP-1", "Personalized Citation Identification", "abstract", ("title", "abstract"), ("title", "abstract")),
    "LaMP-2": LampTask(
        "LaMP-2",
        "Personalized Movie Tagging",
        "description",
        ("description", "tag"),
        ("description",),
        alternative=LampTask(
            "LaMP-2", "Personalized News Categorization", "text", ("text", "category"), ("title", "text")
        ),
    ),
    "LaMP-3": LampTask("LaMP-3", "Personalized Product Rating", "text", ("text", "score"), ("text",), numeric=("score",)),
    "LaMP-4": LampTask("LaMP-4", "Personalized News Headline Generation", "text", ("text", "title"), ("title", "text")),
    "LaMP-5": LampTask("LaMP-5", "Personalized Scholarly Title Generation", "abstract", ("title", "abstract"), ("title", "abstract")),
    "LaMP-6": LampTask("LaMP-6", "Personalized Email Subject Generation", "text", ("text", "title"), ("text",)),
    "LaMP-7": LampTask("LaMP-7", "Personalized Tweet Paraphrasing", "text", ("text",), ("text",)),
}
"""Profile-entry layout of each LaMP task (paper Table 2 and the official code)."""

_TASK_RE = re.compile(r"lamp[\s_\-]?([1-7])(?!\d)", re.IGNORECASE)


def normalize_lamp_task(name: Any) -> str:
    """``"LaMP_4"``, ``"lamp-4"``, ``"LaMP4"``, ``4`` -> ``"LaMP-4"``.

    Raises:
        ValueError: not a LaMP task 1-7.
    """
    if isinstance(name, int) and not isinstance(name, bool) and 1 <= name <= 7:
        return f"LaMP-{name}"
    m = _TASK_RE.fullmatch(str(name).strip()) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f"unknown LaMP task {name!r}; expected one of {', '.join(LAMP_TASKS)}")
    return f"LaMP-{m.group(1)}"


def _task_from_filename(path: PathLike) -> Optional[str]:
    for part in reversed(Path(path).parts):  # file name first, then its folders
        m = _TASK_RE.search(part)
        if m:
            return f"LaMP-{m.group(1)}"
    return None


def read_lamp_outputs(path: PathLike) -> tuple[Optional[str], dict[str, str]]:
    """Read a LaMP ``*_outputs.json`` file.

    Format: ``{"task": "LaMP_4", "golds": [{"id": "310", "output": "..."}, ...]}``.

    Returns:
        ``(task or None, {id: output})`` with the task normalised (``"LaMP-4"``).

    Raises:
        DataFormatError: not an object with a ``golds`` list, a gold without a string
            ``id``/``output``, a repeated id or an unknown task name.
    """
    data = load_json(path, "LaMP outputs file")
    loc = Loc(path, None)
    if not isinstance(data, dict):
        raise loc.error(None, f"expected an object with 'task' and 'golds', got {type_name(data)}")
    task = None
    if data.get("task") is not None:
        try:
            task = normalize_lamp_task(data["task"])
        except ValueError as err:
            raise loc.error("task", str(err)) from None
    golds = loc.get(data, "golds", list)
    out: dict[str, str] = {}
    for i, gold in enumerate(golds):
        rloc = Loc(path, i, unit="record")
        rloc.check(gold, dict, f"golds[{i}]")
        gid = str(rloc.get(gold, "id", (str, int), f"golds[{i}].id"))
        output = rloc.get(gold, "output", (str, int, float), f"golds[{i}].output")
        if gid in out:
            raise rloc.error(f"golds[{i}].id", f"repeated id {gid!r}")
        out[gid] = str(output)
    return task, out


def _questions_list(data: Any, loc: Loc) -> tuple[list, Optional[str]]:
    if isinstance(data, list):
        return data, None
    if isinstance(data, dict):
        # the Avocado (LaMP-6) script writes test questions as {"task": ..., "golds": [...]}
        for key in ("golds", "questions", "data", "instances"):
            if isinstance(data.get(key), list):
                task = data.get("task")
                return data[key], (normalize_lamp_task(task) if task is not None else None)
    raise loc.error(None, f"expected a JSON list of questions, got {type_name(data)}")


def _profile_item(entry: Any, spec: LampTask, loc: Loc, where: str) -> ProfileItem:
    loc.check(entry, dict, where)
    layout = spec
    if spec.alternative is not None and spec.text_field not in entry and spec.alternative.text_field in entry:
        layout = spec.alternative
    item_id = loc.get(entry, "id", (str, int), f"{where}.id")
    fields: dict[str, Any] = {}
    for name in layout.required:
        loc.get(entry, name, (str, int, float) if name in layout.numeric else str, f"{where}.{name}")
    for key, value in entry.items():
        if key in ("id", layout.text_field, "date"):
            continue
        if key in layout.numeric:
            value = parse_number(str(value), loc, f"{where}.{key}")
        fields[key] = value
    timestamp = parse_timestamp(entry.get("date"), loc, f"{where}.date") if "date" in entry else None
    return ProfileItem(id=str(item_id), text=entry[layout.text_field], fields=fields, timestamp=timestamp)


def read_lamp(
    questions_path: PathLike,
    outputs_path: Optional[PathLike] = None,
    task: Optional[str] = None,
) -> list[ProfileExample]:
    """Read a LaMP split: the questions and (optionally) their gold outputs.

    Questions file: a JSON list (the Avocado/LaMP-6 test file wraps it as
    ``{"task": ..., "golds": [...]}``, also accepted)::

        [{"id": "310",
          "input": "Generate a headline for the following article: ...",
          "profile": [{"id": "3100", "text": "...", "title": "...", "date": "2014-04-15"}, ...]},
         ...]

    Outputs file: ``{"task": "LaMP_4", "golds": [{"id": "310", "output": "..."}]}``.

    Profile entries per task (the id is always required; ``date`` is optional and
    parsed into :attr:`ProfileItem.timestamp`):

    | task | fields | ``ProfileItem.text`` |
    |---|---|---|
    | LaMP-1 citation identification | ``title``, ``abstract`` | ``abstract`` |
    | LaMP-2 movie tagging | ``description``, ``tag`` | ``description`` |
    | LaMP-2 news categorisation (first release) | ``text``, ``title``, ``category`` | ``text`` |
    | LaMP-3 product rating | ``text``, ``score`` (a number) | ``text`` |
    | LaMP-4 news headline | ``text``, ``title`` | ``text`` |
    | LaMP-5 scholarly title | ``title``, ``abstract`` | ``abstract`` |
    | LaMP-6 email subject | ``text``, ``title`` | ``text`` |
    | LaMP-7 tweet paraphrasing | ``text`` | ``text`` |

    Every other field of an entry is kept in :attr:`ProfileItem.fields` (LaMP-3
    ``score`` as a number). :func:`lamp_retrieval_text` rebuilds the text the
    official code retrieves over (e.g. ``"{title} {abstract}"`` for LaMP-1).

    Args:
        questions_path: ``{train,dev,test}_questions.json``.
        outputs_path: the matching ``*_outputs.json``; every question must then have
            a gold output (``ProfileExample.target``), and every gold output a question.
        task: ``"LaMP-4"`` / ``"LaMP_4"`` / ``4``. By default the outputs file's
            ``task``, else a ``LaMP_N`` / ``lamp4`` in the file name or its folders.

    Returns:
        One :class:`~personakit.types.ProfileExample` per question, in file order;
        the profile's ``user_id`` is the question's ``user_id`` when present, else
        its ``id`` (LaMP has one question per user in the user-based split).

    Raises:
        FileNotFoundError: a file does not exist.
        DataFormatError: invalid JSON, a missing/ill-typed field (``[12].profile[3].title``),
            a bad ``score`` or ``date``, a repeated question id, a question without a
            gold output, a gold output whose id is not a question's, or a task that cannot be determined or disagrees with the
            outputs file.

    Example:
        >>> examples = read_lamp("LaMP_4/dev_questions.json", "LaMP_4/dev_outputs.json")  # doctest: +SKIP
        >>> ex = examples[0]  # doctest: +SKIP
        >>> ex.task, ex.profile.items[0].fields["title"], ex.target  # doctest: +SKIP
        ('LaMP-4', 'Some headline', 'Another headline')
    """
    qloc = Loc(questions_path, None)
    data = load_json(questions_path, "LaMP questions file")
    try:
        questions, wrapped_task = _questions_list(data, qloc)
    except ValueError as err:
        if isinstance(err, DataFormatError):
            raise
        raise qloc.error("task", str(err)) from None
    golds: Optional[dict[str, str]] = None
    outputs_task = None
    if outputs_path is not None:
        outputs_task, golds = read_lamp_outputs(outputs_path)

    if task is not None:
        name = normalize_lamp_task(task)
        if outputs_task is not None and outputs_task != name:
            raise DataFormatError(outputs_path, None, "task", f"the outputs are for {outputs_task}, but task={name!r} was given")
    else:
        name = outputs_task or wrapped_task or _task_from_filename(questions_path)
        if name is None:
            raise qloc.error(None, "cannot tell the LaMP task: pass task='LaMP-N' (no outputs file and no LaMP_N in the path)")
    spec = LAMP_TASKS[name]

    examples: list[ProfileExample] = []
    seen: set[str] = set()
    for i, q in enumerate(questions):
        loc = Loc(questions_path, i, unit="record")
        where = f"[{i}]"
        loc.check(q, dict, where)
        qid = str(loc.get(q, "id", (str, int), f"{where}.id"))
        loc = Loc(questions_path, f"{i} (id {qid!r})", unit="record")
        if qid in seen:
            raise loc.error(f"{where}.id", f"repeated question id {qid!r}")
        seen.add(qid)
        text = loc.get(q, "input", str, f"{where}.input")
        if not text.strip():
            raise loc.error(f"{where}.input", "empty")
        profile = loc.get(q, "profile", list, f"{where}.profile")
        items = [_profile_item(entry, spec, loc, f"{where}.profile[{j}]") for j, entry in enumerate(profile)]
        user_id = loc.get(q, "user_id", (str, int), f"{where}.user_id", optional=True)
        target = None
        if golds is not None:
            if qid not in golds:
                raise DataFormatError(outputs_path, None, "golds", f"no gold output for question id {qid!r}")
            target = golds[qid]
        elif "output" in q:
            target = str(loc.get(q, "output", (str, int, float), f"{where}.output"))
        examples.append(
            ProfileExample(
                id=qid,
                task=name,
                input=text,
                profile=UserProfile(user_id=str(user_id if user_id is not None else qid), items=items),
                target=target,
            )
        )
    if golds is not None and len(golds) > len(seen):
        for index, gid in enumerate(golds):  # golds keep the file order, without repeats
            if gid not in seen:
                raise DataFormatError(
                    outputs_path,
                    index,
                    f"golds[{index}].id",
                    f"id {gid!r} is not a question id of {questions_path}: the outputs do not match the questions",
                    unit="record",
                )
    return examples


def lamp_retrieval_text(item: ProfileItem, task: str) -> str:
    """The text the official LaMP code retrieves over for a profile entry.

    LaMP-1/5 ``"{title} {abstract}"``, LaMP-2 movies ``"{description}"`` (news
    ``"{title} {text}"``), LaMP-3/6/7 ``"{text}"``, LaMP-4 ``"{title} {text}"``.

    Example:
        >>> item = ProfileItem(id="1", text="An abstract.", fields={"title": "A title"})
        >>> lamp_retrieval_text(item, "LaMP-1")
        'A title An abstract.'
    """
    spec = LAMP_TASKS[normalize_lamp_task(task)]
    if spec.alternative is not None and spec.alternative.required[-1] in item.fields:
        spec = spec.alternative
    parts = [item.text if f == spec.text_field else str(item.fields.get(f, "")) for f in spec.corpus_fields]
    return " ".join(p for p in parts if p)
