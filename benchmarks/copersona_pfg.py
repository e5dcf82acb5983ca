"""CoPersona on sparse Persuasion-for-Good users: the paper's Table 5 rows, facet bias, structured output.

Runs :func:`personakit.recipes.copersona.run_copersona_recipe` (facets induced and summarised by the
embedded SmolLM2-135M-Instruct, MiniLM facet embeddings, the multiplex graph, SmolLM2 + LoRA for every
variant) and reports ROUGE-1, ROUGE-L, METEOR, BLEU and BERTScore for Non-Perso, RAG, PAG, CoPersona,
w/o non-parametric and w/o parametric; the facet-biased fraction of users (Table 4); and the
structured-output success rate of the embedded model on summary prompts: first-try parse rate,
after-retry rate (:func:`~personakit.llm.generate_structured`, 3 attempts) and the schema-guided
(constrained) rate.  Writes ``benchmarks/results/copersona_pfg.{json,md}`` with the machine, the
command, the sizes and the paper's numbers beside ours.

Settings: default CPU scale (24 users, 2 examples per user, 1 epoch, 32 output tokens, 5 facets; about
40 min on 2 idle cores, most of it the 120 schema-guided facet summaries, which run one prompt at a time
at about 10 s each; 40 users would take over an hour); ``--quick`` smoke (8 users, 2 variants' worth of
steps, 8 tokens); ``--scale`` GPU (all 257 users, 3 epochs, 64 tokens; add ``--device cuda``).

    python benchmarks/copersona_pfg.py --quick
    python benchmarks/copersona_pfg.py --scale --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    add_setting_arguments, command_line, machine_info, machine_line, now, require_pfg, setting_name, work_dir,
    write_results,
)

SETTINGS = {
    "default": dict(max_users=24, per_user=2, epochs=1, max_steps=None, new_tokens=32, facets=5, clusters=6,
                    prompt_tokens=384, structured_prompts=30),
    "quick": dict(max_users=8, per_user=1, epochs=1, max_steps=2, new_tokens=8, facets=3, clusters=3,
                  prompt_tokens=192, structured_prompts=6),
    "scale": dict(max_users=None, per_user=None, epochs=3, max_steps=None, new_tokens=64, facets=5, clusters=8,
                  prompt_tokens=768, structured_prompts=200),
}

PAPER_TABLE5 = {  # Books, Qwen2.5-7B: R-1, R-L, METEOR, BLEU
    "CoPersona": (0.3953, 0.2254, 0.3349, 15.4703),
    "w/o non-parametric": (0.3822, 0.2190, 0.3149, 13.3008),
    "w/o parametric": (0.3673, 0.2067, 0.2890, 11.3355),
}
PAPER_TABLE1_BOOKS_7B = {  # R-1, METEOR, BLEU, BERTScore
    "Non-Perso": (0.2907, 0.1735, 1.9766, 0.5004), "RAG": (0.3149, 0.2101, 3.6874, 0.5083),
    "PAG": (0.3136, 0.2378, 4.6762, 0.4992), "CoPersona": (0.3953, 0.3349, 15.4703, 0.5729),
}
PAPER_FACET_BIASED = {"Books": 0.9748, "Movies & TV": 1.0, "CDs & Vinyl": 0.8826}


def structured_rates(data, n_prompts: int, device, recipe_structured: dict) -> dict:
    """First-try / after-retry success rates of SmolLM2's free JSON on facet-summary prompts; the
    constrained (schema-guided) rate is the recipe's own: 1 - failures / prompts over every summary."""
    from personakit.facets import FacetSchema, build_summary_prompt
    from personakit.facets.summarize import SummaryReply
    from personakit.llm import HFGenerator, extract_json, generate_structured

    gen = HFGenerator.from_pretrained("smollm2", batch_size=8, device=device)
    spec = FacetSchema(facets=[{"name": "Values", "definition": "What the user cares about.",
                                "values": "none / weak / moderate / strong"}]).facets[0]
    prompts = [build_summary_prompt([it.text for it in u.items][-4:], spec) for u in data.users[:n_prompts]]
    settings = {"max_new_tokens": 96}
    first = gen.generate(prompts, settings)

    def ok(raw):
        try:
            SummaryReply.model_validate(extract_json(raw))
            return True
        except Exception:  # noqa: BLE001
            return False

    first_rate = sum(map(ok, first)) / len(prompts)
    retried = generate_structured(gen, prompts, SummaryReply, settings, max_attempts=3, on_failure="none")
    n_cons = int(recipe_structured.get("summary_prompts", 0))
    return {"prompts": len(prompts), "first_try": first_rate,
            "after_retry": sum(r is not None for r in retried) / len(prompts),
            "constrained_prompts": n_cons,
            "constrained": (1 - recipe_structured.get("summary_failures", 0) / n_cons) if n_cons else float("nan")}


