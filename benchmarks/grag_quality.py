"""GRAG at learning scale (``../shared/EXPERIMENTS.md``): SPC with controls and seeds, then PFG and ED.

What it runs, per dataset (Table 3 of the GRAG paper, in direction):

* **Data** (``../shared/data``), fixed by the sampling seed 1234 and written once to the work folder:
  - SPC: ``spc/train.jsonl`` -> training sample, ``spc/valid.jsonl`` -> dev sample,
    ``spc/test.jsonl`` -> 300 test turns; responder ``User 2``.  The official splits hold
    different conversations (and personas), so no dialogue is in two splits.
  - PFG: dialogues ordered by the date in their id; the earliest 80% train, the next 10%
    dev, the latest 10% test; responder the persuader (persona = the persuadee's survey
    record, GRAG's setting).
  - ED: official ``fixed_valid.csv`` -> train and dev (by conversation), ``fixed_test.csv``
    -> test (the train split is not available here); responder the listener.
  Histories are cut to the last ``history_turns`` turns.
* **Generic responses** $R_G$ for every example from the embedded SmolLM2-135M-Instruct
  (the persona never sent; empty replies retried, then a documented fallback), cached in
  the work folder.
* **Systems** on SmolLM2-135M-Instruct + LoRA (r 16, ``lora_alpha`` 32), frozen weights in
  bf16 where the CPU has a fast bf16 path, chat-format prompts ending with the
  end-of-turn token: PreSFT(Hist), PreSFT(TST), PreGRAG, PostGRAG (3 seeds for
  PreSFT(Hist) and PostGRAG on SPC, 1 elsewhere) and ICL(Hist) 2-shot with SmolLM2.
  AdamW, learning rate decaying linearly to 50% over the step budget; the dev loss
  ($L_P$) is evaluated every ``eval_steps`` and training stops when it has not improved
  by 1% (relative) for ``patience`` evaluations; the best evaluated weights are kept.
* **Ablations** (SPC, seed 0): PostGRAG with the paper's style initialisation
  (``style_init="paper"``, a random style at every layer from step 0) against our
  zero-initialised style path; PostGRAG with the persona in $H$
  (``persona_in_history=True``: the decoder continues PreSFT(Hist)'s prompt, so it starts
  as PreSFT(Hist) and the style path adds to it; a departure from the paper, whose decoder
  reads the persona only through the style).
* **Controls** (seed 0, the same table): persona shuffled at test (each test example gets
  another dialogue's persona), $R_G$ blanked at test (PreSFT(TST), PreGRAG, PostGRAG), and
  an upper-bound scaffold, $R_G$ := the reference minus the words it shares with the
  persona (a control, never a result).
* **Sanity rows** (no model trained): the last user turn copied, the training split's most
  frequent reply, and the generic response $R_G$ itself as the reply (how much a system
  could get from the scaffold by copying it).
* **Metrics**: Char-F1, ROUGE-1/2/L, BLEU, BERTScore (MiniLM), BPC of the references,
  the shares of distinct and multi-turn replies; against PreSFT(Hist): paired t-test and
  paired bootstrap 95% intervals on per-example ROUGE-2 and sentence BLEU (averaged over
  seeds).  A pairwise LLM judge (the embedded SmolLM2, answering each question by its
  next-token likelihoods of A / B / Similar: far too weak to mean much, run as a smoke
  test) compares PostGRAG with PreSFT(Hist) on 50 test turns, each asked in both orders.

Every (dataset, system, seed) is a **unit**: its metrics, predictions and learning curve
go to ``benchmarks/results/grag_quality/<dataset>/<system>-s<seed>-<key>.json``, ``key`` a
hash of its config and data, and ``--commit`` commits the file as soon as it is written.
A rerun skips the units already there and resumes a unit's training from its checkpoints
in the work folder (outside the repository), so a run of several hours can be split across
sessions.  Two processes of this script share the units out: each unit runs under a lock
in the work folder, a process skips the units another one is running, and a dataset's
data (the generic responses) is prepared by one process while the other goes on to the
next dataset (``benchmarks/run_learning_scale.sh`` runs it in both lanes).  ``--report``
rebuilds ``benchmarks/results/grag_quality.{md,json}`` and the learning-curve PNG from
whatever units exist.

    python benchmarks/grag_quality.py --commit                 # default: SPC then PFG then ED
    python benchmarks/grag_quality.py --datasets SPC --commit  # SPC only
    python benchmarks/grag_quality.py --only sanity --commit   # one kind of unit (here: the sanity rows)
    python benchmarks/grag_quality.py --report                 # tables from the finished units
    python benchmarks/grag_quality.py --plot-sweeps            # redraw grag_sweeps.png from grag_sweeps.json
    python benchmarks/grag_quality.py --quick                  # smoke run (a few minutes)
    python benchmarks/grag_quality.py --scale --device cuda    # the paper's setting on a GPU: BART-base
                                                               # (hub id or --backbone folder), full splits
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
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (RESULTS, SHARED_DATA, UnitStore, add_run_arguments, command_line, commit_path,  # noqa: E402
                     machine_info, machine_line, machines_line, now, pyplot, run_units, save_figure,
                     train_attention, try_lock, report_volatile, write_results)
from _common import sanity_replies as shared_sanity_replies  # noqa: E402

NAME = "grag_quality"
CODE_VERSION = 1  # bump when a change makes earlier unit files incomparable
SAMPLING_SEED = 1234

METRIC_KEYS = ["char_f1", "rouge1", "rouge2", "rougeL", "bleu", "bertscore_f1", "bpc", "distinct", "multi_turn"]
HEADERS = ["Char-F1", "R-1", "R-2", "R-L", "BLEU", "BERT-F1", "BPC", "distinct", "multi-turn"]

# GRAG paper, Table 3 (BART-base task model, Llama-3.1-8B generic responses): Char-F1, ROUGE-1/2/L, BLEU, BPC
PAPER_TABLE3 = {
    "ED": {"ICL(Hist)": [0.168, 0.142, 0.019, 0.117, 2.216, 2.350], "PreSFT(Hist)": [0.132, 0.165, 0.030, 0.148, 3.595, 1.030],
           "PreSFT(TST)": [0.127, 0.158, 0.029, 0.142, 3.346, 1.082], "PreGRAG": [0.138, 0.173, 0.036, 0.156, 3.806, 1.022],
           "PostGRAG": [0.146, 0.182, 0.041, 0.164, 4.087, 1.023]},
    "PFG": {"ICL(Hist)": [0.191, 0.167, 0.028, 0.126, 2.302, 1.736], "PreSFT(Hist)": [0.166, 0.188, 0.040, 0.149, 3.394, 0.923],
            "PreSFT(TST)": [0.168, 0.186, 0.046, 0.153, 3.368, 0.964], "PreGRAG": [0.182, 0.206, 0.057, 0.167, 4.109, 0.923],
            "PostGRAG": [0.186, 0.214, 0.059, 0.175, 4.618, 0.938]},
    "SPC": {"ICL(Hist)": [0.231, 0.231, 0.088, 0.207, 5.967, 1.333], "PreSFT(Hist)": [0.317, 0.381, 0.235, 0.365, 17.444, 0.384],
            "PreSFT(TST)": [0.285, 0.348, 0.200, 0.333, 14.500, 0.466], "PreGRAG": [0.358, 0.430, 0.280, 0.414, 20.436, 0.381],
            "PostGRAG": [0.366, 0.438, 0.288, 0.423, 21.086, 0.403]},
}
PAPER_KEYS = ["char_f1", "rouge1", "rouge2", "rougeL", "bleu", "bpc"]

SETTINGS = {
    "default": dict(datasets=["SPC", "PFG", "ED"], seeds={"SPC": 3, "PFG": 1, "ED": 1}, train=2000, dev=150, test=300,
                    history_turns=4, lengths=(64, 160, 48, 48), batch=8, lr=2e-4, max_steps=500, eval_steps=25,
                    patience=3, new_tokens=40, judge_pairs=50, backbone="smollm2"),
    "quick": dict(datasets=["SPC"], seeds={"SPC": 1}, train=24, dev=8, test=8, history_turns=2,
                  lengths=(32, 64, 24, 24), batch=4, lr=2e-4, max_steps=6, eval_steps=3, patience=2, new_tokens=12,
                  judge_pairs=2, backbone="smollm2"),
    "scale": dict(datasets=["SPC", "PFG", "ED"], seeds={"SPC": 3, "PFG": 3, "ED": 3}, train=None, dev=1000, test=1000,
                  history_turns=None, lengths=(128, 256, 64, 64), batch=16, lr=1e-4, max_steps=20_000, eval_steps=500,
                  patience=5, new_tokens=64, judge_pairs=200, backbone="facebook/bart-base"),
}
SYSTEMS = {"presft-hist": "PreSFT(Hist)", "presft-tst": "PreSFT(TST)", "pregrag": "PreGRAG", "postgrag": "PostGRAG",
           "icl": "ICL(Hist)", "postgrag-paperinit": "PostGRAG (paper init)",
           "postgrag-persona": "PostGRAG (persona in H)"}
ABLATIONS = {"postgrag-paperinit": ("postgrag", {"style_init": "paper"}),
             "postgrag-persona": ("postgrag", {"persona_in_history": True})}
"""Ablation units (SPC, seed 0): kind -> (model kind, GRAGConfig settings)."""
CONTROLLED_ABLATIONS = ("postgrag-persona",)
"""Ablations scored under the controls too (does the persona-in-H PostGRAG read its persona and R_G?)."""
MULTI_SEED = ("presft-hist", "postgrag")
READS_GENERIC = ("presft-tst", "pregrag", "postgrag")
TEMPLATES = {"SPC": "spc-chat", "PFG": "pfg-chat", "ED": "empathetic-chat"}
FALLBACK_TEMPLATES = {"SPC": "spc", "PFG": "pfg", "ED": "empathetic"}
BASELINE = "PreSFT(Hist)"
TESTED = ("rouge2", "bleu")
JUDGE_ANSWER = "choice"  # the embedded 135M model never writes a valid JSON verdict; read its likelihoods


# --------------------------------------------------------------------------------------- data
def load_pools(name: str, data: Path) -> tuple[list, list, list]:
    """Train, dev and test example pools of one dataset (see the module docstring)."""
    from personakit.data import dialogues_to_examples, parse_pfg_date, read_dataset

    if name == "SPC":
        pools = [dialogues_to_examples(read_dataset(data / "spc" / f"{split}.jsonl"), agent="User 2")
                 for split in ("train", "valid", "test")]
        return pools[0], pools[1], pools[2]
    if name == "ED":
        folder = data / "empatheticdialogues"
        valid = read_dataset(folder / "fixed_valid.csv")
        ids = sorted(d.id for d in valid)
        dev_ids = set(random.Random(SAMPLING_SEED).sample(ids, len(ids) // 10))
        train = dialogues_to_examples([d for d in valid if d.id not in dev_ids], agent="listener")
        dev = dialogues_to_examples([d for d in valid if d.id in dev_ids], agent="listener")
        return train, dev, dialogues_to_examples(read_dataset(folder / "fixed_test.csv"), agent="listener")
    if name == "PFG":
        dialogues = read_dataset(data / "persuasionforgood" / "FullData", "pfg")
        dialogues = sorted(dialogues, key=lambda d: (parse_pfg_date(d.id) or "", d.id))
        a, b = int(0.8 * len(dialogues)), int(0.9 * len(dialogues))
        make = lambda ds: dialogues_to_examples(ds, agent="persuader", persona_from="user")  # noqa: E731
        return make(dialogues[:a]), make(dialogues[a:b]), make(dialogues[b:])
    raise ValueError(f"unknown dataset {name!r}")


def sample(pool: list, n: Optional[int], history_turns: Optional[int]) -> list:
    chosen = pool if n is None or n >= len(pool) else random.Random(SAMPLING_SEED).sample(pool, n)
    if history_turns is not None:
        chosen = [ex.model_copy(update={"history": ex.history[-history_turns:]}) for ex in chosen]
    return chosen


def augment(name: str, examples: list, work: Path, s: dict) -> tuple[list, dict]:
    """Fill ``generic_response`` of every example with the embedded SmolLM2 (cached; empties retried / replaced)."""
    from personakit.augment import GenericResponseAugmenter, load_template
    from personakit.llm import GenerationSettings

    try:
        template = load_template(TEMPLATES[name])
    except KeyError:
        template = load_template(FALLBACK_TEMPLATES[name])
    augmenter = GenericResponseAugmenter.from_pretrained(
        "smollm2", template=template, cache=work / "llm_cache.jsonl", batch_size=16, dtype="auto",
        settings=GenerationSettings(max_new_tokens=40, stop=["\n"]))
    done = augmenter.augment(examples)
    stats = dict(vars(augmenter.last_stats)) if augmenter.last_stats is not None else {}
    empty = [i for i, ex in enumerate(done) if not (ex.generic_response or "").strip()]
    for i in empty:
        done[i] = done[i].model_copy(update={"generic_response": "Okay."})
    stats.update({"template": template.name, "empty_after_augment": len(empty)})
    return done, stats


def generic_responses_path(out: Path, name: str) -> Path:
    """The committed generic responses of a dataset's sample (``{"responses": {example id: R_G}, ...}``)."""
    return out / NAME / name / "generic_responses.json"


