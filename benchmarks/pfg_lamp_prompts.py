"""PFG-LaMP prompts for the frozen SmolLM2: does the LLM answer as the persuader, and does it read the profile?

The ROPG / RSPG benchmark (``benchmarks/ropg_pfg.py``) scores the frozen LLM's output
(ROUGE-1 against the persuader's real reply).  How the prompt reaches the model: the
:class:`~personakit.retrieval.lamp_prompts.LaMPPromptBuilder` returns one string, and
:class:`~personakit.llm.HFGenerator` (``use_chat_template=None``) renders it through the
tokenizer's chat template as a single *user* message, after SmolLM2's default system
message ("You are a helpful AI assistant named SmolLM ..."); the assistant's completion is
cut at the stop ``"\\n"`` and stripped, and nothing else is done to it before EVAL.  The
user message ends with ``"\\nPersuader:"``, so the assistant is asked to *continue a
transcript* rather than to *be* the persuader, and often writes a speaker label or the
persuadee's turn.

On ``--n`` (60) PFG-LaMP test inputs (``build_pfg_lamp_task``, ``split_by="user"``, the
``ropg_pfg.py`` default setting: ``min_prior_dialogues=2``, 3 history turns, split 50/20/30
by seed 0; inputs with a non-empty profile, a seeded sample) with their BM25 top-``k`` (4)
profile entries in a 192-token budget, each prompt variant is generated with and without
the entries (greedy, bf16 ``auto``, batch 16, 24 new tokens, stop ``"\\n"``: the benchmark's
settings):

* ``current``: the PFG-LaMP template as the recipe sends it now (chat template, SmolLM2's
  default system message, the user message ending with ``Persuader:``);
* ``raw``: the same text without the chat template (a plain transcript continuation);
* ``persuader-chat``: chat template, a system message that says the assistant *is* the
  persuader and must answer with its next message only, no trailing label;
* ``persuader-chat+label``: the same with the trailing ``Persuader:`` label kept.

Reported per variant: the share of raw outputs that start with a ``Persuadee:`` label
(wrong role), with a ``Persuader:`` label, empty; ROUGE-1 of the raw output and of the output
cleaned by :func:`~personakit.retrieval.lamp_prompts.clean_pfg_reply` (leading own label
stripped, cut where a speaker label begins, a persuadee turn becomes empty, or, with
``wrong_role="keep"``, its label stripped and its text kept); the **profile
effect** (ROUGE-1 with the entries minus without, paired t-test and bootstrap interval by
:func:`personakit.eval.paired_comparison`); and the **document copy rate** (share of the
output's words that occur in the retrieved entries but not in the input; with and without
the entries in the prompt, so its difference is what the model took from them).  Controls:
the last persuadee turn and the BM25 top-1 entry copied as the reply.

Answers are cached in ``benchmarks/results/tmp/pfg_lamp_prompts/llm_cache.jsonl`` (a rerun
generates nothing).

    python benchmarks/pfg_lamp_prompts.py              # writes benchmarks/results/pfg_lamp_prompts.{json,md}
    python benchmarks/pfg_lamp_prompts.py --n 8 --out /tmp/pfgp   # smoke run
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PFG_DATA, RESULTS, command_line, machine_info, machine_line, now, write_results  # noqa: E402

NAME = "pfg_lamp_prompts"
TASK = "PFG-LaMP"
SAMPLES = 4

# the PFG-LaMP template of the library before this benchmark (copied, so the row stays what it was)
CURRENT_AIP = ("{entries} are messages this persuader wrote in earlier conversations. Following the given patterns, "
               "write the persuader's next reply in this conversation:\n{input}\nPersuader:")
CURRENT_EMPTY = "Write the persuader's next reply in this conversation:\n{input}\nPersuader:"
ROLE_SYSTEM = ("You are the persuader in a conversation in which you try to persuade the other person (the persuadee) "
               "to donate to a charity. Answer with your next message only, without a speaker label.")
ROLE_AIP = ("{entries} are messages you wrote in earlier conversations. Following the given patterns, "
            "write your next reply in this conversation:\n{input}")
ROLE_EMPTY = "Write your next reply in this conversation:\n{input}"

VARIANTS: dict[str, dict[str, Any]] = {
    "current": dict(aggregate=CURRENT_AIP, empty=CURRENT_EMPTY, system=None, chat=True,
                    what="as sent now: chat template, SmolLM2's default system message, user text ends with 'Persuader:'"),
    "raw": dict(aggregate=CURRENT_AIP, empty=CURRENT_EMPTY, system=None, chat=False,
                what="the same text without the chat template (transcript continuation)"),
    "persuader-chat": dict(aggregate=ROLE_AIP, empty=ROLE_EMPTY, system=ROLE_SYSTEM, chat=True,
                           what="chat template, system: 'you are the persuader, answer with your next message only'; "
                                "no trailing label"),
    "persuader-chat+label": dict(aggregate=ROLE_AIP + "\nPersuader:", empty=ROLE_EMPTY + "\nPersuader:",
                                 system=ROLE_SYSTEM, chat=True, what="persuader-chat with the trailing 'Persuader:'"),
}

_WORD = re.compile(r"[a-z0-9']+")
_LEADING_LABEL = re.compile(r"^\s*\**\s*(persuadee|persuader)\s*\**\s*:", re.IGNORECASE)


# ------------------------------------------------------------------------------ pure functions
def leading_label(text: str) -> Optional[str]:
    """``"persuadee"`` / ``"persuader"`` when ``text`` starts with that speaker label, else ``None``.

    Example:
        >>> leading_label("Persuadee: The point is"), leading_label(" persuader : hi"), leading_label("Hi")
        ('persuadee', 'persuader', None)
    """
    m = _LEADING_LABEL.match(text)
    return m.group(1).lower() if m else None


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, apostrophes)."""
    return _WORD.findall(text.lower())


