r"""PFG-LaMP: a LaMP-style personalisation task built from Persuasion-for-Good (Wang et al., 2019).

LaMP (Salemi et al., 2023) asks a model to produce a user's output $y$ for an input
$x$ given the user's profile $P_u$ of earlier documents; the ROPG/RSPG retrievers
(Salemi et al., SIGIR 2024) choose which profile entries go into the prompt.  In
Persuasion-for-Good some persuaders took part in several dialogues, so their
earlier messages form a profile for their later replies.  The construction, exactly:

1. **Dialogues.** Every dialogue with a persuader id (``Dialogue.participants["persuader"]``,
   column ``B3`` of ``full_info.csv``) and a date.  The date is ``metadata["date"]``,
   else :func:`~personakit.data.parse_pfg_date` of the dialogue id
   (``20180904-045349_715_live`` → 2018-09-04 04:53:49).  Turns are merged per speaker
   (consecutive utterances of one speaker form one turn, joined by a space, as
   :func:`~personakit.data.merge_consecutive_turns`).  ``drop_flagged`` removes the
   ``BAD_`` dialogues.
2. **Users** are persuaders.  A user's dialogues are ordered by (date, id).
3. **Profile** of a user at dialogue $d$: the user's merged turns from every dialogue
   of that user with a date *strictly earlier* than $d$'s (a dialogue on the same
   second is not earlier, so no profile entry is ever as recent as the example),
   oldest first.  Each entry is a :class:`~personakit.types.ProfileItem` with
   ``id = "{dialogue_id}:{turn_index}"`` (``turn_index``: position of the turn's first
   utterance in ``Dialogue.turns``), ``text`` = the persuader's turn, ``timestamp`` =
   the dialogue's date, and ``fields = {"dialogue_id", "turn_index", "reply_to"}``
   (``reply_to``: the persuadee turn it answered, ``""`` for an opening turn).
   ``max_profile_items`` keeps only the most recent entries.  The persona of the
   profile is the persuader's survey record of dialogue $d$ (traits only; the
   donation is never part of a persona).
4. **Target dialogues** of a user: the dialogues with at least ``min_prior_dialogues``
   strictly earlier dialogues of that user.
5. **Examples**: one per persuader turn of a target dialogue that answers a persuadee
   turn (an opening persuader turn answers nothing and gives no example).  The
   ``input`` is the last ``history_turns`` merged turns before it, oldest first, one
   line each, ending with the persuadee's last turn::

       Persuadee: I'm doing well, thanks.
       Persuader: Have you heard of Save the Children?
       Persuadee: No, what is it?

   the ``target`` is the persuader's reply, ``id`` is ``"{dialogue_id}:{turn_index}"``
   of the reply, ``task`` is ``"PFG-LaMP"`` (EVAL: ROUGE-1, :mod:`personakit.eval.lamp`;
   prompts: :class:`~personakit.retrieval.lamp_prompts.LaMPPromptBuilder`).  The
   examples of one dialogue share one :class:`~personakit.types.UserProfile` object.
6. **Split** (``split_by``):

   * ``"time"`` (default, LaMP's per-user time-based separation): each user's target
     dialogues in (date, id) order; the last → ``test``, the one before → ``dev``, the
     others → ``train``.  A user with one target dialogue contributes only to test, with
     two to dev and test.  Every test profile therefore contains that user's dev and
     train dialogues, as in LaMP.
   * ``"global"``: all target dialogues in (date, id) order are cut by
     ``split_fractions`` (train, dev, test; default 0.8/0.1/0.1, rounded down for train
     and dev): every train dialogue is no later than every dev dialogue, which is no
     later than every test dialogue.
   * ``"user"`` (held-out users): the users with a target dialogue, sorted by id, are
     shuffled by ``random.Random(seed + 2)`` and cut by ``split_fractions`` (rounded
     down for train and dev, the rest to test); all target dialogues of a user go to
     that user's split.  No user appears in two splits, so a test profile belongs to a
     persuader that training never saw (profiles still hold only that user's strictly
     earlier dialogues).

7. **Subsampling** (for CPU-scale runs), applied after the split: ``max_users`` keeps a
   seeded random sample of the users with a target dialogue; ``max_examples_per_user``
   keeps, per user and per split, a seeded random sample of that many examples (in
   their original order).

Every split is sorted by (dialogue date, dialogue id, turn index).

On the released ``FullData`` (1,017 dialogues, 442 persuaders) with the defaults:
126 persuaders have an earlier dialogue and 316 target dialogues, split 131 / 59 / 126
dialogues (train/dev/test) from 38 / 59 / 126 users, giving 1,198 / 550 / 1,168 examples.

Example:
    >>> from personakit.types import Dialogue, Turn
    >>> def dlg(i, day):
    ...     return Dialogue(id=f"201808{day:02d}-120000_{i}_live", participants={"persuader": "u1", "persuadee": f"p{i}"},
    ...                     turns=[Turn(speaker="persuader", text=f"Hello {i}"), Turn(speaker="persuadee", text="Hi"),
    ...                            Turn(speaker="persuader", text=f"Please donate {i}")])
    >>> splits = build_pfg_lamp_task([dlg(0, 1), dlg(1, 2), dlg(2, 3)])
    >>> {k: len(v) for k, v in splits.items()}
    {'train': 0, 'dev': 1, 'test': 1}
    >>> ex = splits["test"][0]
    >>> ex.input, ex.target, [item.text for item in ex.profile.items]
    ('Persuader: Hello 2\nPersuadee: Hi', 'Please donate 2', ['Hello 0', 'Please donate 0', 'Hello 1', 'Please donate 1'])
"""

