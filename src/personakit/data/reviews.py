"""Review-history reader: one user per JSON line, with the user's past reviews."""

from __future__ import annotations

from typing import Any, Optional

from personakit.data._io import Loc, PathLike, iter_jsonl, parse_number, parse_timestamp, type_name
from personakit.types import ProfileItem, UserProfile

__all__ = ["REVIEW_KEYS", "read_review_histories"]

REVIEW_KEYS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "reviewerID", "reviewer_id", "userId", "user"),
    "history": ("history", "reviews", "profile", "items"),
    "item_id": ("parent_asin", "asin", "item_id", "product_id", "business_id", "review_id", "id"),
    "text": ("review_excerpt", "text", "review", "reviewText", "review_text", "body", "content"),
    "timestamp_ms": ("timestamp_ms",),
    "timestamp": ("timestamp", "time", "unixReviewTime", "date", "reviewTime"),
    "rating": ("rating", "overall", "score", "stars"),
}
"""Accepted key names, first match wins; ``timestamp_ms`` is milliseconds, ``unixReviewTime`` seconds."""

_CONSUMED = {k for key in ("item_id", "text", "timestamp_ms", "timestamp", "rating") for k in REVIEW_KEYS[key]}


def _first(obj: dict, names: tuple[str, ...]) -> Optional[str]:
    for name in names:
        if name in obj and obj[name] is not None:
            return name
    return None


def _item(entry: Any, loc: Loc, where: str, text_key: Optional[str], user_fields: dict[str, Any]) -> ProfileItem:
    loc.check(entry, dict, where)
    keys = (text_key,) if text_key else REVIEW_KEYS["text"]
    tkey = _first(entry, keys)
    if tkey is None:
        raise loc.error(f"{where}.text", f"missing review text (expected one of {', '.join(map(repr, keys))})")
    text = loc.check(entry[tkey], str, f"{where}.{tkey}")
    if not text.strip():
        raise loc.error(f"{where}.{tkey}", "empty review text")
    ikey = _first(entry, REVIEW_KEYS["item_id"])
    item_id = str(loc.check(entry[ikey], (str, int), f"{where}.{ikey}")) if ikey else None
    fields: dict[str, Any] = dict(user_fields)
    if item_id is not None:
        fields["item_id"] = item_id
    rkey = _first(entry, REVIEW_KEYS["rating"])
    if rkey is not None:
        value = entry[rkey]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise loc.error(f"{where}.{rkey}", f"expected a number, got {type_name(value)}")
        fields["rating"] = parse_number(str(value), loc, f"{where}.{rkey}")
    timestamp = None
    if "timestamp_ms" in entry and entry["timestamp_ms"] is not None:
        timestamp = parse_timestamp(entry["timestamp_ms"], loc, f"{where}.timestamp_ms", unit="ms")
    else:
        skey = _first(entry, REVIEW_KEYS["timestamp"])
        if skey is not None:
            unit = "s" if skey == "unixReviewTime" else "auto"
            timestamp = parse_timestamp(entry[skey], loc, f"{where}.{skey}", unit=unit)
    for key, value in entry.items():
        if key == tkey or key in _CONSUMED:
            continue
        fields[key] = value
    # keep the other text variants (a full review beside the excerpt)
    for key in REVIEW_KEYS["text"]:
        if key != tkey and key in entry:
            fields[key] = entry[key]
    return ProfileItem(id=item_id or "", text=text, fields=fields, timestamp=timestamp)