def prepare(name: str, work: Path, s: dict, data: Path, out: Optional[Path] = None) -> dict:
    """The fixed train / dev / test samples with generic responses, written once to the work folder.

    With ``out`` the generic responses are also kept in the results folder
    (:func:`generic_responses_path`, committed with the units): a fresh machine whose work
    folder is empty rebuilds the same samples and takes the responses from there instead of
    generating them again, so its data digest, and with it every finished unit's key, stays
    the same even where its arithmetic would make the greedy LLM answer differently.
    """
    from personakit.augment import load_examples, save_examples
    from personakit.config import atomic_write_text

    files = {split: work / f"{split}.jsonl" for split in ("train", "dev", "test")}
    meta_path = work / "data.json"
    kept = generic_responses_path(out, name) if out is not None else None
    if all(p.exists() for p in files.values()) and meta_path.exists():
        meta = json.loads(meta_path.read_text())
    else:
        work.mkdir(parents=True, exist_ok=True)
        pools = load_pools(name, data)
        sizes = (s["train"], s["dev"], s["test"])
        chosen = [sample(pool, n, s["history_turns"]) for pool, n in zip(pools, sizes)]
        t = time.perf_counter()
        known = json.loads(kept.read_text()) if kept is not None and kept.is_file() else None
        ids = [ex.id for part in chosen for ex in part]
        if known is not None and known.get("history_turns") == s["history_turns"] \
                and all(i in known["responses"] for i in ids):
            flat = [ex.model_copy(update={"generic_response": known["responses"][ex.id]})
                    for part in chosen for ex in part]
            stats = {**known.get("augment", {}), "from": str(kept.name)}
        else:
            flat, stats = augment(name, [ex for part in chosen for ex in part], work, s)
        cut = [len(chosen[0]), len(chosen[0]) + len(chosen[1])]
        parts = [flat[:cut[0]], flat[cut[0]:cut[1]], flat[cut[1]:]]
        for (split, path), part in zip(files.items(), parts):
            save_examples(path, part)
        meta = {"pools": [len(p) for p in pools], "sizes": [len(p) for p in parts], "augment": stats,
                "augment_s": time.perf_counter() - t}
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    splits = {split: load_examples(path) for split, path in files.items()}
    if kept is not None and not kept.is_file():
        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(kept, json.dumps({"dataset": name, "history_turns": s["history_turns"],
                                             "augment": meta.get("augment", {}), "responses": {
            ex.id: ex.generic_response for split in ("train", "dev", "test") for ex in splits[split]}},
            indent=0, ensure_ascii=False) + "\n")
    digest = hashlib.sha256()
    for split in ("train", "dev", "test"):
        for ex in splits[split]:
            digest.update(f"{split}|{ex.id}|{ex.response}|{ex.generic_response}|{ex.persona.to_text()}\n".encode())
    return {**splits, "meta": meta, "digest": digest.hexdigest()[:16]}