def doc_copy_rate(output: str, documents: str, source: str) -> float:
    """Share of the output's words found in ``documents`` but not in ``source`` (0 for an empty output).

    With ``documents`` the retrieved entries and ``source`` the input, this is how much of the
    reply can only have come from the entries.

    Example:
        >>> doc_copy_rate("kids need help now", "help the kids", "we need it now")
        0.5
    """
    out = words(output)
    if not out:
        return 0.0
    docs, src = set(words(documents)), set(words(source))
    return sum(1 for w in out if w in docs and w not in src) / len(out)


def variant_prompt(variant: dict[str, Any], text: str) -> Any:
    """The prompt of one variant: the built text, with the variant's system message as a chat when it has one."""
    if variant.get("system"):
        return [{"role": "system", "content": variant["system"]}, {"role": "user", "content": text}]
    return text


def label_shares(outputs: Sequence[str]) -> dict[str, float]:
    """Shares of outputs starting with a persuadee label, a persuader label, and empty ones."""
    n = max(len(outputs), 1)
    labels = [leading_label(o) for o in outputs]
    return {"persuadee_label": labels.count("persuadee") / n, "persuader_label": labels.count("persuader") / n,
            "empty": sum(1 for o in outputs if not o.strip()) / n}


def _mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values)) if values else float("nan")


