"""Facet-stage speed of the CoPersona recipe: schema induction + per-user facet summaries, before and after.

BEFORE is the old path: the facet LLM (embedded SmolLM2-135M) in fp32, schema-guided decoding one
prompt at a time (``batch_size 1``: :meth:`SchemaGuidedGenerator.fill`).  AFTER is the recipe's
default: ``dtype auto`` (bf16 where the CPU has AMX or AVX512-BF16) and ``batch_size 16``
(:meth:`SchemaGuidedGenerator.fill_batch`: one forward pass per decoding step for every prompt of
the batch, the prompts' common prefix encoded once, the KV cache in preallocated buffers).  Both
run on the same users, in one process, with the tiny recipe's facet settings (3 facets, 3
clusters, per-cluster schema induction, 4 items per summary, evidence-graded reliability).

Reported per setting: seconds of schema induction, of the summaries and per user; the
after/before ratio; whether every reply parsed and validated (schema and summaries); how
many (user, facet) summaries (text and quotes) are identical between the two settings, and
whether the two schemas are.

    python benchmarks/facet_speed.py                      # 8 Persuasion-for-Good users (builtin corpus without the data)
    python benchmarks/facet_speed.py --data builtin       # the tiny recipe's 3 built-in users
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PFG_DATA, RESULTS, command_line, machine_info, machine_line, now, write_results  # noqa: E402


def load_users(data: str, n: int, seed: int) -> tuple[list[Any], str]:
    from personakit.recipes.copersona.config import CoPersonaDataConfig
    from personakit.recipes.copersona.run import load_copersona_data

    if data != "builtin" and (Path(data) / "full_dialog.csv").is_file():
        cfg = CoPersonaDataConfig(source="pfg", path=str(data), max_users=max(2, n), max_profile_items=6, seed=seed)
        return load_copersona_data(cfg).users[:n], f"Persuasion-for-Good ({data})"
    cfg = CoPersonaDataConfig(source="builtin", max_profile_items=6, seed=seed)
    return load_copersona_data(cfg).users[:n], "built-in corpus"


def run_setting(name: str, dtype: Any, batch_size: int, users: list[Any], encoder: Any, args: argparse.Namespace
                ) -> dict[str, Any]:
    import torch

    from personakit.facets import FacetSchemaInducer, FacetSummarizer, SchemaGuidedGenerator
    from personakit.llm import HFGenerator

    generator = HFGenerator.from_pretrained("smollm2", dtype=dtype, batch_size=8)
    constrained = SchemaGuidedGenerator.from_hf(generator, batch_size=batch_size)
    inducer = FacetSchemaInducer(None, encoder, num_facets=args.num_facets, num_clusters=args.num_clusters,
                                 max_items=8, constrained=constrained, per_cluster=True, seed=args.seed)
    start = time.perf_counter()
    schema = inducer.induce(users)
    schema_s = time.perf_counter() - start
    summarizer = FacetSummarizer(None, schema, max_items=args.summary_items, on_failure="placeholder",
                                 constrained=constrained, reliability="evidence", encoder=encoder,
                                 batch_size=batch_size)
    start = time.perf_counter()
    facets = summarizer.summarize(users)
    summary_s = time.perf_counter() - start
    stats = summarizer.last_stats
    n = len(users)
    result = {"setting": name, "dtype": str(next(generator.model.parameters()).dtype).replace("torch.", ""),
              "batch_size": batch_size, "torch_threads": torch.get_num_threads(),
              "schema_seconds": schema_s, "summary_seconds": summary_s, "total_seconds": schema_s + summary_s,
              "schema_seconds_per_user": schema_s / n, "summary_seconds_per_user": summary_s / n,
              "total_seconds_per_user": (schema_s + summary_s) / n,
              "prompts": stats.prompts, "failures": stats.failures,
              "parsed_fraction": 1.0 - stats.failures / max(1, stats.prompts),
              "schema": json.loads(schema.model_dump_json()),
              "summaries": {u: [{"facet": f.facet, "summary": f.llm_summary, "quotes": f.quotes} for f in uf.facets]
                            for u, uf in facets.items()}}
    print(f"{name}: schema {schema_s:.1f} s, summaries {summary_s:.1f} s ({summary_s / n:.1f} s/user), "
          f"failures {stats.failures}/{stats.prompts}", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(PFG_DATA), help="Persuasion-for-Good FullData folder, or 'builtin'")
    parser.add_argument("--users", type=int, default=8, help="users summarised (default 8)")
    parser.add_argument("--batch-size", type=int, default=16, help="AFTER: prompts filled together")
    parser.add_argument("--num-facets", type=int, default=3)
    parser.add_argument("--num-clusters", type=int, default=3)
    parser.add_argument("--summary-items", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="facet_speed",
                        help="base name of the result files (default facet_speed; e.g. facet_speed_amx for a run on "
                             "another CPU, so the committed result of the first stays)")
    args = parser.parse_args(argv)

    from personakit.backbones import load_sentence_encoder

    users, source = load_users(args.data, args.users, args.seed)
    encoder = load_sentence_encoder("minilm").encode
    after = run_setting("after", "auto", args.batch_size, users, encoder, args)  # first: a failure shows early
    before = run_setting("before", "float32", 1, users, encoder, args)
    pairs = [(a, b) for u in before["summaries"] for a, b in zip(before["summaries"][u], after["summaries"][u])]
    same = sum(a == b for a, b in pairs)
    info = machine_info()
    report = {"date": now(), "command": command_line(argv), "machine": info, "data": source, "users": len(users),
              "settings": [before, after],
              "speedup": {k: before[k] / after[k] for k in ("schema_seconds", "summary_seconds", "total_seconds")},
              "identical_summaries": same, "compared_summaries": len(pairs),
              "identical_schema": before["schema"] == after["schema"]}
    rows = ["| setting | dtype | batch | schema s | summaries s | summaries s/user | facet stage s/user | parsed |",
            "|---|---|---|---|---|---|---|---|"]
    for r in (before, after):
        rows.append(f"| {r['setting']} | {r['dtype']} | {r['batch_size']} | {r['schema_seconds']:.1f} | "
                    f"{r['summary_seconds']:.1f} | {r['summary_seconds_per_user']:.1f} | "
                    f"{r['total_seconds_per_user']:.1f} | {r['parsed_fraction']:.0%} |")
    sp = report["speedup"]
    md = "\n".join([
        "# Facet-stage speed (CoPersona: schema induction + facet summaries)", "",
        f"Command: `{report['command']}`; {report['date']}.", "",
        f"{len(users)} users from the {source}; the tiny recipe's facet settings ({args.num_facets} facets, "
        f"{args.num_clusters} clusters, per-cluster schema induction, {args.summary_items} items per summary, "
        "evidence-graded reliability); embedded SmolLM2-135M with schema-guided decoding. BEFORE: fp32, one prompt "
        "at a time (the old path). AFTER: dtype auto, batched.", "", *rows, "",
        f"After/before speed-up: schema induction {sp['schema_seconds']:.2f}x, summaries {sp['summary_seconds']:.2f}x, "
        f"facet stage {sp['total_seconds']:.2f}x.", "",
        f"Identical (user, facet) summaries and quotes: {same}/{len(pairs)}; identical schema: "
        f"{'yes' if report['identical_schema'] else 'no'} (bf16 greedy decoding may pick another token where two "
        "logits are close, and a different schema changes every summary prompt).", "",
        machine_line(info), "",
    ])
    json_path, md_path = write_results(args.name, report, md, args.out)
    print(md)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
