"""The ROPG / RSPG PFG-LaMP benchmark's pure pieces (benchmarks/ropg_pfg.py): keys, samples, controls, report.

No model is loaded: the units are small hand-made dicts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import ropg_pfg  # noqa: E402
from personakit.types import ProfileExample, ProfileItem, UserProfile  # noqa: E402


def _example(user: str, i: int) -> ProfileExample:
    items = [ProfileItem(id=f"{user}-d{j}:0", text=f"{user} said {j}") for j in range(3)]
    return ProfileExample(id=f"{user}-x:{i}", task="PFG-LaMP", input=f"Persuadee: hi {i}",
                          profile=UserProfile(user_id=user, items=items), target=f"reply {i}")


def _splits() -> dict[str, list[ProfileExample]]:
    return {"train": [_example(u, i) for u in ("a", "b") for i in range(6)],
            "dev": [_example(u, i) for u in ("c",) for i in range(5)],
            "test": [_example(u, i) for u in ("d", "e", "f") for i in range(4)]}


def test_unit_key_stable_and_changing():
    s = ropg_pfg.SETTINGS["default"]
    key = ropg_pfg.unit_key("ropg-rl", s, "digest", ["k1"])
    assert key == ropg_pfg.unit_key("ropg-rl", dict(s), "digest", ["k1"])
    others = [ropg_pfg.unit_key("ropg-kd", s, "digest", ["k1"]),
              ropg_pfg.unit_key("ropg-rl", {**s, "top_l": 4}, "digest", ["k1"]),
              ropg_pfg.unit_key("ropg-rl", s, "other", ["k1"]),
              ropg_pfg.unit_key("ropg-rl", s, "digest", ["k2"]),
              ropg_pfg.unit_key("ropg-rl", s, "digest", ["k1"], device="cuda")]
    assert len({key, *others}) == 6


def test_settings_meet_the_protocol():
    d = ropg_pfg.SETTINGS["default"]
    assert d["test"] >= 300 and d["ropg_train"] >= 200 and d["rspg_train"] >= 200
    for s in ropg_pfg.SETTINGS.values():
        assert set(ropg_pfg.DEPENDS) <= set(ropg_pfg.ORDER)
        for unit, deps in ropg_pfg.DEPENDS.items():  # inputs come first
            assert all(ropg_pfg.ORDER.index(d_) < ropg_pfg.ORDER.index(unit) for d_ in deps)
        assert s["patience"] >= 1 and 0 < s["threshold"] < 1


def test_role_samples_disjoint_and_deterministic():
    splits = _splits()
    setting = {"ropg_train": 5, "rspg_train": 4, "ropg_dev": 2, "rspg_dev": 3, "test": 10}
    roles = ropg_pfg.role_samples(splits, setting, seed=0)
    assert [len(roles[r]) for r in ropg_pfg.ROLES] == [5, 2, 4, 3, 10]
    assert not {ex.id for ex in roles["ropg_train"]} & {ex.id for ex in roles["rspg_train"]}
    assert not {ex.id for ex in roles["ropg_dev"]} & {ex.id for ex in roles["rspg_dev"]}
    assert roles == ropg_pfg.role_samples(splits, setting, seed=0)
    assert roles != ropg_pfg.role_samples(splits, setting, seed=1)
    assert ropg_pfg.data_digest(roles) == ropg_pfg.data_digest(ropg_pfg.role_samples(splits, setting, seed=0))
    everything = ropg_pfg.role_samples(splits, dict.fromkeys(setting), seed=0)
    assert len(everything["ropg_train"]) + len(everything["rspg_train"]) == 12 and len(everything["test"]) == 12


def test_shuffled_profiles_never_the_users_own():
    test = _splits()["test"]
    for seed in range(5):
        shuffled = ropg_pfg.shuffle_profiles(test, seed=seed)
        assert [ex.id for ex in shuffled] == [ex.id for ex in test]  # inputs and targets stay
        assert [ex.target for ex in shuffled] == [ex.target for ex in test]
        for own, other in zip(test, shuffled):
            assert other.profile.user_id != own.profile.user_id
            assert not {i.id for i in other.profile.items} & {i.id for i in own.profile.items}
    assert ropg_pfg.shuffle_profiles(test, seed=3) == ropg_pfg.shuffle_profiles(test, seed=3)
    with pytest.raises(ValueError, match="fewer than two users"):
        ropg_pfg.shuffle_profiles([_example("a", 0), _example("a", 1)])


def test_split_counts():
    counts = ropg_pfg.split_counts(_splits())
    assert counts["test"] == {"users": 3, "dialogues": 3, "examples": 12}


def _fake_units(n: int = 40) -> dict[str, dict]:
    names = list(ropg_pfg.POOL)
    # BM25 clearly best, "none" worst; the shuffled control removes BM25's gain
    base = {name: [0.1 + 0.01 * (i % 5) for i in range(n)] for name in names}
    base["bm25"] = [v + 0.1 for v in base["bm25"]]
    per = {name: {"rouge1": vals, "rougeL": [v * 0.9 for v in vals]} for name, vals in base.items()}
    test = {"n": n, "retrievers": names, "per_example": per}
    hist = [{"step": 3, "loss": 1.0, "rouge1@expected": 0.1}, {"step": 6, "loss": 0.9, "rouge1@expected": 0.12}]
    training = {"steps": 6, "total_steps": 10, "stopped_early": True, "best_step": 6, "best_metric": 0.12,
                "eval_history": hist, "train_s": 60.0, "top_l": 4}
    ev = {"rouge1@top1": 0.1, "rouge1@expected": 0.1, "rouge1@initial": 0.1, "rouge1@oracle": 0.2}
    return {
        "data": {"counts": {"1": {"train": {"users": 1, "dialogues": 2, "examples": 3}},
                            "2": {"train": {"users": 1, "dialogues": 1, "examples": 2}}},
                 "setting_split": [0.5, 0.2, 0.3], "digest": "abc", "roles": {"test": n}, "mean_test_profile": 9.0},
        "pool-test": test,
        "rspg-post": {**training, "test_choices": [names.index("bm25")] * n,
                      "diagnostics_md": {"test": "**RSPG-Post on test**"}},
        "rspg-pre": {**training, "stopped_early": False, "plateau_step": None, "test_choices": [0] * n,
                     "fit_step": 10, "fit_choices": {"test": [names.index("bm25")] * n},
                     "diagnostics": {s: _diag(0.3, 0.4) for s in ("train", "dev", "test")},
                     "fit_diagnostics": {s: _diag(0.9 if s == "train" else 0.35, 0.4) for s in ("train", "dev", "test")},
                     "fit_diagnostics_md": {"train": "**RSPG-Pre fit on train**"},
                     "history": [{"step": s, "loss": 1.0 / s, "success_rate": 0.1 * s} for s in range(1, 7)]},
        "ropg-rl": {**training, "before": {"train": ev, "dev": ev}, "after": {"train": ev, "dev": ev}},
        "ropg-kd": {**training, "stopped_early": False, "before": {"train": ev, "dev": ev},
                    "after": {"train": ev, "dev": ev}},
        "controls": {"n": n, "per_example": {name: per["none"] for name in names if name != "none"}},
        "ropg-heldout": {"per_example": {"dense": base["dense"], "ropg-rl": base["bm25"], "ropg-kd": base["dense"]},
                         "same_top1": {"ropg-rl": 0.2, "ropg-kd": 1.0}},
    }


def _diag(success: float, majority: float) -> dict:
    return {"success_rate": success, "majority_rate": majority, "selected_eval": 0.1}


def test_summary_and_markdown_from_fake_units(tmp_path):
    units = _fake_units()
    s = ropg_pfg.summarise(units)
    assert s["best_single"] == "BM25"
    assert s["rows"]["RSPG-Post"] == s["rows"]["BM25"]  # it always chose BM25
    assert "BM25" not in s["tests"] and s["tests"]["No retrieval"]["rouge1"]["mean_difference"] < 0
    assert s["tests"]["RSPG-Pre"]["rouge1"]["significant"]  # always "none": worse than BM25
    assert s["rows"]["RSPG-Pre (end of budget)"] == s["rows"]["BM25"]  # the fitted weights' test choices
    oracle = s["controls"]["oracle (best of the pool per input)"]["rouge1"]
    assert oracle == pytest.approx(s["rows"]["BM25"]["rouge1"])
    assert s["shuffled"]["BM25"]["own_vs_shuffled"]["mean_difference"] > 0
    assert s["heldout"]["trained"]["ROPG-RL"]["vs_initial"]["mean_difference"] == pytest.approx(0.1)
    assert ropg_pfg.verdict(s).startswith("inconclusive")  # RSPG-Post == BM25 exactly
    assert ropg_pfg.reads_document_verdict(s).startswith("yes: with BM25")
    report = {"setting": "quick", "command": "python benchmarks/ropg_pfg.py --quick", "written": "now",
              "machine_line": "Machine: test.", "units": units, "summary": s}
    md = ropg_pfg.to_markdown(report)
    for needle in ("| BM25 | 0.2200", "(reference)", "**not converged** (budget)", "yes (plateau)", "Shuffled profile",
                   "**RSPG-Post on test**", "**RSPG-Pre fit on train**", "| identical on every input |",
                   "| RSPG-Pre | end of budget (step 10) | 0.900 | 0.400 | 0.350 |", "| not reached |", "ROPG on held-out users", "Units still to run: feedback", "LaMP-4"):
        assert needle in md, needle
    pytest.importorskip("matplotlib")
    assert ropg_pfg.plot_curves(units, tmp_path / "curves.png")  # with the RSPG fit panel
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_report_with_no_units_and_llm_ignoring_profile():
    assert ropg_pfg.summarise({}) == {"rows": {}, "tests": {}, "controls": {}, "best_single": None}
    units = _fake_units()
    units["controls"]["per_example"] = {n: units["pool-test"]["per_example"][n] for n in ropg_pfg.POOL if n != "none"}
    for n in ropg_pfg.POOL:  # every retriever (and shuffled) equals no retrieval: the LLM ignores the document
        units["pool-test"]["per_example"][n] = units["pool-test"]["per_example"]["none"]
    s = ropg_pfg.summarise(units)
    assert "barely reads" in ropg_pfg.reads_document_verdict(s)
    md = ropg_pfg.to_markdown({"setting": "default", "command": "c", "written": "w", "units": {}, "summary":
                               ropg_pfg.summarise({})})
    assert "Units still to run: data" in md and "not yet measured" in md
