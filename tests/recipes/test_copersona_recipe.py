"""The CoPersona recipe: end to end on tiny random models with a callable LLM, incremental updates, its configs,
its results files, and one run of the shipped tiny config with the real models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "facets"))

from copersona_kit import encoder, examples, fake_llm, tiny_llama, users  # noqa: E402

pytest.importorskip("torch_geometric")
pytest.importorskip("peft")

from personakit.augment import save_examples  # noqa: E402
from personakit.config import ConfigError  # noqa: E402
from personakit.data.copersona_users import CoPersonaUsers  # noqa: E402
from personakit.facets import FacetEmbedder, FacetSchemaInducer, FacetSummarizer  # noqa: E402
from personakit.recipes.base import load_recipe_config, packaged_configs, score_test_set  # noqa: E402
from personakit.recipes.copersona import (COPERSONA_LABELS, CoPersonaDataConfig, CoPersonaPipeline,  # noqa: E402
                                          CoPersonaRecipeConfig, CoPersonaResults, load_copersona_data,
                                          load_copersona_test_sets, run_copersona_recipe)
from personakit.types import ProfileItem, ResponseExample, Turn, UserProfile  # noqa: E402

FILES = ("results.md", "results.json", "predictions.jsonl", "manifest.json")
# the shipped tiny config, shrunk to the tiny random Llama of the stand-ins
SHRINK = ["metrics=[rouge, bleu, meteor]", "facets.num_facets=3", "facets.num_clusters=2", "model.graph_hidden=8",
          "model.num_virtual_tokens=2", "model.max_prompt_tokens=48", "training.max_steps=2", "training.batch_size=2",
          "max_new_tokens=3"]


def _evaluate_rows(path: Path, capsys) -> dict:
    from personakit.cli import main

    capsys.readouterr()
    assert main(["evaluate", str(path), "--json", "--metrics", "rouge"]) == 0
    return json.loads(capsys.readouterr().out)


def _extra_examples() -> list[ResponseExample]:
    return [ResponseExample(id=f"{u}:extra", history=[Turn(speaker="persuadee", text="and at night?")],
                            response="i play guitar at night", agent="persuader", user_id=u)
            for u in ("u0", "u1", "u2")]


def test_recipe_end_to_end(tmp_path, capsys):
    torch.set_num_threads(1)
    calls: list = []
    save_examples(tmp_path / "extra.jsonl", _extra_examples())
    out = tmp_path / "out"
    extra_set = f"data.test_sets={{extra: {tmp_path / 'extra.jsonl'}}}"
    cfg = load_recipe_config("copersona", "tiny", overrides=[*SHRINK, extra_set], output_dir=out)
    data = CoPersonaUsers(users=users(), train=examples(), test=examples(("u1", "u3")))
    res = run_copersona_recipe(cfg, data=data, generator=fake_llm(calls), encoder=encoder,
                               backbone_factory=lambda: tiny_llama(0), progress=False)
    labels = [COPERSONA_LABELS[v] for v in cfg.variants]
    assert list(res.rows) == labels
    for row in res.rows.values():
        assert {"rouge1", "rougeL", "meteor", "bleu"} <= set(row)
    assert [f["name"] for f in res.schema["facets"]] == ["Hobbies", "Tone", "Work"]
    assert res.facet_biased_fraction == 1.0  # evidence-graded reliability: one strong facet per user, the rest less
    assert res.reliability_counts == {"none": 0, "weak": 4, "moderate": 4, "strong": 4}
    assert len(res.facet_edges) == 3 and res.sizes["facets"] == 3 and res.sizes["test"] == 2
    assert res.timings["train_copersona_s"] > 0 and res.timings["total_s"] > 0
    # the named extra test set: scored, compared with Non-Perso, reported, in predictions.jsonl
    assert list(res.test_sets) == ["test", "extra"]
    extra = res.test_sets["extra"]
    assert extra.ids == ["u0:extra", "u1:extra", "u2:extra"] and list(extra.rows) == labels
    assert extra.baseline == "Non-Perso"
    assert {"p_value", "ci_low", "ci_high"} <= set(extra.significance["CoPersona"]["rougeL"])
    assert res.output_dir == out
    for name in (*FILES, "facet_schema.json"):
        assert (out / name).is_file()
    md = (out / "results.md").read_text()
    assert md.startswith("# CoPersona") and "## Test set: extra (3 examples)" in md
    assert "Facets: Hobbies; Tone; Work." in md
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(labels) * (2 + 3)
    assert {r["test_set"] for r in records} == {"test", "extra"} and records[0]["user_id"] == "u1"
    rows = _evaluate_rows(out / "predictions.jsonl", capsys)
    assert set(rows) == {f"{t} / {s}" for t in ("test", "extra") for s in labels}
    saved = json.loads((out / "results.json").read_text())
    assert saved["facet_biased_fraction"] == 1.0 and saved["test_sets"]["extra"]["n"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"] == "copersona" and str(tmp_path / "extra.jsonl") in manifest["data_files"]
    assert "machine" in manifest and "machine" not in res.sizes
    n_calls = len(calls)
    # a rerun: schema from the file, summaries from the store: no LLM call at all
    run_copersona_recipe(cfg.model_copy(update={"variants": ["rag"]}), data=data, generator=fake_llm(calls),
                         encoder=encoder, backbone_factory=lambda: tiny_llama(0), progress=False, save=False)
    assert len(calls) == n_calls


def test_incremental_update_touches_only_changed_users(tmp_path):
    calls: list = []
    llm = fake_llm(calls)
    inducer = FacetSchemaInducer(llm, encoder, num_facets=3, num_clusters=2)
    pipe = CoPersonaPipeline(inducer, lambda s: FacetSummarizer(llm, s, store=tmp_path / "store.jsonl"),
                             FacetEmbedder(encoder), top_k=2, threshold=0.0)
    profiles = users()
    pipe.update(profiles)
    assert len(calls) == 1 + 4 * 3  # one schema prompt + users x facets
    calls.clear()
    pipe.update(profiles)
    assert calls == [] and pipe.last_changed == []
    grown = profiles[2].model_copy(update={"items": profiles[2].items + [ProfileItem(id="z", text="i love dogs")]})
    newcomer = UserProfile(user_id="u7", items=[ProfileItem(id="a", text="i play guitar and bake")])
    pipe.update([profiles[0], profiles[1], grown, profiles[3], newcomer])
    assert len(calls) == 2 * 3 and sorted(pipe.last_changed) == ["u2", "u7"]
    assert pipe.embeddings.user_ids == ["u0", "u1", "u2", "u3", "u7"] and pipe.graph.num_users == 5
    assert all("bake cookies" not in json.dumps(c) or "guitar" in json.dumps(c) for c in calls)


def _results(tmp_path) -> CoPersonaResults:
    refs = ["i bake bread", "i teach chemistry", "i like jazz"]
    ts = score_test_set("test", ["a", "b", "c"], refs, {"Non-Perso": ["i bake", "hello", "jazz"], "CoPersona": refs},
                        ["rouge"], baseline="Non-Perso", compare=["rougeL"],
                        inputs=[{"user_id": u, "agent": "persuader", "history": ["persuadee: hi"]} for u in "xyz"])
    return CoPersonaResults(recipe="copersona", config={"output_dir": str(tmp_path / "cfg-out")},
                            test_sets={"test": ts},
                            timings={"facets_s": 2.0, "total_s": 3.0}, sizes={"users": 3, "test": 3},
                            schema={"facets": [{"name": "Hobbies", "definition": "d", "values": "v"}]},
                            facet_biased_fraction=0.5, reliability_counts={"none": 0, "weak": 1, "moderate": 1,
                                                                           "strong": 1},
                            facet_edges=[4], structured={"summary_prompts": 3, "summary_failures": 0,
                                                         "constrained": True})


def test_results_save_and_evaluate(tmp_path, capsys):
    results = _results(tmp_path)
    out = results.save(tmp_path / "run")
    assert isinstance(out, Path) and out == tmp_path / "run" == results.output_dir
    for name in (*FILES, "facet_schema.json"):
        assert (out / name).is_file()
    assert results.save() == tmp_path / "cfg-out"  # default: the config's output_dir
    md = (out / "results.md").read_text()
    assert "Facet-biased users (at least one facet not 'strong'): 50.00%." in md
    assert "Graph edges per facet: Hobbies 4" in md and "schema-guided decoding" in md
    rows = _evaluate_rows(out / "predictions.jsonl", capsys)
    assert set(rows) == {"Non-Perso", "CoPersona"}
    assert rows["CoPersona"]["rougeL"] == pytest.approx(1.0)
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_sets"]["test"]["significance"]["CoPersona"]["rougeL"]["p_value"] is not None
    assert saved["schema"]["facets"][0]["name"] == "Hobbies"
    record = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert record["user_id"] == "x" and record["history"] == ["persuadee: hi"]


def test_builtin_users_and_test_sets(tmp_path):
    cfg = CoPersonaDataConfig(source="builtin", max_examples_per_user=2)
    data = load_copersona_data(cfg)
    assert [u.user_id for u in data.users] == ["agent-ines", "agent-kofi", "agent-rosa"]
    assert len(data.test) == 6 and all(u.items for u in data.users)
    save_examples(tmp_path / "seen.jsonl", data.train)
    sets = load_copersona_test_sets(cfg.model_copy(update={"test_sets": {"seen": str(tmp_path / "seen.jsonl")},
                                                           "max_test": 4}), data.test, data.users)
    assert list(sets) == ["test", "seen"] and len(sets["test"]) == 4 and len(sets["seen"]) == 4
    stranger = ResponseExample(id="s", history=[Turn(speaker="persuadee", text="hi")], response="hey",
                               agent="persuader", user_id="nobody")
    save_examples(tmp_path / "strangers.jsonl", [stranger])
    with pytest.raises(ValueError, match=r"data\.test_sets\.strangers: .*'nobody' is not among the recipe's 3 users"):
        load_copersona_test_sets(cfg.model_copy(update={"test_sets": {"strangers": str(tmp_path / "strangers.jsonl")}}),
                                 data.test, data.users)


def test_shipped_configs_load():
    assert {"tiny", "default"} <= set(packaged_configs("copersona"))
    tiny = load_recipe_config("copersona", "tiny")
    assert tiny.data.source == "builtin" and tiny.output_dir is None and tiny.baseline == "nonperso"
    assert CoPersonaRecipeConfig.from_yaml(tiny.to_yaml()) == tiny
    default = load_recipe_config("copersona", "default")  # tests/_shared.py sets PERSONAKIT_DATA
    assert default.data.source == "pfg" and default.data.path.endswith("persuasionforgood/FullData")
    shrunk = load_recipe_config("copersona", "tiny", overrides=["variants=[rag, copersona]", "training.max_steps=1"],
                                output_dir="somewhere")
    assert shrunk.variants == ["rag", "copersona"] and Path(shrunk.output_dir).is_absolute()
    assert (tiny.facets.dtype, tiny.facets.batch_size) == (default.facets.dtype, default.facets.batch_size) == ("auto", 16)


def test_facet_speed_fields():
    fast = CoPersonaRecipeConfig()
    assert (fast.facets.dtype, fast.facets.batch_size) == ("auto", 16)
    old = load_recipe_config("copersona", "tiny", overrides=["facets.dtype=float32", "facets.batch_size=1"])
    assert (old.facets.dtype, old.facets.batch_size) == ("float32", 1)
    with pytest.raises(ValueError):
        CoPersonaRecipeConfig(facets={"batch_size": 0})


def test_config_errors():
    with pytest.raises(ValueError, match="needs 'path'"):
        CoPersonaRecipeConfig(data={"source": "pfg"})
    with pytest.raises(ValueError, match="variants must be distinct"):
        CoPersonaRecipeConfig(variants=["rag", "rag"])
    with pytest.raises(ValueError, match="baseline must be a variant"):
        CoPersonaRecipeConfig(baseline="gpt")
    with pytest.raises(ValueError, match="other than 'test'"):
        CoPersonaRecipeConfig(data={"test_sets": {"test": "x.jsonl"}})


@pytest.mark.parametrize(("yaml_text", "field"), [
    ("facets:\n  num_facet: 3\n", r"facets\.num_facet"),
    ("model:\n  lora_rank: 4\n", r"model\.lora_rank"),
    ("training:\n  max_step: 2\n", r"training\.max_step"),
    ("data:\n  source: builtin\n  max_tset: 3\n", r"data\.max_tset"),
])
def test_misspelt_key_fails_at_load(tmp_path, yaml_text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=field) as err:
        load_recipe_config("copersona", path)
    assert str(path) in str(err.value)


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cfgs"
    folder.mkdir()
    (folder / "run.yaml").write_text("data:\n  source: reviews\n  path: ${PK_COP_DATA:-data/reviews.jsonl}\n"
                                     "facets:\n  cache: cache/llm.jsonl\noutput_dir: out\n")
    monkeypatch.chdir(tmp_path)  # elsewhere
    cfg = load_recipe_config("copersona", folder / "run.yaml")
    assert cfg.data.path == str(folder / "data" / "reviews.jsonl")
    assert cfg.facets.cache == str(folder / "cache" / "llm.jsonl")
    assert cfg.output_dir == str(folder / "out")
    cfg = load_recipe_config("copersona", folder / "run.yaml", overrides=["data.path=mine.jsonl"])
    assert cfg.data.path == str(tmp_path / "mine.jsonl")  # --set paths resolve against the current folder


def test_relative_test_set_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cfgs"
    folder.mkdir()
    (folder / "run.yaml").write_text("data:\n  source: builtin\n  test_sets:\n    extra: sets/extra.jsonl\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe_config("copersona", folder / "run.yaml")
    assert cfg.data.test_sets["extra"] == str(folder / "sets" / "extra.jsonl")


@pytest.mark.real_model
def test_tiny_config_runs_from_the_command_line(tmp_path, capsys):
    from personakit.cli import main

    seen = tmp_path / "seen.jsonl"  # a named extra test set: the users' train replies
    data = CoPersonaDataConfig(source="builtin", max_users=2, max_examples_per_user=1)
    save_examples(seen, load_copersona_data(data).train)
    out = tmp_path / "run"
    shrink = ["variants=[nonperso, copersona]", "data.max_users=2", "data.max_examples_per_user=1",
              f"data.test_sets={{seen: {seen}}}", "facets.num_facets=2", "facets.num_clusters=2",
              "facets.summary_items=2", "training.max_steps=1", "max_new_tokens=8", "metrics=[rouge, bleu]"]
    assert main(["run", "copersona", "--config", "tiny", *[a for s in shrink for a in ("--set", s)],
                 "--output-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "# CoPersona" in printed and str(out) in printed
    for name in (*FILES, "facet_schema.json"):
        assert (out / name).is_file()
    rows = _evaluate_rows(out / "predictions.jsonl", capsys)
    assert set(rows) == {f"{t} / {s}" for t in ("test", "seen") for s in ("Non-Perso", "CoPersona")}