# ------------------------------------------------------------------------------ run
def load_inputs(data: Path, n: int, k: int, seed: int) -> tuple[list[Any], list[list[Any]], dict[str, int]]:
    from personakit.data.pfg_lamp import build_pfg_lamp_task
    from personakit.retrieval import BM25Retriever
    from personakit.retrieval.lamp_prompts import lamp_query

    splits = build_pfg_lamp_task(data, min_prior_dialogues=2, history_turns=3, split_by="user",
                                 split_fractions=(0.5, 0.2, 0.3), seed=seed)
    test = [ex for ex in splits["test"] if ex.profile.items]
    rows = [test[i] for i in sorted(random.Random(seed + 21).sample(range(len(test)), min(n, len(test))))]
    ranked = BM25Retriever().retrieve_batch([lamp_query(TASK, ex.input) for ex in rows], [ex.profile for ex in rows], k=k)
    items = [[r.item if hasattr(r, "item") else r for r in row] for row in ranked]
    return rows, items, {"test_examples": len(test), "test_users": len({ex.profile.user_id for ex in test})}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from personakit.eval import paired_comparison
    from personakit.eval.lamp import lamp_eval_fn
    from personakit.llm import CachedGenerator, GenerationSettings, HFGenerator, ResponseCache
    from personakit.retrieval.lamp_prompts import (LaMPPromptBuilder, LaMPTemplate, clean_pfg_reply,
                                                   get_lamp_template)

    t0 = time.time()
    rows, items, counts = load_inputs(args.data, args.n, args.k, args.seed)
    chat_gen = HFGenerator.from_pretrained("smollm2", dtype="auto", batch_size=args.batch_size)
    raw_gen = HFGenerator(chat_gen.model, chat_gen.tokenizer, batch_size=args.batch_size,
                          model_id="smollm2:plain-text", use_chat_template=False)
    tok = chat_gen.tokenizer
    count = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cache = ResponseCache(work / "llm_cache.jsonl")
    gens = {True: CachedGenerator(chat_gen, cache), False: CachedGenerator(raw_gen, cache)}
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0, stop=["\n"])
    base = get_lamp_template(TASK)
    evaluate = lamp_eval_fn(TASK)
    targets = [ex.target for ex in rows]

    prompts: dict[tuple[str, str], list[Any]] = {}
    used: list[list[Any]] = []
    for name in args.variants:
        v = VARIANTS[name]
        template = LaMPTemplate(TASK, base.entry, v["aggregate"], base.query, empty=v["empty"])
        builder = LaMPPromptBuilder(template, max_tokens=args.max_tokens, tokenizer=count)
        if not used:
            used = [builder.select(ex, its) for ex, its in zip(rows, items)]
        prompts[(name, "profile")] = [variant_prompt(v, builder.build(ex, its)) for ex, its in zip(rows, items)]
        prompts[(name, "none")] = [variant_prompt(v, builder.build(ex, [])) for ex in rows]

    outputs: dict[tuple[str, str], list[str]] = {}
    timing = {}
    for chat in (True, False):
        keys = [key for key in prompts if VARIANTS[key[0]]["chat"] is chat]
        if not keys:
            continue
        flat = [p for key in keys for p in prompts[key]]
        hits0, t = gens[chat].hits, time.time()
        out = gens[chat].generate(flat, settings, batch_size=args.batch_size, progress=True)
        timing["chat" if chat else "plain"] = {"prompts": len(flat), "generated": len(flat) - (gens[chat].hits - hits0),
                                               "seconds": round(time.time() - t, 1)}
        for j, key in enumerate(keys):
            outputs[key] = out[j * len(rows):(j + 1) * len(rows)]

    doc_texts = [" ".join(it.text for it in chosen) for chosen in used]
    variants: dict[str, Any] = {}
    for name in args.variants:
        res: dict[str, Any] = {"what": VARIANTS[name]["what"]}
        scores = {}
        for cond in ("profile", "none"):
            raw = outputs[(name, cond)]
            versions = {"raw": raw, "drop": [clean_pfg_reply(o, wrong_role="drop") for o in raw],
                        "keep": [clean_pfg_reply(o, wrong_role="keep") for o in raw]}
            rouge = {m: [evaluate(o, y) for o, y in zip(outs, targets)] for m, outs in versions.items()}
            scores[cond] = rouge
            res[cond] = {**label_shares(raw), "empty_after_cleaning": label_shares(versions["drop"])["empty"],
                         **{f"rouge1_{m}": _mean(r) for m, r in rouge.items()},
                         "words": _mean([len(o.split()) for o in versions["keep"]]),
                         "doc_copy_rate": _mean([doc_copy_rate(o, d, ex.input)
                                                 for o, d, ex in zip(versions["keep"], doc_texts, rows)]),
                         **{f"rouge1_{m}_per_example": r for m, r in rouge.items()}}
        for m in ("raw", "drop", "keep"):
            res[f"profile_effect_{m}"] = paired_comparison(scores["profile"][m], scores["none"][m],
                                                           n_resamples=5000, seed=args.seed).to_dict()
        res["cleaning_effect_keep"] = paired_comparison(scores["profile"]["keep"], scores["profile"]["raw"],
                                                        n_resamples=5000, seed=args.seed).to_dict()
        res["samples"] = [{"input": rows[i].input, "target": targets[i], "profile": outputs[(name, "profile")][i],
                           "none": outputs[(name, "none")][i]} for i in range(min(SAMPLES, len(rows)))]
        variants[name] = res
    if "current" in variants:
        ref = variants["current"]["profile"]["rouge1_raw_per_example"]
        for name, res in variants.items():
            res["vs_current_raw"] = paired_comparison(res["profile"]["rouge1_keep_per_example"], ref,
                                                      n_resamples=5000, seed=args.seed).to_dict()
    last_turn = [ex.input.splitlines()[-1].split(":", 1)[-1].strip() for ex in rows]
    controls = {"copy last persuadee turn": _mean([evaluate(t, y) for t, y in zip(last_turn, targets)]),
                "copy BM25 top-1 entry": _mean([evaluate(c[0].text if c else "", y) for c, y in zip(used, targets)])}
    return {"name": NAME, "date": now(), "command": command_line(args.argv), "machine": machine_info(),
            "settings": {"n": len(rows), "k": args.k, "max_tokens": args.max_tokens, "max_new_tokens": args.max_new_tokens,
                         "stop": ["\n"], "batch_size": args.batch_size, "dtype": str(chat_gen.model.dtype),
                         "seed": args.seed, "entries_used_mean": _mean([len(u) for u in used]), **counts},
            "timing": timing, "wall_seconds": round(time.time() - t0, 1), "variants": variants, "controls": controls}


