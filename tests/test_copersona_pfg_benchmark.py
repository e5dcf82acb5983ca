"""The CoPersona PFG benchmark's pure pieces (benchmarks/copersona_pfg.py): data, keys, graph stats, report.

No model is loaded: the users are built from a few hand-made dialogues and the units are small
hand-made dicts.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import copersona_pfg as cp  # noqa: E402
from personakit.data.copersona_users import build_pfg_users  # noqa: E402
from personakit.facets import PLACEHOLDER, FacetSummary, UserFacets  # noqa: E402
from personakit.types import Dialogue, Turn  # noqa: E402

WORDS = "we could help the children with a small gift today because it matters a lot to them"


def _dialogue(i: int, day: int, persuader: str, persuadee: str, n_turns: int = 6) -> Dialogue:
    turns = [Turn(speaker="persuader" if t % 2 else "persuadee", text=f"{WORDS} {i} {t}") for t in range(n_turns)]
    return Dialogue(id=f"201808{day:02d}-120000_{i}_live", participants={"persuader": persuader, "persuadee": persuadee},
                    turns=turns)


def _data():
    """Eight users: a..f with 3 dialogues (a train dialogue each), g and h with 2; one train dialogue of c is d's test."""
    ds = []
    i = 0
    for day, pairs in enumerate([[("a", "x1"), ("b", "x2"), ("c", "x3"), ("d", "x4"), ("e", "x5"), ("f", "x6"),
                                  ("g", "x7"), ("h", "x8")],
                                 [("a", "y1"), ("b", "y2"), ("e", "y5"), ("f", "y6"), ("g", "y7"), ("h", "y8")],
                                 [("a", "z1"), ("b", "z2"), ("e", "z5"), ("f", "z6")]], start=1):
        for persuader, persuadee in pairs:
            ds.append(_dialogue(i, day, persuader, persuadee))
            i += 1
    ds.append(_dialogue(i, 2, "c", "d"))  # c's train dialogue (c has 3), d's test dialogue (d has 2)
    ds.append(_dialogue(i + 1, 3, "c", "q"))
    return build_pfg_users(ds)


SETTING = dict(min_history_words=10, max_users=None, dev_fraction=0.3, train=None, dev=None, test=None, test_per_user=2)


def test_split_items_counts_and_no_dialogue_in_two_splits():
    data = _data()
    split = cp.split_items(data, SETTING, seed=0)
    c = split["counts"]
    assert c["users"] == len(split["users"]) >= 8 and c["little_text"] == c["candidates"] - c["users"]
    assert c["dialogue_overlap"] == 0
    assert c["leaked_items_dropped"] > 0  # c's train dialogue is d's test dialogue
    test_dialogues = {ex.dialogue_id for ex in data.test}
    assert not {ex.dialogue_id for ex in split["train"] + split["dev"]} & test_dialogues
    assert all(n <= 2 for n in __import__("collections").Counter(ex.user_id for ex in split["test"]).values())
    assert c["splits"]["test"]["items"] == len(split["test"]) and c["dev_dialogues"] >= 1
    assert split["dev"] and split["train"]
    # users are in several splits by design; dialogues never
    assert c["user_overlap"]["train&test"] > 0
    assert cp.data_digest(split) == cp.data_digest(cp.split_items(data, SETTING, seed=0))
    assert cp.data_digest(split) != cp.data_digest(cp.split_items(data, SETTING, seed=1))


def test_split_items_drops_users_with_little_text_and_samples():
    data = _data()
    few = cp.split_items(data, {**SETTING, "min_history_words": 10_000}, seed=0)
    assert few["users"] == [] and few["test"] == [] and few["counts"]["little_text"] == len(data.users)
    small = cp.split_items(data, {**SETTING, "max_users": 3, "test": 2, "test_per_user": 1}, seed=0)
    assert len(small["users"]) == 3 and len(small["test"]) == 2
    assert {ex.user_id for ex in small["test"]} <= {u.user_id for u in small["users"]}


