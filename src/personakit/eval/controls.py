r"""Control transformations of test examples (``../EXPERIMENTS.md`` §5): shuffled, removed, upper bound.

A quality number alone does not say *why* a system scores as it does.  Scoring the same
trained system on transformed copies of the test examples does:

* :func:`shuffle_personas`: each example gets the persona of an example from **another
  dialogue** (a seeded derangement).  The drop against the true persona measures how much
  the system uses the persona ("persona use").
* :func:`blank_generic`: the generic response $R_G$ is replaced by a neutral placeholder.
  The drop measures how much a GRAG model reads its scaffold.
* :func:`reference_scaffold`: an **upper-bound control**, never a result: $R_G$ := the
  reference $R_P$ with every word it shares with the persona removed, what a perfect
  generic LLM (one that knows what will be said, but not the persona) could give.  It
  shows whether the GRAG machinery uses a good scaffold when it has one.

Every function returns new examples (the inputs are not modified), in the input order,
with ``metadata["control"]`` naming the transformation.

Example:
    >>> from personakit.types import Persona, ResponseExample, Turn
    >>> ex = ResponseExample(id="d:1", persona=Persona(sentences=["I have a dog named Rex."]),
    ...                      history=[Turn(speaker="user", text="Any pets?")], response="Yes, my dog Rex!")
    >>> reference_scaffold([ex])[0].generic_response
    'Yes, my'
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np

from personakit.types import ResponseExample

__all__ = ["shuffle_personas", "blank_generic", "reference_scaffold", "persona_words", "BLANK_GENERIC",
           "CONTROLS"]

BLANK_GENERIC = "Okay."
"""The placeholder $R_G$ of :func:`blank_generic` (a neutral reply carrying no content; the models
need a non-empty $R_G$)."""

_WORD = re.compile(r"[A-Za-z0-9']+")
_PUNCT = ".,!?;:\"()"
_STOP = frozenset(
    "a an the i i'm im me my mine you your we our to of in on at for and or but is am are was were be been it "
    "its it's this that with as so do does did have has had not no yes".split())


def _dialogue_of(example: ResponseExample) -> str:
    return example.id.rsplit(":", 1)[0] if ":" in example.id else example.id


def _tag(example: ResponseExample, control: str, **update: object) -> ResponseExample:
    metadata = {**example.metadata, "control": control}
    return example.model_copy(update={**update, "metadata": metadata}, deep=True)


def shuffle_personas(examples: Sequence[ResponseExample], seed: int = 0) -> list[ResponseExample]:
    """Copies of ``examples`` whose persona comes from an example of another dialogue (seeded).

    The dialogue of an example is its id up to the last ``":"`` (the readers' ``"{dialogue}:{turn}"``).
    Personas are permuted until no example keeps a persona of its own dialogue (a derangement over
    dialogues); with a single dialogue this is impossible and an error is raised.

    Raises:
        ValueError: fewer than two dialogues.
    """
    examples = list(examples)
    if not examples:
        return []
    dialogues = [_dialogue_of(ex) for ex in examples]
    if len(set(dialogues)) < 2:
        raise ValueError("shuffle_personas: the examples come from one dialogue; another speaker's persona "
                         "needs at least two dialogues")
    rng = np.random.default_rng(seed)
    n = len(examples)
    order = rng.permutation(n)
    # repair: swap any example that kept its own dialogue's persona with one that can take it
    for i in range(n):
        if dialogues[order[i]] != dialogues[i]:
            continue
        for j in rng.permutation(n):
            if dialogues[order[j]] != dialogues[i] and dialogues[order[i]] != dialogues[j]:
                order[i], order[j] = order[j], order[i]
                break
    if any(dialogues[order[i]] == dialogues[i] for i in range(n)):  # pathological (one dialogue dominates)
        raise ValueError("shuffle_personas: could not give every example another dialogue's persona "
                         "(one dialogue holds more than half of the examples)")
    return [_tag(ex, "shuffled_persona", persona=examples[int(order[i])].persona)
            for i, ex in enumerate(examples)]


def blank_generic(examples: Sequence[ResponseExample], placeholder: str = BLANK_GENERIC) -> list[ResponseExample]:
    """Copies of ``examples`` with the generic response replaced by ``placeholder``."""
    return [_tag(ex, "blank_generic", generic_response=placeholder) for ex in examples]


def persona_words(example: ResponseExample) -> set[str]:
    """The lowercased content words of the example's persona (a small stop-word list removed)."""
    words = {w.lower() for w in _WORD.findall(example.persona.to_text())}
    return {w for w in words if w not in _STOP}


def reference_scaffold(examples: Sequence[ResponseExample], fallback: Optional[str] = BLANK_GENERIC
                       ) -> list[ResponseExample]:
    """Upper-bound control: $R_G$ := the reference with the words it shares with the persona removed.

    Words are compared lowercased (:func:`persona_words`); the remaining text keeps its
    order; a word is dropped with the punctuation attached to it.  A reference that
    loses every word gets ``fallback``.  **A control, not a result**: it sees the reference.
    """
    out = []
    for ex in examples:
        drop = persona_words(ex)
        kept = [t for t in ex.response.split() if t.strip(_PUNCT).lower() not in drop]
        text = " ".join(kept)
        if not _WORD.search(text):
            text = fallback or ""
        out.append(_tag(ex, "reference_scaffold", generic_response=text))
    return out


CONTROLS = {"shuffled_persona": shuffle_personas, "blank_generic": blank_generic,
            "reference_scaffold": reference_scaffold}
"""Control name -> transformation (each takes and returns a list of examples)."""
