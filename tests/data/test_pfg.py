"""Persuasion-for-Good reader."""

from __future__ import annotations

import pytest
from _shared import shared_data_path

from personakit.data import (DataFormatError, parse_pfg_date, participant_dialogues, read_persuasion_for_good,
                             unescape_pfg_text)
from personakit.types import Turn

DIALOG = (
    ",Unit,Turn,B4,B2\n"
    "0,Hello! Have you heard of Save the Children?,0,0,20180904-045349_715_live\n"
    "1,\"No, what is it?\",0,1,20180904-045349_715_live\n"
    "2,It helps children in need.,1,0,20180904-045349_715_live\n"
    "3,It works worldwide.,1,0,20180904-045349_715_live\n"
    "4,Sounds good.,1,1,20180904-045349_715_live\n"
    "5,Hi there.,0,0,BAD_20180807-204848_414_live\n"
    "6,Hello.,0,1,BAD_20180807-204848_414_live\n"
)
INFO = (
    "B2,B3,B4,B6,B7,extrovert.x,age.x,sex.x,income.x\n"
    "20180904-045349_715_live,user_585,0,0.0,11,3.2,34.0,Male,5\n"
    "20180904-045349_715_live,user_1810,1,0.5,11,4,50.0,Female,\n"
    "BAD_20180807-204848_414_live,user_585,0,1.0,2,3.2,34.0,Male,5\n"
    "BAD_20180807-204848_414_live,user_7,1,0.0,2,,,,\n"
)


def _folder(tmp_path, dialog=DIALOG, info=INFO):
    folder = tmp_path / "FullData"
    folder.mkdir()
    (folder / "full_dialog.csv").write_text(dialog, encoding="utf-8")
    if info is not None:
        (folder / "full_info.csv").write_text(info, encoding="utf-8")
    return folder


def _assert_located(err, path, line, field):
    assert (err.path, err.record, err.field) == (str(path), line, field)
    assert str(path) in str(err) and f"line {line}" in str(err)
    if field:
        assert repr(field) in str(err)


def test_small_folder_parsed_exactly(tmp_path):
    folder = _folder(tmp_path)
    d1, d2 = read_persuasion_for_good(folder)
    assert d1.id == "20180904-045349_715_live"
    assert d1.turns == [
        Turn(speaker="persuader", text="Hello! Have you heard of Save the Children?"),
        Turn(speaker="persuadee", text="No, what is it?"),
        Turn(speaker="persuader", text="It helps children in need."),
        Turn(speaker="persuader", text="It works worldwide."),
        Turn(speaker="persuadee", text="Sounds good."),
    ]
    assert d1.participants == {"persuader": "user_585", "persuadee": "user_1810"}
    # types per column: float, float, str, int; empty -> None
    assert d1.personas["persuader"].attributes == {"extrovert": 3.2, "age": 34.0, "sex": "Male", "income": 5}
    assert d1.personas["persuadee"].attributes == {"extrovert": 4.0, "age": 50.0, "sex": "Female", "income": None}
    assert isinstance(d1.personas["persuadee"].attributes["extrovert"], float)
    assert d1.metadata["date"] == "2018-09-04T04:53:49"
    assert d1.metadata["donation"] == {"persuader": 0.0, "persuadee": 0.5}
    assert d1.metadata["num_turns"] == {"persuader": 11, "persuadee": 11}
    assert "flagged" not in d1.metadata
    assert d2.metadata["flagged"] is True and d2.metadata["date"] == "2018-08-07T20:48:48"
    assert d2.personas["persuadee"].attributes == {"extrovert": None, "age": None, "sex": None, "income": None}
    # the same persuader across dialogues
    groups = participant_dialogues([d1, d2], speaker="persuader")
    assert {k: [d.id for d in v] for k, v in groups.items()} == {"user_585": [d1.id, d2.id]}
    assert set(participant_dialogues([d1, d2])) == {"user_585", "user_1810", "user_7"}
    # the dialogue CSV directly, explicit info file, drop flagged
    [only] = read_persuasion_for_good(folder / "full_dialog.csv", folder / "full_info.csv", drop_flagged=True)
    assert only.id == d1.id and only.participants == d1.participants


def test_without_info_file(tmp_path):
    folder = _folder(tmp_path, info=None)
    d1, _ = read_persuasion_for_good(folder)
    assert d1.participants == {} and d1.personas == {}
    with pytest.raises(FileNotFoundError, match="no_info.csv"):
        read_persuasion_for_good(folder, info_csv=folder / "no_info.csv")
    with pytest.raises(FileNotFoundError, match="full_dialog.csv"):
        read_persuasion_for_good(tmp_path)


def test_parse_date():
    assert parse_pfg_date("20180904-045349_715_live") == "2018-09-04T04:53:49"
    assert parse_pfg_date("20181399-045349_715_live") is None
    assert parse_pfg_date("abc") is None