def test_unit_key_changes_with_settings_data_inputs_and_device():
    s = cp.SETTINGS["default"]
    key = cp.unit_key("copersona-s0", s, "digest", ["k1"])
    assert key == cp.unit_key("copersona-s0", dict(s), "digest", ["k1"])
    assert key == cp.unit_key("copersona-s0", {**s, "seeds": {"rag": 5}}, "digest", ["k1"])  # more seeds: same units
    others = [cp.unit_key("copersona-s1", s, "digest", ["k1"]), cp.unit_key("copersona-s0", {**s, "lr": 1e-4}, "digest", ["k1"]),
              cp.unit_key("copersona-s0", s, "other", ["k1"]), cp.unit_key("copersona-s0", s, "digest", ["k2"]),
              cp.unit_key("copersona-s0", s, "digest", ["k1"], device="cuda"),
              cp.unit_key("copersona-s0", s, "digest", ["k1"], dtype="float32")]
    assert len({key, *others}) == 7


def test_settings_meet_the_protocol_and_order():
    d = cp.SETTINGS["default"]
    assert d["test"] >= 300 and d["patience"] >= 1 and d["seeds"] == {"rag": 3, "copersona": 3}
    for s in cp.SETTINGS.values():
        order = cp.unit_order(s)
        assert len(order) == len(set(order))
        for unit in order:  # inputs come first
            assert all(order.index(dep) < order.index(unit) for dep in cp.depends(unit)), unit
        assert {f"{v}-s0" for v in cp.SYSTEMS} <= set(order) and set(cp.CONTROLS) <= set(order)
    order = cp.unit_order(d)
    assert [u for u in order if u.startswith("copersona-s")] == ["copersona-s0", "copersona-s1", "copersona-s2"]
    assert [u for u in order if u.startswith("pag-s")] == ["pag-s0"]
    assert cp.parse_system("no_parametric-s2") == ("no_parametric", 2)


def test_regrade_follows_the_summarizer_rule():
    uf = UserFacets(user_id="u", content_hash="h", facets=[
        FacetSummary(facet="A", summary=PLACEHOLDER, reliability="none", llm_summary="Likes dogs."),
        FacetSummary(facet="B", summary="Kind.", reliability="strong", llm_summary="Kind."),
        FacetSummary(facet="C", summary=PLACEHOLDER, reliability="none", llm_summary="")])  # never valid
    out = cp.regrade(uf, [3, 1, 2])
    assert [f.reliability for f in out.facets] == ["strong", "weak", "none"]
    assert [f.summary for f in out.facets] == ["Likes dogs.", PLACEHOLDER, PLACEHOLDER]
    assert out.reliability == [3, 1, 0]


def test_graph_stats_and_label_agreement():
    from personakit.graph import build_multiplex_graph

    torch.manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(6, 2, 4), dim=-1)
    rel = torch.tensor([[3, 3], [3, 2], [2, 3], [3, 3], [0, 0], [3, 1]])
    g = build_multiplex_graph(e, rel, top_k=2, threshold=0.0, combined_threshold=0.0, facet_names=["a", "b"])
    st = cp.graph_stats(g)
    assert st["users"] == 6 and st["edges"] == int(g.edge_index.shape[1])
    assert sum(st["degree_histogram"].values()) == 6 and [f["facet"] for f in st["per_facet"]] == ["a", "b"]
    assert 0 <= st["isolated"] <= st["no_neighbours"] <= 1 and 0 <= st["reciprocal"] <= 1
    assert math.isclose(st["mean_degree"], st["edges"] / 6)
    la = cp.label_agreement([[3, 0], [2, 2]], [[3, 1], [2, 2]], ["a", "b"])
    assert la["n"] == 4 and la["agreement"] == 0.75 and la["within_one"] == 1.0
    assert la["confusion"][0][1] == 1 and la["per_facet"] == {"a": 1.0, "b": 0.5}
    same = cp.label_agreement([[0, 0]], [[0, 0]])
    assert same["agreement"] == 1.0 and math.isnan(same["kappa"])  # one label everywhere: kappa undefined