def markdown(report: dict) -> str:
    r = report["results"]
    lines = [f"# CoPersona on PFG users ({report['setting']} setting)", "", f"Command: `{report['command']}`  ",
             f"Run on {report['date']}; wall time {report['wall_time_s'] / 60:.1f} min; device "
             f"{report['machine']['device']}.  {machine_line(report['machine'])}", "",
             "Sizes: " + ", ".join(f"{k} {v}" for k, v in r["sizes"].items()
                                   if k not in ("facet_edges", "reliability_counts")) + ".", "",
             "| method | ROUGE-1 | ROUGE-L | METEOR | BLEU | BERTScore F1 | paper (Books 7B) R-1 / R-L / MET / BLEU |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for label, m in r["rows"].items():
        paper = PAPER_TABLE5.get(label)
        p1 = PAPER_TABLE1_BOOKS_7B.get(label)
        ptxt = " / ".join(f"{v:g}" for v in paper) if paper else (f"{p1[0]:g} / - / {p1[1]:g} / {p1[2]:g}" if p1 else "-")
        lines.append(f"| {label} | {m.get('rouge1', 0):.4f} | {m.get('rougeL', 0):.4f} | {m.get('meteor', 0):.4f} | "
                     f"{m.get('bleu', 0):.2f} | {m.get('bertscore_f1', float('nan')):.4f} | {ptxt} |")
    lines += ["", f"Facet-biased users: {r['facet_biased_fraction']:.2%} (paper: Books 97.48%, Movies & TV 100%, "
                  "CDs & Vinyl 88.26%).", "",
              "Facet schema: " + "; ".join(f"**{f['name']}**: {f['definition']}" for f in r["schema"]["facets"]), ""]
    if r.get("reliability_counts"):
        f = report.get("settings_facets", {})
        lines += [f"Graph: {r['sizes']['graph_edges']} combined (user-level) edges, per facet "
                  f"{', '.join(map(str, r['facet_edges']))}; reliability labels "
                  + ", ".join(f"{k} {v}" for k, v in r["reliability_counts"].items())
                  + (f" (schema per cluster: {f.get('per_cluster_schema')}, reliability from: {f.get('reliability')}, "
                     f"combined threshold: {f.get('combined_threshold')})" if f else "") + ".", ""]
    s = report.get("structured")
    if s:
        cons = (f"schema-guided (the recipe's {s['constrained_prompts']} summary prompts) {s['constrained']:.0%}"
                if "constrained_prompts" in s else f"constrained {s['constrained']:.0%}")
        lines.append(f"Structured output of SmolLM2-135M: free JSON on {s['prompts']} summary prompts parses "
                     f"{s['first_try']:.0%} at the first try and {s['after_retry']:.0%} after two retries with the "
                     f"validation error; {cons}.")
    lines.append("")
    lines.append("Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r["timings"].items()) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_arguments(parser, "copersona_pfg", quick_help="smoke run", scale_help="GPU setting (with --device cuda)")
    args = parser.parse_args(argv)
    require_pfg(parser, args.data)

    from personakit.data.copersona_users import build_pfg_users
    from personakit.recipes.copersona import CoPersonaRecipeConfig, run_copersona_recipe

    name = setting_name(args)
    s = SETTINGS[name]
    work = work_dir(args, "copersona_pfg")
    start = time.perf_counter()
    training = {"epochs": s["epochs"], "batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 2e-4,
                "eval_at_epoch_end": False, "progress": True, "seed": args.seed}
    if s["max_steps"]:
        training["max_steps"] = s["max_steps"]
    config = CoPersonaRecipeConfig.from_dict({
        "data": {"source": "pfg", "path": str(args.data), "max_users": s["max_users"],
                 "max_examples_per_user": s["per_user"], "seed": args.seed},
        "facets": {"num_facets": s["facets"], "num_clusters": s["clusters"], "constrained": True},
        "model": {"graph_hidden": 128 if name == "quick" else 512, "num_virtual_tokens": 4 if name == "quick" else 20,
                  "max_prompt_tokens": s["prompt_tokens"], "max_target_tokens": 48},
        "training": training, "max_new_tokens": s["new_tokens"], "output_dir": str(work), "device": args.device,
        "seed": args.seed}, source="benchmarks/copersona_pfg.py")
    results = run_copersona_recipe(config, progress=True)
    data = build_pfg_users(args.data, max_users=s["max_users"], max_examples_per_user=s["per_user"], seed=args.seed)
    structured = structured_rates(data, s["structured_prompts"], args.device, results.structured)
    report = {
        "benchmark": "copersona_pfg", "setting": name, "settings": s,
        "command": command_line(argv), "date": now(), "wall_time_s": time.perf_counter() - start,
        "machine": {**machine_info(("torch", "transformers", "personakit"), args.device), "device": args.device or "cpu"},
        "paper_table5_books_7b": PAPER_TABLE5, "paper_table1_books_7b": PAPER_TABLE1_BOOKS_7B,
        "paper_facet_biased": PAPER_FACET_BIASED, "structured": structured, "results": {**results.to_dict(), "rows": results.rows},
        "settings_facets": {"per_cluster_schema": config.facets.per_cluster_schema,
                            "reliability": config.facets.reliability,
                            "combined_threshold": config.facets.combined_threshold
                            if config.facets.combined_threshold is not None
                            else f"threshold / num_facets = {config.facets.threshold / config.facets.num_facets:.3f}"},
    }
    md = markdown(report)
    write_results("copersona_pfg", report, md, args.out)
    print(md)
    return report


if __name__ == "__main__":
    main()
