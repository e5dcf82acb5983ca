"""ConvAI2 / PersonaChat reader for the ParlAI text format (Dinan et al., 2020; Zhang et al., 2018)."""

from __future__ import annotations

import re
from typing import Optional

from personakit.data._io import TRUNCATED, Loc, PathLike, display_name, iter_lines
from personakit.data.errors import check_file
from personakit.types import Dialogue, Persona, Turn

__all__ = ["CONVAI2_SPEAKERS", "read_convai2"]

CONVAI2_SPEAKERS = ("partner", "self")
"""Speaker labels of ConvAI2 dialogues: the partner speaks first, ``self`` answers."""

SILENCE = "__SILENCE__"
_LINE_RE = re.compile(r"^(\d+) (.*)$", re.DOTALL)
_SELF_PERSONA = "your persona:"
_PARTNER_PERSONA = "partner's persona:"


def _variant(path: PathLike) -> dict[str, str]:
    name = display_name(path).lower()
    info: dict[str, str] = {}
    for key in ("original", "revised"):
        if key in name:
            info["persona_variant"] = key
    for key in ("both", "self", "other", "none"):
        if f"_{key}_" in f"_{name}_":
            info["persona_side"] = key
    return info


def read_convai2(path: PathLike, *, keep_candidates: bool = False) -> list[Dialogue]:
    """Read ConvAI2 / PersonaChat dialogues in the ParlAI text format.

    Format: every line is ``"{N} {content}"`` where ``N`` counts the lines of one
    dialogue from 1; a line numbered 1 starts a new dialogue. Persona lines come
    first, then one line per exchange (tab-separated: the partner's utterance, the
    ``self`` response, an unused reward field and ``|``-separated candidates)::

        1 your persona: i like to remodel homes.
        2 your persona: i like to go hunting.
        3 partner's persona: i love cats.
        4 hi , how are you doing ?\\tgood ! just got back from hunting .\\t\\tno .|good ! just got back from hunting .
        5 what did you hunt ?\\tdeer , it was a good day .
        1 your persona: ...

    All file variants are accepted: ``self``/``other``/``both``/``none`` personas,
    ``original``/``revised`` persona wording (read as given) and ``no_cands`` files.
    A ``__SILENCE__`` partner utterance (the ``self`` side opens the dialogue) is not
    a turn. A last line with no response adds only the partner's turn.

    Args:
        path: e.g. ``train_both_original.txt`` or ``valid_self_revised_no_cands.txt``.
        keep_candidates: keep each exchange's candidate responses in
            ``metadata["candidates"]``, a dict from the ``self`` turn index (as a
            string, so the metadata stays JSON-compatible) to its list of candidates.
            By default they are dropped (they are large).

    Returns:
        One :class:`~personakit.types.Dialogue` per episode with speakers
        ``"partner"`` and ``"self"``; ``personas["self"]`` holds the ``your persona:``
        sentences and ``personas["partner"]`` the ``partner's persona:`` ones. Ids are
        ``"{file stem}-{index}"`` (index from 0); ``metadata`` holds ``source_file``,
        the first ``line`` and, when the file name tells, ``persona_variant``
        (``original``/``revised``) and ``persona_side``.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: a line without its number, a number out of sequence, a
            persona line after the first utterance, an empty utterance line, bytes
            that are not UTF-8, or a last line without a line break (a file cut in the
            middle of a line; ParlAI files end with one).

    Example:
        >>> dialogues = read_convai2("convai2/valid_both_original.txt")  # doctest: +SKIP
        >>> d = dialogues[0]  # doctest: +SKIP
        >>> d.turns[0].speaker, d.turns[1].speaker  # doctest: +SKIP
        ('partner', 'self')
        >>> d.personas["self"].sentences[0]  # doctest: +SKIP
        'i like to remodel homes.'
    """
    p = check_file(path, "ConvAI2 file")
    stem = display_name(path)
    variant = _variant(path)
    dialogues: list[Dialogue] = []

    current: Optional[dict] = None
    expected = 1

    def finish() -> None:
        if current is None:
            return
        metadata = {"source_file": p.name, "line": current["line"], **variant}
        if keep_candidates:
            metadata["candidates"] = current["candidates"]
        dialogues.append(
            Dialogue(
                id=f"{stem}-{len(dialogues)}",
                turns=current["turns"],
                personas={
                    "partner": Persona(sentences=current["partner"]),
                    "self": Persona(sentences=current["self"]),
                },
                metadata=metadata,
            )
        )

    lines = iter_lines(path, "ConvAI2 file")
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n").rstrip("\r")
        if not line.strip():
            continue
        loc = Loc(path, lineno)
        if lines.ends_mid_line:
            raise loc.error(None, f"{TRUNCATED} (add a final line break if the file is complete)")
        m = _LINE_RE.match(line)
        if m is None:
            raise loc.error("line_id", f"expected a line starting with its number, got {line[:40]!r}")
        number, content = int(m.group(1)), m.group(2)
        if number == 1:
            finish()
            current = {"line": lineno, "turns": [], "self": [], "partner": [], "candidates": {}}
        elif current is None or number != expected:
            raise loc.error("line_id", f"expected line number {expected} or 1 (new dialogue), got {number}")
        expected = number + 1
        assert current is not None
        stripped = content.strip()
        if stripped.startswith(_SELF_PERSONA) or stripped.startswith(_PARTNER_PERSONA):
            if current["turns"]:
                raise loc.error("persona", "persona line after the first utterance of the dialogue")
            if "\t" in content:
                raise loc.error("persona", "persona line with tab-separated fields")
            side = "self" if stripped.startswith(_SELF_PERSONA) else "partner"
            sentence = stripped.split(":", 1)[1].strip()
            if sentence:
                current[side].append(sentence)
            continue
        fields = content.split("\t")
        text = fields[0].strip()
        response = fields[1].strip() if len(fields) > 1 else None
        if not text and not response:
            raise loc.error("text", "empty utterance")
        if text and text != SILENCE:
            current["turns"].append(Turn(speaker="partner", text=text))
        if response is not None:
            if not response:
                raise loc.error("labels", "empty response after a tab")
            current["turns"].append(Turn(speaker="self", text=response))
            if keep_candidates and len(fields) > 3 and fields[3].strip():
                current["candidates"][str(len(current["turns"]) - 1)] = fields[3].split("|")
    finish()
    return dialogues