def _system(system: str, seed: int, r1: list, bpc: list, **extra) -> dict:
    per = {"rouge1": r1, "rougeL": r1, "meteor": r1, "bleu": [100 * x for x in r1], "bpc": bpc}
    metrics = {k: sum(v) / len(v) for k, v in per.items()}
    metrics.update(bertscore_f1=0.5, distinct=1.0, multi_turn=0.0)
    return {"kind": "system", "system": system, "variant": system.lower(), "seed": seed, "steps": 40, "total_steps": 60,
            "best_step": 30, "best_dev_loss": 2.5, "stopped_early": True, "train_s": 600.0, "eval_s": 60.0,
            "eval_history": [{"step": 20, "loss": 2.7}, {"step": 40, "loss": 2.5}], "wall_s": 660.0,
            "prompt_tokens": {"mean": 250, "cut": 0.1},
            "test": {"n": len(r1), "metrics": metrics, "per_example": per, "predictions": [f"p{i}" for i in range(len(r1))]},
            **extra}


def _units() -> dict:
    n = 40
    low = [0.10 + 0.001 * (i % 7) for i in range(n)]
    high = [x + 0.05 + 0.002 * (i % 3) for i, x in enumerate(low)]
    bpc = [1.5 + 0.01 * (i % 5) for i in range(n)]
    units = {"rag-s0": _system("RAG", 0, low, bpc), "rag-s1": _system("RAG", 1, low, bpc),
             "copersona-s0": _system("CoPersona", 0, high, [b - 0.1 for b in bpc]),
             "copersona-s1": _system("CoPersona", 1, high, [b - 0.1 for b in bpc]),
             "pag-s0": _system("PAG", 0, low, bpc)}
    units["ctrl-swapped-facets"] = {"kind": "control", "test": units["rag-s0"]["test"], "note": "derangement"}
    units["ctrl-no-scores"] = {"kind": "control", "test": units["copersona-s0"]["test"], "note": "same"}
    return units


def test_summarise_verdict_and_controls():
    s = cp.summarise(_units())
    assert s["rows"]["CoPersona"]["seeds"] == 2 and s["rows"]["RAG"]["seeds"] == 2
    assert set(s["tests"]) == {"CoPersona", "PAG"}
    assert s["tests"]["CoPersona"]["rouge1"]["mean_difference"] > 0 and s["tests"]["CoPersona"]["rouge1"]["significant"]
    assert cp.verdict(s).startswith("reproduced in direction")
    lines = dict(line.split(": ", 1) for line in cp.controls_verdict(s))
    assert lines[cp.CONTROLS["ctrl-swapped-facets"]].endswith("the model uses the user's own facets")
    assert lines[cp.CONTROLS["ctrl-no-scores"]].endswith("no detectable use of the similarity scores of the peer context")
    worse = cp.summarise({k: v for k, v in _units().items() if k.startswith("rag")}
                         | {"copersona-s0": _system("CoPersona", 0, [0.05] * 20 + [0.06] * 20, [1.5] * 40)})
    assert cp.verdict(worse).startswith("not reproduced")
    assert cp.verdict(cp.summarise({})).startswith("not yet measured")


def test_to_markdown_reads_with_partial_units():
    units = _units()
    units["data"] = {"counts": {"candidates": 10, "little_text": 1, "users": 9, "test_role": {"persuadee": 4, "persuader": 5},
                                "users_with_train_dialogue": 5, "leaked_items_dropped": 2, "dev_dialogues": 1,
                                "pools": {"train": 20, "dev": 5, "test": 40, "test_all": 80},
                                "splits": {"train": {"items": 20, "users": 5, "dialogues": 4},
                                           "dev": {"items": 5, "users": 1, "dialogues": 1},
                                           "test": {"items": 40, "users": 9, "dialogues": 9}},
                                "user_overlap": {"train&test": 5, "dev&test": 1, "train&dev": 0}, "dialogue_overlap": 0,
                                "history_words_median": 120, "reference_words_mean": 16.2},
                     "digest": "abc", "settings": cp.SETTINGS["quick"],
                     "samples": [{"index": 0, "id": "d:1", "user": "u", "agent": "persuader", "reference": "ref",
                                  "last_turn": "persuadee: hi"}]}
    order = cp.unit_order(cp.SETTINGS["default"])
    rep = {"command": "python benchmarks/copersona_pfg.py", "setting": "default", "written": "now", "machine_line": "M",
           "order": order, "units": units, "summary": cp.summarise(units)}
    assert "Trained on" not in cp.to_markdown(rep)
    rep["trained_on"] = "Trained on: Xeon (AMX yes), eager attention: copersona-s0."
    md = cp.to_markdown(rep)
    assert "M\n\nTrained on: Xeon (AMX yes), eager attention: copersona-s0.\n" in md
    assert "**Verdict: reproduced in direction" in md and "Units still to run: sanity, facets, graph" in md
    assert "| control: own facets swapped with another user's |" in md and "| CoPersona | 2 |" in md
    assert "0.3953 / 0.2254 / 0.3349 / 15.4703" in md and "## Samples (seed 0)" in md and "  - RAG: p0" in md
    assert "dialogues in two splits: 0" in md