# --------------------------------------------------------------------------------------- scoring
def sentence_bleu(prediction: str, reference: str) -> float:
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(prediction, [reference]).score)


def score(predictions: list[str], examples: list, bpc: Optional[float]) -> dict:
    """Corpus metrics plus the per-example scores the significance tests use."""
    from personakit.eval import evaluate_texts
    from personakit.eval.rouge import Rouge

    refs = [ex.response for ex in examples]
    metrics = evaluate_texts(predictions, refs, metrics=["char_f1", "rouge", "bleu", "bertscore", "reply_stats"],
                             bertscore={"model": "minilm"})
    metrics["bpc"] = bpc
    rouge = Rouge(types=("rouge2",))
    per = {"rouge2": [float(rouge([p], [r])["rouge2"]) for p, r in zip(predictions, refs)],
           "bleu": [sentence_bleu(p, r) for p, r in zip(predictions, refs)]}
    return {"metrics": metrics, "per_example": per, "predictions": predictions}


# --------------------------------------------------------------------------------------- units
_BACKBONE: dict[str, Any] = {}


def backbone(name: str) -> tuple[Any, Any]:
    """A fresh copy of the task backbone (loaded once per process)."""
    from personakit.models.grag.base import load_backbone

    if name not in _BACKBONE:
        _BACKBONE[name] = load_backbone(name)
    model, tok = _BACKBONE[name]
    return copy.deepcopy(model), tok


