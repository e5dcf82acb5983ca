"""Questioner-aware responder on PFG-Questioner at learning scale (``../shared/EXPERIMENTS.md``).

What it runs (Zeng et al. 2024, arXiv:2412.11736, in direction: the dual tower answers better
than the baselines because it knows who asks):

* **Data** (:func:`personakit.data.build_pfg_questioner_task`): all 12 responders of
  PFG-Questioner (the persuaders with the most Persuasion-for-Good dialogues) and every
  usable turn (every persuader reply that answers a persuadee turn, 4 merged turns of
  history), split ``--split turn`` (default): inside every dialogue the responder's
  replies in turn order, the first 55% train, the next 10% dev, the last 35% test, so
  every test questioner has training examples.  The dialogue-date split (``--split
  time``) leaves only 3 of the 12 test questioners with a training example, so the
  questioner-specific stream could only fall back to the general one there (see
  docs/families/questioner.md).  The same dialogue (and questioner) is in all three
  splits by design: the task is to answer a *known* questioner later in the
  conversation.  Test: a seeded sample (seed 0) of 300 of the test replies.  The data
  unit stores the counts (examples, dialogues, questioners, responders per split).
* **Question clusters**: k-means (10, reference code) over MiniLM embeddings of the last
  persuadee turn, fitted on the training questions; cached in the work folder.
* **Systems**, all on the embedded SmolLM2-135M-Instruct, frozen weights in bf16 where
  the hardware has a fast path (``dtype="auto"``), same prompts, data order and
  optimiser: **LoRA** (a plain fine-tune, the reference of the tests), the **dual
  tower** (LoRA on the general tower + a rank-16 questioner-specific stream, the
  contrastive loss inside question clusters with weight 0.5, temperature 0.01, a queue
  of 512 and 2 views: the reference code's settings) and **persona-in-prompt** (the
  untrained backbone, chat template, the questioner's survey record in the system
  prompt; greedy decoding of a fixed model is deterministic, so it runs once: three
  seeds would repeat the same predictions).  3 seeds for LoRA and the dual tower (the
  seed sets the initialisation, the data order and the dropout); ablations with 1 seed:
  rank 4 and 64, no contrastive loss, no clustering (negatives from every other
  questioner), no multi-view augmentation.
* **Training to a plateau** (:class:`~personakit.training.QuestionerTrainer`, the shared
  loop): AdamW, the learning rate decaying linearly to 50% over the step budget; the dev
  LM loss (``loss_lm``, comparable across systems: the dual tower's total loss adds
  $\\lambda L_{QC}$) every ``eval_steps``; stop when it has not improved by 1% (relative)
  for ``patience`` evaluations; the best evaluated weights are kept.  A run that reaches
  the budget first is labelled "not converged".
* **Test scoring**: ROUGE-1/2/L and sentence BLEU per example (corpus BLEU too), the
  shares of distinct replies and of replies running past one turn (``reply_stats``),
  the log-likelihood of each reference under the model, the questioner diversity (mean
  pairwise 1 - ROUGE-L between the replies to one test input under different training
  questioners; 0 for LoRA by construction).  Mean ± std over seeds; per example
  (averaged over seeds) a paired t-test and a paired bootstrap 95% interval against
  LoRA (:func:`personakit.eval.paired_comparison`).
* **Controls** (seed 0, same test replies): the dual tower with **another questioner's
  id** (a seeded derangement of the test questioners: every questioner's examples get
  the id of another training questioner) and with the **unknown questioner** (id 0: the
  general stream alone); persona-in-prompt with another questioner's record (the same
  derangement) and with no record.  The drop from own to shuffled is how much the model
  uses the questioner.  LoRA cannot see the questioner, so its controls equal its main
  row by construction and are not run.  **Positive pairs per batch** for each
  contrastive setting, from the real training batches (the model logs
  ``contrastive_positive_pairs`` every step): mean, minimum, share of batches with none,
  and the share of views with a valid term; an ablation that finds no positives says so.
* **Sanity rows** (no model trained): the persuadee's last turn copied, and the most
  frequent training reply, scored like the systems.

Every part is a **unit** stored as ``benchmarks/results/questioner_pfg/<setting>/<unit>-<key>.json``
(``key``: a hash of its settings, the data digest and, for a control, the trained unit's
key); ``--commit`` commits each file as soon as it is written.  A rerun skips finished
units; checkpoints and the cluster cache live in the work folder (outside the
repository), and a unit's training resumes from its checkpoints (a control reloads its
system's final checkpoint, or trains it again when the work folder lost it).
``--report`` rebuilds ``benchmarks/results/questioner_pfg.{md,json}`` and
``questioner_pfg_curves.png`` from whatever units exist.

Settings:

* ``default`` (CPU, learning scale): 647 training, 125 dev and 300 test replies (of 376);
  batch 8, prompts of at most 192 tokens, targets of 48, 40 new tokens; a budget of 600
  steps (7.4 epochs of 81 steps), the dev loss every 50 steps, patience 3 (150 steps, about
  two epochs, without a 1% gain stop a run); diversity over 40 inputs x 4 questioners.
  Measured on this 2-core AMD EPYC (no AMX; bf16 through AVX512-BF16), one thread, niced,
  beside two other trainings (1-minute load about 4; the process got 0.62-0.66 of a core):
  a training step of the dual tower 11.5 s (LoRA 9.6 s), one dev evaluation 105 s (125
  replies, teacher-forced), generating 32 test replies 32 s, their log-likelihoods 24 s.
  Scaled to the idle machine with both threads (x 0.37: 0.64 of a core measured, about 1.7
  cores of speed-up from the second thread), a unit at the full budget: about 42 min of
  training, 8 min of dev evaluations, 5 min of test scoring (300 replies, their
  log-likelihoods and 160 diversity replies): about 55 min, less where the dev loss
  plateaus first.  The 11 trained units, persona-in-prompt (about 5 min) and the two
  control units (about 10 min together): about 10.5 h on the idle machine, about 28 h
  under the load of the measurement; so run it with ``--commit --budget-hours`` over
  several sessions (a killed unit resumes from its last checkpoint, at most 50 steps back).
* ``--quick``: a smoke test of every unit on real data (24 training, 8 dev and 8 test
  replies, 4 steps of 4, 8 new tokens, 1 seed): a few minutes; far too small for
  conclusions.
* ``--scale`` (GPU; add ``--device cuda``): every training reply, all 376 test replies,
  batch 16, 256-token prompts, 48 new tokens, a budget of 3,000 steps.

    python benchmarks/questioner_pfg.py --commit --budget-hours 2.5   # default, resumable
    python benchmarks/questioner_pfg.py --report                       # tables from the finished units
    python benchmarks/questioner_pfg.py --quick --work-dir /tmp/qpfg_quick --out /tmp/qpfg_quick_out
    python benchmarks/questioner_pfg.py --scale --device cuda
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (UnitContext, UnitStore, add_run_arguments, add_setting_arguments, command_line,  # noqa: E402
                     unit_machine_line, machines_line, now, plot_dev_curve, pyplot, require_pfg, sanity_replies,
                     save_figure, setting_name, train_attention, trained_where, trim_callback, report_volatile,
                     write_results)

NAME = "questioner_pfg"
CODE_VERSION = 1  # bump when a change makes earlier unit files incomparable
DATA_SEED = 0  # the test sample and the subsamples; not the training seed
METRIC = "loss_lm"  # dev objective of every trained system

SETTINGS = {
    "default": dict(split_fractions=(0.55, 0.1, 0.35), history_turns=4, max_train=None, max_dev=None, test=300,
                    batch_size=8, lr=2e-4, max_steps=600, eval_steps=50, patience=3, threshold=0.01,
                    prompt_tokens=192, response_tokens=48, new_tokens=40, eval_batch=16, clusters=10, queue=512,
                    div_inputs=40, div_questioners=4, seeds=3),
    "quick": dict(split_fractions=(0.55, 0.1, 0.35), history_turns=4, max_train=24, max_dev=8, test=8,
                  batch_size=4, lr=5e-4, max_steps=4, eval_steps=2, patience=2, threshold=0.01,
                  prompt_tokens=64, response_tokens=16, new_tokens=8, eval_batch=8, clusters=3, queue=16,
                  div_inputs=2, div_questioners=2, seeds=1),
    "scale": dict(split_fractions=(0.55, 0.1, 0.35), history_turns=4, max_train=None, max_dev=None, test=None,
                  batch_size=16, lr=1e-4, max_steps=3000, eval_steps=50, patience=5, threshold=0.01,
                  prompt_tokens=256, response_tokens=64, new_tokens=48, eval_batch=32, clusters=10, queue=512,
                  div_inputs=64, div_questioners=4, seeds=3),
}

DUAL_TOWER = {"rank": 16, "num_views": 2, "contrastive_weight": 0.5, "temperature": 0.01, "use_clusters": True}
"""The dual tower's settings (reference code); ``queue_size`` comes from the setting."""
SYSTEMS: dict[str, tuple[str, str, dict]] = {
    "lora": ("lora", "LoRA", {}),
    "dual-tower": ("dual-tower", "Dual-tower (r=16)", {}),
    "persona-prompt": ("persona-prompt", "Persona-in-prompt", {}),
    "rank4": ("dual-tower", "ablation: rank 4", {"rank": 4}),
    "rank64": ("dual-tower", "ablation: rank 64", {"rank": 64}),
    "no-contrastive": ("dual-tower", "ablation: no contrastive", {"contrastive_weight": 0.0}),
    "no-clustering": ("dual-tower", "ablation: no clustering", {"use_clusters": False}),
    "no-multiview": ("dual-tower", "ablation: no multi-view", {"num_views": 0}),
}
"""Unit system name -> (kind, row label, changes to ``DUAL_TOWER``)."""
MULTI_SEED = ("lora", "dual-tower")
ABLATIONS = ("rank4", "rank64", "no-contrastive", "no-clustering", "no-multiview")
CONTROLS = {"controls-dual-tower": "dual-tower", "controls-persona-prompt": "persona-prompt"}
"""Control unit -> the system unit (seed 0) it tests."""
BASELINE, HEADLINE, PROMPTED = "LoRA", "Dual-tower (r=16)", "Persona-in-prompt"
SANITY = {"copy_last_turn": "copy of the persuadee's last turn", "most_frequent_reply": "most frequent training reply"}
"""Sanity rows (``../shared/EXPERIMENTS.md`` §5): replies that need no trained model."""
TESTED = ("rougeL", "bleu")
PER_EXAMPLE = ("rouge1", "rouge2", "rougeL", "bleu")
ROW_KEYS = ("rouge1", "rouge2", "rougeL", "bleu_corpus", "distinct", "multi_turn", "diversity", "test_ll")
HEADERS = ("R-1", "R-2", "R-L", "BLEU (corpus)", "distinct", "multi-turn", "diversity", "ref. log-lik.")