def test_ablations_are_tested_against_full_copersona_of_seed_0_with_the_papers_difference():
    units = _units()
    full = units["copersona-s0"]["test"]["per_example"]
    units["no_parametric-s0"] = _system("w/o parametric", 0, [x - 0.05 for x in full["rouge1"]],
                                        [b + 0.1 for b in full["bpc"]])
    units["no_nonparametric-s0"] = _system("w/o non-parametric", 0, full["rouge1"], full["bpc"])
    s = cp.summarise(units)
    assert set(s["ablations"]) == {"w/o parametric", "w/o non-parametric"}
    lower = s["ablations"]["w/o parametric"]
    assert lower["rouge1"]["mean_difference"] == pytest.approx(-0.05) and lower["rouge1"]["significant"]
    assert lower["bpc"]["mean_difference"] == pytest.approx(0.1)
    assert s["ablations"]["w/o non-parametric"]["rougeL"]["mean_difference"] == pytest.approx(0.0)
    assert "w/o parametric" in s["tests"]  # still against RAG as well
    md = cp.to_markdown({"command": "c", "setting": "default", "written": "now", "machine_line": "M",
                         "order": cp.unit_order(cp.SETTINGS["default"]), "units": units, "summary": s})
    table = md[md.index("Ablations against CoPersona of the same seed (0)"):]
    assert "| w/o parametric | -0.0500 [" in table and "| -0.0280 / -0.0187 |" in table  # paper: 0.3673-0.3953
    assert "| w/o non-parametric | +0.0000 (the same difference on every item" in table and "| -0.0131 / -0.0064 |" in table
    del units["copersona-s0"]  # no full CoPersona of seed 0: nothing to test the ablations against
    assert cp.summarise(units)["ablations"] == {}


def test_plot_curves(tmp_path):
    pytest.importorskip("matplotlib")
    assert cp.plot_curves(_units(), tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size > 0
    assert not cp.plot_curves({}, tmp_path / "none.png")


def test_sanity_rows_score_without_bpc_and_show_apart(monkeypatch):
    from types import SimpleNamespace

    def item(i, last, response):
        return SimpleNamespace(history=[Turn(speaker="persuadee", text=last)], response=response, id=f"i{i}")

    train = [item(0, "a", "Hi there."), item(1, "b", "hi there."), item(2, "c", "Bye.")]
    test = [item(3, "Would you donate?", "Yes I would donate."), item(4, "No.", "Hi there.")]
    ctx = SimpleNamespace(data={"train": train, "test": test}, s={"bertscore": False})
    unit = cp.run_unit(ctx, "sanity")
    copy, frequent = unit["conditions"]["copy_last_turn"], unit["conditions"]["most_frequent_reply"]
    assert copy["predictions"] == ["Would you donate?", "No."] and frequent["predictions"] == ["Hi there."] * 2
    assert copy["metrics"]["bpc"] is None and "bpc" not in copy["per_example"]
    assert frequent["per_example"]["rouge1"][1] == pytest.approx(1.0) and copy["metrics"]["rouge1"] > 0
    s = cp.summarise({"sanity": unit})
    assert s["rows"] == {} and set(s["sanity"]) == {"copy_last_turn", "most_frequent_reply"}
    md = cp.to_markdown({"command": "x", "setting": "default", "written": "now", "machine_line": "",
                         "order": cp.unit_order(cp.SETTINGS["default"]), "units": {"sanity": unit}, "summary": s})
    assert "## Sanity rows" in md and "| most frequent training reply |" in md and "| – |" in md
