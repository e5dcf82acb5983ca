"""Helpers of the CoPersona tests: users, a stand-in LLM, a tiny encoder, a tiny random Llama."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "grag"))

from grag_testkit import build_backbone, tokenizer_for  # noqa: E402

from personakit.llm import CallableGenerator  # noqa: E402
from personakit.types import ProfileItem, ResponseExample, Turn, UserProfile  # noqa: E402

TEXTS = {
    "u0": ["i love to bake cookies", "my dogs like the rain"],
    "u1": ["i play guitar at night", "that sounds nice"],
    "u2": ["i am a nurse i work at night", "how are you"],
    "u3": ["i bake cookies and love cats", "good weather is sunny"],
}


def users(texts=TEXTS) -> list[UserProfile]:
    return [UserProfile(user_id=u, items=[ProfileItem(id=f"{u}:{i}", text=t) for i, t in enumerate(ts)])
            for u, ts in texts.items()]


def examples(ids=("u0", "u1", "u2", "u3")) -> list[ResponseExample]:
    return [ResponseExample(id=f"{u}:x", history=[Turn(speaker="persuadee", text="what do you like")],
                            response="i like to bake cookies", agent="persuader", user_id=u) for u in ids]


def encoder(texts):
    """Deterministic 8-d bag-of-characters embedding."""
    out = torch.zeros(len(texts), 8)
    for i, t in enumerate(texts):
        for j, ch in enumerate(t.encode()):
            out[i, (ch + j) % 8] += 1.0
    return (out + 0.1).numpy()


SCHEMA_REPLY = json.dumps({"facets": [{"name": n, "definition": f"{n} of the user", "values": "low / high"}
                                      for n in ("Hobbies", "Tone", "Work")]})


def fake_llm(calls: list, schema_reply: str = SCHEMA_REPLY):
    """Answers schema prompts with a 3-facet schema and summary prompts with a grounded quote."""

    def fn(chat):
        calls.append(chat)
        text = chat[-1]["content"] if not isinstance(chat, str) else chat
        if "facets as JSON" in text or "propose" in chat[0]["content"]:
            return schema_reply
        if "one facet as JSON" in text:  # per-cluster induction: the schema's next facet not yet chosen
            return json.dumps(next(f for f in json.loads(schema_reply)["facets"] if f["name"] not in text))
        msgs = text.split("The user's messages:\n", 1)[-1].split("\n")
        first = msgs[0].lstrip("- ").strip()
        quote = " ".join(first.split()[:4])
        return json.dumps({"summary": f"Says: {first}", "quotes": [quote], "reliability": "strong" if "i" in first else "weak"})

    return CallableGenerator(fn, model_id="fake-copersona")


def tiny_llama(seed: int = 0):
    return build_backbone("llama", seed=seed), tokenizer_for("llama")