def unit_key(dataset: str, kind: str, seed: int, s: dict, digest: str, args: argparse.Namespace) -> str:
    """The unit's key: a hash of its config, its data and the benchmark's code version."""
    payload = {"v": CODE_VERSION, "dataset": dataset, "kind": kind, "seed": seed, "digest": digest,
               "setting": {k: v for k, v in s.items() if k not in ("datasets", "seeds", "judge_pairs")},
               "dtype": args.dtype, "backbone": args.backbone or s["backbone"]}
    if kind == "judge":
        payload["judge"] = {"answer": JUDGE_ANSWER, "pairs": s["judge_pairs"]}
    return UnitStore.key(payload)


def train_unit(dataset: str, kind: str, seed: int, d: dict, s: dict, args: argparse.Namespace, work: Path,
               key: str) -> dict:
    """Train one system to a plateau of its dev loss, then score it (and its controls for seed 0)."""
    import torch

    from personakit.eval.controls import blank_generic, reference_scaffold, shuffle_personas
    from personakit.recipes.grag import GRAGModelSpec, build_recipe_model
    from personakit.training.grag import GRAGTrainer, GRAGTrainingConfig

    torch.manual_seed(seed)
    bb, tok = backbone(args.backbone or s["backbone"])
    model_kind, settings = ABLATIONS.get(kind, (kind, {}))
    spec = GRAGModelSpec(kind=model_kind, name=SYSTEMS[kind], settings=settings)
    model, dtype = build_recipe_model(spec, bb, tok, dtype=args.dtype, device=args.device)
    p, h, g, r = s["lengths"]
    collator = model.make_collator(max_persona_tokens=p, max_history_tokens=h, max_generic_tokens=g,
                                   max_response_tokens=r)
    cfg = GRAGTrainingConfig(
        output_dir=str(work / "checkpoints" / f"{kind}-s{seed}-{key}"), max_steps=s["max_steps"],
        batch_size=s["batch"], learning_rate=s["lr"], final_lr_fraction=0.5, seed=seed, logging_steps=5,
        eval_steps=s["eval_steps"], eval_at_epoch_end=False, save_steps=s["eval_steps"], keep_last=1,
        eval_metrics=["loss", "bpc"], early_stopping_patience=s["patience"], early_stopping_threshold=0.01,
        metric_for_best_model="loss_p", load_best_model_at_end=True, eval_batch_size=16,
        max_new_tokens=s["new_tokens"], attn_implementation=train_attention(args.device),
        use_cpu=args.device in (None, "cpu"), progress=True)
    trainer = GRAGTrainer(model, cfg, train_examples=d["train"], eval_examples=d["dev"], collator=collator)
    t = time.perf_counter()
    result = trainer.train(resume_from="latest")
    # the training loop's time over every session (a resumed run adds the earlier sessions' time)
    train_s = result.train_seconds or (time.perf_counter() - t)
    last_eval = result.eval_history[-1] if result.eval_history else {}
    converged = result.stopped_early
    t = time.perf_counter()
    conditions = {"main": d["test"]}
    if seed == 0 and (kind not in ABLATIONS or kind in CONTROLLED_ABLATIONS):
        conditions["shuffled_persona"] = shuffle_personas(d["test"], seed=0)
        if model_kind in READS_GENERIC:
            conditions["blank_generic"] = blank_generic(d["test"])
            conditions["reference_scaffold"] = reference_scaffold(d["test"])
    scored = {}
    for cond, examples in conditions.items():
        print(f"[{NAME}] {dataset} {SYSTEMS[kind]} seed {seed}: test condition {cond}", flush=True)
        predictions = trainer.predict(examples)
        bpc = trainer.evaluate(examples)["bpc"]
        scored[cond] = score(predictions, d["test"], bpc)
    eval_s = time.perf_counter() - t
    return {"system": SYSTEMS[kind], "kind": kind, "dtype": dtype, "train_s": train_s, "eval_s": eval_s,
            "wall_s": train_s + eval_s, "train_cpu_s": result.train_cpu_seconds or None,
            "steps": result.global_step, "max_steps": s["max_steps"], "stopped_early": result.stopped_early,
            "converged": converged, "best_step": result.best_step, "best_dev_loss": result.best_metric,
            "last_dev_loss": last_eval.get("loss_p"), "history": result.history,
            "eval_history": result.eval_history, "conditions": scored,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "train_attention": cfg.attn_implementation or "sdpa"}


def trained_units(units: list[dict]) -> list[tuple[str, dict]]:
    """``(name, unit)`` of the units that trained a model, for :func:`_common.machines_line`."""
    return [(f"{u['system']} s{u.get('seed', 0)}", u) for u in units
            if u.get("steps") and u.get("kind") not in ("icl", "sanity", "judge")]


def icl_unit(dataset: str, seed: int, d: dict, s: dict, args: argparse.Namespace, work: Path) -> dict:
    from personakit.eval.controls import shuffle_personas
    from personakit.llm import CachedGenerator, GenerationSettings, HFGenerator, ResponseCache
    from personakit.models.icl import ICLResponder

    generator = CachedGenerator(HFGenerator.from_pretrained("smollm2", batch_size=16, dtype="auto"),
                                ResponseCache(work / "llm_cache.jsonl"))
    responder = ICLResponder(generator, mode="hist", n_shot=2, shot_pool=d["train"], seed=seed,
                             settings=GenerationSettings(max_new_tokens=s["new_tokens"], stop=["\n"]))
    t = time.perf_counter()
    scored = {}
    for cond, examples in {"main": d["test"], "shuffled_persona": shuffle_personas(d["test"], seed=0)}.items():
        scored[cond] = score(responder.respond(examples, batch_size=16, progress=True), d["test"], None)
    return {"system": SYSTEMS["icl"], "kind": "icl", "dtype": "auto", "train_s": 0.0,
            "eval_s": time.perf_counter() - t, "steps": 0, "conditions": scored}


