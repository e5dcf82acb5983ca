r"""Turn :class:`~personakit.types.ResponseExample` s into GRAG model batches.

One collator serves every GRAG model; ``method`` (``"presft"``, ``"pregrag"``,
``"postgrag"``), ``mode`` (PreSFT: ``"hist"`` / ``"tst"``) and ``architecture``
(``"encoder-decoder"`` / ``"decoder-only"``) select the fields.  The easiest way to get
one that matches a model is ``model.make_collator()``.

Texts (``sep`` is ``separator``: ``" "`` for encoder-decoder backbones, ``"\n"`` for
decoder-only ones, since T5's tokenizer drops newlines):

* persona $P$: ``example.persona.to_text()`` (``"(none)"`` when empty);
* history $H$: the last ``max_history_turns`` turns, ``"{role}: {text}"`` joined by ``sep``,
  ``role`` = ``agent_label`` for the agent's turns, ``user_label`` for everyone else's;
* generic response $R_G$ and personalised response $R_P$: the raw texts.

Each part is tokenised **without** special tokens and truncated to its budget
(``max_persona_tokens``; ``max_history_tokens`` keeping the **end** of the history;
``max_generic_tokens``; ``max_response_tokens``); then the tokenizer's own special
tokens are added around each encoder input (found by probing the tokenizer: BART
``<s> … </s>``, T5 ``… </s>``, BERT ``[CLS] … [SEP]``, Llama ``<bos> …``).  Decoder-only
prompts get only the leading special tokens (never an EOS).

Fields, all ``LongTensor`` ``[B, T]``, right-padded with the pad id (masks 1/0, labels
``-100`` where no loss is taken):

Encoder-decoder backbones

=========  ===========================================================================
PreSFT     ``input_ids``, ``attention_mask``: ``"persona: P" sep H`` (hist) or
           ``"persona: P" sep "generic response: R_G"`` (tst); ``labels``: $R_P$.
PreGRAG    ``input_ids``, ``attention_mask``: ``"persona: P" sep H sep "generic response: R_G"``;
           ``labels``: $R_P$; ``response_ids/response_mask``, ``generic_ids/generic_mask``:
           $R_P$ and $R_G$ alone (encoded for C-JEPA's $\mathcal{E}_P$, $\mathcal{E}_G$).
PostGRAG   ``persona_ids/persona_mask``, ``history_ids/history_mask``, ``generic_ids/generic_mask``,
           ``response_ids/response_mask`` (each source alone); ``labels``: $R_P$;
           ``generic_labels``: $R_G$ (the style-removal target).
=========  ===========================================================================

Labels are the target tokenised with special tokens (e.g. BART ``<s> R </s>``); a
leading token equal to ``decoder_start_token_id`` is dropped (BERT2BERT's ``[CLS]``),
since the decoder already starts from it.

Decoder-only backbones (the prompt ends with the cue ``sep + "{agent_label}:"``; the
target is ``target_prefix + text`` followed by EOS)

=========  ===========================================================================
PreSFT /   ``input_ids``, ``attention_mask``: prompt + target; ``labels``: $-100$ on the prompt,
PreGRAG    the target ids on the target; ``prompt_ids/prompt_mask``: the prompt alone
           (for ``generate``).  Prompt: ``"persona: P" sep H cue`` (hist),
           ``"persona: P" sep "generic response: R_G" cue`` (tst),
           ``"persona: P" sep H sep "generic response: R_G" cue`` (PreGRAG).
           PreGRAG adds ``response_ids/response_mask``, ``generic_ids/generic_mask``.
PostGRAG   ``persona_ids``, ``history_ids`` (= $H$ + cue, also the generation prompt),
           ``generic_ids``, ``response_ids`` (+ masks); ``input_ids/attention_mask/labels``:
           history prompt + $R_P$ target (decoded with $\mathcal{S}_P$);
           ``generic_input_ids/generic_attention_mask/generic_labels``: $R_P$ +
           ``sep "generic response:"`` + $R_G$ target (decoded with $\mathcal{S}_G$).
=========  ===========================================================================

Decoder-only chat format (``prompt_format="chat"``, the default for a tokenizer with a chat
template; see :mod:`personakit.models.grag.chat`): the prompt is the tokenizer's chat
template over a system message ``system_prompt`` + ``"\n" + "persona: P"`` (PreSFT, PreGRAG;
PreGRAG and PreSFT(TST) add ``"\n" + "generic response: R_G"``), then the history as
``user`` / ``assistant`` turns (PreSFT(TST): one user message ``"generic response: R_G"``),
then the assistant cue; PostGRAG's ``history_ids`` are the same over ``system_prompt``
alone (the persona reaches it through the style).

``persona_in_history=True`` (PostGRAG only; ``GRAGConfig.persona_in_history``, a departure
from the paper) puts the persona into $H$ as PreSFT(Hist) does: ``history_ids`` are then
PreSFT(Hist)'s prompt, token for token (plain: ``"persona: P" sep H cue``; chat: the persona
in the system message; encoder-decoder: ``"persona: P" sep H``), so the decoder reads the
persona directly as well as through the style, and a zero-initialised PostGRAG starts as
PreSFT(Hist) does.  The target is $R_P$ followed by the
template's **end-of-turn** token (``<|im_end|>``), so a trained model learns to end its
turn; the oldest turns are dropped when the prompt exceeds its token budget
(``max_persona_tokens + max_history_tokens``, plus ``max_generic_tokens`` when $R_G$ is in it).

With ``with_targets=False`` (inference) the fields derived from $R_P$ are left out
(``labels``, ``response_*``, ``generic_labels``, ``input_ids`` of decoder-only PostGRAG,
...); decoder-only PreSFT/PreGRAG then give ``prompt_ids`` only.

Example:
    >>> from personakit.types import Persona, ResponseExample, Turn
    >>> ex = ResponseExample(id="d:1", persona=Persona(sentences=["I bake."]),
    ...                      history=[Turn(speaker="user", text="Hi!")], response="Hello!",
    ...                      generic_response="Hi.")
    >>> GRAGCollator.texts(ex, mode="hist")["history"]
    'user: Hi!'
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence

from torch import Tensor

from personakit.models.collators import TokenCollator
from personakit.models.grag.chat import chat_turns, end_of_turn_ids, has_chat_template, render_chat
from personakit.models.grag.config import GRAG_METHODS, PRESFT_MODES, PROMPT_FORMATS
from personakit.types import ResponseExample

__all__ = ["GRAGCollator", "Architecture", "DEFAULT_SYSTEM_PROMPT"]

DEFAULT_SYSTEM_PROMPT = "You are chatting with someone. Reply to their last message in one or two short sentences."
"""The system message of chat-format prompts (before the persona, when the prompt has one)."""

Architecture = Literal["encoder-decoder", "decoder-only"]

_SEQUENCE = ("input_ids", "attention_mask", "labels")
_GENERIC_SEQUENCE = ("generic_input_ids", "generic_attention_mask", "generic_labels")


class GRAGCollator(TokenCollator):
    """Tokenise GRAG inputs ($P$, $H$, $R_G$, $R_P$) into the batch format of a GRAG model.

    See the module docstring for the exact texts and fields.

    Args:
        tokenizer: the backbone's tokenizer (a pad token is required; decoder-only
            tokenizers without one use EOS).
        method: ``"presft"``, ``"pregrag"`` or ``"postgrag"``.
        architecture: ``"encoder-decoder"`` or ``"decoder-only"``.
        mode: PreSFT input, ``"hist"`` or ``"tst"``.
        decoder_start_token_id: the encoder-decoder model's decoder start token (a
            label sequence starting with it loses that token).
        max_persona_tokens, max_history_tokens, max_generic_tokens, max_response_tokens:
            token budgets of each part (history keeps its end).
        max_history_turns: keep only the last this many turns (``None``: all).
        user_label, agent_label: role names of the history lines.
        persona_prefix, generic_prefix: markers of the parts inside concatenated inputs.
        separator: between parts and turns (``None``: ``" "`` encoder-decoder, ``"\\n"`` decoder-only).
        target_prefix: put before a decoder-only target (``" "``: the space after the cue).
        with_targets: include the fields derived from the response $R_P$.
        prompt_format: decoder-only prompt layout: ``"plain"`` (the default), ``"chat"``
            (the tokenizer's chat template) or ``"auto"`` (``"chat"`` when the tokenizer has
            a chat template); ignored for encoder-decoder backbones.
        system_prompt: the system message of chat-format prompts.
        persona_in_history: PostGRAG only: $H$ begins with the persona, as PreSFT(Hist)'s
            input does (see the module docstring); ``False`` (the paper's form): $H$ alone.
    """

    def __init__(
        self,
        tokenizer: Any,
        method: str = "postgrag",
        architecture: Architecture = "encoder-decoder",
        mode: str = "hist",
        decoder_start_token_id: Optional[int] = None,
        max_persona_tokens: int = 128,
        max_history_tokens: int = 256,
        max_generic_tokens: int = 64,
        max_response_tokens: int = 64,
        max_history_turns: Optional[int] = None,
        user_label: str = "user",
        agent_label: str = "agent",
        persona_prefix: str = "persona:",
        generic_prefix: str = "generic response:",
        separator: Optional[str] = None,
        target_prefix: str = " ",
        with_targets: bool = True,
        prompt_format: str = "plain",
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        persona_in_history: bool = False,
    ):
        if method not in GRAG_METHODS:
            raise ValueError(f"GRAGCollator: method must be one of {GRAG_METHODS}, got {method!r}")
        if mode not in PRESFT_MODES:
            raise ValueError(f"GRAGCollator: mode must be one of {PRESFT_MODES}, got {mode!r}")
        if architecture not in ("encoder-decoder", "decoder-only"):
            raise ValueError(f"GRAGCollator: architecture must be 'encoder-decoder' or 'decoder-only', got {architecture!r}")
        for name, value in (("max_persona_tokens", max_persona_tokens), ("max_history_tokens", max_history_tokens),
                            ("max_generic_tokens", max_generic_tokens), ("max_response_tokens", max_response_tokens)):
            if value < 1:
                raise ValueError(f"GRAGCollator: {name} must be >= 1, got {value}")
        if persona_in_history and method != "postgrag":
            raise ValueError(f"GRAGCollator: persona_in_history applies to PostGRAG only (method {method!r}); "
                             "PreSFT(Hist) and PreGRAG read the persona in their input already")
        if max_history_turns is not None and max_history_turns < 1:
            raise ValueError(f"GRAGCollator: max_history_turns must be >= 1 or None, got {max_history_turns}")
        self.method = method
        self.architecture = architecture
        self.mode = mode
        self.decoder_start_token_id = decoder_start_token_id
        self.max_persona_tokens = max_persona_tokens
        self.max_history_tokens = max_history_tokens
        self.max_generic_tokens = max_generic_tokens
        self.max_response_tokens = max_response_tokens
        self.max_history_turns = max_history_turns
        self.user_label = user_label
        self.agent_label = agent_label
        self.persona_prefix = persona_prefix
        self.generic_prefix = generic_prefix
        self.separator = separator if separator is not None else (" " if architecture == "encoder-decoder" else "\n")
        self.target_prefix = target_prefix
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"GRAGCollator: prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
        if prompt_format == "auto":
            prompt_format = "chat" if architecture == "decoder-only" and has_chat_template(tokenizer) else "plain"
        if prompt_format == "chat" and architecture == "decoder-only" and not has_chat_template(tokenizer):
            raise ValueError("GRAGCollator: prompt_format='chat' needs a tokenizer with a chat template")
        self.prompt_format = prompt_format if architecture == "decoder-only" else "plain"
        self.system_prompt = system_prompt
        self.persona_in_history = bool(persona_in_history)
        # decoder-only: EOS pads when there is no pad token, and ends the targets
        super().__init__(tokenizer, with_targets=with_targets, pad_falls_back_to_eos=self.decoder_only,
                         needs_eos=self.decoder_only)
        self.end_of_turn: list[int] = (end_of_turn_ids(tokenizer) if self.chat
                                       else ([] if self.eos_token_id is None else [self.eos_token_id]))

    @property
    def decoder_only(self) -> bool:
        return self.architecture == "decoder-only"

    @property
    def chat(self) -> bool:
        """Whether prompts use the tokenizer's chat template (decoder-only ``prompt_format="chat"``)."""
        return self.prompt_format == "chat"

    # ------------------------------------------------------------------ texts
    @staticmethod
    def texts(example: ResponseExample, mode: str = "hist", max_history_turns: Optional[int] = None,
              user_label: str = "user", agent_label: str = "agent", separator: str = " ") -> dict[str, Optional[str]]:
        """The raw texts of an example: ``persona``, ``history``, ``generic``, ``response``."""
        history = example.history if max_history_turns is None else example.history[-max_history_turns:]
        lines = [f"{agent_label if t.speaker == example.agent else user_label}: {t.text.strip()}" for t in history]
        return {
            "persona": example.persona.to_text() or "(none)",
            "history": separator.join(lines),
            "generic": None if example.generic_response is None else example.generic_response.strip(),
            "response": example.response.strip(),
        }

    # ------------------------------------------------------------------ tokenisation helpers
    def _wrap(self, ids: list[int]) -> list[int]:
        """An encoder input (all special tokens) or a decoder-only prompt (leading ones only)."""
        if self.decoder_only:
            return self.special_prefix + ids
        return self.special_prefix + ids + self.special_suffix

    def _label_ids(self, ids: list[int]) -> list[int]:
        """Encoder-decoder target: the text with special tokens, minus a leading decoder-start token."""
        full = self.special_prefix + ids + self.special_suffix
        if self.decoder_start_token_id is not None and len(full) > 1 and full[0] == self.decoder_start_token_id:
            full = full[1:]
        return full

    # ------------------------------------------------------------------ collation
    def __call__(self, examples: Sequence[ResponseExample]) -> dict[str, Tensor]:
        """Tokenise a list of examples into a batch (see the module docstring for its fields)."""
        if not examples:
            raise ValueError("GRAGCollator: got an empty list of examples")
        sep = self.separator
        need_generic = self.method != "presft" or self.mode == "tst"
        parts: dict[str, list[list[int]]] = {k: [] for k in (
            "P", "H", "G", "R", "P_pre", "H_pre", "G_pre", "cue", "T_R", "T_G", "gcue")}
        for n, ex in enumerate(examples):
            if not isinstance(ex, ResponseExample):
                raise TypeError(f"GRAGCollator: item {n} is {type(ex).__name__}, expected ResponseExample")
            t = self.texts(ex, self.mode, self.max_history_turns, self.user_label, self.agent_label, sep)
            if need_generic and not t["generic"]:
                raise ValueError(
                    f"GRAGCollator: example {ex.id!r} (item {n}): field 'generic_response' is "
                    f"{'missing' if t['generic'] is None else 'empty'}; {self.method}"
                    f"{'(' + self.mode + ')' if self.method == 'presft' else ''} needs the generic response R_G "
                    "(run the GenericResponseAugmenter first)"
                )
            if self.with_targets and not t["response"]:
                raise ValueError(f"GRAGCollator: example {ex.id!r} (item {n}): field 'response' is empty")
            if self.chat:
                self._chat_parts(parts, ex, t, need_generic)
                continue
            parts["P"].append(self._tok(t["persona"])[: self.max_persona_tokens])
            parts["H"].append(self._tok(t["history"])[-self.max_history_tokens:])
            parts["P_pre"].append(self._tok(f"{self.persona_prefix} {t['persona']}")[: self.max_persona_tokens])
            parts["H_pre"].append(self._tok(sep + t["history"])[-self.max_history_tokens:])
            parts["cue"].append(self._tok(f"{sep}{self.agent_label}:"))
            if need_generic:
                parts["G"].append(self._tok(t["generic"])[: self.max_generic_tokens])
                parts["G_pre"].append(self._tok(f"{sep}{self.generic_prefix} {t['generic']}")[: self.max_generic_tokens])
                parts["T_G"].append(self._tok(self.target_prefix + t["generic"])[: self.max_generic_tokens])
                parts["gcue"].append(self._tok(f"{sep}{self.generic_prefix}"))
            if self.with_targets:
                parts["R"].append(self._tok(t["response"])[: self.max_response_tokens])
                parts["T_R"].append(self._tok(self.target_prefix + t["response"])[: self.max_response_tokens])
        return self._build(parts)

    def _clip(self, text: str, budget: int) -> str:
        """``text`` cut to its first ``budget`` tokens (decoded back to text)."""
        ids = self._tok(text)
        return text if len(ids) <= budget else self.tokenizer.decode(ids[:budget]).strip()

    def _chat_prompt(self, system: str, turns: list[dict[str, str]], budget: int) -> list[int]:
        """The chat-template prompt (ids) over ``system`` + ``turns``, the oldest turns dropped beyond ``budget``."""
        while True:
            ids = self._tok(render_chat(self.tokenizer, [{"role": "system", "content": system}, *turns]))
            if len(ids) <= budget or len(turns) <= 1:
                return ids
            turns = turns[1:]

    def _chat_parts(self, parts: dict[str, list[list[int]]], ex: ResponseExample, t: dict[str, Any],
                    need_generic: bool) -> None:
        """Chat-format pieces of one example (see the module docstring); ``cue`` holds the whole prompt."""
        sep = self.separator
        persona = self._clip(t["persona"], self.max_persona_tokens)
        generic = self._clip(t["generic"], self.max_generic_tokens) if need_generic else None
        history = ex.history if self.max_history_turns is None else ex.history[-self.max_history_turns:]
        turns = chat_turns(history, ex.agent)
        budget = self.max_persona_tokens + self.max_history_tokens + 16
        if self.method == "postgrag" and not self.persona_in_history:
            system = self.system_prompt
            budget = self.max_history_tokens + 16
        else:
            system = f"{self.system_prompt}\n{self.persona_prefix} {persona}"
            if self.method == "pregrag":
                system += f"\n{self.generic_prefix} {generic}"
                budget += self.max_generic_tokens
            elif self.mode == "tst":
                turns = [{"role": "user", "content": f"{self.generic_prefix} {generic}"}]
                budget += self.max_generic_tokens
        parts["cue"].append(self._chat_prompt(system, turns, budget))
        parts["P"].append(self._tok(persona))
        if need_generic:
            parts["G"].append(self._tok(generic))
            parts["T_G"].append(self._tok(" " + generic))
            parts["gcue"].append(self._tok(f"{sep}{self.generic_prefix}"))
        if self.with_targets:
            parts["R"].append(self._tok(t["response"])[: self.max_response_tokens])
            parts["T_R"].append(list(parts["R"][-1]))

    def _build(self, p: dict[str, list[list[int]]]) -> dict[str, Tensor]:
        """The batch from the tokenised pieces (chat format: ``p["cue"]`` holds each whole prompt)."""
        batch: dict[str, Tensor] = {}
        n = len(p["P"])
        wrap, targets = self._wrap, self.with_targets
        eos = self.end_of_turn
        if self.method in ("presft", "pregrag"):
            if self.chat:
                content = [[] for _ in range(n)]
            elif self.method == "presft" and self.mode == "hist":
                content = [p["P_pre"][i] + p["H_pre"][i] for i in range(n)]
            elif self.method == "presft":
                content = [p["P_pre"][i] + p["G_pre"][i] for i in range(n)]
            else:
                content = [p["P_pre"][i] + p["H_pre"][i] + p["G_pre"][i] for i in range(n)]
            if self.decoder_only:
                prompts = p["cue"] if self.chat else [wrap(content[i] + p["cue"][i]) for i in range(n)]
                self._add(batch, "prompt_ids", prompts, "prompt_mask")
                if targets:
                    self._add_sequences(batch, _SEQUENCE, prompts, [p["T_R"][i] + eos for i in range(n)])
            else:
                self._add(batch, "input_ids", [wrap(c) for c in content], "attention_mask")
                if targets:
                    batch["labels"] = self._pad([self._label_ids(r) for r in p["R"]], -100)
            if self.method == "pregrag":
                self._add(batch, "generic_ids", [wrap(g) for g in p["G"]], "generic_mask")
                if targets:
                    self._add(batch, "response_ids", [wrap(r) for r in p["R"]], "response_mask")
            return batch

        # PostGRAG: each source alone
        self._add(batch, "persona_ids", [wrap(x) for x in p["P"]], "persona_mask")
        if self.chat:
            history = p["cue"]
        elif self.persona_in_history:  # PreSFT(Hist)'s input: "persona: P" sep H (+ cue)
            history = [wrap(p["P_pre"][i] + p["H_pre"][i] + (p["cue"][i] if self.decoder_only else []))
                       for i in range(n)]
        else:
            history = [wrap(p["H"][i] + (p["cue"][i] if self.decoder_only else [])) for i in range(n)]
        self._add(batch, "history_ids", history, "history_mask")
        self._add(batch, "generic_ids", [wrap(x) for x in p["G"]], "generic_mask")
        if targets:
            self._add(batch, "response_ids", [wrap(x) for x in p["R"]], "response_mask")
            if self.decoder_only:
                self._add_sequences(batch, _SEQUENCE, history, [p["T_R"][i] + eos for i in range(n)])
                gprompts = [wrap(p["R"][i] + p["gcue"][i]) for i in range(n)]
                self._add_sequences(batch, _GENERIC_SEQUENCE, gprompts, [p["T_G"][i] + eos for i in range(n)])
            else:
                batch["labels"] = self._pad([self._label_ids(r) for r in p["R"]], -100)
                batch["generic_labels"] = self._pad([self._label_ids(g) for g in p["G"]], -100)
        return batch

    def __repr__(self) -> str:
        return (f"GRAGCollator(method={self.method!r}, mode={self.mode!r}, architecture={self.architecture!r}, "
                f"prompt_format={self.prompt_format!r}, separator={self.separator!r}"
                + (", persona_in_history=True" if self.persona_in_history else "") + ")")
