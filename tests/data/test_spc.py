"""Synthetic-Persona-Chat readers."""

from __future__ import annotations

import json

import pytest
from _shared import shared_data_path

from personakit.data import DataFormatError, read_spc_csv, read_spc_jsonl
from personakit.types import Turn


def _assert_located(err: DataFormatError, path, record, field) -> None:
    assert err.path == str(path)
    assert err.record == record
    assert err.field == field
    message = str(err)
    assert str(path) in message
    if record is not None:
        assert f"line {record}" in message
    if field is not None:
        assert repr(field) in message


RECORD = {
    "source_file": "SPC_transformed_data_test_00001.json",
    "user1_personas": ["I like dogs.", "  I live in Ohio. ", ""],
    "user2_personas": ["I am a chef."],
    "turns": [
        {"speaker": "User 1", "text": "Hi there!"},
        {"speaker": "User 2", "text": "Hello, I cook."},
        {"speaker": "user 1", "text": "Nice."},
    ],
}


def _write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_jsonl_small_file_parsed_exactly(tmp_path):
    second = {"user1_personas": [], "user2_personas": ["x."], "turns": []}
    path = _write_jsonl(tmp_path / "mini.jsonl", [RECORD, second])
    d1, d2 = read_spc_jsonl(str(path))
    assert d1.id == "SPC_transformed_data_test_00001"
    assert d1.turns == [
        Turn(speaker="User 1", text="Hi there!"),
        Turn(speaker="User 2", text="Hello, I cook."),
        Turn(speaker="User 1", text="Nice."),
    ]
    assert d1.personas["User 1"].sentences == ["I like dogs.", "I live in Ohio."]
    assert d1.personas["User 2"].sentences == ["I am a chef."]
    assert d1.metadata == {"source_file": "SPC_transformed_data_test_00001.json", "line": 1}
    # no source_file: the id comes from the file name and the line
    assert d2.id == "mini-2" and d2.turns == [] and d2.metadata["source_file"] == "mini.jsonl"


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (lambda r: r["turns"][1].update(speaker=3), "turns[1].speaker", "expected a string, got int"),
        (lambda r: r["turns"][1].update(speaker="User 3"), "turns[1].speaker", "expected 'User 1' or 'User 2'"),
        (lambda r: r["turns"][2].pop("text"), "turns[2].text", "missing"),
        (lambda r: r["turns"][0].update(text=["a"]), "turns[0].text", "expected a string, got list"),
        (lambda r: r.pop("user2_personas"), "user2_personas", "missing"),
        (lambda r: r["user1_personas"].append(7), "user1_personas[3]", "expected a string, got int"),
        (lambda r: r.update(turns="hi"), "turns", "expected a list, got string"),
    ],
)
def test_jsonl_corrupted_field_is_located(tmp_path, mutate, field, reason):
    bad = json.loads(json.dumps(RECORD))
    bad["source_file"] = "other.json"
    mutate(bad)
    path = _write_jsonl(tmp_path / "bad.jsonl", [RECORD, bad])
    with pytest.raises(DataFormatError) as info:
        read_spc_jsonl(path)
    _assert_located(info.value, path, 2, field)
    assert reason in str(info.value)