SANITY = {"copy_last_user_turn": "copy of the last user turn", "most_frequent_reply": "most frequent training reply",
          "generic_response": "the generic response R_G as the reply"}
"""Sanity rows (``../shared/EXPERIMENTS.md`` §5): replies that need no trained model, scored like the systems."""


def sanity_replies(d: dict) -> dict[str, list[str]]:
    """The test replies of each sanity row: the last history turn, the training split's most frequent reply
    (:func:`_common.sanity_replies`) and each turn's own generic response."""
    common = shared_sanity_replies(d["train"], d["test"])
    return {"copy_last_user_turn": common["copy_last_turn"], "most_frequent_reply": common["most_frequent_reply"],
            "generic_response": [ex.generic_response or "" for ex in d["test"]]}


def sanity_unit(d: dict) -> dict:
    """The sanity rows scored on the test turns (no model is trained; BPC does not apply)."""
    t = time.perf_counter()
    conditions = {name: score(replies, d["test"], None) for name, replies in sanity_replies(d).items()}
    return {"system": "sanity", "kind": "sanity", "train_s": 0.0, "eval_s": time.perf_counter() - t, "steps": 0,
            "conditions": conditions}


def judge_unit(dataset: str, units: dict, d: dict, s: dict, work: Path) -> Optional[dict]:
    """PostGRAG vs PreSFT(Hist) (seed 0) by the embedded SmolLM2 as a pairwise judge, on the first test turns."""
    from personakit.eval import PairwiseJudge
    from personakit.llm import HFGenerator

    a, b = units.get(("postgrag", 0)), units.get(("presft-hist", 0))
    if a is None or b is None:
        return None
    n = s["judge_pairs"]
    judge = PairwiseJudge(HFGenerator.from_pretrained("smollm2", batch_size=8, dtype="auto"), answer=JUDGE_ANSWER)
    t = time.perf_counter()
    result = judge.judge(d["test"][:n], a["conditions"]["main"]["predictions"][:n],
                         b["conditions"]["main"]["predictions"][:n], names=("PostGRAG", "PreSFT(Hist)"))
    return {"system": "judge", "kind": "judge", "n": n, "seconds": time.perf_counter() - t,
            "judge": f"SmolLM2-135M-Instruct, answer={JUDGE_ANSWER!r}", "result": result.to_dict(),
            "markdown": result.to_markdown()}


def run_dataset(dataset: str, s: dict, args: argparse.Namespace, work_root: Path, deadline: float) -> bool:
    """Run (or resume) one dataset's units; ``False`` when another process is preparing its data
    (this process leaves the dataset to it), else ``True``."""
    from personakit.backbones.precision import describe_precision

    work = work_root / dataset
    lock = try_lock(work_root / "locks" / f"{dataset}-data.lock")
    if lock is None:
        print(f"[{NAME}] {dataset}: another process is preparing the data; skipped here", flush=True)
        return False
    try:
        d = prepare(dataset, work, s, args.data, out=args.out)
    finally:
        lock.close()
    if args.commit:
        commit_path(generic_responses_path(args.out, dataset), f"{NAME}: {dataset} generic responses", NAME)
    print(f"[{NAME}] {dataset}: {len(d['train'])} train / {len(d['dev'])} dev / {len(d['test'])} test examples "
          f"(data {d['digest']})", flush=True)
    order = [("presft-hist", 0), ("postgrag", 0), ("judge", 0), ("pregrag", 0), ("presft-tst", 0), ("icl", 0),
             ("sanity", 0)]
    if dataset == "SPC":
        order += [("postgrag-paperinit", 0), ("postgrag-persona", 0)]
    for seed in range(1, s["seeds"].get(dataset, 1)):
        order += [("presft-hist", seed), ("postgrag", seed)]
    if getattr(args, "only", None):
        order = [(kind, seed) for kind, seed in order if kind in args.only]
    names = {f"{kind}-s{seed}": (kind, seed) for kind, seed in order}

    def key_of(unit: str) -> str:
        return unit_key(dataset, *names[unit], s, d["digest"], args)

    def run(unit: str, key: str, done: dict[str, dict]) -> Optional[dict]:
        kind, seed = names[unit]
        if kind == "icl":
            result = icl_unit(dataset, seed, d, s, args, work)
        elif kind == "sanity":
            result = sanity_unit(d)
        elif kind == "judge":
            result = judge_unit(dataset, {names[u]: r for u, r in done.items()}, d, s, work)
        else:  # its wall_s: training (all sessions) + scoring
            result = train_unit(dataset, kind, seed, d, s, args, work, key)
        return None if result is None else {**result, "dataset": dataset, "seed": seed}

    def stamp(unit: str) -> dict:
        return {"setting": args.setting_name, "machine": machine_info(("torch", "transformers", "peft")),
                "precision": describe_precision(), "data": {"digest": d["digest"], **d["meta"]}}

    def describe(unit: str) -> str:
        kind, seed = names[unit]
        return f"{dataset} {SYSTEMS.get(kind, kind)} seed {seed}"

    run_units(names, store=UnitStore(args.out, NAME), group=dataset, name=NAME, key_of=key_of, run=run, stamp=stamp,
              deadline=deadline, commit=args.commit, describe=describe, report=lambda: report(args),
              report_paths=[args.out / f"{NAME}.{ext}" for ext in ("md", "json")] + [args.out / f"{NAME}_curves.png"],
              lock_dir=work_root / "locks" / dataset)
    return True