def read_review_histories(
    path: PathLike,
    *,
    include_heldout: bool = False,
    text_key: Optional[str] = None,
    merge_users: bool = False,
) -> list[UserProfile]:
    """Read per-user review histories from a JSON-lines file.

    Format (one user per line; the Amazon Reviews 2023 sample)::

        {"user_id": "AE7BV6IMNPZ3F266H7PXMH3BZQNQ", "category": "CDs_and_Vinyl",
         "history": [{"parent_asin": "B0B88XSYRM", "rating": 5.0,
                      "timestamp_ms": 1674956880303, "review_excerpt": "Always a bone ...",
                      "review_full": "...", "review_title": "...", "product": {...}}, ...],
         "heldout": {...same keys...}, "split": "training"}

    Common alternative key names are accepted (:data:`REVIEW_KEYS`): user
    ``reviewerID``; history ``reviews``; item ``asin`` / ``item_id``; text ``text`` /
    ``review`` / ``reviewText``; time ``timestamp`` / ``time`` / ``unixReviewTime``
    (seconds) / ``date`` (ISO), ``timestamp_ms`` (milliseconds); rating
    ``overall`` / ``stars``. Each review becomes a :class:`~personakit.types.ProfileItem`
    whose ``text`` is the review (``review_excerpt`` first), ``timestamp`` the
    review time, and ``fields`` the rest: ``item_id``, ``rating`` (a number), the
    other keys as given, and the user-level scalars (``category``, ``split``).
    Item ids repeated within a user get a ``#2``, ``#3``... suffix in
    ``ProfileItem.id`` (``fields["item_id"]`` keeps the original).

    Args:
        path: the ``.jsonl`` file.
        include_heldout: append the user's ``heldout`` review (when present) as the
            last item, marked ``fields["heldout"] = True``. Off by default so the
            held-out target never leaks into a profile.
        text_key: read the text from this key only (e.g. ``"review_full"``).
        merge_users: a user may fill several lines (the Amazon sample has 5 users
            with one line per category); by default each line is one profile, with
            ``True`` the lines of a user are concatenated into one profile (first
            line's position).

    Returns:
        One :class:`~personakit.types.UserProfile` per line (per user with
        ``merge_users``), items in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: invalid JSON, a record without a user id or history, a
            review without text, or a bad rating or timestamp (the message names the
            line and the field, e.g. ``line 3: field 'history[1].text': missing ...``).

    Example:
        >>> users = read_review_histories("amazon2023_sample/cds_movies_subset.jsonl")  # doctest: +SKIP
        >>> users[0].user_id, len(users[0].items), users[0].items[0].fields["rating"]  # doctest: +SKIP
        ('AE7BV6IMNPZ3F266H7PXMH3BZQNQ', 4, 5.0)
    """
    users: list[UserProfile] = []
    for lineno, obj in iter_jsonl(path, "review-history file"):
        loc = Loc(path, lineno)
        if not isinstance(obj, dict):
            raise loc.error(None, f"expected a JSON object, got {type_name(obj)}")
        ukey = _first(obj, REVIEW_KEYS["user_id"])
        if ukey is None:
            raise loc.error("user_id", f"missing user id (expected one of {', '.join(map(repr, REVIEW_KEYS['user_id']))})")
        user_id = str(loc.check(obj[ukey], (str, int), ukey))
        if not user_id.strip():
            raise loc.error(ukey, "empty user id")
        hkey = _first(obj, REVIEW_KEYS["history"])
        if hkey is None:
            raise loc.error("history", f"missing (expected one of {', '.join(map(repr, REVIEW_KEYS['history']))})")
        history = loc.check(obj[hkey], list, hkey)
        user_fields = {
            k: v
            for k, v in obj.items()
            if k not in (ukey, hkey, "heldout") and (v is None or isinstance(v, (str, int, float, bool)))
        }
        items = [_item(entry, loc, f"{hkey}[{i}]", text_key, user_fields) for i, entry in enumerate(history)]
        if include_heldout and obj.get("heldout") is not None:
            held = _item(obj["heldout"], loc, "heldout", text_key, user_fields)
            held.fields["heldout"] = True
            items.append(held)
        users.append(UserProfile(user_id=user_id, items=items))
    if merge_users:
        merged: dict[str, UserProfile] = {}
        for user in users:
            if user.user_id in merged:
                merged[user.user_id].items.extend(user.items)
            else:
                merged[user.user_id] = user
        users = list(merged.values())
    for user in users:  # unique item ids within a profile
        counts: dict[str, int] = {}
        for k, item in enumerate(user.items):
            base = item.id or str(k)
            counts[base] = counts.get(base, 0) + 1
            item.id = base if counts[base] == 1 else f"{base}#{counts[base]}"
    return users
