"""read_mqdialog: the assumed MQDialog record shapes and errors naming file, line/record and field."""

from __future__ import annotations

import json

import pytest

from personakit.data import DataFormatError, read_mqdialog

DIALOGUE = {"id": "bbt-1", "responder": "Sheldon", "questioner": "Penny", "language": "en", "source": "TBBT",
            "turns": [{"speaker": "Penny", "text": "Hi."}, {"speaker": "Penny", "text": "I'm Penny."},
                      {"speaker": "Sheldon", "text": "Hello."}, {"speaker": "Penny", "text": "Do you like it here?"},
                      {"speaker": "Leonard", "text": "Hi!"}, {"speaker": "Sheldon", "text": "No."}]}
PAIR = {"id": "hlm-1", "responder": "Baoyu", "questioner": "Daiyu", "question": "Where were you?",
        "response": "In the garden.", "context": [{"speaker": "Baoyu", "text": "Sister!"}], "metadata": {"ch": 3}}


def _write(tmp_path, records, name="mq.jsonl"):
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(records))
    else:
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_dialogue_and_pair_records(tmp_path):
    examples = read_mqdialog(_write(tmp_path, [DIALOGUE, PAIR]))
    assert [ex.id for ex in examples] == ["bbt-1:2", "hlm-1"]  # Leonard interrupts: the second "No." answers no Penny turn
    first, pair = examples
    assert first.history[-1].text == "Hi. I'm Penny." and first.response == "Hello."
    assert (first.questioner_id, first.responder_id, first.agent) == ("Penny", "Sheldon", "Sheldon")
    assert first.metadata == {"language": "en", "source": "TBBT", "turn_index": 2}
    assert [t.text for t in pair.history] == ["Sister!", "Where were you?"] and pair.response == "In the garden."
    assert pair.metadata == {"ch": 3}


def test_json_array_and_field_map(tmp_path):
    rec = {"id": "x", "character": "R", "asker": "Q", "question": "Why?", "response": "Because."}
    [ex] = read_mqdialog(_write(tmp_path, [rec], "mq.json"), field_map={"responder": "character", "questioner": "asker"})
    assert (ex.questioner_id, ex.responder_id) == ("Q", "R")
    with pytest.raises(ValueError, match="unknown keys"):
        read_mqdialog(tmp_path / "mq.json", field_map={"speaker": "x"})


@pytest.mark.parametrize(("record", "field", "reason"), [
    ({**PAIR, "questioner": 3}, "questioner", "expected a string, got int"),
    ({k: v for k, v in PAIR.items() if k != "responder"}, "responder", "missing"),
    ({**PAIR, "response": " "}, "response", "empty text"),
    ({**PAIR, "context": [{"speaker": "A"}]}, "context[0].text", "missing"),
    ({**DIALOGUE, "turns": [{"speaker": "Penny", "text": 5}]}, "turns[0].text", "expected a string"),
    ({**DIALOGUE, "turns": [{"speaker": "Penny", "text": "hi"}]}, "turns", "no turn of the responder"),
    ({"id": "z", "responder": "A", "questioner": "B"}, "turns", "missing"),
    ({**PAIR, "questioner": "Baoyu"}, "questioner", "is the responder"),
])
def test_errors_name_file_line_field(tmp_path, record, field, reason):
    path = _write(tmp_path, [PAIR | {"id": "ok"}, record])
    with pytest.raises(DataFormatError) as info:
        read_mqdialog(path)
    err = info.value
    assert err.record == 2 and err.field == field and reason in err.reason
    assert str(path) in str(err) and "line 2" in str(err)


def test_syntax_duplicate_and_array_errors(tmp_path):
    with pytest.raises(DataFormatError, match=r"line 2: invalid JSON"):
        read_mqdialog(_write(tmp_path, [PAIR, "{not json"]))
    with pytest.raises(DataFormatError, match=r"line 2: field 'id': duplicate id 'hlm-1'"):
        read_mqdialog(_write(tmp_path, [PAIR, PAIR]))
    with pytest.raises(DataFormatError, match=r"record 1: field 'responder'"):
        read_mqdialog(_write(tmp_path, [PAIR, {**PAIR, "id": "b", "responder": None}], "mq.json"))
    with pytest.raises(FileNotFoundError):
        read_mqdialog(tmp_path / "absent.jsonl")