PAPER_HEADLINE = {
    "source": "Zeng et al. 2024 (arXiv:2412.11736), abstract / summary: MQDialog, 12 responders, 173 questioners, "
              "7-8B backbones",
    "rougeL_relative_improvement_over_baselines": [0.084, 0.487],
    "win_rate_vs_baselines": [0.54, 0.82],
    "reference_code_settings": {"rank": 16, "temperature": 0.01, "queue": 512, "clusters": 10, "weight": 0.5},
}


# ------------------------------------------------------------------------------ pure pieces
def unit_order(seeds: int) -> list[str]:
    """Every unit in run order: the data, the sanity rows, the seed-0 headline systems and their controls, more
    seeds, the ablations."""
    order = ["data", "sanity", "lora-s0", "dual-tower-s0", "persona-prompt-s0", "controls-dual-tower-s0",
             "controls-persona-prompt-s0"]
    for seed in range(1, seeds):
        order += [f"{system}-s{seed}" for system in MULTI_SEED]
    return order + [f"{system}-s0" for system in ABLATIONS]


def parse_unit(unit: str) -> tuple[str, int]:
    """``"dual-tower-s2"`` -> ``("dual-tower", 2)``; ``"data"`` -> ``("data", 0)``."""
    head, _, seed = unit.rpartition("-s")
    return (head, int(seed)) if head and seed.isdigit() else (unit, 0)


def depends(unit: str) -> tuple[str, ...]:
    """A unit's direct inputs among the units: a control unit needs its system's trained unit."""
    system, seed = parse_unit(unit)
    return (f"{CONTROLS[system]}-s{seed}",) if system in CONTROLS else ()


def system_settings(system: str, setting: dict) -> dict:
    """The ``DualTowerConfig`` settings of a system unit (``{}`` for LoRA and persona-in-prompt)."""
    kind, _, changes = SYSTEMS[system]
    if kind != "dual-tower":
        return {}
    return {**DUAL_TOWER, "queue_size": setting["queue"], **changes}


def unit_key(unit: str, setting: dict, digest: str, deps: Sequence[str] = (), device: Optional[str] = None,
             split: str = "turn") -> str:
    """A unit's key: a hash of the code version, the setting (but its seed count), the data digest, the split,
    the system settings and the keys of the units it depends on."""
    system, seed = parse_unit(unit)
    payload = {"v": CODE_VERSION, "unit": unit, "digest": digest, "deps": list(deps), "device": device or "cpu",
               "split": split, "setting": {k: v for k, v in setting.items() if k != "seeds"},
               "system": system_settings(system, setting) if system in SYSTEMS else None, "seed": seed}
    return UnitStore.key(payload)


