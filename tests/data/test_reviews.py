"""Review-history reader."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from _shared import shared_data_path

from personakit.data import DataFormatError, read_review_histories

USER = {
    "user_id": "U1",
    "category": "CDs_and_Vinyl",
    "history": [
        {"parent_asin": "B01", "rating": 5.0, "timestamp_ms": 1674956880303, "review_excerpt": "Great album.", "review_full": "Great album. Really."},
        {"parent_asin": "B01", "rating": 3, "timestamp_ms": 1674956880304, "review_excerpt": "Same item again."},
    ],
    "heldout": {"parent_asin": "B09", "rating": 4.0, "timestamp_ms": 1676931710801, "review_excerpt": "Held out."},
    "split": "training",
}
ALT = {
    "reviewerID": "U2",
    "reviews": [
        {"asin": "X1", "overall": "4", "unixReviewTime": 1400000000, "reviewText": "Nice."},
        {"item_id": "X2", "text": "Fine.", "time": "2014-05-13"},
        {"item_id": "X3", "review": "Meh.", "timestamp": 1400000000000},
    ],
}


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_small_file_parsed_exactly(tmp_path):
    path = _write(tmp_path / "h.jsonl", [USER, ALT])
    u1, u2 = read_review_histories(path)
    assert u1.user_id == "U1" and u1.persona is None
    a, b = u1.items
    assert (a.id, a.text, b.id, b.text) == ("B01", "Great album.", "B01#2", "Same item again.")
    assert a.fields == {
        "category": "CDs_and_Vinyl",
        "split": "training",
        "item_id": "B01",
        "rating": 5.0,
        "review_full": "Great album. Really.",
    }
    assert b.fields["rating"] == 3 and b.fields["item_id"] == "B01"
    assert a.timestamp == datetime(2023, 1, 29, 1, 48, 0, 303000, tzinfo=timezone.utc)
    # alternative key names
    assert u2.user_id == "U2"
    assert [(i.id, i.text) for i in u2.items] == [("X1", "Nice."), ("X2", "Fine."), ("X3", "Meh.")]
    assert u2.items[0].fields == {"item_id": "X1", "rating": 4}
    assert u2.items[0].timestamp == datetime.fromtimestamp(1400000000, tz=timezone.utc)
    assert u2.items[1].timestamp == datetime(2014, 5, 13, tzinfo=timezone.utc)
    assert u2.items[2].timestamp == u2.items[0].timestamp  # milliseconds detected


def test_heldout_text_key_and_merge(tmp_path):
    second = dict(USER, category="Movies_and_TV", history=[USER["history"][0]])
    path = _write(tmp_path / "h.jsonl", [USER, second])
    [with_held, _] = read_review_histories(path, include_heldout=True)
    assert with_held.items[-1].text == "Held out." and with_held.items[-1].fields["heldout"] is True
    [full] = read_review_histories(_write(tmp_path / "f.jsonl", [second]), text_key="review_full")
    assert full.items[0].text == "Great album. Really." and full.items[0].fields["review_excerpt"] == "Great album."
    with pytest.raises(DataFormatError, match="missing review text") as info:
        read_review_histories(path, text_key="review_full")  # the 2nd review has no full text
    assert (info.value.record, info.value.field) == (1, "history[1].text")
    merged = read_review_histories(path, merge_users=True)
    assert len(merged) == 1
    assert [i.id for i in merged[0].items] == ["B01", "B01#2", "B01#3"]
    assert [i.fields["category"] for i in merged[0].items] == ["CDs_and_Vinyl", "CDs_and_Vinyl", "Movies_and_TV"]

@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (lambda r: r.pop("user_id"), "user_id", "missing user id"),
        (lambda r: r["history"][1].pop("review_excerpt"), "history[1].text", "missing review text"),
        (lambda r: r["history"][0].update(review_excerpt="  "), "history[0].review_excerpt", "empty review text"),
        (lambda r: r["history"][1].update(rating="five"), "history[1].rating", "expected a number"),
        (lambda r: r["history"][0].update(timestamp_ms="soon"), "history[0].timestamp_ms", "expected a date"),
        (lambda r: r.update(history="none"), "history", "expected a list"),
        (lambda r: r.pop("history"), "history", "missing"),
    ],
)
def test_corrupted_records_are_located(tmp_path, mutate, field, reason):
    bad = json.loads(json.dumps(USER))
    mutate(bad)
    path = _write(tmp_path / "bad.jsonl", [ALT, bad])
    with pytest.raises(DataFormatError) as info:
        read_review_histories(path)
    err = info.value
    assert (err.path, err.record, err.field) == (str(path), 2, field)
    assert str(path) in str(err) and "line 2" in str(err) and repr(field) in str(err)
    assert reason in str(err)


def test_bad_json_and_missing_file(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(USER) + "\n{oops\n")
    with pytest.raises(DataFormatError, match="line 2: invalid JSON"):
        read_review_histories(path)
    with pytest.raises(FileNotFoundError, match="gone.jsonl"):
        read_review_histories(tmp_path / "gone.jsonl")


@pytest.mark.real_data
def test_real_amazon_sample():
    path = shared_data_path("amazon2023_sample", "cds_movies_subset.jsonl")
    users = read_review_histories(path)
    assert len(users) == 60
    assert all(len(u.items) == 4 for u in users)
    first = users[0]
    assert first.user_id == "AE7BV6IMNPZ3F266H7PXMH3BZQNQ"
    item = first.items[0]
    assert item.id == "B0B88XSYRM" and item.fields["rating"] == 5.0
    assert item.text.startswith("Always a bone of contention among fans")
    assert item.timestamp == datetime.fromtimestamp(1674956880.303, tz=timezone.utc)
    assert item.fields["category"] == "CDs_and_Vinyl" and item.fields["product"]["title"] == "Elvis On Tour"
    assert len(read_review_histories(path, merge_users=True)) == 55
    held = read_review_histories(path, include_heldout=True)[0]
    assert len(held.items) == 5 and held.items[-1].id == "B000002X35"