from __future__ import annotations

import math
import os
import random
from datetime import datetime
from pathlib import Path
from typing import Iterable, Literal, Optional, Sequence, Union

from pydantic import Field

from personakit.config import BaseConfig, Fraction
from personakit.data._split import cap_and_order
from personakit.data.examples import dialogues_to_examples, merge_consecutive_turns
from personakit.data.pfg import parse_pfg_date, read_persuasion_for_good
from personakit.types import Dialogue, Persona, ProfileExample, ProfileItem, UserProfile

__all__ = ["PFG_LAMP_TASK", "PFG_LAMP_SPLITS", "PFGLaMPConfig", "build_pfg_lamp_task", "format_pfg_history"]

PFG_LAMP_TASK = "PFG-LaMP"
PFG_LAMP_SPLITS = ("train", "dev", "test")
_AGENT = "persuader"


def format_pfg_history(turns: Iterable) -> str:
    """``"Persuadee: ...\\nPersuader: ..."``: one line per turn, the speaker capitalised.

    Example:
        >>> from personakit.types import Turn
        >>> format_pfg_history([Turn(speaker="persuader", text="Hi!"), Turn(speaker="persuadee", text="Hello.")])
        'Persuader: Hi!\\nPersuadee: Hello.'
    """
    return "\n".join(f"{t.speaker.capitalize()}: {' '.join(t.text.split())}" for t in turns)


def _dialogue_date(d: Dialogue) -> datetime:
    raw = d.metadata.get("date") or parse_pfg_date(d.id)
    if raw is None:
        raise ValueError(f"dialogue {d.id!r}: no date (field metadata['date'] is empty and the id carries no date)")
    if isinstance(raw, datetime):
        return raw
    try:
        return datetime.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(f"dialogue {d.id!r}: field metadata['date'] is {raw!r}, not an ISO date") from None


def _profile_items(d: Dialogue, date: datetime) -> list[ProfileItem]:
    items: list[ProfileItem] = []
    merged = merge_consecutive_turns(d.turns)
    for pos, (turn_index, turn) in enumerate(merged):
        if turn.speaker != _AGENT:
            continue
        reply_to = merged[pos - 1][1].text if pos > 0 else ""
        items.append(
            ProfileItem(
                id=f"{d.id}:{turn_index}",
                text=turn.text,
                fields={"dialogue_id": d.id, "turn_index": turn_index, "reply_to": reply_to},
                timestamp=date,
            )
        )
    return items