def test_jsonl_bad_json_line_and_duplicate_id(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(RECORD) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_spc_jsonl(path)
    _assert_located(info.value, path, 3, None)
    assert "invalid JSON" in str(info.value)

    dup = _write_jsonl(tmp_path / "dup.jsonl", [RECORD, RECORD])
    with pytest.raises(DataFormatError, match="duplicate dialogue id") as info:
        read_spc_jsonl(dup)
    _assert_located(info.value, dup, 2, "source_file")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        read_spc_jsonl(tmp_path / "absent.jsonl")
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        read_spc_csv(tmp_path / "absent.csv")


CSV_TEXT = '''user 1 personas,user 2 personas,Best Generated Conversation
"I like dogs.
I live in Ohio.","I am a chef.
I have a cat.","User 1: Hi there!
User 2: Hello, I cook.

(The next day)
User 1: Want a recipe?
User 2: Yes:
1 cup flour
2 eggs
The next day:
User 1: Thanks!"
"A.","B.","*User 1:* Hey! *
* * *
* * User 2: * * Hi, friend."
"A.","B.","Hi! I'm one.

Hello, I'm two.

Bye."
"A.","B.","Hello, I am user one.

User 2: Hi one.
User 1: Bye."
'''


def test_csv_small_file_with_quirks(tmp_path):
    path = tmp_path / "Synthetic-Persona-Chat_mini.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    d1, d2, d3, d4 = read_spc_csv(path)
    assert d1.id == "Synthetic-Persona-Chat_mini-00001"
    assert d1.personas["User 1"].sentences == ["I like dogs.", "I live in Ohio."]
    assert d1.personas["User 2"].sentences == ["I am a chef.", "I have a cat."]
    assert d1.turns == [
        Turn(speaker="User 1", text="Hi there!"),
        Turn(speaker="User 2", text="Hello, I cook."),
        Turn(speaker="User 1", text="Want a recipe?"),
        Turn(speaker="User 2", text="Yes:\n1 cup flour\n2 eggs"),
        Turn(speaker="User 1", text="Thanks!"),
    ]
    assert d1.metadata["stage_directions"] == ["(The next day)", "The next day:"]
    assert d1.metadata["line"] == 2 and d1.metadata["row"] == 1
    # markdown labels, a separator line
    assert d2.turns == [Turn(speaker="User 1", text="Hey!"), Turn(speaker="User 2", text="Hi, friend.")]
    assert d2.metadata["stage_directions"] == ["* * *"]
    # no labels at all: paragraphs alternate, flagged
    assert [(t.speaker, t.text) for t in d3.turns] == [
        ("User 1", "Hi! I'm one."),
        ("User 2", "Hello, I'm two."),
        ("User 1", "Bye."),
    ]
    assert d3.metadata["speakers_inferred"] is True
    # unlabelled opening before the first "User 2:" is User 1's turn
    assert [t.speaker for t in d4.turns] == ["User 1", "User 2", "User 1"]
    assert d4.turns[0].text == "Hello, I am user one."


def test_csv_wrong_header_and_row_width(tmp_path):
    path = tmp_path / "bad_header.csv"
    path.write_text('user 1 personas,user 2 personas,Conversation\n"A.","B.","User 1: hi"\n', encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_spc_csv(path)
    _assert_located(info.value, path, 1, "Best Generated Conversation")

    path = tmp_path / "bad_row.csv"
    path.write_text(CSV_TEXT.split("\n", 1)[0] + '\n"A.","User 1: hi"\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="expected 3 cells") as info:
        read_spc_csv(path)
    _assert_located(info.value, path, 2, None)


@pytest.mark.real_data
def test_real_jsonl_splits():
    test = read_spc_jsonl(shared_data_path("spc", "test.jsonl"))
    valid = read_spc_jsonl(shared_data_path("spc", "valid.jsonl"))
    assert (len(test), len(valid)) == (968, 1000)
    d = test[0]
    assert d.id == "SPC_transformed_data_test_00001"
    assert d.personas["User 1"].sentences[0] == "I just bought a brand new house."
    assert d.personas["User 2"].sentences[1] == "I have a turtle named timothy."
    assert d.turns[0] == Turn(speaker="User 1", text="Hi, I'm participant_1. What's your name?")
    assert d.turns[-1] == Turn(speaker="User 1", text="Bye.")
    assert len({x.id for x in test}) == 968
    assert all(set(x.speakers) <= {"User 1", "User 2"} for x in test)


@pytest.mark.real_data
def test_real_csv_matches_jsonl_personas():
    csv_test = read_spc_csv(shared_data_path("spc", "Synthetic-Persona-Chat_test.csv"))
    jsonl_test = read_spc_jsonl(shared_data_path("spc", "test.jsonl"))
    assert len(csv_test) == 968
    assert all(a.personas == b.personas for a, b in zip(csv_test, jsonl_test))
    # the CSV keeps placeholders the jsonl copy replaced
    assert csv_test[0].turns[0] == Turn(speaker="User 1", text="Hi, I'm [User 1's name]. What's your name?")
    assert len(csv_test[0].turns) == len(jsonl_test[0].turns) == 23
    hike = csv_test[24]
    assert hike.metadata["stage_directions"] == [
        "(The next day)",
        "(On the way to Mount Tammany)",
        "(At Mount Tammany)",
        "(After hiking)",
    ]
    valid = read_spc_csv(shared_data_path("spc", "Synthetic-Persona-Chat_valid.csv"))
    assert len(valid) == 1000
    # same speaker sequence as the jsonl copy for nearly every conversation
    jsonl_valid = read_spc_jsonl(shared_data_path("spc", "valid.jsonl"))
    same = sum(a.speakers == b.speakers and len(a.turns) == len(b.turns) for a, b in zip(valid, jsonl_valid))
    assert same >= 995
