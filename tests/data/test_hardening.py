"""Hardening of every reader: non-UTF-8 bytes, truncated files, BOM, duplicates (issue 23).

Each format has a small valid file built here; the tests corrupt it (a byte that is
not UTF-8, a cut in the middle of a line, a BOM) and check the reader either raises a
:class:`DataFormatError` naming the file and the line, or (BOM) loads the same data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personakit.data import (
    DataFormatError,
    load_emotion_label_map,
    read_convai2,
    read_empathetic_dialogues,
    read_lamp,
    read_mqdialog,
    read_persuasion_for_good,
    read_review_histories,
    read_spc_csv,
    read_spc_jsonl,
)
from personakit.data.lamp import read_lamp_outputs
from personakit.data.pfg import read_pfg_info

# ----------------------------------------------------------------- valid small files
SPC_JSONL = "".join(
    json.dumps(
        {
            "id": f"c{i}",
            "user1_personas": ["I like dogs.", "I live in Ohio."],
            "user2_personas": ["I am a chef."],
            "turns": [{"speaker": "User 1", "text": f"Hi number {i}!"}, {"speaker": "User 2", "text": "Hello there."}],
        }
    )
    + "\n"
    for i in range(3)
)


def _spc_csv(n: int) -> str:
    rows = ["user 1 personas,user 2 personas,Best Generated Conversation"]
    for i in range(n):
        turns = "\r\n".join(f"User {1 + t % 2}: turn {t} of conversation {i}, with a comma." for t in range(6))
        rows.append(f'"I like dogs.\r\nI live in Ohio {i}.","I am a chef.\r\nI have a cat.","{turns}"')
    return "\r\n".join(rows) + "\r\n"  # the official files end their rows with CRLF


CONVAI2 = (
    "1 your persona: i like to remodel homes.\n"
    "2 partner's persona: i love cats.\n"
    "3 hi , how are you doing ?\tgood ! just got back from hunting .\t\tno .|good !\n"
    "4 what did you hunt ?\tdeer , it was a good day .\n"
    "1 your persona: i am a nurse.\n"
    "2 __SILENCE__\thello , i work nights .\n"
    "3 cool , me too .\tnice !\n"
    "4 what do you do for fun ?\ti read books about whales .\n"
)

ED_FIXED = (
    "conv_id,utterance_idx,prompt,utterance,label\n"
    "hit:3_conv:6,1,I was scared_comma_ really,I was leaving work and heard a noise,2\n"
    "hit:3_conv:6,2,I was scared_comma_ really,Are you fine now?,2\n"
    "hit:3_conv:7,1,My dog died,My dog died last week,5\n"
    "hit:3_conv:7,2,My dog died,I am so sorry to hear that,5\n"
)

ED_ORIGINAL = (
    "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
    "hit:0_conv:1,1,sentimental,I remember going to the fireworks,1,I remember going to see the fireworks,5|5|5_2|2|5,\n"
    "hit:0_conv:1,2,sentimental,I remember going to the fireworks,0,Was this a friend you were in love with,5|5|5_2|2|5,\n"
    "hit:0_conv:2,1,afraid,It was a dark night,2,It was so dark outside,4|4|4_3|3|3,\n"
    "hit:0_conv:2,2,afraid,It was a dark night,3,That sounds scary,4|4|4_3|3|3,\n"
)

LABEL_MAP = json.dumps({str(i): name for i, name in enumerate(["sad", "angry", "terrified", "joyful", "proud", "devastated"])}, indent=1) + "\n"

# Like the release: an unnamed index column restarting per dialogue, no line break after the last row.
PFG_DIALOG = (
    ",Unit,Turn,B4,B2\n"
    "0,Hello! Have you heard of Save the Children?,0,0,20180904-045349_715_live\n"
    '1,"No, what is it?",0,1,20180904-045349_715_live\n'
    "2,It helps children in need.,1,0,20180904-045349_715_live\n"
    "3,Sounds good.,1,1,20180904-045349_715_live\n"
    "0,Hi there.,0,0,20180717-200206_41_live\n"
    "1,Hello.,0,1,20180717-200206_41_live\n"
    "2,Would you donate?,1,0,20180717-200206_41_live\n"
    "3,No problem have a good night,1,1,20180717-200206_41_live"
)

PFG_INFO = (
    "B2,B3,B4,B6,B7,extrovert.x,age.x,sex.x\n"
    "20180904-045349_715_live,user_585,0,0.0,11,3.2,34.0,Male\n"
    "20180904-045349_715_live,user_1810,1,0.5,11,4,50.0,Female\n"
    "20180717-200206_41_live,user_585,0,1.0,2,3.2,34.0,Male\n"
    "20180717-200206_41_live,user_7,1,0.0,2,2.6,41.0,Female\n"
)

LAMP_QUESTIONS = json.dumps(
    [
        {"id": str(310 + i), "input": f"Paraphrase the following tweet: hello {i}", "profile": [{"id": f"{i}0", "text": "a tweet"}]}
        for i in range(3)
    ],
    indent=1,
) + "\n"
LAMP_OUTPUTS = json.dumps({"task": "LaMP_7", "golds": [{"id": str(310 + i), "output": f"hi {i}"} for i in range(3)]}, indent=1) + "\n"

REVIEWS = "".join(
    json.dumps({"user_id": f"u{i}", "history": [{"item_id": "B01", "rating": 5, "timestamp": 1700000000, "text": "great"}]})
    + "\n"
    for i in range(3)
)

MQ_RECORDS = [
    {"id": f"d{i}", "responder": "Sheldon", "questioner": "Penny",
     "turns": [{"speaker": "Penny", "text": f"Hi {i}."}, {"speaker": "Sheldon", "text": "Hello."}]}
    for i in range(3)
]
MQ_JSONL = "".join(json.dumps(r) + "\n" for r in MQ_RECORDS)
MQ_JSON = json.dumps(MQ_RECORDS, indent=1) + "\n"


def _read_lamp_questions(path: Path) -> Any:
    return read_lamp(path, task="LaMP-7")


# name -> (file name, content, reader); one entry per format (and per file of a two-file format)
FORMATS: dict[str, tuple[str, str, Callable[[Path], Any]]] = {
    "spc_jsonl": ("test.jsonl", SPC_JSONL, read_spc_jsonl),
    "spc_csv": ("Synthetic-Persona-Chat_test.csv", _spc_csv(3), read_spc_csv),
    "convai2": ("valid_self_original.txt", CONVAI2, read_convai2),
    "ed_fixed": ("fixed_valid.csv", ED_FIXED, lambda p: read_empathetic_dialogues(p, label_map={i: str(i) for i in range(6)})),
    "ed_original": ("valid.csv", ED_ORIGINAL, read_empathetic_dialogues),
    "ed_label_map": ("label_map_int_to_emotion.json", LABEL_MAP, load_emotion_label_map),
    "pfg_dialog": ("full_dialog.csv", PFG_DIALOG, read_persuasion_for_good),
    "pfg_info": ("full_info.csv", PFG_INFO, read_pfg_info),
    "lamp_questions": ("dev_questions.json", LAMP_QUESTIONS, _read_lamp_questions),
    "lamp_outputs": ("dev_outputs.json", LAMP_OUTPUTS, read_lamp_outputs),
    "reviews": ("reviews.jsonl", REVIEWS, read_review_histories),
    "mqdialog_jsonl": ("mq.jsonl", MQ_JSONL, read_mqdialog),
    "mqdialog_json": ("mq.json", MQ_JSON, read_mqdialog),
}
NAMES = sorted(FORMATS)


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FORMATS[name][0]
    path.write_bytes(data)
    return path


def _read(name: str, path: Path) -> Any:
    return FORMATS[name][2](path)


def _dump(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


@pytest.mark.parametrize("name", NAMES)
def test_valid_fixture_loads(tmp_path, name):
    assert _read(name, _write(tmp_path, name, FORMATS[name][1].encode()))


# ------------------------------------------------------------------------ non-UTF-8
@pytest.mark.parametrize("name", NAMES)
def test_non_utf8_byte_names_file_and_line(tmp_path, name):
    data = FORMATS[name][1].encode()
    line = 3
    pos = [i for i, b in enumerate(data) if b == ord("\n")][line - 2] + 3  # byte 3 of line 3
    path = _write(tmp_path, name, data[:pos] + b"\xff" + data[pos:])
    with pytest.raises(DataFormatError) as info:
        _read(name, path)
    err = info.value
    assert (err.path, err.record, err.unit) == (str(path), line, "line")
    assert "not UTF-8" in err.reason and "0xff" in err.reason and "byte 3 of the line" in err.reason


FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_fuzz_non_utf8_bytes(tmp_path_factory, name, data):
    """A byte that cannot start or continue UTF-8 anywhere: an error naming its line."""
    text = FORMATS[name][1].encode()
    pos = data.draw(st.integers(0, len(text)), label="position")
    bad = data.draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\x80", b"\xe2\x28\xa1"]), label="bytes")
    path = _write(tmp_path_factory.mktemp(name), name, text[:pos] + bad + text[pos:])
    with pytest.raises(DataFormatError) as info:
        _read(name, path)
    assert info.value.path == str(path)
    assert info.value.record == text[:pos].count(b"\n") + 1
    assert "not UTF-8" in info.value.reason


# ------------------------------------------------------------------------ truncation
def _mid_line_cuts(text: bytes) -> list[int]:
    """Cut positions that drop at least one non-blank character of the line they fall in."""
    cuts = []
    for pos in range(1, len(text)):
        if text[pos - 1 : pos] == b"\n":
            continue  # at a line break: a shorter but complete file
        end = text.find(b"\n", pos)
        rest = text[pos : len(text) if end < 0 else end]
        if rest.strip():
            cuts.append(pos)
    return cuts


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_fuzz_file_cut_mid_line_is_an_error(tmp_path_factory, name, data):
    """A file cut in the middle of a line never loads (silently or partly): the error names file and line."""
    text = FORMATS[name][1].encode()
    pos = data.draw(st.sampled_from(_mid_line_cuts(text)), label="cut")
    path = _write(tmp_path_factory.mktemp(name), name, text[:pos])
    with pytest.raises(DataFormatError) as info:
        _read(name, path)
    assert info.value.path == str(path)
    assert info.value.record is not None


@pytest.mark.parametrize("name", NAMES)
def test_file_cut_at_a_line_break_still_loads(tmp_path, name):
    """The end-of-file checks do not reject a complete file that ends with a line break."""
    text = FORMATS[name][1]
    path = _write(tmp_path, name, (text if text.endswith("\n") else text + "\n").encode())
    assert _dump(_read(name, path)) is not None


def test_spc_csv_cut_in_half(tmp_path):
    text = _spc_csv(6).encode()
    path = _write(tmp_path, "spc_csv", text[: len(text) // 2])
    with pytest.raises(DataFormatError, match="truncated") as info:
        read_spc_csv(path)
    assert info.value.path == str(path) and info.value.record > 1


def test_spc_csv_without_final_line_break_after_an_unquoted_cell(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text('user 1 personas,user 2 personas,Best Generated Conversation\n"A.","B.",User 1: hi\n"A.","B.",User 1: he')
    with pytest.raises(DataFormatError, match="truncated") as info:
        read_spc_csv(path)
    assert info.value.record == 3


def test_pfg_dialog_cut_inside_its_last_cell(tmp_path):
    path = _write(tmp_path / "FullData", "pfg_dialog", PFG_DIALOG[:-6].encode())  # "..._41_l"
    with pytest.raises(DataFormatError, match="truncated") as info:
        read_persuasion_for_good(path.parent)
    assert (info.value.path, info.value.record, info.value.field) == (str(path), 9, "B2")


def test_pfg_dialog_cut_inside_the_id_of_a_dialogue_first_row(tmp_path):
    cut = PFG_DIALOG.index("20180717-200206_41_live") + 6
    path = _write(tmp_path / "FullData", "pfg_dialog", PFG_DIALOG[:cut].encode())
    with pytest.raises(DataFormatError, match="truncated") as info:
        read_persuasion_for_good(path.parent)
    assert info.value.record == 6


def test_pfg_release_layout_without_final_line_break_loads(tmp_path):
    path = _write(tmp_path / "FullData", "pfg_dialog", PFG_DIALOG.encode())
    dialogues = read_persuasion_for_good(path.parent)
    assert [len(d.turns) for d in dialogues] == [4, 4]
    assert dialogues[1].turns[-1].text == "No problem have a good night"


def test_convai2_cut_mid_line(tmp_path):
    path = _write(tmp_path, "convai2", (CONVAI2 + "5 wha").encode())
    with pytest.raises(DataFormatError, match="truncated") as info:
        read_convai2(path)
    assert (info.value.path, info.value.record) == (str(path), 9)


def test_jsonl_cut_mid_line_says_truncated(tmp_path):
    path = _write(tmp_path, "spc_jsonl", SPC_JSONL.encode()[:-20])
    with pytest.raises(DataFormatError, match="truncated") as info:
        read_spc_jsonl(path)
    assert info.value.record == 3


def test_json_cut_says_truncated(tmp_path):
    path = _write(tmp_path, "lamp_outputs", LAMP_OUTPUTS.encode()[:-30])
    with pytest.raises(DataFormatError, match="truncated"):
        read_lamp_outputs(path)


# ----------------------------------------------------------------------------- BOM
@pytest.mark.parametrize("name", NAMES)
def test_bom_accepted_by_every_format(tmp_path, name):
    text = FORMATS[name][1].encode()
    plain = _dump(_read(name, _write(tmp_path / "plain", name, text)))
    with_bom = _dump(_read(name, _write(tmp_path / "bom", name, b"\xef\xbb\xbf" + text)))
    assert with_bom == plain


# --------------------------------------------------------------- duplicates, types
def test_pfg_duplicated_row_is_an_error(tmp_path):
    lines = PFG_DIALOG.split("\n")
    dialog = "\n".join(lines[:3] + [lines[2]] + lines[3:])
    path = _write(tmp_path / "FullData", "pfg_dialog", dialog.encode())
    with pytest.raises(DataFormatError, match="duplicate row.*line 3") as info:
        read_persuasion_for_good(path.parent)
    assert info.value.record == 4


def test_pfg_same_text_in_another_turn_is_not_a_duplicate(tmp_path):
    dialog = PFG_DIALOG.replace("3,Sounds good.,1,1", "3,Hello.,1,1")  # "Hello." is also in the other dialogue
    path = _write(tmp_path / "FullData", "pfg_dialog", dialog.encode())
    assert len(read_persuasion_for_good(path.parent)) == 2


def test_pfg_info_one_bad_cell_in_a_small_numeric_column(tmp_path):
    rows = ["B2,B3,B4,B6,B7,extrovert.x,sex.x"]
    for i in range(6):
        value = "oops" if i == 4 else f"{3 + i / 10}"
        rows.append(f"d{i // 2},user_{i},{i % 2},0.0,2,{value},Male")
    path = tmp_path / "full_info.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_pfg_info(path)
    assert (info.value.record, info.value.field) == (6, "extrovert.x")


def test_pfg_info_text_column_stays_text(tmp_path):
    path = _write(tmp_path, "pfg_info", PFG_INFO.encode())
    info = read_pfg_info(path)
    assert info[("20180904-045349_715_live", 1)]["traits"] == {"extrovert": 4.0, "age": 50.0, "sex": "Female"}


def test_lamp_output_id_not_among_the_questions(tmp_path):
    questions = _write(tmp_path, "lamp_questions", LAMP_QUESTIONS.encode())
    golds = json.loads(LAMP_OUTPUTS)
    golds["golds"].append({"id": "999", "output": "stray"})
    outputs = _write(tmp_path, "lamp_outputs", json.dumps(golds).encode())
    with pytest.raises(DataFormatError, match="not a question id") as info:
        read_lamp(questions, outputs)
    assert (info.value.path, info.value.record, info.value.field) == (str(outputs), 3, "golds[3].id")
