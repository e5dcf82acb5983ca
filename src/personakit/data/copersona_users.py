r"""Sparse conversational users for CoPersona, built from Persuasion-for-Good (or review histories).

CoPersona (Zhang, Wang et al., KDD 2026) personalises for users whose history is thin
and skewed toward some facets.  Persuasion-for-Good (Wang et al., 2019) has such users:
most workers took part in one or two dialogues, as persuader or persuadee.  The
construction of :func:`build_pfg_users`, exactly:

1. **Dialogues** are read with :func:`~personakit.data.read_persuasion_for_good`; the
   date of a dialogue is ``metadata["date"]``, else the date in its id (as PFG-LaMP).
   Consecutive utterances of one speaker are merged into one turn
   (:func:`~personakit.data.merge_consecutive_turns`).
2. **Users** are participants (``Dialogue.participants``, either role; the id is the
   worker id, so one user can be persuader in one dialogue and persuadee in another)
   with at least ``min_dialogues`` dialogues.  A user's dialogues are ordered by
   (date, id).
3. **Held-out dialogues** (time split, as the paper's review protocol: the most recent
   interactions are targets): the last dialogue is the *test* dialogue; when the user
   has at least 3 dialogues the one before it is the *train* dialogue.
4. **History** (the profile): the user's own merged turns in the remaining, earlier
   dialogues, oldest first, keeping the most recent ``max_profile_items``
   (:class:`~personakit.types.ProfileItem` ``id = "{dialogue_id}:{turn_index}"``,
   ``timestamp`` = the dialogue date, ``fields = {"dialogue_id", "role"}``).  No item of a
   held-out dialogue is ever in the history.  The history is sparse (a few
   utterances) and facet-biased (persuaders talk about the charity; persuadees about
   themselves).
5. **Examples**: one :class:`~personakit.types.ResponseExample` per merged turn of the
   user in a held-out dialogue that answers the other participant: ``history`` = the
   last ``history_turns`` merged turns before it (speakers ``"persuader"`` /
   ``"persuadee"``), ``response`` = the user's turn, ``agent`` = the user's role,
   ``user_id`` = the user, ``id = "{dialogue_id}:{turn_index}"``.
   ``max_examples_per_user`` keeps a seeded sample per user and split.
6. ``max_users`` keeps a seeded sample of the users (after step 2).

:func:`build_review_users` does the same for review histories
(:func:`~personakit.data.read_review_histories`, e.g. Amazon Reviews 2023): items sorted
by time, the last review is the test target, the one before the train target when
there are at least 3, the rest (most recent ``max_profile_items``) the history; the
input names the item and the rating.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Optional, Sequence, Union

from personakit.data.examples import merge_consecutive_turns
from personakit.data.pfg_lamp import _dialogue_date, _load
from personakit.types import Dialogue, ProfileItem, ResponseExample, Turn, UserProfile

__all__ = ["CoPersonaUsers", "build_pfg_users", "build_review_users"]


@dataclass
class CoPersonaUsers:
    """Users (with their history) and train / test examples.

    Attributes:
        users: one :class:`~personakit.types.UserProfile` per user (history only).
        train: examples from each user's train dialogue / review.
        test: examples from each user's last dialogue / review.
    """

    users: list[UserProfile]
    train: list[ResponseExample] = field(default_factory=list)
    test: list[ResponseExample] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        """Users, examples, mean history items per user and mean target length (characters)."""
        n_items = [len(u.items) for u in self.users]
        lengths = [len(ex.response) for ex in self.test]
        return {"users": len(self.users), "train": len(self.train), "test": len(self.test),
                "profile_size": sum(n_items) / max(1, len(n_items)),
                "output_length": sum(lengths) / max(1, len(lengths))}


def _sample(rows: list, k: Optional[int], rng: random.Random) -> list:
    if k is None or len(rows) <= k:
        return rows
    keep = sorted(rng.sample(range(len(rows)), k))
    return [rows[i] for i in keep]


def build_pfg_users(dialogues_or_folder: Union[str, "os.PathLike[str]", Iterable[Dialogue]], *, min_dialogues: int = 2,
                    max_profile_items: Optional[int] = 8, history_turns: int = 3,
                    max_users: Optional[int] = None, max_examples_per_user: Optional[int] = None,
                    seed: int = 0, drop_flagged: bool = False) -> CoPersonaUsers:
    """Build the CoPersona conversational-user benchmark (construction in the module docstring).

    Example:
        >>> from personakit.types import Dialogue, Turn
        >>> def dlg(i, day):
        ...     return Dialogue(id=f"201808{day:02d}-120000_{i}_live", participants={"persuader": "u1", "persuadee": f"p{i}"},
        ...                     turns=[Turn(speaker="persuadee", text=f"Hi {i}"), Turn(speaker="persuader", text=f"Donate {i}?")])
        >>> data = build_pfg_users([dlg(0, 1), dlg(1, 2), dlg(2, 3)])
        >>> [u.user_id for u in data.users], [it.text for it in data.users[0].items]
        (['u1'], ['Donate 0?'])
        >>> [(ex.response, ex.agent) for ex in data.train], [ex.response for ex in data.test]
        ([('Donate 1?', 'persuader')], ['Donate 2?'])
    """
    if min_dialogues < 2:
        raise ValueError(f"min_dialogues must be >= 2 (a history and a test dialogue), got {min_dialogues}")
    if history_turns < 1:
        raise ValueError(f"history_turns must be >= 1, got {history_turns}")
    dialogues = _load(dialogues_or_folder, drop_flagged)
    by_user: dict[str, list[tuple[datetime, str, Dialogue, str]]] = {}
    for d in dialogues:
        date = _dialogue_date(d)
        for role, user in d.participants.items():
            if user:
                by_user.setdefault(user, []).append((date, d.id, d, role))
    users = sorted(u for u, ds in by_user.items() if len(ds) >= min_dialogues)
    if max_users is not None and max_users < len(users):
        users = sorted(random.Random(seed).sample(users, max_users))
    rng = random.Random(seed + 1)
    out = CoPersonaUsers(users=[])
    for user in users:
        entries = sorted(by_user[user], key=lambda e: (e[0], e[1]))
        held = {"test": entries[-1]}
        if len(entries) >= 3:
            held["train"] = entries[-2]
        history_entries = entries[: len(entries) - len(held)]
        items: list[ProfileItem] = []
        for date, did, d, role in history_entries:
            for turn_index, turn in merge_consecutive_turns(d.turns):
                if turn.speaker == role:
                    items.append(ProfileItem(id=f"{did}:{turn_index}", text=turn.text, timestamp=date,
                                             fields={"dialogue_id": did, "role": role}))
        if max_profile_items is not None:
            items = items[-max_profile_items:]
        out.users.append(UserProfile(user_id=user, items=items))
        for split, (date, did, d, role) in held.items():
            merged = merge_consecutive_turns(d.turns)
            rows = []
            for pos, (turn_index, turn) in enumerate(merged):
                if turn.speaker != role or pos == 0:
                    continue
                history = [Turn(speaker=t.speaker, text=t.text) for _, t in merged[max(0, pos - history_turns):pos]]
                rows.append(ResponseExample(id=f"{did}:{turn_index}", history=history, response=turn.text, agent=role,
                                            user_id=user, dialogue_id=did,
                                            metadata={"date": date.isoformat(), "role": role}))
            getattr(out, split).extend(_sample(rows, max_examples_per_user, rng))
    return out


def build_review_users(profiles: Sequence[UserProfile], *, max_profile_items: Optional[int] = 8,
                       min_items: int = 2) -> CoPersonaUsers:
    """Users from review histories (one :class:`~personakit.types.UserProfile` per reviewer).

    Example:
        >>> from personakit.types import ProfileItem, UserProfile
        >>> p = UserProfile(user_id="r", items=[ProfileItem(id=str(i), text=f"review {i}", fields={"item_id": f"B{i}",
        ...                 "rating": 4.0}) for i in range(3)])
        >>> data = build_review_users([p])
        >>> [it.text for it in data.users[0].items], data.test[0].response, data.test[0].history[0].text
        (['review 0'], 'review 2', 'Write your review of item B2 (rating 4.0).')
    """
    if min_items < 2:
        raise ValueError(f"min_items must be >= 2, got {min_items}")
    out = CoPersonaUsers(users=[])
    for p in profiles:
        items = sorted(p.items, key=lambda it: (it.timestamp is None, it.timestamp or datetime.min))
        if len(items) < min_items:
            continue
        held = {"test": items[-1]}
        if len(items) >= 3:
            held["train"] = items[-2]
        hist = items[: len(items) - len(held)]
        if max_profile_items is not None:
            hist = hist[-max_profile_items:]
        out.users.append(UserProfile(user_id=p.user_id, items=hist, persona=p.persona))
        for split, it in held.items():
            item, rating = it.fields.get("item_id", it.id), it.fields.get("rating")
            prompt = f"Write your review of item {item}" + (f" (rating {rating})." if rating is not None else ".")
            getattr(out, split).append(ResponseExample(id=f"{p.user_id}:{it.id}", history=[Turn(speaker="user", text=prompt)],
                                                       response=it.text, agent="reviewer", user_id=p.user_id))
    return out