# --------------------------------------------------------------------------------------- report
def load_units(out: Path, setting: str) -> dict[str, list[dict]]:
    by_dataset: dict[str, list[dict]] = {}
    for unit in UnitStore(out, NAME).all():
        if unit.get("setting") == setting:
            by_dataset.setdefault(unit["dataset"], []).append(unit)
    return by_dataset


def _mean_std(values: list[float]) -> tuple[float, Optional[float]]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def _cell(values: list[float], digits: int = 3) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def summarise(units: list[dict]) -> dict:
    """Per system: metrics over seeds, controls, significance against PreSFT(Hist)."""
    from personakit.eval import paired_bootstrap, paired_ttest

    systems: dict[str, list[dict]] = {}
    sanity: dict[str, dict] = {}
    for u in units:
        if u.get("kind") == "sanity":
            sanity = {cond: {k: c["metrics"].get(k) for k in METRIC_KEYS} for cond, c in u["conditions"].items()}
        elif u.get("kind") != "judge":
            systems.setdefault(u["system"], []).append(u)
    rows, controls, tests = {}, {}, {}
    for system, us in systems.items():
        rows[system] = {k: [u["conditions"]["main"]["metrics"].get(k) for u in us] for k in METRIC_KEYS}
        rows[system]["seeds"] = len(us)
        for u in us:
            for cond, c in u["conditions"].items():
                if cond != "main":
                    controls[(system, cond)] = {k: c["metrics"].get(k) for k in METRIC_KEYS}
    def compare(a: list[float], b: list[float]) -> dict:
        t, boot = paired_ttest(a, b), paired_bootstrap(a, b, n_resamples=5000)
        return {"mean_difference": t.details["mean_difference"], "t": t.statistic, "p": t.p_value,
                "ci_low": boot.details["ci_low"], "ci_high": boot.details["ci_high"], "p_bootstrap": boot.p_value,
                "n": t.n}

    def per_example(us: list[dict], key: str, condition: str = "main") -> list[float]:
        return [statistics.fmean(v) for v in zip(*[u["conditions"][condition]["per_example"][key] for u in us])]

    base = systems.get(BASELINE)
    scaffold: dict[str, dict] = {}
    if base:
        for system, us in systems.items():
            if system == BASELINE:
                continue
            tests[system] = {key: compare(per_example(us, key), per_example(base, key)) for key in TESTED}
            # Does the system read its scaffold, and does its edge (or gap) over PreSFT(Hist) remain without it?
            # Seed 0 only: the controls run on seed 0.
            seed0 = [u for u in us if u.get("seed") == 0 and "blank_generic" in u["conditions"]]
            if seed0:
                scaffold[system] = {
                    "own R_G - R_G blanked": {key: compare(per_example(seed0, key), per_example(seed0, key,
                                                                                             "blank_generic"))
                                              for key in TESTED},
                    f"R_G blanked - {BASELINE}": {key: compare(per_example(seed0, key, "blank_generic"),
                                                               per_example(base, key)) for key in TESTED}}
    return {"rows": rows, "controls": {f"{s} | {c}": v for (s, c), v in controls.items()}, "tests": tests,
            "scaffold_tests": scaffold, "sanity": sanity}


def verdict(summary: dict) -> str:
    test = summary["tests"].get("PostGRAG")
    if not test:
        return "not yet measured (PostGRAG or PreSFT(Hist) missing)"
    r2, bl = test["rouge2"], test["bleu"]
    up = all(x["mean_difference"] > 0 and x["p"] < 0.05 for x in (r2, bl))
    down = any(x["mean_difference"] < 0 and x["p"] < 0.05 for x in (r2, bl))
    if up:
        return "reproduced in direction (PostGRAG > PreSFT(Hist) on ROUGE-2 and BLEU, p < 0.05)"
    if down:
        return "not reproduced (PostGRAG significantly below PreSFT(Hist) on ROUGE-2 or BLEU)"
    return "inconclusive (no significant difference between PostGRAG and PreSFT(Hist) on ROUGE-2 and BLEU)"


