"""ICL(Hist) with the embedded SmolLM2 on a few built-in test examples.

GRAG's prompting baseline: the LLM gets the agent's persona, the conversation so far
and ``--n-shot`` demonstrations from the training split, and writes the agent's next
reply.  Generation is batched and greedy; the replies are printed next to the
references and scored with char-F1, ROUGE, BLEU and METEOR.

Run:
    python examples/icl_hist.py                    # 6 examples, about a minute on 2 CPU cores
    python examples/icl_hist.py --max-examples 48 --n-shot 3
"""

# personakit-example: real_model
# personakit-example-args: --max-examples 3 --max-new-tokens 16

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=6, help="test examples to answer (default 6)")
    parser.add_argument("--n-shot", type=int, default=2, help="in-context demonstrations per prompt (default 2)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="maximum reply length in tokens (default 32)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch (default 8)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="embedded name, local folder or hub id")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shot sampling (default 0)")
    args = parser.parse_args()

    from personakit.data import dialogues_to_examples
    from personakit.data.builtin import load_builtin_corpus
    from personakit.eval import evaluate_texts, format_metrics_table
    from personakit.llm import GenerationSettings, HFGenerator
    from personakit.models import ICLResponder

    pool = dialogues_to_examples(load_builtin_corpus("train"), agent="agent")
    examples = dialogues_to_examples(load_builtin_corpus("test"), agent="agent")[: args.max_examples]

    generator = HFGenerator.from_pretrained(args.model, batch_size=args.batch_size)
    responder = ICLResponder(
        generator,
        mode="hist",
        n_shot=args.n_shot,
        shot_pool=pool,
        seed=args.seed,
        settings=GenerationSettings(max_new_tokens=args.max_new_tokens, stop=["\n"]),
    )
    start = time.perf_counter()
    replies = responder.respond(examples)
    elapsed = time.perf_counter() - start

    for ex, reply in zip(examples, replies):
        print(f"[{ex.id}] persona: {ex.persona.to_text()}")
        print(f"  user:      {ex.last_user_turn.text}")
        print(f"  reference: {ex.response}")
        print(f"  ICL(Hist): {reply}\n")
    scores = evaluate_texts(replies, [ex.response for ex in examples])
    print(format_metrics_table({f"ICL(Hist) {args.n_shot}-shot": scores}))
    print(f"\n{len(examples)} replies in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
