"""The resumable unit store of the long benchmarks and the GRAG benchmark's summary (no model is loaded)."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _common import VOLATILE, UnitStore, machines_line, report_volatile, train_attention, write_results  # noqa: E402
import grag_quality  # noqa: E402


def test_unit_store_round_trip_and_keys(tmp_path):
    store = UnitStore(tmp_path, "bench")
    key = store.key({"seed": 0, "lr": 1e-4, "sizes": (1, 2)})
    assert key == UnitStore.key({"sizes": [1, 2], "lr": 1e-4, "seed": 0})  # order and tuple/list do not matter
    assert key != store.key({"seed": 1, "lr": 1e-4, "sizes": (1, 2)})
    assert store.load("SPC", "presft-s0", key) is None
    path = store.save("SPC", "presft-s0", key, {"rouge1": 0.25})
    assert path == tmp_path / "bench" / "SPC" / f"presft-s0-{key}.json"
    assert store.load("SPC", "presft-s0", key) == {"rouge1": 0.25}
    assert store.load("SPC", "presft-s0", "otherkey00") is None  # another config is not reused
    store.save("PFG", "postgrag-s0", key, {"rouge1": 0.5})
    assert [u["rouge1"] for u in store.all()] == [0.5, 0.25]
    assert not list(path.parent.glob("*.tmp*"))  # atomic: no temporary file left behind


def test_grag_unit_key_depends_on_what_changes_the_result():
    args = argparse.Namespace(dtype="auto", backbone=None)
    s = grag_quality.SETTINGS["default"]
    base = grag_quality.unit_key("SPC", "postgrag", 0, s, "digest", args)
    assert base == grag_quality.unit_key("SPC", "postgrag", 0, dict(s), "digest", args)
    assert base == grag_quality.unit_key("SPC", "postgrag", 0, {**s, "judge_pairs": 3, "seeds": {}}, "digest", args)
    others = [grag_quality.unit_key("SPC", "postgrag", 1, s, "digest", args),
              grag_quality.unit_key("SPC", "presft-hist", 0, s, "digest", args),
              grag_quality.unit_key("PFG", "postgrag", 0, s, "digest", args),
              grag_quality.unit_key("SPC", "postgrag", 0, {**s, "lr": 1e-3}, "digest", args),
              grag_quality.unit_key("SPC", "postgrag", 0, s, "other data", args),
              grag_quality.unit_key("SPC", "postgrag", 0, s, "digest", argparse.Namespace(dtype="float32",
                                                                                           backbone=None))]
    assert base not in others and len(set(others)) == len(others)


def _unit(system, kind, seed, rouge2, bleu):
    per = {"rouge2": rouge2, "bleu": bleu}
    metrics = {k: 0.1 for k in grag_quality.METRIC_KEYS}
    return {"system": system, "kind": kind, "seed": seed,
            "conditions": {"main": {"metrics": metrics, "per_example": per, "predictions": ["x"] * len(rouge2)}}}


def test_summary_tests_against_the_baseline_and_gives_a_verdict():
    rng = random.Random(0)
    n = 60
    base = [rng.random() * 0.2 for _ in range(n)]
    units = [_unit("PreSFT(Hist)", "presft-hist", 0, base, [b * 50 for b in base])]
    better = [b + 0.05 + rng.random() * 0.01 for b in base]
    units.append(_unit("PostGRAG", "postgrag", 0, better, [b * 50 for b in better]))
    summary = grag_quality.summarise(units)
    test = summary["tests"]["PostGRAG"]["rouge2"]
    assert test["mean_difference"] == pytest.approx(sum(better) / n - sum(base) / n)
    assert test["p"] < 0.05 and 0 < test["ci_low"] < test["mean_difference"] < test["ci_high"]
    assert grag_quality.verdict(summary).startswith("reproduced in direction")

    worse = [b - 0.05 for b in base]
    summary = grag_quality.summarise(units[:1] + [_unit("PostGRAG", "postgrag", 0, worse, [w * 50 for w in worse])])
    assert grag_quality.verdict(summary).startswith("not reproduced")
    noise = [b + rng.uniform(-0.01, 0.01) for b in base]
    summary = grag_quality.summarise(units[:1] + [_unit("PostGRAG", "postgrag", 0, noise, [b * 50 for b in base])])
    assert grag_quality.verdict(summary).startswith("inconclusive")
    assert grag_quality.verdict(grag_quality.summarise(units[:1])).startswith("not yet measured")


def test_seeds_are_averaged_per_example_before_testing():
    base = [0.1, 0.2, 0.3, 0.4]
    units = [_unit("PreSFT(Hist)", "presft-hist", s, base, base) for s in (0, 1)]
    units += [_unit("PostGRAG", "postgrag", 0, [0.2, 0.3, 0.4, 0.5], base),
              _unit("PostGRAG", "postgrag", 1, [0.0, 0.1, 0.2, 0.3], base)]
    summary = grag_quality.summarise(units)
    assert summary["rows"]["PostGRAG"]["seeds"] == 2
    assert summary["tests"]["PostGRAG"]["rouge2"]["mean_difference"] == pytest.approx(0.0)


def test_scaffold_tests_compare_blanked_scaffold_with_own_and_with_the_baseline():
    rng = random.Random(1)
    n = 50
    base = [rng.random() * 0.2 for _ in range(n)]
    own = [b + 0.05 + rng.random() * 0.01 for b in base]  # reads its scaffold: blanking it loses the edge
    post = _unit("PostGRAG", "postgrag", 0, own, [o * 50 for o in own])
    post["conditions"]["blank_generic"] = {"metrics": post["conditions"]["main"]["metrics"],
                                           "per_example": {"rouge2": base, "bleu": [b * 50 for b in base]}}
    units = [_unit("PreSFT(Hist)", "presft-hist", 0, base, [b * 50 for b in base]), post,
             _unit("PreGRAG", "pregrag", 1, own, own)]  # no seed-0 controls: no row
    summary = grag_quality.summarise(units)
    tests = summary["scaffold_tests"]
    assert list(tests) == ["PostGRAG"]
    reads = tests["PostGRAG"]["own R_G - R_G blanked"]["rouge2"]
    assert reads["mean_difference"] == pytest.approx(sum(own) / n - sum(base) / n) and reads["p"] < 0.05
    assert tests["PostGRAG"]["R_G blanked - PreSFT(Hist)"]["bleu"]["mean_difference"] == pytest.approx(0.0)
    assert "Does each system read its scaffold?" in grag_quality.to_markdown(
        {"command": "c", "setting": "default", "written": "now", "machine_line": "m",
         "datasets": {"SPC": {"summary": summary, "verdict": grag_quality.verdict(summary), "data_line": "d",
                              "units": {u["system"]: [u] for u in units}}}})


def test_grag_run_dataset_runs_each_unit_once_and_resumes(tmp_path, monkeypatch, capsys):
    """The unit loop (``_common.run_units``) as ``grag_quality.run_dataset`` drives it, with stub units."""
    calls = []
    d = {"train": [1] * 4, "dev": [1], "test": [1] * 2, "digest": "d1", "meta": {"n": 7}}
    monkeypatch.setattr(grag_quality, "prepare", lambda *a, **k: d)
    monkeypatch.setattr(grag_quality, "machine_info", lambda *a, **k: {"cpu": "test"})
    monkeypatch.setattr(grag_quality, "report", lambda args: calls.append("report"))

    def train_unit(dataset, kind, seed, d_, s, args, work, key):
        calls.append(f"{kind}-s{seed}")
        return {"system": grag_quality.SYSTEMS[kind], "kind": kind, "wall_s": 60.0}

    def judge_unit(dataset, units, d_, s, work):
        calls.append("judge")
        assert ("presft-hist", 0) in units and ("postgrag", 0) in units  # it compares two finished units
        return {"system": "judge", "kind": "judge"}

    monkeypatch.setattr(grag_quality, "train_unit", train_unit)
    monkeypatch.setattr(grag_quality, "judge_unit", judge_unit)
    monkeypatch.setattr(grag_quality, "icl_unit", lambda *a: calls.append("icl") or {"system": "ICL", "kind": "icl"})
    monkeypatch.setattr(grag_quality, "sanity_unit",
                        lambda *a: calls.append("sanity") or {"system": "sanity", "kind": "sanity"})
    args = argparse.Namespace(out=tmp_path, data=tmp_path, commit=False, setting_name="quick", dtype="auto",
                              backbone=None)
    s = {**grag_quality.SETTINGS["quick"], "seeds": {"SPC": 2}}
    grag_quality.run_dataset("SPC", s, args, tmp_path / "work", deadline=float("inf"))
    first = [c for c in calls if c != "report"]
    assert first == ["presft-hist-s0", "postgrag-s0", "judge", "pregrag-s0", "presft-tst-s0", "icl", "sanity",
                     "postgrag-paperinit-s0", "postgrag-persona-s0", "presft-hist-s1", "postgrag-s1"]
    assert calls.count("report") == len(first)
    units = UnitStore(tmp_path, grag_quality.NAME).all()
    assert len(units) == 11
    one = next(u for u in units if u["unit"] == "postgrag-s1")
    assert (one["dataset"], one["seed"], one["setting"], one["wall_s"]) == ("SPC", 1, "quick", 60.0)
    assert one["data"] == {"digest": "d1", "n": 7} and one["machine"] == {"cpu": "test"}
    calls.clear()
    grag_quality.run_dataset("SPC", s, args, tmp_path / "work", deadline=0.0)  # all done: nothing runs
    assert calls == [] and "postgrag seed 1: done" in capsys.readouterr().out.replace("PostGRAG", "postgrag")
    for path in (tmp_path / grag_quality.NAME / "SPC").glob("icl-s0-*.json"):
        path.unlink()
    grag_quality.run_dataset("SPC", s, args, tmp_path / "work", deadline=0.0)  # past the budget: not rerun
    assert calls == [] and "time budget reached" in capsys.readouterr().out
    grag_quality.run_dataset("SPC", s, args, tmp_path / "work", deadline=float("inf"))
    assert [c for c in calls if c != "report"] == ["icl"]
    calls.clear()
    for path in (tmp_path / grag_quality.NAME / "SPC").glob("*-s*.json"):
        if not path.name.startswith("sanity"):
            path.unlink()
    args.only = ["icl"]  # --only: just that kind of unit, whatever else is missing
    grag_quality.run_dataset("SPC", s, args, tmp_path / "work", deadline=float("inf"))
    assert [c for c in calls if c != "report"] == ["icl"]


def test_grag_prepare_reuses_the_committed_generic_responses_on_a_fresh_work_folder(tmp_path, monkeypatch):
    """A fresh machine (empty work folder) rebuilds the same samples and takes R_G from the results folder."""
    from personakit.types import Persona, ResponseExample, Turn

    def pool(split, n):
        return [ResponseExample(id=f"{split}-{i}", persona=Persona(sentences=[f"I like {split} {i}."]),
                                history=[Turn(speaker="user", text=f"hi {i}"), Turn(speaker="agent", text="hey"),
                                         Turn(speaker="user", text=f"how are you {i}?")],
                                response=f"fine {i}") for i in range(n)]

    monkeypatch.setattr(grag_quality, "load_pools", lambda name, data: (pool("train", 6), pool("dev", 3), pool("test", 4)))
    calls = []

    def augment(name, examples, work, s):
        calls.append(len(examples))
        return [ex.model_copy(update={"generic_response": f"generic {ex.id} {len(calls)}"}) for ex in examples], {"n": 1}

    monkeypatch.setattr(grag_quality, "augment", augment)
    s = {"train": 4, "dev": 2, "test": 3, "history_turns": 2}
    first = grag_quality.prepare("SPC", tmp_path / "work1", s, tmp_path, out=tmp_path / "out")
    kept = grag_quality.generic_responses_path(tmp_path / "out", "SPC")
    assert calls == [9] and kept.is_file()
    again = grag_quality.prepare("SPC", tmp_path / "work2", s, tmp_path, out=tmp_path / "out")  # fresh machine
    assert calls == [9] and again["digest"] == first["digest"]  # nothing generated, the same data and keys
    assert [ex.generic_response for ex in again["test"]] == [ex.generic_response for ex in first["test"]]
    other = grag_quality.prepare("SPC", tmp_path / "work3", {**s, "history_turns": 1}, tmp_path, out=tmp_path / "out")
    assert calls == [9, 9] and other["digest"] != first["digest"]  # another history length: generated anew


def test_run_units_skips_a_unit_another_process_holds_and_picks_it_up_when_it_finishes(tmp_path, capsys):
    """``lock_dir``: a locked unit is skipped, its dependant waits, and a further pass takes both up."""
    from _common import run_units, try_lock

    store, locks, calls = UnitStore(tmp_path, "bench"), tmp_path / "locks", []
    held = try_lock(locks / "a.lock")  # "another process" runs unit a
    assert held is not None and try_lock(locks / "a.lock") is None  # a second open file cannot take it

    def run(unit, key, done):
        calls.append(unit)
        if unit == "needs-a" and "a" not in done:
            return None  # waits for a
        if unit == "b":  # meanwhile the other process finishes a and lets go of its lock
            store.save("g", "a", "k-a", {"unit": "a", "value": 1})
            held.close()
        return {"value": unit}

    done = run_units(["a", "needs-a", "b"], store=store, group="g", name="bench", key_of=lambda u: f"k-{u}",
                     run=run, lock_dir=locks)
    assert calls == ["needs-a", "b", "needs-a"]  # a never ran here; needs-a ran once a was there
    assert set(done) == {"a", "needs-a", "b"} and done["a"]["value"] == 1
    out = capsys.readouterr().out
    assert "a: running in another process; skipped here" in out and "a: done (k-a)" in out
    assert try_lock(locks / "b.lock") is not None  # every lock this process took is released


def test_run_units_without_lock_dir_runs_one_pass_in_order(tmp_path):
    from _common import run_units

    calls = []
    run_units(["a", "b"], store=UnitStore(tmp_path, "bench"), group="g", name="bench", key_of=str,
              run=lambda unit, key, done: calls.append(unit) or None)  # None: skipped, not retried
    assert calls == ["a", "b"]


_WORKER = """
import sys, time
sys.path.insert(0, {benchmarks!r})
from pathlib import Path
from _common import UnitStore, run_units
root = Path({root!r})
(root / ("started-" + sys.argv[1])).touch()
def run(unit, key, done):
    with open(root / "calls.txt", "a") as f:
        f.write(unit + "\\n")
    t = time.time()  # the first unit waits for the other process, so that the two overlap
    while len(list(root.glob("started-*"))) < 2 and time.time() - t < 60:
        time.sleep(0.05)
    time.sleep(0.3)
    return {{"by": sys.argv[1]}}