def plot_curves(by_dataset: dict[str, list[dict]], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    datasets = [d for d in ("SPC", "PFG", "ED") if d in by_dataset]
    if not datasets:
        return False
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for u in by_dataset[dataset]:
            hist = u.get("eval_history") or []
            if not hist:
                continue
            steps = [r["step"] for r in hist]
            ax.plot(steps, [r["loss_p"] for r in hist], marker=".",
                    label=f"{u['system']} s{u['seed']}"
                          + (f" ({u['train_s'] / 60:.0f} min)" if u.get("train_s") is not None else ""))
        ax.set_title(f"{dataset}: dev loss $L_P$")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("dev loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _test_cells(key: str, t: dict) -> str:
    """A paired test's metric, mean difference, bootstrap interval and t-test p as table cells."""
    return (f"{'ROUGE-2' if key == 'rouge2' else 'sentence BLEU'} | {t['mean_difference']:+.4f} | "
            f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] | {t['p']:.3g}")


def to_markdown(report_: dict) -> str:
    lines = ["# GRAG at learning scale (SPC, PFG, ED)", "",
             f"Command: `{report_['command']}`; setting `{report_['setting']}`; written {report_['written']}.", "",
             report_["machine_line"], ""]
    for dataset, info in report_["datasets"].items():
        s = info["summary"]
        lines += [f"## {dataset}", "", f"**Verdict: {info['verdict']}.**", "", info["data_line"], ""]
        lines += ["| system | seeds | " + " | ".join(HEADERS) + " | steps (best) | converged | wall min | train CPU min |",
                  "| --- | ---: | " + " | ".join(["---:"] * len(HEADERS)) + " | ---: | --- | ---: | ---: |"]
        for system in SYSTEMS.values():
            if system not in s["rows"]:
                continue
            row = s["rows"][system]
            us = info["units"][system]
            steps = ", ".join(f"{u.get('steps', 0)} ({u.get('best_step')})" for u in us) if us[0]["kind"] != "icl" else "–"
            conv = ", ".join("yes" if u.get("stopped_early") else "**not converged**" for u in us) \
                if us[0]["kind"] != "icl" else "–"
            wall = _cell([u["wall_s"] / 60 if u.get("wall_s") is not None else None for u in us], 0)
            cpu = _cell([u["train_cpu_s"] / 60 if u.get("train_cpu_s") else None for u in us], 0)
            lines.append(f"| {system} | {row['seeds']} | " + " | ".join(_cell(row[k]) for k in METRIC_KEYS)
                         + f" | {steps} | {conv} | {wall} | {cpu} |")
        notes = [f"{u['system']} seed {u['seed']}: {u['time_note']}" for us in info["units"].values() for u in us
                 if u.get("time_note")]
        lines += ["", "*wall min*: training over every session plus scoring, by the clock, so it grows while the "
                  "job shares the 2 cores with other jobs or is paused; *train CPU min*: the training process's CPU "
                  "time (all threads), which does not (`TrainResult.train_cpu_seconds`; – for units trained before "
                  "it was recorded)."]
        if notes:
            lines += [""] + [f"Wall time: {note}." for note in notes]
        if s["controls"]:
            lines += ["", "Controls (seed 0, same test turns; the upper-bound scaffold sees the reference: a control, "
                      "not a result):", "", "| system | condition | " + " | ".join(HEADERS) + " |",
                      "| --- | --- | " + " | ".join(["---:"] * len(HEADERS)) + " |"]
            for name, vals in s["controls"].items():
                system, cond = name.split(" | ")
                lines.append(f"| {system} | {cond.replace('_', ' ')} | "
                             + " | ".join(_cell([vals.get(k)]) for k in METRIC_KEYS) + " |")
        if s.get("sanity"):
            lines += ["", "Sanity rows (no model trained, same test turns):", "",
                      "| reply | " + " | ".join(HEADERS) + " |", "| --- | " + " | ".join(["---:"] * len(HEADERS)) + " |"]
            for cond, vals in s["sanity"].items():
                lines.append(f"| {SANITY.get(cond, cond)} | " + " | ".join(_cell([vals.get(k)]) for k in METRIC_KEYS)
                             + " |")
        if s["tests"]:
            lines += ["", f"Against {BASELINE} (per-example scores averaged over seeds; paired t-test and paired "
                      "bootstrap 95% interval of the mean difference):", "",
                      "| system | metric | mean difference | 95% interval | p (t-test) | p (bootstrap) | n |",
                      "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
            for system, tests in s["tests"].items():
                for key, t in tests.items():
                    lines.append(f"| {system} | {_test_cells(key, t)} | {t['p_bootstrap']:.3g} | {t['n']} |")
        if s.get("scaffold_tests"):
            lines += ["", "Does each system read its scaffold? Seed 0 with its own $R_G$ against the same model with "
                      f"$R_G$ blanked, and the blanked model against {BASELINE} (paired t-test, bootstrap 95% "
                      "interval):", "",
                      "| system | comparison | metric | mean difference | 95% interval | p (t-test) | n |",
                      "| --- | --- | --- | ---: | --- | ---: | ---: |"]
            for system, comparisons in s["scaffold_tests"].items():
                for comparison, tests in comparisons.items():
                    for key, t in tests.items():
                        lines.append(f"| {system} | {comparison} | {_test_cells(key, t)} | {t['n']} |")
        paper = PAPER_TABLE3.get(dataset, {})
        if paper:
            lines += ["", "The paper's Table 3 (BART-base, Llama-3.1-8B generic responses, 20 epochs):", "",
                      "| system | Char-F1 | R-1 | R-2 | R-L | BLEU | BPC |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for system, vals in paper.items():
                lines.append(f"| {system} | " + " | ".join(f"{v:.3f}" if v < 10 else f"{v:.2f}" for v in vals) + " |")
        if info.get("judge"):
            lines += ["", f"Pairwise LLM judge ({info['judge']['judge']}, {info['judge']['n']} test turns, each asked "
                      "twice with the order swapped). A 135M judge is far too weak for these verdicts to mean "
                      "anything; this row shows the pipeline runs:", "", info["judge"]["markdown"]]
        if info.get("samples"):
            lines += ["", "Samples (seed 0):", ""]
            for sample_ in info["samples"]:
                lines.append(f"- **{sample_['id']}** persona: {sample_['persona'][:160]}")
                lines.append(f"  - user: {sample_['user']}")
                lines.append(f"  - reference: {sample_['reference']}")
                lines.append(f"  - generic R_G: {sample_['generic']}")
                for system, text in sample_["predictions"].items():
                    lines.append(f"  - {system}: {text}")
        lines.append("")
    lines += ["BPC: bits per character of the references (lower is better); distinct: share of distinct replies; "
              "multi-turn: share of replies that run past one turn. The learning curves are in "
              f"`{NAME}_curves.png`. Each row's unit file (`benchmarks/results/{NAME}/<dataset>/`) names the commit "
              "that produced it."]
    return "\n".join(lines) + "\n"


def report(args: argparse.Namespace) -> dict:
    from personakit.augment import load_examples

    by_dataset = load_units(args.out, args.setting_name)
    out: dict[str, Any] = {"command": command_line(args.argv), "setting": args.setting_name, "written": now(),
                           "machine_line": "", "datasets": {}}
    for dataset, units in sorted(by_dataset.items(), key=lambda kv: ["SPC", "PFG", "ED"].index(kv[0])):
        summary = summarise(units)
        info: dict[str, Any] = {"summary": summary, "verdict": verdict(summary), "units": {}}
        for u in units:
            if u.get("kind") == "judge":
                info["judge"] = u
            elif u.get("kind") != "sanity":
                info["units"].setdefault(u["system"], []).append(u)
        first = next(u for u in units if "data" in u)
        trained = trained_units(units)
        sizes = first["data"].get("sizes", [])
        aug = first["data"].get("augment", {})
        info["data_line"] = (f"{sizes[0] if sizes else '?'} training, {sizes[1] if sizes else '?'} dev and "
                             f"{sizes[2] if sizes else '?'} test examples (data {first['data']['digest']}); generic "
                             f"responses by SmolLM2-135M-Instruct with template `{aug.get('template')}`, "
                             f"{aug.get('empty_after_augment', '?')} empty after retries (replaced by 'Okay.'). "
                             f"Frozen weights of the trained systems in "
                             f"{', '.join(sorted({u['dtype'] for _, u in trained if u.get('dtype')})) or '?'}. "
                             f"{machines_line(trained)}")
        seed0 = {u["system"]: u for u in units if u.get("seed") == 0 and u.get("kind") not in ("judge", "sanity")}
        work_test = (args.work_dir or (RESULTS / "tmp" / f"{NAME}-{args.setting_name}")) / dataset / "test.jsonl"
        if seed0 and work_test.exists():
            test = load_examples(work_test)
            info["samples"] = [{"id": test[i].id, "persona": test[i].persona.to_text(),
                                "user": test[i].history[-1].text, "reference": test[i].response,
                                "generic": test[i].generic_response,
                                "predictions": {s: u["conditions"]["main"]["predictions"][i] for s, u in seed0.items()}}
                               for i in (0, len(test) // 2, len(test) - 1)]
        out["datasets"][dataset] = info
        out["machine_line"] = machine_line(first["machine"], f"{first.get('dataset', '?')} {first.get('unit', '?')}")
    slim = json.loads(json.dumps(out, default=str))
    for info in slim["datasets"].values():  # the unit files hold the predictions and curves
        info["units"] = {s: [{k: u.get(k) for k in ("seed", "key", "commit", "steps", "best_step", "stopped_early",
                                                    "train_s", "train_cpu_s", "eval_s", "wall_s", "time_note",
                                                    "dtype")} for u in us]
                         for s, us in info["units"].items()}
    write_results(NAME, slim, to_markdown(out), args.out, volatile=report_volatile(args))
    plot_curves(by_dataset, args.out / f"{NAME}_curves.png")
    return slim


SWEEP_METRICS = (("rouge1", "ROUGE-1"), ("rougeL", "ROUGE-L"), ("char_f1", "Char-F1"), ("bertscore_f1", "BERT-F1"))


def plot_sweeps(sweeps: dict, path: Path, title: str = "GRAG sweeps on SPC (CPU scale, seed 0)") -> bool:
    """The PreGRAG beta and PostGRAG alpha sweeps (``grag_sweeps.json``'s ``sweeps``: ``{"beta": [row, ...],
    "alpha": [...]}``, one row of metrics per value), one panel each; False without matplotlib."""
    plt = pyplot()
    panels = [(k, t) for k, t in (("beta", "PreGRAG, C-JEPA weight beta (Fig. 3)"),
                                  ("alpha", "PostGRAG, style-removal weight alpha (Fig. 4)")) if sweeps.get(k)]
    if plt is None or not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (key, panel_title) in zip(axes[0], panels):
        rows = sorted(sweeps[key], key=lambda r: r[key])
        xs = range(len(rows))  # evenly spaced: the swept values span orders of magnitude and include 0
        for metric, label in SWEEP_METRICS:
            if all(metric in r for r in rows):
                ax.plot(xs, [r[metric] for r in rows], marker="o", label=label)
        ax.set_xticks(list(xs), [f"{r[key]:g}" for r in rows])
        ax.set_xlabel(key)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
    return True


# --------------------------------------------------------------------------------------- main
def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smoke setting (a few minutes)")
    group.add_argument("--scale", action="store_true", help="the paper's schedule (a GPU; add --device cuda)")
    parser.add_argument("--datasets", nargs="+", choices=["SPC", "PFG", "ED"], default=None)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--device", default=None, help="cuda for a GPU (default: CPU)")
    parser.add_argument("--dtype", default="auto", help="frozen-weight dtype: auto (bf16 where fast), float32, bfloat16")
    parser.add_argument("--backbone", default=None, help="task backbone (default: smollm2)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help=f"data, caches and checkpoints (default: benchmarks/results/tmp/{NAME}-<setting>)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    add_run_arguments(parser)
    parser.add_argument("--plot-sweeps", action="store_true",
                        help="only redraw grag_sweeps.png from grag_sweeps.json in --out (the earlier sweep run)")
    args = parser.parse_args(argv)
    if args.plot_sweeps:
        sweeps = json.loads((args.out / "grag_sweeps.json").read_text(encoding="utf-8"))
        path = args.out / "grag_sweeps.png"
        print(f"wrote {path}" if plot_sweeps(sweeps["sweeps"], path) else "no plot written")
        return sweeps
    args.argv = argv
    kinds = [*SYSTEMS, "judge", "sanity"]
    if args.only and set(args.only) - set(kinds):
        parser.error(f"--only: unknown kind {', '.join(sorted(set(args.only) - set(kinds)))} (kinds: {', '.join(kinds)})")
    args.setting_name = "quick" if args.quick else "scale" if args.scale else "default"
    s = SETTINGS[args.setting_name]
    if args.report:
        return report(args)
    work_root = args.work_dir or (RESULTS / "tmp" / f"{NAME}-{args.setting_name}")
    deadline = time.time() + (args.budget_hours * 3600 if args.budget_hours else 1e12)
    pending = list(args.datasets or s["datasets"])
    while pending:  # a dataset whose data another process is preparing is tried again after the others
        skipped = [dataset for dataset in pending if not run_dataset(dataset, s, args, work_root, deadline)]
        if skipped == pending or time.time() > deadline:
            break
        pending = skipped
    return report(args)


if __name__ == "__main__":
    main()
