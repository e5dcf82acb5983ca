"""Load a dataset file into personakit's data model and print a summary.

Usage::

    python examples/load_dataset.py                      # the built-in sample corpus
    python examples/load_dataset.py ../shared/data/spc/test.jsonl
    python examples/load_dataset.py ../shared/data/persuasionforgood/FullData --agent persuader
    python examples/load_dataset.py LaMP_4/dev_questions.json --outputs LaMP_4/dev_outputs.json

Dialogue datasets (Synthetic-Persona-Chat, ConvAI2, EmpatheticDialogues,
Persuasion-for-Good, the built-in corpus) are also turned into response examples
(one per non-leading agent turn) and one example is printed. LaMP files give
profile examples, review histories give user profiles.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections import Counter

from personakit.data import DEFAULT_AGENTS, DataFormatError, detect_format, dialogues_to_examples, read_dataset
from personakit.types import Dialogue, ProfileExample, ResponseExample, UserProfile

# reader format -> key of DEFAULT_AGENTS
_AGENT_KEY = {
    "spc_jsonl": "spc",
    "spc_csv": "spc",
    "convai2": "convai2",
    "empathetic_dialogues": "empathetic_dialogues",
    "persuasion_for_good": "persuasion_for_good",
    "builtin": "builtin",
}


def _short(text: str, width: int = 100) -> str:
    return textwrap.shorten(text.replace("\n", " "), width=width, placeholder=" ...")


def summarise_dialogues(dialogues: list[Dialogue], fmt: str, agent: str | None, max_history: int | None) -> None:
    speakers = Counter(t.speaker for d in dialogues for t in d.turns)
    n_turns = sum(speakers.values())
    print(f"dialogues: {len(dialogues):,}  turns: {n_turns:,}  speakers: {dict(speakers)}")
    with_participants = sum(1 for d in dialogues if d.participants)
    if with_participants:
        people = {p for d in dialogues for p in d.participants.values()}
        print(f"participants: {len(people):,} distinct ids over {with_participants:,} dialogues")
    label = agent or DEFAULT_AGENTS.get(_AGENT_KEY.get(fmt, ""), None)
    if label is None:
        label = dialogues[0].turns[-1].speaker if dialogues and dialogues[0].turns else "agent"
    examples = dialogues_to_examples(dialogues, label, max_history=max_history)
    print(f"response examples for agent {label!r}: {len(examples):,}")
    if examples:
        _print_response_example(examples[0])


def _print_response_example(ex: ResponseExample) -> None:
    print(f"\nexample {ex.id}")
    print(f"  persona:  {_short(ex.persona.to_text()) or '(none)'}")
    if ex.user_persona is not None and not ex.user_persona.is_empty():
        print(f"  user persona: {_short(ex.user_persona.to_text())}")
    for turn in ex.history[-4:]:
        print(f"  {turn.speaker:>10}: {_short(turn.text, 90)}")
    print(f"  {'-> ' + ex.agent:>10}: {_short(ex.response, 90)}")


def summarise_profiles(examples: list[ProfileExample]) -> None:
    sizes = [len(e.profile.items) for e in examples]
    tasks = Counter(e.task for e in examples)
    print(f"profile examples: {len(examples):,}  tasks: {dict(tasks)}")
    if sizes:
        print(f"profile size: min {min(sizes)}, mean {sum(sizes) / len(sizes):.1f}, max {max(sizes)}")
        ex = examples[0]
        print(f"\nexample {ex.id}: input {_short(ex.input)!r}  target {ex.target!r}")
        for item in ex.profile.items[:3]:
            print(f"  [{item.id}] {_short(item.text, 80)}  fields={sorted(item.fields)}")


def summarise_users(users: list[UserProfile]) -> None:
    n_items = sum(len(u.items) for u in users)
    print(f"user profiles: {len(users):,}  items: {n_items:,}")
    if users:
        u = users[0]
        print(f"\nuser {u.user_id}:")
        for item in u.items[:3]:
            when = item.timestamp.date().isoformat() if item.timestamp else "?"
            print(f"  [{item.id} {when} rating={item.fields.get('rating')}] {_short(item.text, 80)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Load a dataset file into the personakit data model and print a summary.",
        epilog="With no PATH the built-in sample corpus (personakit.data.load_builtin_corpus) is used.",
    )
    parser.add_argument("path", nargs="?", help="dataset file (or the Persuasion-for-Good FullData folder)")
    parser.add_argument("--format", help="reader to use (default: detected), e.g. spc_jsonl, spc_csv, convai2, "
                        "empathetic_dialogues, persuasion_for_good, lamp, reviews")
    parser.add_argument("--split", default="train", help="built-in corpus split when no PATH is given (default: train)")
    parser.add_argument("--agent", help="responding speaker label (default: the dataset's usual agent)")
    parser.add_argument("--max-history", type=int, default=None, help="keep the last N turns of history")
    parser.add_argument("--outputs", help="LaMP outputs file matching the questions file")
    parser.add_argument("--task", help="LaMP task (e.g. LaMP-4) when it cannot be inferred")
    args = parser.parse_args(argv)

    if args.path is None:
        try:
            from personakit.data import load_builtin_corpus
        except ImportError:
            parser.print_usage()
            print("no PATH given and the built-in corpus is not available", file=sys.stderr)
            return 2
        data = load_builtin_corpus(args.split)
        fmt = "builtin"
        print(f"built-in corpus, split {args.split!r}")
    else:
        try:
            fmt = args.format or detect_format(args.path)
            kwargs = {}
            if fmt == "lamp":
                kwargs = {"outputs_path": args.outputs, "task": args.task}
            data = read_dataset(args.path, fmt, **kwargs)
        except (FileNotFoundError, DataFormatError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{args.path} (format {fmt})")

    if data and isinstance(data[0], Dialogue):
        summarise_dialogues(data, fmt, args.agent, args.max_history)
    elif data and isinstance(data[0], ProfileExample):
        summarise_profiles(data)
    elif data and isinstance(data[0], UserProfile):
        summarise_users(data)
    else:
        print("no records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