@pytest.mark.parametrize(
    "replace, line, field, reason",
    [
        (("2,It helps", "2,It helps"), None, None, None),  # sanity: unchanged file reads
        (("It works worldwide.,1,0", "It works worldwide.,one,0"), 5, "Turn", "expected a number"),
        (("Sounds good.,1,1", "Sounds good.,1,2"), 6, "B4", "expected a role 0"),
        (("4,Sounds good.,", "4,,"), 6, "Unit", "empty utterance"),
        ((",Unit,Turn,B4,B2", ",Text,Turn,B4,B2"), 1, "Unit", "missing column"),
    ],
)
def test_corrupted_dialog_file(tmp_path, replace, line, field, reason):
    folder = _folder(tmp_path, dialog=DIALOG.replace(*replace))
    if reason is None:
        assert len(read_persuasion_for_good(folder)) == 2
        return
    with pytest.raises(DataFormatError) as info:
        read_persuasion_for_good(folder)
    _assert_located(info.value, folder / "full_dialog.csv", line, field)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "replace, line, field, reason",
    [
        (("user_1810,1,0.5,11", "user_1810,1,half,11"), 3, "B6", "expected a number"),
        (("user_7,1,0.0,2", "user_7,1,0.0,two"), 5, "B7", "expected a number"),
        (("user_1810,1,", "user_1810,0,"), 3, "B2", "two rows for role 0"),
        (("B2,B3,B4", "B2,user,B4"), 1, "B3", "missing column"),
        (("user_1810,1,", ",1,"), 3, "B3", "empty user id"),
    ],
)
def test_corrupted_info_file(tmp_path, replace, line, field, reason):
    folder = _folder(tmp_path, info=INFO.replace(*replace))
    with pytest.raises(DataFormatError) as info:
        read_persuasion_for_good(folder)
    _assert_located(info.value, folder / "full_info.csv", line, field)
    assert reason in str(info.value)


@pytest.mark.real_data
def test_real_full_data():
    folder = shared_data_path("persuasionforgood", "FullData")
    dialogues = read_persuasion_for_good(folder)
    assert len(dialogues) == 1017
    assert sum(len(d.turns) for d in dialogues) == 20932
    d = dialogues[0]
    assert d.id == "20180904-045349_715_live"
    assert d.turns[0] == Turn(speaker="persuader", text="Good morning. How are you doing today?")
    assert d.turns[1] == Turn(speaker="persuadee", text="Hi. I am doing good. How about you?")
    assert d.participants == {"persuader": "user_585", "persuadee": "user_1810"}
    assert d.metadata["date"] == "2018-09-04T04:53:49"
    pee = d.personas["persuadee"].attributes
    assert pee["age"] == 50.0 and pee["sex"] == "Female" and pee["ideology"] == "Conservative"
    assert pee["loyalty"] == pytest.approx(2.333333333) and len(pee) == 32
    assert sum(bool(x.metadata.get("flagged")) for x in dialogues) == 27
    persuaders = participant_dialogues(dialogues, speaker="persuader")
    sizes = sorted((len(v) for v in persuaders.values()), reverse=True)
    assert len(persuaders) == 701 and sizes[0] == 16 and sizes[11] == 7


def test_stray_backslash_escapes_are_undone(tmp_path):
    r"""Some release rows carry ``I\'m``, a doubled backslash and ``\t``; they are read as plain text by default."""
    dialog = DIALOG.replace("It helps children in need.", "It\\'s for nieces\\\\nephews.\\t").replace(
        "Sounds good.", "Sounds good!\\\\")
    folder = _folder(tmp_path, dialog=dialog)
    d1 = read_persuasion_for_good(folder)[0]
    texts = [t.text for t in d1.turns]
    assert "It's for nieces/nephews." in texts and "Sounds good!" in texts
    raw = [t.text for t in read_persuasion_for_good(folder, unescape=False)[0].turns]
    assert "It\\'s for nieces\\\\nephews.\\t" in raw and "Sounds good!\\\\" in raw
    assert unescape_pfg_text('He said \\"hi\\"') == 'He said "hi"'
    assert unescape_pfg_text("plain text") == "plain text"
    assert unescape_pfg_text("\\\\Save the Children") == "Save the Children"


@pytest.mark.real_data
def test_release_has_no_backslash_left():
    dialogues = read_persuasion_for_good(shared_data_path("persuasionforgood", "FullData"))
    assert not [t.text for d in dialogues for t in d.turns if "\\" in t.text]
    raw = read_persuasion_for_good(shared_data_path("persuasionforgood", "FullData"), unescape=False)
    assert sum("\\" in t.text for d in raw for t in d.turns) == 114
