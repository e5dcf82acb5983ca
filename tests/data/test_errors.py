"""DataFormatError and check_file."""

from __future__ import annotations

import pickle

import pytest

from personakit.data import DataFormatError
from personakit.data.errors import check_file


def test_message_names_file_line_and_field():
    err = DataFormatError("spc/train.jsonl", 12, "turns[3].speaker", "expected a string")
    assert str(err) == "spc/train.jsonl: line 12: field 'turns[3].speaker': expected a string"
    assert (err.path, err.record, err.field, err.reason) == ("spc/train.jsonl", 12, "turns[3].speaker", "expected a string")
    assert isinstance(err, ValueError)


def test_message_without_record_or_field_and_other_units():
    assert str(DataFormatError("a.json", None, None, "empty file")) == "a.json: empty file"
    assert str(DataFormatError("q.json", 4, "[4].id", "missing", unit="record")) == "q.json: record 4: field '[4].id': missing"


def test_pickle_round_trip_keeps_attributes():
    err = DataFormatError("x.csv", 3, "B4", "bad role", unit="row")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err)
    assert (back.path, back.record, back.field, back.unit) == ("x.csv", 3, "B4", "row")


def test_check_file_missing_and_directory(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError) as info:
        check_file(missing)
    assert info.value.filename == str(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(FileNotFoundError, match="directory"):
        check_file(tmp_path)
    f = tmp_path / "ok.txt"
    f.write_text("x")
    assert check_file(str(f)) == f