def _load(dialogues_or_folder: Union[str, os.PathLike, Iterable[Dialogue]], drop_flagged: bool) -> list[Dialogue]:
    if isinstance(dialogues_or_folder, (str, os.PathLike)):
        return read_persuasion_for_good(Path(dialogues_or_folder), drop_flagged=drop_flagged)
    dialogues = list(dialogues_or_folder)
    for i, d in enumerate(dialogues):
        if not isinstance(d, Dialogue):
            raise TypeError(f"dialogues[{i}] is a {type(d).__name__}, expected a Dialogue")
    if drop_flagged:
        dialogues = [d for d in dialogues if not d.metadata.get("flagged") and not d.id.startswith("BAD_")]
    return dialogues


def build_pfg_lamp_task(
    dialogues_or_folder: Union[str, os.PathLike, Iterable[Dialogue]],
    *,
    min_prior_dialogues: int = 1,
    history_turns: int = 3,
    max_profile_items: Optional[int] = None,
    split_by: Literal["time", "global", "user"] = "time",
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    max_users: Optional[int] = None,
    max_examples_per_user: Optional[int] = None,
    seed: int = 0,
    drop_flagged: bool = False,
) -> dict[str, list[ProfileExample]]:
    """Build the PFG-LaMP train/dev/test splits (construction in the module docstring).

    Args:
        dialogues_or_folder: Persuasion-for-Good dialogues (from
            :func:`~personakit.data.read_persuasion_for_good`), or the ``FullData``
            folder / ``full_dialog.csv`` to read them from.
        min_prior_dialogues: a dialogue is a target dialogue when its persuader has at
            least this many strictly earlier dialogues (>= 1).
        history_turns: merged turns of history in each input (>= 1), ending with the
            persuadee's last turn.
        max_profile_items: keep only the most recent entries of each profile.
        split_by: ``"time"`` (per user: last target dialogue → test, the one before
            → dev, the rest → train), ``"global"`` (one date cut over all target
            dialogues, by ``split_fractions``) or ``"user"`` (users shuffled and cut by
            ``split_fractions``: disjoint train / dev / test users).
        split_fractions: train/dev/test fractions for ``split_by="global"`` (of the
            target dialogues) and ``"user"`` (of the users).
        max_users: keep a random sample of this many users.
        max_examples_per_user: keep at most this many examples per user and split.
        seed: seed of the subsampling and of the user shuffle (``split_by="user"``).
        drop_flagged: skip the dialogues whose id starts with ``BAD_``.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}`` of
        :class:`~personakit.types.ProfileExample` with ``task="PFG-LaMP"``.

    Raises:
        ValueError: a bad option, or a dialogue without a usable date.
        FileNotFoundError, DataFormatError: from the reader, for a folder.
    """
    if min_prior_dialogues < 1:
        raise ValueError(f"min_prior_dialogues must be >= 1 (a profile needs an earlier dialogue), got {min_prior_dialogues}")
    if history_turns < 1:
        raise ValueError(f"history_turns must be >= 1, got {history_turns}")
    if max_profile_items is not None and max_profile_items < 1:
        raise ValueError(f"max_profile_items must be >= 1 or None, got {max_profile_items}")
    if split_by not in ("time", "global", "user"):
        raise ValueError(f"split_by must be 'time', 'global' or 'user', got {split_by!r}")
    fractions = tuple(float(f) for f in split_fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {split_fractions!r}")
    for name, value in (("max_users", max_users), ("max_examples_per_user", max_examples_per_user)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")

    dialogues = _load(dialogues_or_folder, drop_flagged)

    # users and their dialogues in (date, id) order
    by_user: dict[str, list[tuple[datetime, str, Dialogue]]] = {}
    seen_ids: set[str] = set()
    for d in dialogues:
        user = d.participants.get(_AGENT)
        if not user:
            continue
        if d.id in seen_ids:
            raise ValueError(f"dialogue id {d.id!r} appears twice")
        seen_ids.add(d.id)
        by_user.setdefault(user, []).append((_dialogue_date(d), d.id, d))
    for entries in by_user.values():
        entries.sort(key=lambda e: (e[0], e[1]))

    # target dialogues with their profiles
    targets: list[tuple[str, datetime, Dialogue, list[ProfileItem]]] = []  # (user, date, dialogue, profile)
    for user, entries in by_user.items():
        items_per_dialogue = [_profile_items(d, date) for date, _, d in entries]
        for j, (date, _, d) in enumerate(entries):
            earlier = [k for k in range(j) if entries[k][0] < date]
            if len(earlier) < min_prior_dialogues:
                continue
            profile = [item for k in earlier for item in items_per_dialogue[k]]
            if max_profile_items is not None:
                profile = profile[-max_profile_items:]
            targets.append((user, date, d, profile))

    # split the target dialogues
    split_of: dict[str, str] = {}
    if split_by == "time":
        per_user: dict[str, list[tuple[datetime, str]]] = {}
        for user, date, d, _ in targets:
            per_user.setdefault(user, []).append((date, d.id))
        for user, ds in per_user.items():
            ds.sort()
            for rank_from_end, (_, did) in enumerate(reversed(ds)):
                split_of[did] = "test" if rank_from_end == 0 else "dev" if rank_from_end == 1 else "train"
    elif split_by == "user":
        shuffled = sorted({user for user, *_ in targets})
        random.Random(seed + 2).shuffle(shuffled)
        n_train = int(math.floor(fractions[0] * len(shuffled)))
        n_dev = int(math.floor(fractions[1] * len(shuffled)))
        split_of_user = {user: "train" if i < n_train else "dev" if i < n_train + n_dev else "test"
                         for i, user in enumerate(shuffled)}
        for user, _, d, _ in targets:
            split_of[d.id] = split_of_user[user]
    else:
        ordered = sorted((date, d.id) for _, date, d, _ in targets)
        n_train = int(math.floor(fractions[0] * len(ordered)))
        n_dev = int(math.floor(fractions[1] * len(ordered)))
        for i, (_, did) in enumerate(ordered):
            split_of[did] = "train" if i < n_train else "dev" if i < n_train + n_dev else "test"

    users = sorted({user for user, *_ in targets})
    if max_users is not None and max_users < len(users):
        users = sorted(random.Random(seed).sample(users, max_users))
    keep_users = set(users)

    # examples
    grouped: dict[tuple[str, str], list[tuple[tuple, ProfileExample]]] = {}
    for user, date, d, profile in targets:
        if user not in keep_users:
            continue
        persona = d.personas.get(_AGENT)
        user_profile = UserProfile(
            user_id=user,
            items=profile,
            persona=Persona(sentences=list(persona.sentences), attributes=dict(persona.attributes)) if persona else None,
        )
        split = split_of[d.id]
        for rex in dialogues_to_examples([d], _AGENT, max_history=history_turns, include_user_persona=False):
            ex = ProfileExample(
                id=rex.id,
                task=PFG_LAMP_TASK,
                input=format_pfg_history(rex.history),
                profile=user_profile,
                target=rex.response,
            )
            grouped.setdefault((split, user), []).append(((date, d.id, rex.metadata["turn_index"]), ex))

    return cap_and_order(grouped, PFG_LAMP_SPLITS, max_examples_per_user, random.Random(seed + 1))


class PFGLaMPConfig(BaseConfig):
    """Options of :func:`build_pfg_lamp_task`, for a recipe file; ``build(dialogues_or_folder=...)`` runs it.

    Example:
        >>> cfg = PFGLaMPConfig(max_users=20, max_examples_per_user=5)
        >>> splits = cfg.build(dialogues_or_folder="persuasionforgood/FullData")  # doctest: +SKIP
    """

    _target_ = build_pfg_lamp_task
    min_prior_dialogues: int = Field(1, ge=1, description="Earlier dialogues a target dialogue's persuader needs.")
    history_turns: int = Field(3, ge=1, description="Merged turns of history in each input.")
    max_profile_items: Optional[int] = Field(None, ge=1, description="Keep only the most recent profile entries.")
    split_by: Literal["time", "global", "user"] = Field("time", description=(
        "Per-user time split, one global date cut, or disjoint users per split."))
    split_fractions: tuple[Fraction, Fraction, Fraction] = Field((0.8, 0.1, 0.1), description=(
        "Train/dev/test fractions (global: of the dialogues; user: of the users)."))
    max_users: Optional[int] = Field(None, ge=1, description="Keep a seeded random sample of this many users.")
    max_examples_per_user: Optional[int] = Field(None, ge=1, description="At most this many examples per user and split.")
    seed: int = Field(0, description="Seed of the subsampling and of the user shuffle.")
    drop_flagged: bool = Field(False, description="Skip the BAD_ dialogues.")