def sample_split(rows: Sequence[Any], n: Optional[int], seed: int = DATA_SEED) -> list[Any]:
    """A seeded sample of ``n`` rows in their original order (all rows when ``n`` is ``None`` or too large)."""
    rows = list(rows)
    if n is None or n >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def split_counts(splits: dict[str, Sequence[Any]]) -> dict[str, dict[str, int]]:
    """Examples, dialogues, questioners and responders of each split."""
    return {name: {"examples": len(rows), "dialogues": len({ex.id.rsplit(":", 1)[0] for ex in rows}),
                   "questioners": len({ex.questioner_id for ex in rows}),
                   "responders": len({ex.responder_id for ex in rows})}
            for name, rows in splits.items()}


def derange_questioners(questioners: Sequence[Optional[str]], pool: Sequence[str], seed: int = 0) -> list[str]:
    """Another questioner's id for each example (the shuffled control): a seeded derangement.

    The distinct questioners of ``questioners`` that are in ``pool`` (the training
    questioners) are put in a seeded random cycle and each is replaced by the next; a
    questioner outside the pool gets a seeded random pool member other than itself.  No
    example keeps its own questioner, and every donor is a known (training) questioner.

    Raises:
        ValueError: the pool holds fewer than two questioners.

    Example:
        >>> derange_questioners(["a", "a", "b", "c"], ["a", "b", "c"], seed=1)
        ['b', 'b', 'c', 'a']
    """
    pool = sorted(set(pool))
    if len(pool) < 2:
        raise ValueError("derange_questioners: another questioner's id needs at least two known questioners")
    rng = random.Random(seed)
    seen = sorted({q for q in questioners if q in set(pool)})
    rng.shuffle(seen)
    donor = {q: seen[(i + 1) % len(seen)] for i, q in enumerate(seen)} if len(seen) > 1 else {}
    out = []
    for q in questioners:
        if q not in donor:
            donor[q] = rng.choice([p for p in pool if p != q])
        out.append(donor[q])
    return out


def data_digest(splits: dict[str, Sequence[Any]]) -> str:
    """A hash of every split's example ids, questioners, clusters, last questions and responses."""
    h = hashlib.sha256()
    for name in ("train", "dev", "test"):
        for ex in splits[name]:
            h.update(f"{name}|{ex.id}|{ex.questioner_id}|{ex.metadata.get('question_cluster')}|"
                     f"{ex.history[-1].text if ex.history else ''}|{ex.response}\n".encode())
    return h.hexdigest()[:16]


def pair_statistics(history: Sequence[dict], contrastive: bool) -> Optional[dict[str, Any]]:
    """Positive pairs per training batch from a per-step history (``logging_steps=1``); ``None`` without a loss.

    A step without ``contrastive_positive_pairs`` (a batch with fewer than two known
    questioners) counts as a batch with no positive pair.
    """
    if not contrastive:
        return None
    pos = [float(r.get("contrastive_positive_pairs", 0.0)) for r in history]
    neg = [float(r.get("contrastive_negative_pairs", 0.0)) for r in history]
    valid = [float(r.get("contrastive_valid", 0.0)) for r in history]
    if not pos:
        return {"batches": 0}
    return {"batches": len(pos), "mean": statistics.fmean(pos), "min": min(pos), "max": max(pos),
            "zero_share": sum(p == 0 for p in pos) / len(pos), "mean_negative_pairs": statistics.fmean(neg),
            "valid_views": statistics.fmean(valid)}


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.fmean(vals)) if vals else float("nan")


