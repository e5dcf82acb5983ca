"""EmpatheticDialogues reader."""

from __future__ import annotations

import json

import pytest
from _shared import shared_data_path

from personakit.data import DataFormatError, dialogues_to_examples, read_empathetic_dialogues
from personakit.types import Turn

FIXED = (
    "conv_id,utterance_idx,prompt,utterance,label\n"
    "hit:1_conv:2,1,I lost my keys_comma_ again.,I lost my keys_comma_ again!,1\n"
    "hit:1_conv:2,2,I lost my keys_comma_ again.,\"Oh no, where?\",1\n"
    "hit:1_conv:2,3,I lost my keys_comma_ again.,At the park.,1\n"
    "hit:5_conv:9,2,My dog won a prize.,Congrats!,0\n"
    "hit:5_conv:9,1,My dog won a prize.,My dog won a prize today.,0\n"
)
LABELS = {"0": "proud", "1": "annoyed"}


def _write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _assert_located(err, path, line, field):
    assert (err.path, err.record, err.field) == (str(path), line, field)
    assert str(path) in str(err) and f"line {line}" in str(err)
    if field:
        assert repr(field) in str(err)


def test_fixed_layout_with_label_map_beside_the_file(tmp_path):
    path = _write(tmp_path, "fixed_valid.csv", FIXED)
    (tmp_path / "label_map_int_to_emotion.json").write_text(json.dumps(LABELS))
    d1, d2 = read_empathetic_dialogues(path)
    assert d1.id == "hit:1_conv:2"
    assert d1.turns == [
        Turn(speaker="speaker", text="I lost my keys, again!"),
        Turn(speaker="listener", text="Oh no, where?"),
        Turn(speaker="speaker", text="At the park."),
    ]
    assert d1.personas["speaker"].attributes == {"emotion": "annoyed"}
    assert d1.personas["listener"].attributes == {"emotion": "annoyed"}
    assert d1.metadata == {"source_file": "fixed_valid.csv", "situation": "I lost my keys, again.", "label": 1, "emotion": "annoyed"}
    # rows out of order are sorted by utterance_idx
    assert [t.speaker for t in d2.turns] == ["speaker", "listener"]
    assert d2.turns[0].text == "My dog won a prize today."
    assert d2.metadata["emotion"] == "proud"
    assert d1.participants == {}


def test_explicit_map_and_no_map(tmp_path):
    path = _write(tmp_path, "valid.csv", FIXED)
    [d1, _] = read_empathetic_dialogues(path, label_map={0: "joyful", 1: "sad"})
    assert d1.metadata["emotion"] == "sad"
    [d1, _] = read_empathetic_dialogues(path)  # no map beside the file: label only
    assert d1.metadata["label"] == 1 and "emotion" not in d1.metadata
    assert d1.personas["speaker"].attributes == {}
    with pytest.raises(FileNotFoundError, match="missing_map.json"):
        read_empathetic_dialogues(path, label_map=tmp_path / "missing_map.json")


def test_test_split_layout_without_label(tmp_path):
    text = "conv_id,utterance_idx,prompt,utterance\nhit:0_conv:0,1,A thing.,Hello,\nhit:0_conv:0,2,A thing.,Hi\n"
    path = _write(tmp_path, "t.csv", text.replace("Hello,", "Hello"))
    [d] = read_empathetic_dialogues(path)
    assert [t.text for t in d.turns] == ["Hello", "Hi"]
    assert d.personas["speaker"].attributes == {} and "label" not in d.metadata


ORIGINAL = (
    "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
    "hit:0_conv:1,1,sentimental,I remember going to the fireworks_comma_ with my best friend.,1,"
    "I remember going to see the fireworks with my best friend.,5|5|5_2|2|5,\n"
    "hit:0_conv:1,2,sentimental,I remember going to the fireworks_comma_ with my best friend.,0,"
    "Was this a friend you were in love with_comma_ or just a best friend?,5|5|5_2|2|5,\n"
    "hit:0_conv:1,3,sentimental,I remember going to the fireworks_comma_ with my best friend.,1,"
    "This was a best friend, but we grew apart.,5|5|5_2|2|5,\n"
    "hit:0_conv:1,4,sentimental,I remember going to the fireworks_comma_ with my best friend.,0,"
    "Where has she gone now?,5|5|5_2|2|5,,Where has she gone now?|I like cats_comma_ too.\n"
)


