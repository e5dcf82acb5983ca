r"""PFG-Questioner: a multi-questioner response task built from Persuasion-for-Good (Wang et al., 2019).

The questioner-aware responder (Zeng et al., 2024) learns how one *responder* answers
different *questioners*; its MQDialog benchmark is not reachable here
(:mod:`personakit.data.mqdialog` reads its format).  In Persuasion-for-Good some
persuaders took part in many dialogues, each time with a different persuadee whose
survey record (demographics, Big-Five, moral foundations, Schwartz values, decision
style) is known.  The construction, exactly:

1. **Dialogues.** :func:`~personakit.data.read_persuasion_for_good` of the ``FullData``
   folder (``drop_flagged`` removes the 27 ``BAD_`` dialogues; off by default, as in
   :mod:`~personakit.data.pfg_lamp`).  The date of a dialogue is ``metadata["date"]``, else
   the date in its id (``20180904-045349_715_live`` → 2018-09-04 04:53:49).
2. **Responders** are persuaders (``Dialogue.participants["persuader"]``): the
   ``num_responders`` (12) persuaders with the most dialogues, ties broken by user id
   (ascending string order).
3. **Questioners** are the persuadees of those responders' dialogues
   (``participants["persuadee"]``); a dialogue without a persuadee id is skipped.
4. **Examples**: :func:`~personakit.data.dialogues_to_examples` with agent
   ``"persuader"`` (consecutive utterances of one speaker merged), ``history_turns``
   merged turns of history ending with the persuadee's turn, and
   ``persona_from="user"``: ``persona`` (and ``user_persona``) is the **questioner's**
   survey record (the donation is never part of a persona); ``questioner_id`` is the
   persuadee's user id, ``responder_id`` the persuader's, ``agent`` ``"persuader"``;
   ``metadata`` holds ``turn_index``, ``date`` and the dialogue's scalar metadata.
5. **Split** (``split_by``):

   * ``"time"`` (default, imitating PFG-LaMP's per-user time split): each responder's
     dialogues in (date, id) order; the last → ``test``, the one before → ``dev``, the
     others → ``train``.  A responder with one dialogue contributes only to test, with
     two to dev and test.  Almost every persuadee takes part in one dialogue, so the
     test questioners are then (nearly all) **unseen** in training: the model answers
     them through its unknown-questioner fallback.
   * ``"turn"``: inside every dialogue, the responder's examples in turn order are cut by
     ``split_fractions`` (train, dev, test; example $i$ of $n$ goes to train when
     $i < f_0 n$, to dev when $i < (f_0 + f_1) n$, else to test): the early part of each
     conversation trains, the later part tests, and every test questioner has training
     examples (each split is still in the order of time within a dialogue).

6. **Subsampling** (CPU-scale runs), after the split: ``max_examples_per_responder``
   keeps, per responder and split, a seeded random sample of that many examples.

Every split is sorted by (dialogue date, dialogue id, turn index).

On the released ``FullData`` (1,017 dialogues) the 12 responders (16 to 7 dialogues each;
``user_858``, ``user_1810``, ``user_380``, ``user_569``, ``user_1504``, ``user_1363``,
``user_527``, ``user_874``, ``user_322``, ``user_1362``, ``user_1560``, ``user_197``) have 126
dialogues with 98 different persuadees.  With the defaults (``history_turns=4``):
``"time"`` gives 930 / 108 / 110 examples (train/dev/test) with 80 / 11 / 12 questioners,
only 3 of the 12 test questioners having training examples; ``"turn"`` gives
880 / 125 / 143 examples, all 98 questioners in every split.

Example:
    >>> from personakit.types import Dialogue, Turn
    >>> def dlg(i, day, persuader="u1"):
    ...     return Dialogue(id=f"201808{day:02d}-120000_{i}_live",
    ...                     participants={"persuader": persuader, "persuadee": f"p{i}"},
    ...                     turns=[Turn(speaker="persuader", text=f"Hello {i}"), Turn(speaker="persuadee", text="Hi"),
    ...                            Turn(speaker="persuader", text=f"Please donate {i}")])
    >>> splits = build_pfg_questioner_task([dlg(0, 1), dlg(1, 2), dlg(2, 3), dlg(3, 4, "u2")], num_responders=1)
    >>> {k: [ex.questioner_id for ex in v] for k, v in splits.items()}
    {'train': ['p0'], 'dev': ['p1'], 'test': ['p2']}
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from datetime import datetime
from typing import Iterable, Literal, Optional, Sequence, Union

from pydantic import Field

from personakit.config import BaseConfig, Fraction
from personakit.data._split import cap_and_order
from personakit.data.examples import dialogues_to_examples
from personakit.data.pfg_lamp import _dialogue_date, _load
from personakit.types import Dialogue, ResponseExample

__all__ = ["PFG_QUESTIONER_SPLITS", "PFGQuestionerConfig", "build_pfg_questioner_task", "top_persuaders"]

PFG_QUESTIONER_SPLITS = ("train", "dev", "test")
_AGENT, _USER = "persuader", "persuadee"


def top_persuaders(dialogues: Iterable[Dialogue], n: int = 12) -> list[tuple[str, int]]:
    """The ``n`` persuaders with the most dialogues, as ``(user id, dialogues)``; ties by user id.

    Example:
        >>> from personakit.types import Dialogue, Turn
        >>> ds = [Dialogue(id=str(i), turns=[Turn(speaker="persuader", text="hi")],
        ...                participants={"persuader": u}) for i, u in enumerate(["b", "a", "b", "c", "a"])]
        >>> top_persuaders(ds, 2)
        [('a', 2), ('b', 2)]
    """
    counts = Counter(d.participants.get(_AGENT) for d in dialogues if d.participants.get(_AGENT))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def build_pfg_questioner_task(
    dialogues_or_folder: Union[str, os.PathLike, Iterable[Dialogue]],
    *,
    num_responders: int = 12,
    history_turns: int = 4,
    split_by: Literal["time", "turn"] = "time",
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    max_examples_per_responder: Optional[int] = None,
    seed: int = 0,
    drop_flagged: bool = False,
) -> dict[str, list[ResponseExample]]:
    """Build the PFG-Questioner train/dev/test splits (construction in the module docstring).

    Args:
        dialogues_or_folder: Persuasion-for-Good dialogues, or the ``FullData`` folder /
            ``full_dialog.csv``.
        num_responders: how many of the most frequent persuaders are responders (>= 1).
        history_turns: merged turns of history per example (>= 1), ending with the persuadee's turn.
        split_by: ``"time"`` (per responder: last dialogue → test, the one before → dev, the
            rest → train) or ``"turn"`` (inside each dialogue, by ``split_fractions``).
        split_fractions: train/dev/test fractions for ``split_by="turn"``.
        max_examples_per_responder: keep at most this many examples per responder and split.
        seed: seed of the subsampling.
        drop_flagged: skip the ``BAD_`` dialogues.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}`` of :class:`~personakit.types.ResponseExample`.

    Raises:
        ValueError: a bad option, or a dialogue without a usable date.
        FileNotFoundError, DataFormatError: from the reader, for a folder.
    """
    if num_responders < 1:
        raise ValueError(f"num_responders must be >= 1, got {num_responders}")
    if history_turns < 1:
        raise ValueError(f"history_turns must be >= 1, got {history_turns}")
    if split_by not in ("time", "turn"):
        raise ValueError(f"split_by must be 'time' or 'turn', got {split_by!r}")
    fractions = tuple(float(f) for f in split_fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {split_fractions!r}")
    if max_examples_per_responder is not None and max_examples_per_responder < 1:
        raise ValueError(f"max_examples_per_responder must be >= 1 or None, got {max_examples_per_responder}")

    dialogues = _load(dialogues_or_folder, drop_flagged)
    seen: set[str] = set()
    for d in dialogues:
        if d.id in seen:
            raise ValueError(f"dialogue id {d.id!r} appears twice")
        seen.add(d.id)
    responders = {user for user, _ in top_persuaders(dialogues, num_responders)}

    by_responder: dict[str, list[tuple[datetime, str, Dialogue]]] = {}
    for d in dialogues:
        user = d.participants.get(_AGENT)
        if user in responders and d.participants.get(_USER):
            by_responder.setdefault(user, []).append((_dialogue_date(d), d.id, d))

    rows: dict[tuple[str, str], list[tuple[tuple, ResponseExample]]] = {}
    for responder, entries in sorted(by_responder.items()):
        entries.sort(key=lambda e: (e[0], e[1]))
        for rank, (date, did, d) in enumerate(entries):
            from_end = len(entries) - 1 - rank
            examples = dialogues_to_examples([d], _AGENT, max_history=history_turns, persona_from="user",
                                             include_user_persona=True)
            n = len(examples)
            for i, ex in enumerate(examples):
                if split_by == "time":
                    split = "test" if from_end == 0 else "dev" if from_end == 1 else "train"
                else:
                    split = "train" if i < fractions[0] * n else "dev" if i < (fractions[0] + fractions[1]) * n \
                        else "test"
                meta = {**ex.metadata, "date": date.isoformat()}
                ex = ex.model_copy(update={"metadata": meta})
                rows.setdefault((split, responder), []).append(((date, did, ex.metadata["turn_index"]), ex))

    return cap_and_order(rows, PFG_QUESTIONER_SPLITS, max_examples_per_responder, random.Random(seed))


class PFGQuestionerConfig(BaseConfig):
    """Options of :func:`build_pfg_questioner_task`, for a recipe file; ``build(dialogues_or_folder=...)`` runs it.

    Example:
        >>> PFGQuestionerConfig(split_by="turn").num_responders
        12
    """

    _target_ = build_pfg_questioner_task
    num_responders: int = Field(12, ge=1, description="The most frequent persuaders that are responders.")
    history_turns: int = Field(4, ge=1, description="Merged turns of history per example.")
    split_by: Literal["time", "turn"] = Field("time", description="Per-responder dialogue-date split, or within dialogues.")
    split_fractions: tuple[Fraction, Fraction, Fraction] = Field((0.7, 0.1, 0.2), description="Train/dev/test fractions (turn).")
    max_examples_per_responder: Optional[int] = Field(None, ge=1, description="At most this many examples per responder and split.")
    seed: int = Field(0, description="Seed of the subsampling.")
    drop_flagged: bool = Field(False, description="Skip the BAD_ dialogues.")
