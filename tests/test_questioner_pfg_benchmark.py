"""The PFG-Questioner benchmark's pure pieces (benchmarks/questioner_pfg.py): units, keys, controls, report.

No model is loaded: the units are small hand-made dicts.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import questioner_pfg as qp  # noqa: E402
from personakit.types import ResponseExample, Turn  # noqa: E402


def _example(dialogue: int, turn: int, questioner: str, responder: str = "r1") -> ResponseExample:
    return ResponseExample(id=f"d{dialogue}:{turn}", history=[Turn(speaker="persuadee", text=f"q {turn}")],
                           response=f"reply {turn}", agent="persuader", questioner_id=questioner,
                           responder_id=responder, metadata={"question_cluster": turn % 2})


def test_unit_order_and_parse():
    order = qp.unit_order(3)
    assert order[:2] == ["data", "sanity"] and len(order) == len(set(order))
    assert {f"{s}-s{k}" for s in qp.MULTI_SEED for k in range(3)} <= set(order)
    assert {f"{s}-s0" for s in qp.ABLATIONS} <= set(order) and "persona-prompt-s0" in order
    for control, system in qp.CONTROLS.items():  # a control comes after the unit it tests
        assert order.index(f"{system}-s0") < order.index(f"{control}-s0")
    assert len(qp.unit_order(1)) == 2 + 3 + 2 + len(qp.ABLATIONS)
    assert qp.parse_unit("dual-tower-s2") == ("dual-tower", 2)
    assert qp.parse_unit("controls-persona-prompt-s0") == ("controls-persona-prompt", 0)
    assert qp.parse_unit("data") == ("data", 0)


def test_unit_keys_change_with_settings():
    s = qp.SETTINGS["default"]
    key = qp.unit_key("dual-tower-s0", s, "digest")
    assert key == qp.unit_key("dual-tower-s0", dict(s), "digest")
    assert key == qp.unit_key("dual-tower-s0", {**s, "seeds": 5}, "digest")  # more seeds keep finished units
    others = [qp.unit_key("dual-tower-s1", s, "digest"), qp.unit_key("lora-s0", s, "digest"),
              qp.unit_key("dual-tower-s0", {**s, "lr": 1e-3}, "digest"),
              qp.unit_key("dual-tower-s0", {**s, "queue": 64}, "digest"),
              qp.unit_key("dual-tower-s0", s, "other"), qp.unit_key("dual-tower-s0", s, "digest", ["k"]),
              qp.unit_key("dual-tower-s0", s, "digest", device="cuda"),
              qp.unit_key("dual-tower-s0", s, "digest", split="time")]
    assert len({key, *others}) == 1 + len(others)


def test_system_settings():
    s = qp.SETTINGS["default"]
    assert qp.system_settings("lora", s) == {} and qp.system_settings("persona-prompt", s) == {}
    dt = qp.system_settings("dual-tower", s)
    assert dt["rank"] == 16 and dt["queue_size"] == s["queue"] and dt["temperature"] == 0.01
    assert qp.system_settings("rank4", s)["rank"] == 4
    assert qp.system_settings("no-contrastive", s)["contrastive_weight"] == 0.0
    assert qp.system_settings("no-clustering", s)["use_clusters"] is False
    assert qp.system_settings("no-multiview", s)["num_views"] == 0


def test_settings_meet_the_protocol():
    d = qp.SETTINGS["default"]
    assert d["test"] >= 300 and d["seeds"] == 3 and d["patience"] >= 1 and d["threshold"] == 0.01
    assert d["max_train"] is None and d["max_dev"] is None  # every usable training turn
    for s in qp.SETTINGS.values():
        assert abs(sum(s["split_fractions"]) - 1) < 1e-9 and s["eval_steps"] <= s["max_steps"]


def test_sample_split_and_counts():
    rows = [_example(d, t, f"q{d}", f"r{d % 2}") for d in range(4) for t in range(5)]
    assert qp.sample_split(rows, None) == rows and qp.sample_split(rows, 99) == rows
    picked = qp.sample_split(rows, 7)
    assert len(picked) == 7 and picked == qp.sample_split(rows, 7)  # seeded
    assert [rows.index(ex) for ex in picked] == sorted(rows.index(ex) for ex in picked)  # original order
    counts = qp.split_counts({"train": rows, "test": picked})
    assert counts["train"] == {"examples": 20, "dialogues": 4, "questioners": 4, "responders": 2}
    digest = qp.data_digest({"train": rows, "dev": [], "test": picked})
    assert digest == qp.data_digest({"train": list(rows), "dev": [], "test": list(picked)})
    assert digest != qp.data_digest({"train": rows[:-1], "dev": [], "test": picked})


@pytest.mark.parametrize("seed", range(5))
def test_derangement_gives_every_example_another_known_questioner(seed):
    pool = [f"q{i}" for i in range(6)]
    rng = random.Random(seed)
    asked = [rng.choice(pool[:4]) for _ in range(30)] + ["stranger", None]
    donors = qp.derange_questioners(asked, pool, seed=seed)
    assert len(donors) == len(asked)
    assert all(d != q and d in pool for d, q in zip(donors, asked))
    same = {}
    for q, d in zip(asked, donors):  # one donor per questioner
        assert same.setdefault(q, d) == d
    assert donors == qp.derange_questioners(asked, pool, seed=seed)


def test_derangement_errors_and_single_questioner():
    with pytest.raises(ValueError, match="two"):
        qp.derange_questioners(["a"], ["a"])
    assert qp.derange_questioners(["a", "a"], ["a", "b"]) == ["b", "b"]


def test_with_questioners_copies():
    rows = [_example(0, t, "q0") for t in range(3)]
    out = qp.with_questioners(rows, ["q1", None, "q2"])
    assert [ex.questioner_id for ex in out] == ["q1", None, "q2"] and rows[0].questioner_id == "q0"
    assert [ex.response for ex in out] == [ex.response for ex in rows]


def test_pair_statistics():
    hist = [{"contrastive_positive_pairs": 2.0, "contrastive_negative_pairs": 5.0, "contrastive_valid": 0.5},
            {"contrastive_positive_pairs": 0.0, "contrastive_negative_pairs": 3.0, "contrastive_valid": 0.0},
            {"loss": 1.0}]  # a batch without the term counts as one without positives
    p = qp.pair_statistics(hist, contrastive=True)
    assert p["batches"] == 3 and p["min"] == 0 and p["max"] == 2
    assert p["zero_share"] == pytest.approx(2 / 3) and p["mean"] == pytest.approx(2 / 3)
    assert qp.pair_statistics(hist, contrastive=False) is None
    assert qp.pair_statistics([], contrastive=True) == {"batches": 0}


def _unit(system: str, seed: int, shift: float, n: int = 40, ll: float = -30.0) -> dict:
    rng = random.Random(seed * 31 + len(system))
    per = {k: [max(0.0, 0.2 + shift + rng.gauss(0, 0.05)) for _ in range(n)] for k in qp.PER_EXAMPLE}
    test_ll = [ll + rng.gauss(0, 1) for _ in range(n)]
    metrics = {k: sum(v) / n for k, v in per.items()}
    metrics.update(bleu_corpus=10.0, distinct=0.9, multi_turn=0.1, diversity=0.0, test_ll=sum(test_ll) / n)
    kind = qp.SYSTEMS[system][0]
    u = {"unit": f"{system}-s{seed}", "system": system, "kind": kind, "label": qp.SYSTEMS[system][1], "seed": seed,
         "n": n, "metrics": metrics, "per_example": per, "predictions": [f"p{i}" for i in range(n)],
         "test_ll": test_ll, "steps": 120, "best_step": 80, "stopped_early": seed != 1, "train_s": 600.0,
         "eval_s": 60.0, "wall_s": 660.0, "eval_history": [{"step": 40, "loss_lm": 3.0}, {"step": 80, "loss_lm": 2.9}],
         "cost": {"added_params_per_layer": 0 if kind == "lora" else 100, "trainable_params": 1000, "step_s": 2.0},
         "pairs": None if kind != "dual-tower" else {"batches": 120, "mean": 0.0, "min": 0.0, "max": 0.0,
                                                       "zero_share": 1.0, "mean_negative_pairs": 20.0,
                                                       "valid_views": 1.0}}
    if kind == "persona-prompt":
        u.pop("test_ll")
        u["metrics"]["test_ll"] = None
        u["train_s"] = 0.0
    return u


def _units(dual_shift: float = 0.1) -> dict:
    units = {"data": {"unit": "data", "split": "turn", "fractions": [0.55, 0.1, 0.35], "history_turns": 4,
                      "digest": "abc", "dtype": "bfloat16",
                      "counts": {s: {"examples": n, "dialogues": 126, "questioners": 98, "responders": 12}
                                 for s, n in (("train", 647), ("dev", 125), ("test", 376))},
                      "used": {"train": 647, "dev": 125, "test": 40},
                      "clusters": {"num_clusters": 2, "train_sizes": {"0": 300, "1": 347}},
                      "samples": [{"index": 0, "id": "d0:1", "questioner": "q0", "question": "why?",
                                   "reference": "because"}]}}
    for seed in range(3):
        units[f"lora-s{seed}"] = _unit("lora", seed, 0.0)
        units[f"dual-tower-s{seed}"] = _unit("dual-tower", seed, dual_shift)
    units["persona-prompt-s0"] = _unit("persona-prompt", 0, -0.1)
    units["no-contrastive-s0"] = _unit("no-contrastive", 0, 0.0)
    units["no-contrastive-s0"]["pairs"] = None
    own = units["dual-tower-s0"]
    units["controls-dual-tower-s0"] = {"unit": "controls-dual-tower-s0", "control_of": "dual-tower", "n": 40,
                                       "conditions": {"shuffled_questioner": _unit("dual-tower", 7, 0.0, ll=-31.0),
                                                      "unknown_questioner": _unit("dual-tower", 8, 0.0, ll=-30.5)}}
    assert len(own["per_example"]["rougeL"]) == 40
    return units


def test_summarise_and_verdicts():
    s = qp.summarise(_units(0.1))
    assert s["rows"][qp.HEADLINE]["seeds"] == 3 and s["rows"][qp.PROMPTED]["seeds"] == 1
    assert set(s["tests"]) == {qp.HEADLINE, qp.PROMPTED, "ablation: no contrastive"}
    assert s["tests"][qp.HEADLINE]["rougeL"]["mean_difference"] > 0
    assert qp.verdict(s).startswith("reproduced in direction")
    assert qp.verdict(qp.summarise(_units(-0.1))).startswith("not reproduced")
    assert qp.verdict(qp.summarise(_units(0.0))).startswith("inconclusive")
    assert qp.verdict(qp.summarise({})).startswith("not yet measured")
    c = s["controls"][qp.HEADLINE]
    assert set(c["rows"]) == {"own", "shuffled_questioner", "unknown_questioner"}
    assert c["tests"]["shuffled_questioner"]["test_ll"]["mean_difference"] > 0
    assert qp.controls_verdict(s).startswith("the model uses the questioner id")
    assert qp.controls_verdict(qp.summarise({})).startswith("not yet measured")
    assert s["pairs"]["ablation: no contrastive"] is None and s["pairs"][qp.HEADLINE]["zero_share"] == 1.0
    assert s["vs_prompted"]["rougeL"]["mean_difference"] > 0


def test_ablations_are_tested_against_the_dual_tower_of_seed_0():
    units = _units(0.1)
    full = units["dual-tower-s0"]
    worse = _unit("rank4", 0, 0.0)
    worse["per_example"] = {k: [x - 0.05 for x in v] for k, v in full["per_example"].items()}
    worse["test_ll"] = [x - 1.0 for x in full["test_ll"]]
    units["rank4-s0"] = worse
    units["rank64-s0"] = _unit("rank64", 0, 0.1, n=30)  # other test replies: not comparable, left out
    s = qp.summarise(units)
    assert set(s["ablations"]) == {"ablation: rank 4", "ablation: no contrastive"}
    t = s["ablations"]["ablation: rank 4"]
    assert t["rougeL"]["mean_difference"] == pytest.approx(-0.05) and t["rougeL"]["significant"]
    assert t["test_ll"]["mean_difference"] == pytest.approx(-1.0)
    md = qp.to_markdown({"units": units, "summary": s, "setting": "default", "command": "python x", "written": "now",
                         "machine_line": "", "order": qp.unit_order(3)})
    table = md[md.index(f"Ablations against the {qp.HEADLINE} of the same seed (0)"):]
    assert "| ablation: rank 4 | -0.0500 [" in table and "| -1.0000 [" in table
    assert table.index("ablation: rank 4") < table.index("ablation: no contrastive")
    del units["dual-tower-s0"]
    assert qp.summarise(units)["ablations"] == {}


def test_to_markdown_reads_well():
    units = _units(0.1)
    s = qp.summarise(units)
    md = qp.to_markdown({"units": units, "summary": s, "setting": "default", "command": "python x", "written": "now",
                         "machine_line": "Machine: test.", "order": qp.unit_order(3),
                         "trained_on": "Trained on: Xeon (AMX yes), eager attention: lora s0."})
    assert "**Verdict: reproduced in direction" in md and "Units still to run:" in md
    assert "Machine: test.\n\nTrained on: Xeon (AMX yes), eager attention: lora s0.\n" in md
    assert "| Dual-tower (r=16) | 3 |" in md and "**not converged**" in md
    assert "no positives at all" in md and "no contrastive loss" in md
    assert "shuffled questioner" in md and "unknown questioner" in md
    assert "| train | 647 | 126 | 98 | 12 | 647 | – |" in md and "+8.4%" in md
    assert md.index("| LoRA | 3 |") < md.index("| Dual-tower (r=16) | 3 |") < md.index("| Persona-in-prompt | 1 |")
    assert f"{qp.HEADLINE} against {qp.PROMPTED}: ROUGE-L +" in md
    assert "nan" not in md.lower()


def test_to_markdown_with_the_data_unit_only():
    units = {"data": _units()["data"]}
    md = qp.to_markdown({"units": units, "summary": qp.summarise(units), "setting": "default", "command": "python x",
                         "written": "now", "machine_line": "", "order": qp.unit_order(3)})
    assert "not yet measured" in md and "## Data" in md and "## Test" not in md


def test_sanity_rows_are_scored_and_shown_apart_from_the_systems(monkeypatch):
    train = [_example(0, 1, "q1"), _example(0, 3, "q1"), _example(1, 1, "q2")]  # "reply 1" twice
    test = [_example(2, 5, "q1"), _example(2, 1, "q2")]
    ctx = SimpleNamespace(splits={"train": train, "test": test})
    monkeypatch.setattr(qp, "score", lambda preds, examples: {"predictions": preds, "metrics": {
        "rouge1": sum(p == e.response for p, e in zip(preds, examples)) / len(preds), "rouge2": 0.0, "rougeL": 0.0,
        "bleu_corpus": 0.0, "distinct": len(set(preds)) / len(preds), "multi_turn": 0.0}})
    unit = qp.run_unit(ctx, "sanity", "k")
    assert unit["conditions"]["copy_last_turn"]["predictions"] == ["q 5", "q 1"]
    assert unit["conditions"]["most_frequent_reply"]["predictions"] == ["reply 1", "reply 1"]
    units = {**_units(0.1), "sanity": unit}
    s = qp.summarise(units)
    assert s["sanity"]["most_frequent_reply"]["rouge1"] == 0.5 and "sanity" not in str(list(s["rows"]))
    md = qp.to_markdown({"units": units, "summary": s, "setting": "default", "command": "python x", "written": "now",
                         "machine_line": "", "order": qp.unit_order(3)})
    assert "## Sanity rows" in md and "| most frequent training reply | 0.5000 |" in md


def test_cost_table_compares_step_times_only_on_one_machine_and_kernel():
    units = _units(0.1)
    xeon = {"cpu": "Xeon", "amx_bf16": True}
    stamps = {"lora-s0": ({"cpu": "EPYC", "amx_bf16": False}, None, 16.0),  # LoRA: another CPU, SDPA
              "dual-tower-s0": (xeon, "eager", 5.5)}
    for name, (precision, kernel, step) in stamps.items():
        units[name] = {**units[name], "precision": precision, "cost": {
            "added_params_per_layer": 10, "trainable_params": 100, "step_s": step},
            **({"train_attention": kernel} if kernel else {})}
    md = qp.to_markdown({"units": units, "summary": qp.summarise(units), "setting": "default", "command": "python x",
                         "written": "now", "machine_line": "", "order": qp.unit_order(3)})
    table = md[md.index("## Cost"):]
    assert "| 16.00 | 1.00x | EPYC (AMX no), sdpa attention |" in table
    assert "| 5.50 | – | Xeon (AMX yes), eager attention |" in table  # no ratio across machines
    units["lora-s0"] = {**units["lora-s0"], "precision": xeon, "train_attention": "eager", "cost": {
        **units["lora-s0"]["cost"], "step_s": 11.0}}
    md = qp.to_markdown({"units": units, "summary": qp.summarise(units), "setting": "default", "command": "python x",
                         "written": "now", "machine_line": "", "order": qp.unit_order(3)})
    assert "| 5.50 | 0.50x | Xeon (AMX yes), eager attention |" in md


def test_machine_line_names_the_unit_it_describes():
    from _common import machine_line

    info = {"cpu": "Xeon", "cpu_count": 2, "amx_bf16": True, "platform": "Linux", "python": "3.11",
            "versions": {"torch": "2.13"}, "load_average": [1.5]}
    assert machine_line(info).startswith("Machine: Xeon (2 cores, AMX yes, no GPU)")
    assert machine_line(info).endswith("load average 1.50 when the results were written.")
    line = machine_line(info, "lora-s0")
    assert line.startswith("Machine that ran unit `lora-s0`: Xeon") and line.endswith("1.50 when it finished.")