# ------------------------------------------------------------------------------ report
def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _effect(c: dict[str, Any]) -> str:
    return f"{c['mean_difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] p={c['p_value']:.3f}"


def table(report: dict[str, Any]) -> str:
    head = ("| variant | Persuadee: (wrong role) | Persuader: label | empty raw / dropped | words | "
            "ROUGE-1 raw / drop / keep | no profile: raw / drop / keep | profile effect, keep [95% CI] | "
            "profile effect, raw | profile effect, drop | doc copy rate with / without | keep vs current raw |")
    lines = [head, "|" + "---|" * 12]
    for name, v in report["variants"].items():
        p, z = v["profile"], v["none"]
        vs = _effect(v["vs_current_raw"]) if "vs_current_raw" in v and name != "current" else "—"
        lines.append(f"| {name} | {_pct(p['persuadee_label'])} | {_pct(p['persuader_label'])} | {_pct(p['empty'])} / "
                     f"{_pct(p['empty_after_cleaning'])} | {p['words']:.1f} | {p['rouge1_raw']:.4f} / "
                     f"{p['rouge1_drop']:.4f} / {p['rouge1_keep']:.4f} | {z['rouge1_raw']:.4f} / {z['rouge1_drop']:.4f} / "
                     f"{z['rouge1_keep']:.4f} | {_effect(v['profile_effect_keep'])} | {_effect(v['profile_effect_raw'])} | "
                     f"{_effect(v['profile_effect_drop'])} | {p['doc_copy_rate']:.3f} / {z['doc_copy_rate']:.3f} | {vs} |")
    for name, value in report["controls"].items():
        lines.append(f"| control: {name} | | | | | {value:.4f} | | | | | | |")
    return "\n".join(lines)