run_units([f"u{{i}}" for i in range(6)], store=UnitStore(root, "bench"), group="g", name="w" + sys.argv[1],
          key_of=lambda u: "k" + u, run=run, lock_dir=root / "locks")
"""


def test_two_processes_share_the_units_and_run_each_once(tmp_path):
    import subprocess

    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(benchmarks=str(BENCHMARKS), root=str(tmp_path)))
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in (1, 2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    calls = (tmp_path / "calls.txt").read_text().split()
    assert sorted(calls) == [f"u{i}" for i in range(6)]  # each unit ran exactly once
    units = UnitStore(tmp_path, "bench").all()
    assert len(units) == 6 and {u["by"] for u in units} == {"1", "2"}  # both took a share


def test_grag_dataset_whose_data_another_process_prepares_is_left_to_it(tmp_path, monkeypatch, capsys):
    from _common import try_lock

    ran = []
    monkeypatch.setattr(grag_quality, "run_units", lambda *a, **k: ran.append(k["group"]))
    monkeypatch.setattr(grag_quality, "prepare", lambda name, *a, **k: {"train": [], "dev": [], "test": [],
                                                                         "digest": name, "meta": {}})
    monkeypatch.setattr(grag_quality, "report", lambda args: None)
    held = try_lock(tmp_path / "work" / "locks" / "PFG-data.lock")
    args = argparse.Namespace(out=tmp_path, data=tmp_path, commit=False, setting_name="quick", dtype="auto",
                              backbone=None)
    s = grag_quality.SETTINGS["quick"]
    assert grag_quality.run_dataset("PFG", s, args, tmp_path / "work", float("inf")) is False
    assert "PFG: another process is preparing the data; skipped here" in capsys.readouterr().out
    assert grag_quality.run_dataset("SPC", s, args, tmp_path / "work", float("inf")) is True
    assert ran == ["SPC"]
    held.close()
    assert grag_quality.run_dataset("PFG", s, args, tmp_path / "work", float("inf")) is True
    assert ran == ["SPC", "PFG"]


def test_grag_sanity_rows_copy_the_user_the_commonest_reply_and_the_scaffold(monkeypatch):
    from personakit.types import Persona, ResponseExample, Turn

    def ex(i, response, generic="generic"):
        return ResponseExample(id=f"e{i}", persona=Persona(sentences=["I like tea."]),
                               history=[Turn(speaker="user", text=f"hi {i}")], response=response,
                               generic_response=generic)

    d = {"train": [ex(0, "No way."), ex(1, "Sure."), ex(2, "sure. "), ex(3, "No way."), ex(6, " SURE.")],
         "test": [ex(4, "Sure thing.", "Sure thing!"), ex(5, "hi 5", "")]}
    replies = grag_quality.sanity_replies(d)
    assert replies == {"copy_last_user_turn": ["hi 4", "hi 5"], "most_frequent_reply": ["Sure.", "Sure."],
                       "generic_response": ["Sure thing!", ""]}  # 'Sure.', 'sure. ', ' SURE.' count as one: 3 > 2
    monkeypatch.setattr(grag_quality, "score", lambda preds, examples, bpc: {
        "metrics": {"rouge1": sum(p == e.response for p, e in zip(preds, examples)) / len(preds)}})
    unit = grag_quality.sanity_unit(d)
    assert unit["kind"] == "sanity" and unit["conditions"]["copy_last_user_turn"]["metrics"]["rouge1"] == 0.5
    summary = grag_quality.summarise([{**unit, "dataset": "SPC", "seed": 0}])
    assert summary["rows"] == {} and summary["sanity"]["copy_last_user_turn"]["rouge1"] == 0.5


def test_unit_context_only_runs_the_listed_units(tmp_path):
    from _common import UnitContext

    class Ctx(UnitContext):
        def key(self, unit):
            return f"k{unit}"

    args = argparse.Namespace(work_dir=tmp_path / "work", out=tmp_path, setting_name="default", only=["b"],
                              budget_hours=None, commit=False)
    ran = []
    done = Ctx(args, {}, "bench").run(["a", "b", "c"], lambda unit, key: ran.append(unit) or {"v": 1})
    assert ran == ["b"] and set(done) == {"b"}
    args.only = ["b", "zz"]
    with pytest.raises(SystemExit, match="no unit named zz"):
        Ctx(args, {}, "bench").run(["a", "b"], lambda unit, key: {"v": 1})


def test_unit_context_shares_units_between_processes_and_waits_for_inputs(tmp_path, capsys):
    """Two lanes may run one benchmark: a unit another process holds is skipped, and a unit whose input is
    not finished waits (it used to run and fail on the missing input)."""
    from _common import UnitContext, try_lock

    class Ctx(UnitContext):
        def key(self, unit):
            return f"k{unit}"

    args = argparse.Namespace(work_dir=tmp_path / "work", out=tmp_path, setting_name="default", only=None,
                              budget_hours=None, commit=False)
    held = try_lock(tmp_path / "work" / "locks" / "train.lock")  # another process trains
    ran = []
    done = Ctx(args, {}, "bench").run(["train", "control", "other"], lambda unit, key: ran.append(unit) or {"v": 1},
                                      depends=lambda unit: ("train",) if unit == "control" else ())
    assert ran == ["other"] and set(done) == {"other"}
    out = capsys.readouterr().out
    assert "train: running in another process" in out and "control: waits for train" in out
    held.close()
    done = Ctx(args, {}, "bench").run(["train", "control", "other"], lambda unit, key: ran.append(unit) or {"v": 2},
                                      depends=lambda unit: ("train",) if unit == "control" else ())
    assert ran == ["other", "train", "control"] and done["other"]["v"] == 1  # "other" was stored: not rerun


def test_machines_line_groups_trained_units_by_cpu_and_attention():
    amd = {"cpu": "AMD EPYC", "amx_bf16": False}
    xeon = {"cpu": "Intel Xeon", "amx_bf16": True}
    units = [{"system": "PreSFT(Hist)", "seed": 0, "steps": 300, "precision": amd, "kind": "presft-hist"},
             {"system": "PostGRAG", "seed": 1, "steps": 275, "precision": xeon, "kind": "postgrag",
              "train_attention": "eager"},
             {"system": "PostGRAG", "seed": 2, "steps": 250, "precision": xeon, "kind": "postgrag"},
             {"system": "ICL(Hist)", "seed": 0, "precision": amd, "kind": "icl"},
             {"system": "sanity", "seed": 0, "kind": "sanity"}]
    line = machines_line(grag_quality.trained_units(units))
    assert line == ("Trained on: AMD EPYC (AMX no), sdpa attention: PreSFT(Hist) s0; "
                    "Intel Xeon (AMX yes), eager attention: PostGRAG s1; "
                    "Intel Xeon (AMX yes), sdpa attention: PostGRAG s2.")
    assert machines_line(grag_quality.trained_units(units[3:])) == ""
    assert machines_line([("x s0", {"steps": 5})]) == ""  # no precision stamp: left out
    assert train_attention(None) == "eager" and train_attention("cpu") == "eager"
    assert train_attention("cuda") is None


def test_write_results_keeps_files_when_only_volatile_fields_change(tmp_path):
    def page(command, written, machine, value):
        report = {"command": command, "written": written, "machine_line": machine, "units": {"a": value}}
        md = f"# bench\n\nCommand: `{command}`; written {written}.\n\n{machine}\n\n| a | {value} |\n"
        return report, md

    json_path, md_path = write_results("bench", *page("python b.py --report", "10:00", "Machine: A, load 1.0", 1), tmp_path)
    first = (json_path.read_text(), md_path.read_text())
    # a rerun that finished nothing new, on another machine, later: nothing is rewritten
    write_results("bench", *page("python b.py --commit", "11:00", "Machine: B, load 2.0", 1), tmp_path)
    assert (json_path.read_text(), md_path.read_text()) == first
    # a new result is written, with the new command and time
    write_results("bench", *page("python b.py --commit", "12:00", "Machine: B, load 2.0", 2), tmp_path)
    assert '"a": 2' in json_path.read_text() and "written 12:00" in md_path.read_text()
    # a change to the Markdown alone (a report's layout) is written too
    report, md = page("python b.py --report", "13:00", "Machine: B, load 2.0", 2)
    write_results("bench", report, md + "\nA new note.\n", tmp_path)
    assert md_path.read_text().endswith("A new note.\n")
    # without volatile fields every call writes
    write_results("bench", report, md, tmp_path, volatile=())
    assert "A new note." not in md_path.read_text()
    # an explicit --report rewrites; a run does not
    assert report_volatile(argparse.Namespace(report=True)) == ()
    assert report_volatile(argparse.Namespace(report=False)) == VOLATILE == report_volatile(argparse.Namespace())


def test_commit_path_commits_the_changed_files_in_one_commit_and_skips_the_rest(tmp_path, capsys):
    import subprocess

    from _common import commit_path

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "other.txt").write_text("not ours\n")  # changed, not named: must stay out of the commit
    unit, page, absent = tmp_path / "unit.json", tmp_path / "page.md", tmp_path / "curves.png"
    unit.write_text("{}\n")
    page.write_text("# page\n")
    commit_path([unit, page, absent], "bench: u (1 min) and the report", "bench", repo=tmp_path)
    assert git("log", "--format=%s").splitlines() == ["bench: u (1 min) and the report"]
    assert sorted(git("show", "--name-only", "--format=", "HEAD").split()) == ["page.md", "unit.json"]
    assert "?? other.txt" in git("status", "--porcelain")
    git("add", "other.txt")  # staged by someone else: a call whose paths are all absent must not commit it
    commit_path([absent], "nothing", "bench", repo=tmp_path)
    assert len(git("log", "--format=%s").splitlines()) == 1
    git("reset", "-q", "other.txt")
    commit_path([unit, page], "again", "bench", repo=tmp_path)  # nothing changed: no empty commit
    assert len(git("log", "--format=%s").splitlines()) == 1
    assert "unchanged; nothing to commit" in capsys.readouterr().out
    page.write_text("# page, updated\n")
    commit_path(page, "bench: report", "bench", repo=tmp_path)  # one path, as grag_quality passes it
    assert git("show", "--name-only", "--format=", "HEAD").split() == ["page.md"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for the resident size")
def test_release_memory_hands_freed_heap_pages_back(tmp_path):
    """Freed small blocks pinned below a live one stay resident until malloc_trim: release_memory returns them."""
    import ctypes.util

    from _common import release_memory, resident_mb

    if not ctypes.util.find_library("c"):
        pytest.skip("no C library to trim")
    script = tmp_path / "fragment.py"  # a fresh process, so the test's own heap does not blur the numbers
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(BENCHMARKS)!r})\n"
        "from _common import release_memory, resident_mb\n"
        "blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MB of heap blocks (below mmap's threshold)\n"
        "keep = blocks[-1]  # a live block at the top pins the heap: free() alone cannot shrink it\n"
        "del blocks\n"
        "before, after = release_memory()\n"
        "print(before, after)\n")
    import subprocess

    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True)
    before, after = map(float, out.stdout.split())
    if before < 200:
        pytest.skip(f"the allocator returned the blocks on free() already ({before:.0f} MB resident)")
    assert after < before - 150, (before, after)
    assert resident_mb() > 0 and release_memory()[1] > 0  # in this process too


def test_trim_callback_trims_every_n_steps_and_reports_after_each_evaluation(monkeypatch, capsys):
    """The training callback trims the heap on every ``every``-th step and logs the resident size at evaluations."""
    import _common
    from personakit.training import TrainerCallback

    trims: list[int] = []
    monkeypatch.setattr(_common, "malloc_trim", lambda: trims.append(1) or True)
    monkeypatch.setattr(_common, "resident_mb", iter([3072.0, 1024.0]).__next__)
    cb = _common.trim_callback("bench", every=10)
    assert isinstance(cb, TrainerCallback)
    for step in range(1, 26):
        cb.on_step_end(None, step)
    assert len(trims) == 2  # steps 10 and 20
    cb.on_evaluate(None, {"step": 25, "loss": 2.5})
    assert len(trims) == 3
    assert "[bench] step 25: resident 3.0 GB, 1.0 GB after trim" in capsys.readouterr().out
    never = _common.trim_callback("bench", every=0)
    never.on_step_end(None, 10)
    assert len(trims) == 3


def test_malloc_trim_runs_under_glibc_and_says_so_elsewhere():
    import platform

    from _common import malloc_trim

    assert malloc_trim() is (platform.libc_ver()[0] == "glibc")