def _mean_std(values: Sequence[Optional[float]]) -> tuple[float, Optional[float]]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def _cell(values: Sequence[Optional[float]], digits: int = 4) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _compare(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    from personakit.eval import paired_comparison

    return paired_comparison(list(a), list(b), n_resamples=5000, seed=0).to_dict()


def _seed_mean(units: Sequence[dict], key: str) -> list[float]:
    """Per example, the mean over the units (seeds) of ``per_example[key]``."""
    return [statistics.fmean(v) for v in zip(*[u["per_example"][key] for u in units])]


def summarise(units: dict[str, dict]) -> dict[str, Any]:
    """The test table, tests against LoRA, controls and positive-pair statistics from the stored units.

    Args:
        units: ``{unit name: unit dict}`` (any subset of :func:`unit_order`; missing parts are left out).
    """
    by_label: dict[str, list[dict]] = {}
    for name, u in units.items():
        if u.get("system") in SYSTEMS and "per_example" in u:
            by_label.setdefault(SYSTEMS[u["system"]][1], []).append(u)
    for us in by_label.values():
        us.sort(key=lambda u: u.get("seed", 0))
    rows = {label: {**{k: [u["metrics"].get(k) for u in us] for k in ROW_KEYS}, "seeds": len(us)}
            for label, us in by_label.items()}
    tests: dict[str, dict] = {}
    base = by_label.get(BASELINE)
    if base:
        for label, us in by_label.items():
            if label != BASELINE and all(len(u["per_example"]["rougeL"]) == len(base[0]["per_example"]["rougeL"])
                                         for u in us):
                tests[label] = {k: _compare(_seed_mean(us, k), _seed_mean(base, k)) for k in TESTED}
    vs_prompted: dict[str, Any] = {}
    if by_label.get(HEADLINE) and by_label.get(PROMPTED):
        vs_prompted = {k: _compare(_seed_mean(by_label[HEADLINE], k), _seed_mean(by_label[PROMPTED], k))
                       for k in TESTED}
    controls: dict[str, Any] = {}
    for cunit, system in CONTROLS.items():
        c, own = units.get(f"{cunit}-s0"), units.get(f"{system}-s0")
        if not c or not own:
            continue
        label = SYSTEMS[system][1]
        conds = {"own": {"metrics": own["metrics"], "per_example": own["per_example"],
                         "test_ll": own.get("test_ll")}, **c["conditions"]}
        entry: dict[str, Any] = {"rows": {k: v["metrics"] for k, v in conds.items()}, "tests": {},
                                 "restored_ll_gap": c.get("restored_ll_gap")}
        for cond in c["conditions"]:
            t = {"rougeL": _compare(own["per_example"]["rougeL"], conds[cond]["per_example"]["rougeL"])}
            if own.get("test_ll") and conds[cond].get("test_ll"):
                t["test_ll"] = _compare(own["test_ll"], conds[cond]["test_ll"])
            entry["tests"][cond] = t
        controls[label] = entry
    pairs = {SYSTEMS[u["system"]][1]: u["pairs"] for n, u in sorted(units.items())
             if u.get("system") in SYSTEMS and u.get("seed") == 0 and u.get("kind") == "dual-tower"}
    ablations: dict[str, Any] = {}
    full0 = next((u for u in by_label.get(HEADLINE, []) if u.get("seed") == 0), None)
    for system in ABLATIONS:
        u = units.get(f"{system}-s0")
        if not (full0 and u and "per_example" in u):
            continue
        if len(u["per_example"]["rougeL"]) == len(full0["per_example"]["rougeL"]):
            t = {k: _compare(u["per_example"][k], full0["per_example"][k]) for k in TESTED}
            if u.get("test_ll") and full0.get("test_ll"):
                t["test_ll"] = _compare(u["test_ll"], full0["test_ll"])
            ablations[SYSTEMS[system][1]] = t
    sanity = {cond: c["metrics"] for cond, c in (units.get("sanity") or {}).get("conditions", {}).items()}
    return {"rows": rows, "tests": tests, "vs_prompted": vs_prompted, "controls": controls, "pairs": pairs,
            "ablations": ablations, "sanity": sanity}


def verdict(summary: dict) -> str:
    """Reproduced in direction / not reproduced / inconclusive: the dual tower against LoRA on ROUGE-L."""
    test = summary.get("tests", {}).get(HEADLINE)
    if not test:
        return f"not yet measured ({HEADLINE} or {BASELINE} missing)"
    t = test["rougeL"]
    seeds = summary["rows"][HEADLINE]["seeds"]
    more = f" ({seeds} seed{'s' if seeds > 1 else ''}, per-example scores averaged over seeds)"
    if t["significant"] and t["mean_difference"] > 0:
        return f"reproduced in direction ({HEADLINE} > {BASELINE} on ROUGE-L, p < 0.05{more})"
    if t["significant"]:
        return f"not reproduced ({HEADLINE} significantly below {BASELINE} on ROUGE-L{more})"
    return f"inconclusive (no significant difference between {HEADLINE} and {BASELINE} on ROUGE-L{more})"


def controls_verdict(summary: dict) -> str:
    """Whether the dual tower uses the questioner id, from the shuffled-id and unknown-id controls."""
    c = summary.get("controls", {}).get(HEADLINE)
    if not c:
        return "not yet measured (the dual tower's control unit is missing)"
    parts = []
    for cond, what in (("shuffled_questioner", "another questioner's id"), ("unknown_questioner", "the unknown id")):
        t = c["tests"].get(cond, {})
        ll, rl = t.get("test_ll"), t.get("rougeL")
        if ll is None or rl is None:
            continue
        used = ll["significant"] and ll["mean_difference"] > 0
        parts.append(f"with {what} the references' log-likelihood {'drops' if used else 'does not drop'} "
                     f"significantly (own - control {_p(ll)}) and ROUGE-L changes by {-rl['mean_difference']:+.4f} "
                     f"(p {rl['p_value']:.3g})")
    if not parts:
        return "not yet measured"
    shuffled = c["tests"].get("shuffled_questioner", {}).get("test_ll")
    lead = ("the model uses the questioner id" if shuffled and shuffled["significant"]
            and shuffled["mean_difference"] > 0 else "no measurable use of the questioner id")
    return f"{lead}: " + "; ".join(parts)


def _p(c: dict) -> str:
    return f"{c['mean_difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p {c['p_value']:.3g}"


def _training_cells(us: Sequence[dict]) -> tuple[str, str, str, str]:
    if us[0].get("kind") == "persona-prompt":
        return "–", "–", "–", _cell([u.get("eval_s", 0) / 60 for u in us], 1)
    steps = ", ".join(f"{u.get('steps')} ({u.get('best_step')})" for u in us)
    conv = ", ".join("yes" if u.get("stopped_early") else "**not converged**" for u in us)
    return (steps, conv, _cell([u.get("train_s", 0) / 60 for u in us], 0),
            _cell([u.get("eval_s", 0) / 60 for u in us], 1))


def _one_line(text: str, limit: int = 200) -> str:
    """A reply on one markdown line: newlines shown as ``⏎`` (a reply running past its turn stays visible)."""
    return " ⏎ ".join(part.strip() for part in str(text)[:limit].splitlines()) or "(empty)"


def _rank(label: str) -> int:
    """Row order: the systems in ``SYSTEMS`` order."""
    labels = [v[1] for v in SYSTEMS.values()]
    return labels.index(label) if label in labels else len(labels)


def _relative(rows: dict, a: str, b: str) -> str:
    try:
        x, y = _mean(rows[a]["rougeL"]), _mean(rows[b]["rougeL"])
    except KeyError:
        return "n/a"
    return f"{(x - y) / y:+.1%}" if y and not math.isnan(x) else "n/a"


def to_markdown(report_: dict) -> str:
    """The results page: data, the test table, tests against LoRA, controls, positive pairs, cost, the paper."""
    units, s = report_["units"], report_["summary"]
    lines = [f"# Questioner-aware responder on PFG-Questioner, learning scale ({report_['setting']} setting)", "",
             f"Command: `{report_['command']}`; written {report_['written']}.", "", report_.get("machine_line", ""), ""]
    if report_.get("trained_on"):
        lines += [report_["trained_on"], ""]
    missing = [u for u in report_["order"] if u not in units]
    if missing:
        lines += [f"Units still to run: {', '.join(missing)} (this page shows what is finished).", ""]
    lines += [f"**Verdict: {verdict(s)}.**  ",
              f"**Does the dual tower use the questioner?** {controls_verdict(s)}.", ""]
    data = units.get("data")
    if data:
        lines += ["## Data", "", f"PFG-Questioner, split `{data['split']}` (fractions {tuple(data['fractions'])} "
                  f"inside every dialogue), {data['history_turns']} merged history turns; test: a seeded sample "
                  f"(seed {DATA_SEED}) of {data['used']['test']} of the {data['counts']['test']['examples']} test "
                  f"replies; data digest {data['digest']}; frozen weights in {data.get('dtype', '?')}.", "",
                  "| split | examples | dialogues | questioners | responders | used examples | used questioners |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for split, c in data["counts"].items():
            used = data.get("used_counts", {}).get(split, {})
            lines.append(f"| {split} | {c['examples']} | {c['dialogues']} | {c['questioners']} | {c['responders']} | "
                         f"{data['used'][split]} | {used.get('questioners', '–')} |")
        lines += ["", f"Question clusters: {data['clusters']['num_clusters']}, training sizes "
                  f"{list(data['clusters']['train_sizes'].values())}.", ""]
    if s["rows"]:
        n = next(iter(units[u] for u in units if "per_example" in units[u]))["n"]
        lines += [f"## Test ({n} replies)", "",
                  "Mean ± std over seeds. `ref. log-lik.`: mean log-likelihood (nats) of a test reference under the "
                  "model (teacher forcing). `diversity`: mean pairwise 1 - ROUGE-L between the replies to one test "
                  "input under different training questioners (0: the questioner changes nothing; LoRA cannot see "
                  "it, 0 by construction). `steps (best)`: optimizer steps run and the step of the kept weights.", "",
                  "| system | seeds | " + " | ".join(HEADERS) + " | steps (best) | converged | train min | eval min |",
                  "| --- | ---: | " + " | ".join(["---:"] * len(HEADERS)) + " | ---: | --- | ---: | ---: |"]
        for label, row in sorted(s["rows"].items(), key=lambda kv: _rank(kv[0])):
            us = sorted([u for u in units.values() if u.get("system") in SYSTEMS and SYSTEMS[u["system"]][1] == label
                         and "per_example" in u], key=lambda u: u["seed"])
            lines.append(f"| {label} | {row['seeds']} | " + " | ".join(
                _cell(row[k], 2 if k in ("bleu_corpus", "test_ll") else 4) for k in ROW_KEYS)
                + " | " + " | ".join(_training_cells(us)) + " |")
        if s["tests"]:
            lines += ["", f"Against {BASELINE} (per-example ROUGE-L and sentence BLEU averaged over seeds; mean "
                      "difference, paired bootstrap 95% interval, paired t-test p):", "",
                      "| system | ROUGE-L | sentence BLEU |", "| --- | --- | --- |"]
            for label, t in sorted(s["tests"].items(), key=lambda kv: _rank(kv[0])):
                lines.append(f"| {label} | {_p(t['rougeL'])} | {_p(t['bleu'])} |")
        if s.get("vs_prompted"):
            v = s["vs_prompted"]
            lines += ["", f"{HEADLINE} against {PROMPTED}: ROUGE-L {_p(v['rougeL'])}; sentence BLEU {_p(v['bleu'])}."]
        if s.get("ablations"):
            lines += ["", f"Ablations against the {HEADLINE} of the same seed (0): ablation - full, per-example "
                      "ROUGE-L, sentence BLEU and the references' log-likelihood (nats; below 0: the ablation makes "
                      "the references less likely), paired bootstrap 95% interval, paired t-test p.", "",
                      "| ablation | ROUGE-L | sentence BLEU | ref. log-lik. |", "| --- | --- | --- | --- |"]
            for label, t in sorted(s["ablations"].items(), key=lambda kv: _rank(kv[0])):
                ll = _p(t["test_ll"]) if "test_ll" in t else "–"
                lines.append(f"| {label} | {_p(t['rougeL'])} | {_p(t['bleu'])} | {ll} |")
        lines.append("")
    if s.get("sanity"):
        lines += ["## Sanity rows (no model trained, the same test replies)", "",
                  "| reply | R-1 | R-2 | R-L | BLEU (corpus) | distinct | multi-turn |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for cond, m in s["sanity"].items():
            lines.append(f"| {SANITY.get(cond, cond)} | " + " | ".join(
                _cell([m.get(k)], 2 if k == "bleu_corpus" else 4)
                for k in ("rouge1", "rouge2", "rougeL", "bleu_corpus", "distinct", "multi_turn")) + " |")
        lines.append("")
    if s["controls"]:
        lines += ["## Controls (seed 0, the same test replies)", "",
                  "The dual tower with another questioner's id (a seeded derangement of the test questioners, "
                  "each replaced by another training questioner) and with the unknown questioner (id 0: the "
                  "general stream alone); persona-in-prompt with another questioner's survey record and with none. "
                  f"{BASELINE} cannot see the questioner: its controls equal its row by construction.", "",
                  "| system | condition | R-1 | R-L | sentence BLEU | ref. log-lik. | own - control R-L | "
                  "own - control log-lik. |", "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
        for label, c in s["controls"].items():
            for cond, m in c["rows"].items():
                t = c["tests"].get(cond, {})
                ll = m.get("test_ll")
                lines.append(f"| {label} | {cond.replace('_', ' ')} | {m['rouge1']:.4f} | {m['rougeL']:.4f} | "
                             f"{m['bleu']:.4f} | {'–' if ll is None else f'{ll:.2f}'} | "
                             f"{_p(t['rougeL']) if 'rougeL' in t else '(reference)'} | "
                             f"{_p(t['test_ll']) if 'test_ll' in t else '–'} |")
        gaps = [(label, c["restored_ll_gap"]) for label, c in s["controls"].items()
                if c.get("restored_ll_gap") is not None]
        if gaps:
            lines += ["", "The control units reload their system's kept weights from the work folder; check: the "
                      "largest gap between the reloaded and the stored log-likelihoods of the first test replies is "
                      + "; ".join(f"{g:.1e} nats ({label})" for label, g in gaps) + "."]
        lines.append("")
    if s["pairs"]:
        lines += ["## Positive pairs per training batch (seed 0)", "",
                  "Pairs of different replies (examples) of a batch with the same questioner (in PFG-Questioner mostly "
                  "other turns of the same dialogue), counted by the model on every "
                  "training step (`contrastive_positive_pairs`); multi-view augmentation adds the pairs of views of "
                  "one reply, not counted here. `valid views`: share of views with a positive and a negative "
                  "(the views that give $L_{QC}$ a term).", "",
                  "| system | batches | mean | min | max | batches with none | mean negative pairs | valid views |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for label, p in sorted(s["pairs"].items(), key=lambda kv: _rank(kv[0])):
            if p is None:
                lines.append(f"| {label} | – | no contrastive loss | | | | | |")
            elif not p.get("batches"):
                lines.append(f"| {label} | 0 | – | – | – | – | – | – |")
            else:
                note = " (**no positives at all**)" if p["max"] == 0 else ""
                lines.append(f"| {label} | {p['batches']} | {p['mean']:.2f} | {p['min']:.0f} | {p['max']:.0f} | "
                             f"{p['zero_share']:.1%}{note} | {p['mean_negative_pairs']:.1f} | {p['valid_views']:.1%} |")
        lines.append("")
    costs = [(SYSTEMS[u["system"]][1], u["cost"], trained_where(u)) for n, u in sorted(units.items())
             if u.get("seed") == 0 and u.get("cost")]
    if costs:
        base = next(((c["step_s"], where) for label, c, where in costs if label == BASELINE), None)
        lines += ["## Cost (seed 0 units; step time on the machine as it was loaded then)", "",
                  "The ratio to LoRA's step time is given only for units trained on the same CPU with the same "
                  "attention kernel (`benchmarks/results/questioner_step_profile_pfg.md` compares them side by side).",
                  "", "| system | added params / layer | trainable params | step s | step time vs LoRA | trained on |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for label, c, where in sorted(costs, key=lambda lc: _rank(lc[0])):
            rel = f"{c['step_s'] / base[0]:.2f}x" if base and base[1] == where else "–"
            lines.append(f"| {label} | {c['added_params_per_layer']:,} | {c['trainable_params']:,} | "
                         f"{c['step_s']:.2f} | {rel} | {where or '?'} |")
        lines.append("")
    ph = PAPER_HEADLINE
    lines += ["## The paper's headline numbers (MQDialog, 7-8B backbones; not comparable in scale)", "",
              "ROUGE-L relative improvement over the baselines: "
              f"+{ph['rougeL_relative_improvement_over_baselines'][0]:.1%}"
              f" to +{ph['rougeL_relative_improvement_over_baselines'][1]:.1%}; winning rate "
              f"{ph['win_rate_vs_baselines'][0]:.0%} to {ph['win_rate_vs_baselines'][1]:.0%}.  Ours (means over "
              f"seeds): dual tower vs LoRA, ROUGE-L {_relative(s['rows'], HEADLINE, BASELINE)}; vs persona-in-prompt "
              f"{_relative(s['rows'], HEADLINE, PROMPTED)}.", ""]
    if data and data.get("samples"):
        seed0 = {SYSTEMS[u["system"]][1]: u for u in units.values()
                 if u.get("system") in SYSTEMS and u.get("seed") == 0 and "predictions" in u}
        lines += ["## Samples (seed 0)", ""]
        for smp in data["samples"]:
            lines.append(f"- **{smp['id']}** (questioner {smp['questioner']}) persuadee: {_one_line(smp['question'])}")
            lines.append(f"  - reference: {_one_line(smp['reference'])}")
            for label, u in sorted(seed0.items(), key=lambda kv: _rank(kv[0])):
                lines.append(f"  - {label}: {_one_line(u['predictions'][smp['index']])}")
        lines.append("")
    timing = [f"{u}: {units[u].get('wall_s', 0) / 60:.1f} min" for u in report_["order"] if u in units]
    lines += ["Wall time per unit: " + "; ".join(timing) + ".", "",
              "Learning curves (dev LM loss against optimizer steps): "
              f"`{report_.get('curves', NAME + '_curves.png')}`. "
              "Each unit file "
              f"(`benchmarks/results/{NAME}/<setting>/`) names the commit that produced it."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ runtime context
class Context(UnitContext):
    """The run's settings, data (clustered), store and the backbone (loaded once, copied per unit)."""

    def __init__(self, args: argparse.Namespace, setting: dict):
        super().__init__(args, setting, NAME)
        self._backbone: Any = None
        self.full, self.splits = self._load_data()
        self.digest = data_digest(self.splits)
        self.questioners = sorted({ex.questioner_id for ex in self.splits["train"]})

    def _load_data(self) -> tuple[dict, dict]:
        from personakit.data import build_pfg_questioner_task

        s = self.s
        full = build_pfg_questioner_task(self.args.data, split_by=self.args.split, split_fractions=s["split_fractions"],
                                         history_turns=s["history_turns"])
        chosen = {"train": sample_split(full["train"], s["max_train"]), "dev": sample_split(full["dev"], s["max_dev"]),
                  "test": sample_split(full["test"], s["test"])}
        return full, self._cluster(chosen)

    def _cluster(self, splits: dict[str, list]) -> dict[str, list]:
        """Question clusters fitted on the training questions; the assignments cached in the work folder."""
        from personakit.modules.question_clusterer import CLUSTER_KEY, QuestionClusterer

        h = hashlib.sha256(json.dumps({k: [ex.id for ex in v] for k, v in splits.items()}).encode())
        h.update(f"{self.s['clusters']}|minilm|{DATA_SEED}".encode())
        cache = self.work / f"clusters-{h.hexdigest()[:12]}.json"
        if cache.is_file():
            found = json.loads(cache.read_text())
        else:
            clusterer = QuestionClusterer(num_clusters=self.s["clusters"], encoder="minilm", seed=DATA_SEED)
            found = {"train": [ex.metadata[CLUSTER_KEY] for ex in clusterer.assign(splits["train"], fit=True)]}
            for name in ("dev", "test"):
                found[name] = [ex.metadata[CLUSTER_KEY] for ex in clusterer.assign(splits[name], fit=False)]
            from personakit.config import atomic_write_text

            atomic_write_text(cache, json.dumps(found) + "\n")
        return {name: [ex.model_copy(update={"metadata": {**ex.metadata, CLUSTER_KEY: int(k)}})
                       for ex, k in zip(rows, found[name])] for name, rows in splits.items()}

    def key(self, unit: str) -> str:
        deps = [self.keys[d] for d in depends(unit)]
        return unit_key(unit, self.s, self.digest, deps, self.args.device, self.args.split)

    def backbone(self) -> tuple[Any, Any]:
        """A fresh copy of SmolLM2-135M-Instruct and its tokenizer."""
        if self._backbone is None:
            from personakit.backbones import load_causal_lm

            self._backbone = load_causal_lm("smollm2")
        model, tok = self._backbone
        return copy.deepcopy(model), tok

    @property
    def dtype(self) -> Any:
        from personakit.backbones.precision import resolve_dtype

        return resolve_dtype("auto", self.args.device)


# ------------------------------------------------------------------------------ scoring
def score(predictions: list[str], examples: Sequence[Any]) -> dict[str, Any]:
    """Corpus metrics and the per-example scores the paired tests use."""
    from personakit.eval import evaluate_per_example, evaluate_texts

    refs = [ex.response for ex in examples]
    corpus = evaluate_texts(predictions, refs, metrics=["rouge", "bleu", "reply_stats"])
    per = evaluate_per_example(predictions, refs, metrics=["rouge", "bleu"])
    per = {k: [float(x) for x in per[k]] for k in PER_EXAMPLE}
    metrics = {k: _mean(per[k]) for k in PER_EXAMPLE}
    metrics.update(bleu_corpus=float(corpus["bleu"]), distinct=float(corpus["distinct"]),
                   multi_turn=float(corpus["multi_turn"]))
    return {"metrics": metrics, "per_example": per, "predictions": predictions}


def with_questioners(examples: Sequence[Any], questioners: Sequence[Optional[str]]) -> list[Any]:
    """Copies of the examples asked by ``questioners`` (``None``: the unknown questioner, index 0)."""
    return [ex.model_copy(update={"questioner_id": q}) for ex, q in zip(examples, questioners)]


# ------------------------------------------------------------------------------ units
def data_unit(ctx: Context) -> dict:
    test = ctx.splits["test"]
    picks = sorted({0, len(test) // 2, len(test) - 1})
    clusters: dict[str, int] = {}
    for ex in ctx.splits["train"]:
        k = str(ex.metadata["question_cluster"])
        clusters[k] = clusters.get(k, 0) + 1
    return {"split": ctx.args.split, "fractions": list(ctx.s["split_fractions"]),
            "history_turns": ctx.s["history_turns"], "digest": ctx.digest, "counts": split_counts(ctx.full),
            "used": {k: len(v) for k, v in ctx.splits.items()}, "used_counts": split_counts(ctx.splits),
            "test_ids": [ex.id for ex in test], "dtype": str(ctx.dtype).removeprefix("torch."),
            "clusters": {"num_clusters": len(clusters), "train_sizes": dict(sorted(clusters.items(),
                                                                                key=lambda kv: int(kv[0])))},
            "samples": [{"index": i, "id": test[i].id, "questioner": test[i].questioner_id,
                         "question": test[i].history[-1].text if test[i].history else "",
                         "reference": test[i].response} for i in picks]}


def build_trainer(ctx: Context, system: str, seed: int, key: str) -> tuple[Any, Any]:
    """A fresh model of ``system`` (frozen base in bf16 where fast) and its trainer, checkpoints in the work folder."""
    import torch

    from personakit.backbones.precision import cast_frozen
    from personakit.models.questioner import DualTowerResponder
    from personakit.training.questioner import QuestionerTrainer, QuestionerTrainingConfig

    s = ctx.s
    kind = SYSTEMS[system][0]
    torch.manual_seed(seed)
    bb, tok = ctx.backbone()
    model = DualTowerResponder.from_backbone(bb, tok, questioners=ctx.questioners, use_specific=kind == "dual-tower",
                                             **system_settings(system, s))
    if ctx.dtype != torch.float32:
        cast_frozen(model, ctx.dtype)  # the frozen base in bf16; adapters and the specific stream stay fp32
    if ctx.args.device:
        model = model.to(ctx.args.device)
    collator = model.make_collator(max_prompt_tokens=s["prompt_tokens"], max_response_tokens=s["response_tokens"])
    cfg = QuestionerTrainingConfig(
        output_dir=str(ctx.work / "checkpoints" / f"{system}-s{seed}-{key}"), max_steps=s["max_steps"],
        batch_size=s["batch_size"], learning_rate=s["lr"], final_lr_fraction=0.5, seed=seed, logging_steps=1,
        eval_steps=s["eval_steps"], eval_at_epoch_end=False, save_steps=s["eval_steps"], keep_last=1,
        eval_metrics=["loss"], early_stopping_patience=s["patience"], early_stopping_threshold=s["threshold"],
        metric_for_best_model=METRIC, load_best_model_at_end=True, eval_batch_size=s["eval_batch"],
        max_new_tokens=s["new_tokens"], use_cpu=ctx.args.device in (None, "cpu"), progress=True,
        attn_implementation=train_attention(ctx.args.device))
    trainer = QuestionerTrainer(model, cfg, train_examples=ctx.splits["train"], eval_examples=ctx.splits["dev"],
                                collator=collator, callbacks=[trim_callback(NAME)])
    return model, trainer


def diversity_of(respond: Any, inputs: Sequence[Any], questioners: Sequence[str]) -> dict[str, Any]:
    """Questioner diversity: ``respond(examples, questioner)`` per questioner, then the mean pairwise 1 - ROUGE-L."""
    from personakit.recipes.questioner import questioner_diversity

    per_q = {q: respond(inputs, q) for q in questioners}
    groups = [[per_q[q][j] for q in questioners] for j in range(len(inputs))]
    return {"value": questioner_diversity(groups), "inputs": len(inputs), "questioners": list(questioners),
            "examples": groups[:3]}


def diversity_setup(ctx: Context) -> tuple[list, list[str]]:
    n = min(ctx.s["div_inputs"], len(ctx.splits["test"]))
    qs = random.Random(DATA_SEED).sample(ctx.questioners, min(ctx.s["div_questioners"], len(ctx.questioners)))
    return ctx.splits["test"][:n], qs


def train_unit(ctx: Context, system: str, seed: int, key: str) -> dict:
    """Train one system to a plateau of the dev LM loss, then score it on the test replies."""
    kind = SYSTEMS[system][0]
    model, trainer = build_trainer(ctx, system, seed, key)
    plan = trainer.plan()
    print(f"[{NAME}] {system} seed {seed}: budget {plan.total_steps} steps of {ctx.s['batch_size']}", flush=True)
    t = time.perf_counter()
    result = trainer.train(resume_from="latest")
    train_s = result.train_seconds or (time.perf_counter() - t)  # every session's training, resumes included
    t = time.perf_counter()
    test = ctx.splits["test"]
    scored = score(trainer.predict(test), test)
    test_ll = [float(x) for x in trainer.reference_log_likelihoods(test)]
    scored["metrics"]["test_ll"] = _mean(test_ll)
    div = None
    if kind == "dual-tower":
        inputs, qs = diversity_setup(ctx)
        div = diversity_of(lambda exs, q: trainer.predict(with_questioners(exs, [q] * len(exs))), inputs, qs)
        scored["metrics"]["diversity"] = div["value"]
    else:
        scored["metrics"]["diversity"] = 0.0  # LoRA cannot see the questioner
    eval_s = time.perf_counter() - t
    history = result.history
    contrastive = kind == "dual-tower" and system_settings(system, ctx.s)["contrastive_weight"] > 0
    return {"system": system, "kind": kind, "label": SYSTEMS[system][1], "seed": seed,
            "settings": system_settings(system, ctx.s), "n": len(test), **scored, "test_ll": test_ll,
            "diversity": div, "dtype": str(ctx.dtype).removeprefix("torch."),
            "train_attention": trainer.args.attn_implementation or "sdpa", "steps": result.global_step,
            "total_steps": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch,
            "stopped_early": result.stopped_early, "best_step": result.best_step, "best_dev_loss": result.best_metric,
            "eval_history": [{k: r.get(k) for k in ("step", "loss", METRIC, "loss_contrastive")}
                             for r in result.eval_history],
            "train_curve": [[r["step"], r.get(METRIC)] for r in history[::5]],
            "pairs": pair_statistics(history, contrastive),
            "positive_pairs_per_step": [round(float(r.get("contrastive_positive_pairs", 0.0)), 1) for r in history]
            if contrastive else None,
            "train_s": train_s, "eval_s": eval_s, "wall_s": train_s + eval_s,  # training over every session
            "cost": {"added_params_per_layer": model.added_parameters_per_layer(),
                     "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                     "step_s": train_s / max(1, result.global_step)}}


def _persona_generator(ctx: Context) -> Any:
    import torch

    from personakit.backbones.precision import cast_frozen
    from personakit.llm import HFGenerator

    bb, tok = ctx.backbone()
    if ctx.dtype != torch.float32:
        cast_frozen(bb.requires_grad_(False), ctx.dtype)
    if ctx.args.device:
        bb = bb.to(ctx.args.device)
    return HFGenerator(bb.eval(), tok, batch_size=ctx.s["eval_batch"])


def _persona_predict(ctx: Context, gen: Any, examples: Sequence[Any], personas: Sequence[Any]) -> list[str]:
    from personakit.llm import GenerationSettings
    from personakit.recipes.questioner.run import _persona_prompt  # the recipe's own prompt

    settings = GenerationSettings(max_new_tokens=ctx.s["new_tokens"], stop=["\n"])
    prompts = [_persona_prompt(ex, p, ctx.s["history_turns"]) for ex, p in zip(examples, personas)]
    return gen.generate(prompts, settings, progress=True)


def _personas(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ex in ctx.full["train"] + ctx.full["dev"] + ctx.full["test"]:
        out.setdefault(ex.questioner_id, ex.user_persona if ex.user_persona is not None else ex.persona)
    return out


def persona_unit(ctx: Context) -> dict:
    """The untrained backbone prompted with the questioner's survey record (greedy: one seed)."""
    gen = _persona_generator(ctx)
    persona_of = _personas(ctx)
    test = ctx.splits["test"]
    t = time.perf_counter()
    scored = score(_persona_predict(ctx, gen, test, [persona_of.get(ex.questioner_id) for ex in test]), test)
    inputs, qs = diversity_setup(ctx)
    div = diversity_of(lambda exs, q: _persona_predict(ctx, gen, exs, [persona_of[q]] * len(exs)), inputs, qs)
    scored["metrics"].update(diversity=div["value"], test_ll=None)
    return {"system": "persona-prompt", "kind": "persona-prompt", "label": PROMPTED, "seed": 0, "n": len(test),
            **scored, "diversity": div, "dtype": str(ctx.dtype).removeprefix("torch."), "train_s": 0.0,
            "eval_s": time.perf_counter() - t}


def controls_unit(ctx: Context, system: str) -> dict:
    """The seed-0 system with another questioner's id / record and with none, on the test replies."""
    test = ctx.splits["test"]
    shuffled = derange_questioners([ex.questioner_id for ex in test], ctx.questioners, seed=0)
    t = time.perf_counter()
    conditions: dict[str, dict] = {}
    check: Optional[float] = None
    if system == "persona-prompt":
        gen = _persona_generator(ctx)
        persona_of = _personas(ctx)
        for cond, personas in (("shuffled_persona", [persona_of[q] for q in shuffled]),
                               ("no_persona", [None] * len(test))):
            print(f"[{NAME}] {PROMPTED}: control {cond}", flush=True)
            conditions[cond] = score(_persona_predict(ctx, gen, test, personas), test)
    else:
        key = ctx.keys[f"{system}-s0"]
        _, trainer = build_trainer(ctx, system, 0, key)
        if not any(Path(trainer.config.output_dir).glob("*")):
            print(f"[{NAME}] {system} seed 0: no checkpoint in the work folder; training again", flush=True)
        trainer.train(resume_from="latest")  # the finished run's checkpoint: restores the kept (best) weights
        stored = ctx.units.get(f"{system}-s0", {}).get("test_ll")
        if stored:  # the restored weights are those the system unit scored: same reference log-likelihoods
            again = trainer.reference_log_likelihoods(test[:32])
            check = max(abs(a - b) for a, b in zip(again, stored))
            print(f"[{NAME}] {system}: restored weights, largest log-likelihood gap to the system unit "
                  f"{check:.2e} on {len(again)} test replies", flush=True)
        for cond, ids in (("shuffled_questioner", shuffled), ("unknown_questioner", [None] * len(test))):
            print(f"[{NAME}] {system}: control {cond}", flush=True)
            exs = with_questioners(test, ids)
            conditions[cond] = score(trainer.predict(exs), test)
            conditions[cond]["test_ll"] = [float(x) for x in trainer.reference_log_likelihoods(exs)]
            conditions[cond]["metrics"]["test_ll"] = _mean(conditions[cond]["test_ll"])
    return {"control_of": system, "n": len(test), "donors": shuffled, "conditions": conditions,
            "restored_ll_gap": check, "eval_s": time.perf_counter() - t}


def sanity_unit(ctx: Context) -> dict:
    """The sanity rows scored on the test replies: the persuadee's last turn copied, the most frequent training
    reply (no model is trained)."""
    t = time.perf_counter()
    conditions = {name: score(replies, ctx.splits["test"])
                  for name, replies in sanity_replies(ctx.splits["train"], ctx.splits["test"]).items()}
    return {"kind": "sanity", "conditions": conditions, "eval_s": time.perf_counter() - t}


def run_unit(ctx: Context, unit: str, key: str) -> dict:
    if unit == "data":
        return data_unit(ctx)
    if unit == "sanity":
        return sanity_unit(ctx)
    system, seed = parse_unit(unit)
    if system in CONTROLS:
        return controls_unit(ctx, CONTROLS[system])
    if system == "persona-prompt":
        return persona_unit(ctx)
    return train_unit(ctx, system, seed, key)


# ------------------------------------------------------------------------------ git, report, main
def load_units(out: Path, setting: str) -> dict[str, dict]:
    """The newest stored unit of each name for ``setting``."""
    found: dict[str, dict] = {}
    for u in UnitStore(out, NAME).all():
        if u.get("setting") == setting and u.get("unit"):
            if u["unit"] not in found or u.get("finished", "") >= found[u["unit"]].get("finished", ""):
                found[u["unit"]] = u
    return found


def plot_curves(units: dict[str, dict], path: Path) -> bool:
    """Dev LM loss against optimizer steps, one line per trained unit (headline systems and ablations)."""
    plt = pyplot()
    trained = [u for _, u in sorted(units.items()) if u.get("eval_history")]
    if plt is None or not trained:
        return False
    panels = [("headline systems", [u for u in trained if u["system"] in MULTI_SEED]),
              ("ablations (seed 0) and the dual tower", [u for u in trained if u["system"] in ABLATIONS
                                                        or (u["system"] == "dual-tower" and u["seed"] == 0)])]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, us) in zip(axes[0], panels):
        for u in us:
            plot_dev_curve(ax, u, METRIC, f"{u['label']} s{u['seed']}")
        ax.set_title(f"dev LM loss: {title}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("dev loss_lm")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def report(args: argparse.Namespace) -> dict:
    units = load_units(args.out, args.setting_name)
    summary = summarise(units)
    first = next(iter(units.values()), {})
    out = {"benchmark": NAME, "command": command_line(args.argv), "setting": args.setting_name, "written": now(),
           "machine_line": unit_machine_line(first),
           "trained_on": machines_line((name, u) for name, u in units.items() if u.get("steps") and u.get("train_s")),
           "order": unit_order(SETTINGS[args.setting_name]["seeds"]), "units": units, "summary": summary,
           "verdict": verdict(summary), "uses_questioner": controls_verdict(summary), "paper_headline": PAPER_HEADLINE}
    suffix = "" if args.setting_name == "default" else f"-{args.setting_name}"
    out["curves"] = f"{NAME}{suffix}_curves.png"
    md = to_markdown(out)
    slim = json.loads(json.dumps({**out, "units": {k: {f: u.get(f) for f in (
        "key", "commit", "finished", "wall_s", "train_s", "eval_s", "steps", "best_step", "stopped_early")}
        for k, u in units.items()}}, default=str))
    write_results(f"{NAME}{suffix}", slim, md, args.out, volatile=report_volatile(args))
    plot_curves(units, args.out / out["curves"])
    return slim


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_arguments(parser, NAME, quick_help="smoke setting (a few minutes)",
                          scale_help="GPU setting (add --device cuda)")
    parser.add_argument("--split", choices=["turn", "time"], default="turn", help="PFG-Questioner split")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    args.setting_name = setting_name(args)
    if args.report:
        return report(args)
    require_pfg(parser, args.data)
    ctx = Context(args, SETTINGS[args.setting_name])
    print(f"[{NAME}] {args.setting_name}: " + ", ".join(f"{k} {len(v)}" for k, v in ctx.splits.items())
          + f" (data {ctx.digest})", flush=True)
    suffix = "" if args.setting_name == "default" else f"-{args.setting_name}"
    ctx.run(unit_order(ctx.s["seeds"]), lambda unit, key: run_unit(ctx, unit, key), report=lambda: report(args),
            depends=depends,
            report_paths=[args.out / f"{NAME}{suffix}{ext}" for ext in (".md", ".json", "_curves.png")])
    return report(args)


if __name__ == "__main__":
    main()