def verdict(report: dict[str, Any]) -> list[str]:
    """Plain findings drawn from the numbers: wrong-role share, best variant, profile effects, controls."""
    vs = report["variants"]
    lines = []
    if "current" in vs:
        c = vs["current"]["profile"]
        lines.append(f"* The current prompt: {_pct(c['persuadee_label'])} of the outputs start with `Persuadee:` "
                     f"(wrong role), {_pct(c['persuader_label'])} with `Persuader:`.")
    best = max(vs, key=lambda n: vs[n]["profile"]["rouge1_keep"])
    lines.append(f"* Highest ROUGE-1 with the profile (*keep*): `{best}` ({vs[best]['profile']['rouge1_keep']:.4f}).")
    sig = [n for n, v in vs.items() if v["profile_effect_keep"]["significant"]]
    up = [n for n in sig if vs[n]["profile_effect_keep"]["mean_difference"] > 0]
    lines.append("* Profile effect (*keep*): " + (
        f"significantly positive for {', '.join(up)}." if up else
        "no variant gains from the retrieved entries (none significantly positive"
        + (f"; significantly negative for {', '.join(sig)})." if sig else ")."))
)
    copy = [n for n, v in vs.items() if v["profile"]["doc_copy_rate"] > v["none"]["doc_copy_rate"]]
    if copy:
        lines.append(f"* The model does take words from the entries (doc copy rate with them above the rate "
                     f"without): {', '.join(copy)}.")
    ctrl = max(report["controls"].values())
    beat = [n for n, v in vs.items() if v["profile"]["rouge1_keep"] > ctrl]
    lines.append(f"* Controls: the best copy control reaches {ctrl:.4f}; "
                 + (f"above it: {', '.join(beat)}." if beat else "no LLM variant beats it with the profile."))
    drop_worse = all(v["profile"]["rouge1_drop"] <= v["profile"]["rouge1_keep"] for v in vs.values())
    if drop_worse:
        lines.append("* Post-processing: *keep* is at least as good as *raw* and *drop* everywhere; an output that "
                     "starts with a wrong label mostly still reads as a persuader's reply.")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    out = [f"# PFG-LaMP prompt variants for the frozen SmolLM2 ({report['date']})", "",
           f"Command: `{report['command']}`", "", machine_line(report["machine"]), "",
           f"{s['n']} PFG-LaMP test inputs (of {s['test_examples']} with a profile, {s['test_users']} held-out users; "
           f"`ropg_pfg.py` default split, seed {s['seed']}), BM25 top-{s['k']} entries in a {s['max_tokens']}-token "
           f"budget ({s['entries_used_mean']:.2f} used on average); SmolLM2-135M-Instruct, {s['dtype']}, greedy, "
           f"batch {s['batch_size']}, {s['max_new_tokens']} new tokens, stop `\\n`. Wall time {report['wall_seconds']} s "
           f"(generation: {report['timing']}; a rerun answers from the response cache).", "",
           "Label and empty shares are of the raw outputs with the profile. *raw*: the output as EVAL sees it now "
           "(cut at `\\n`, stripped); *drop*: `clean_pfg_reply(wrong_role='drop')` (own label stripped, cut where a speaker label "
           "begins, an output starting with `Persuadee:` becomes empty); *keep*: the same, but a leading "
           "`Persuadee:` label is stripped and its text kept (`clean_pfg_reply`'s default, `wrong_role='keep'`). "
           "Words and doc copy rate: of *keep*. "
           "Profile effect: ROUGE-1 with the entries minus without (paired t-test, bootstrap 95% interval). "
           "Doc copy rate: share of the reply's words found in the retrieved entries and not in the input. "
           "`keep vs current raw`: *keep* ROUGE-1 with the profile minus the current prompt's raw ROUGE-1.", "",
           table(report), "", "## Verdict", "", *verdict(report), "", "## Variants", ""]
    for name, v in report["variants"].items():
        out.append(f"* `{name}`: {v['what']}.")
    out += ["", "## Samples (with the profile / without)", ""]
    for name, v in report["variants"].items():
        out.append(f"**{name}**")
        out.append("")
        for smp in v["samples"]:
            last = smp["input"].splitlines()[-1]
            out.append(f"* `{last[:90]}` → `{smp['profile']}` / `{smp['none']}` (reference: `{smp['target'][:90]}`)")
        out.append("")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=PFG_DATA)
    parser.add_argument("--work-dir", type=Path, default=RESULTS / "tmp" / NAME)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    report = run(args)
    print(table(report))
    json_path, md_path = write_results(NAME, report, to_markdown(report), args.out)
    print(f"wrote {json_path} and {md_path}")
    return report


if __name__ == "__main__":
    main()