def test_original_release_layout(tmp_path):
    path = _write(tmp_path, "train.csv", ORIGINAL)
    [d] = read_empathetic_dialogues(path)
    assert d.id == "hit:0_conv:1"
    assert d.turns[1] == Turn(speaker="listener", text="Was this a friend you were in love with, or just a best friend?")
    # a raw comma inside the utterance is repaired by locating selfeval
    assert d.turns[2] == Turn(speaker="speaker", text="This was a best friend, but we grew apart.")
    # the candidates field is ignored
    assert d.turns[3] == Turn(speaker="listener", text="Where has she gone now?")
    assert d.personas["listener"].attributes == {"emotion": "sentimental"}
    assert d.participants == {"speaker": "1", "listener": "0"}
    assert d.metadata["situation"] == "I remember going to the fireworks, with my best friend."
    assert d.metadata["selfeval"] == "5|5|5_2|2|5"


@pytest.mark.parametrize(
    "replace, line, field, reason",
    [
        (("hit:1_conv:2,3,", "hit:1_conv:2,three,"), 4, "utterance_idx", "expected a number"),
        (("again.,At the park.,1", "again.,At the park.,x1"), 4, "label", "expected a number"),
        (("hit:1_conv:2,3,", "hit:1_conv:2,2,"), 4, "utterance_idx", "repeated utterance_idx 2"),
        (("hit:5_conv:9,2,My dog won a prize.,Congrats!,0", "hit:5_conv:9,2,My dog won a prize.,Congrats!,7"), 5, "label", "not in the emotion label map"),
        (("hit:1_conv:2,3,", "hit:1_conv:2,0,"), 4, "utterance_idx", "positive integer"),
    ],
)
def test_corrupted_rows_are_located(tmp_path, replace, line, field, reason):
    path = _write(tmp_path, "bad.csv", FIXED.replace(*replace))
    (tmp_path / "label_map_int_to_emotion.json").write_text(json.dumps(LABELS))
    with pytest.raises(DataFormatError) as info:
        read_empathetic_dialogues(path)
    _assert_located(info.value, path, line, field)
    assert reason in str(info.value)


def test_wrong_header_and_width(tmp_path):
    path = _write(tmp_path, "h.csv", FIXED.replace("conv_id,utterance_idx", "conversation,utterance_idx", 1))
    with pytest.raises(DataFormatError) as info:
        read_empathetic_dialogues(path)
    _assert_located(info.value, path, 1, "conv_id")
    path = _write(tmp_path, "w.csv", FIXED + "hit:9_conv:1,1,x\n")
    with pytest.raises(DataFormatError, match="expected 5 cells") as info:
        read_empathetic_dialogues(path)
    _assert_located(info.value, path, 7, None)
    path = _write(tmp_path, "o.csv", ORIGINAL.replace(",5|5|5_2|2|5,\nhit:0_conv:1,2", ",5|5|5_2|2|5\nhit:0_conv:1,2", 1))
    with pytest.raises(DataFormatError, match="expected 8 comma-separated fields") as info:
        read_empathetic_dialogues(path)
    _assert_located(info.value, path, 2, None)


@pytest.mark.real_data
def test_real_valid_and_test_splits():
    valid = read_empathetic_dialogues(shared_data_path("empatheticdialogues", "fixed_valid.csv"))
    test = read_empathetic_dialogues(shared_data_path("empatheticdialogues", "fixed_test.csv"))
    assert (len(valid), len(test)) == (2770, 2547)
    assert sum(len(d.turns) for d in valid) == 12078
    d = valid[0]
    assert d.id == "hit:3_conv:6"
    assert d.metadata["label"] == 2 and d.metadata["emotion"] == "terrified"
    assert d.personas["listener"].attributes == {"emotion": "terrified"}
    assert d.turns[1] == Turn(speaker="listener", text="Are you fine now?")
    assert d.turns[2].text == "Yeah,i'm doing alright now, but with minor injuries."
    assert len({x.metadata["emotion"] for x in valid}) == 32
    assert test[0].id == "hit:0_conv:0" and "emotion" not in test[0].metadata
    # GRAG Table 1: 5,738 (valid) and 5,259 (test) listener turns
    assert len(dialogues_to_examples(valid, "listener")) == 5738
    assert len(dialogues_to_examples(test, "listener")) == 5259
