"""Reading prediction files: the layouts, id matching, and errors that name file, line and field."""

from __future__ import annotations

import json

import pytest

from personakit.eval import PredictionFileError, evaluate_file, evaluate_texts, load_predictions


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_single_jsonl_with_prediction_and_reference(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prediction": "hi", "reference": "hello"},
                                           {"prediction": "yo", "reference": ["hey", "yo"]}])
    loaded = load_predictions(f)
    assert loaded.predictions == ["hi", "yo"]
    assert loaded.references == ["hello", ["hey", "yo"]]
    assert loaded.ids is None


def test_ids_matched_against_a_references_jsonl_in_any_order(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", [{"id": "b", "prediction": "pb"}, {"id": 1, "prediction": "p1"}])
    r = write_jsonl(tmp_path / "r.jsonl", [{"id": "1", "reference": "r1"}, {"id": "b", "reference": "rb"},
                                           {"id": "extra", "reference": "unused"}])
    loaded = load_predictions(p, r)
    assert loaded == (["pb", "p1"], ["rb", "r1"], ["b", "1"])


def test_jsonl_predictions_with_text_references_by_line(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prediction": "a"}, {"id": "y", "prediction": "b"}])
    r = tmp_path / "refs.txt"
    r.write_text("ref a\nref b\n", encoding="utf-8")
    assert load_predictions(p, r).references == ["ref a", "ref b"]


def test_two_text_files_keep_blank_items(tmp_path):
    p = tmp_path / "p.txt"
    r = tmp_path / "r.txt"
    p.write_text("one\n\nthree\n", encoding="utf-8")
    r.write_text("uno\r\ndos\r\ntres", encoding="utf-8")
    loaded = load_predictions(p, r)
    assert loaded.predictions == ["one", "", "three"]
    assert loaded.references == ["uno", "dos", "tres"]


def test_errors_name_file_line_and_field(tmp_path):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"prediction": "a", "reference": "b"}\n\n{"prediction": "a"\n', encoding="utf-8")
    with pytest.raises(PredictionFileError, match=r"bad\.jsonl line 3: invalid JSON"):
        load_predictions(bad_json)

    missing = write_jsonl(tmp_path / "m.jsonl", [{"prediction": "a", "reference": "b"}, {"reference": "c"}])
    with pytest.raises(PredictionFileError, match=r"m\.jsonl line 2: field 'prediction' is missing"):
        load_predictions(missing)

    wrong_type = write_jsonl(tmp_path / "t.jsonl", [{"prediction": 3, "reference": "b"}])
    with pytest.raises(PredictionFileError, match=r"t\.jsonl line 1: field 'prediction' must be a string, got int"):
        load_predictions(wrong_type)

    no_ref = write_jsonl(tmp_path / "n.jsonl", [{"prediction": "a"}])
    with pytest.raises(PredictionFileError, match=r"n\.jsonl line 1: field 'reference' is missing"):
        load_predictions(no_ref)

    dup = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "prediction": "x"}, {"id": "a", "prediction": "y"}])
    refs = write_jsonl(tmp_path / "r.jsonl", [{"id": "a", "reference": "x"}])
    with pytest.raises(PredictionFileError, match=r"d\.jsonl line 2: duplicate id 'a' \(first on line 1\)"):
        load_predictions(dup, refs)

    unmatched = write_jsonl(tmp_path / "u.jsonl", [{"id": "a", "prediction": "x"}, {"id": "zz", "prediction": "y"}])
    with pytest.raises(PredictionFileError, match=r"r\.jsonl: no reference with id 'zz' \(needed by .*u\.jsonl line 2\)"):
        load_predictions(unmatched, refs)

    both = write_jsonl(tmp_path / "b.jsonl", [{"prediction": "x", "reference": "y"}])
    with pytest.raises(PredictionFileError, match=r"b\.jsonl line 1: field 'reference' is present although"):
        load_predictions(both, refs)


def test_count_mismatch_and_missing_files(tmp_path):
    p = tmp_path / "p.txt"
    r = tmp_path / "r.txt"
    p.write_text("a\nb\n", encoding="utf-8")
    r.write_text("a\n", encoding="utf-8")
    with pytest.raises(PredictionFileError, match=r"p\.txt has 2 predictions but .*r\.txt has 1 references"):
        load_predictions(p, r)
    with pytest.raises(PredictionFileError, match=r"nope\.txt: file not found"):
        load_predictions(p, tmp_path / "nope.txt")
    with pytest.raises(PredictionFileError, match="needs a references file"):
        load_predictions(p)


def test_evaluate_file_equals_evaluate_texts(tmp_path):
    records = [{"prediction": "the cat sat on the mat", "reference": "the cat is on the mat"},
               {"prediction": "hello there", "reference": "hi there"}]
    f = write_jsonl(tmp_path / "p.jsonl", records)
    expected = evaluate_texts([r["prediction"] for r in records], [r["reference"] for r in records],
                              metrics=["rouge", "char_f1"])
    assert evaluate_file(f, metrics=["rouge", "char_f1"]) == expected


def test_a_json_array_file_gets_a_hint(tmp_path):
    f = tmp_path / "preds.json"
    f.write_text(json.dumps([{"prediction": "a", "reference": "b"}]), encoding="utf-8")
    with pytest.raises(PredictionFileError, match=r"preds\.json line 1: expected a JSON object, got list \(write one"):
        load_predictions(f)
