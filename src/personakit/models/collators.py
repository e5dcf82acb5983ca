r"""Collators shared by the families: the tokenising base and the one causal-LM convention.

* :func:`probe_special_tokens`: the special tokens a tokenizer puts around a text
  (BART ``<s> … </s>``, T5 ``… </s>``, BERT ``[CLS] … [SEP]``, Llama ``<bos> …``);
* :class:`TokenCollator`: the tokenizer, its pad and EOS ids, tokenising without special
  tokens and right padding (the base of every collator, GRAG's included);
* :class:`CausalLMCollator`: prompt + response rows for a decoder-only LM, the convention
  of :class:`~personakit.models.questioner.QuestionerCollator` and
  :class:`~personakit.models.copersona.CoPersonaCollator`.

The causal-LM convention
    * **prompt**: ``prompt_text(example)`` tokenised without special tokens, cut to its
      **last** ``max_prompt_tokens`` tokens (the end of a conversation matters most), and
      preceded by the tokenizer's leading special tokens (BOS where it adds one;
      ``add_special_prefix=False`` leaves them out);
    * **target**: ``target_prefix + response`` tokenised, cut to its **first**
      ``max_response_tokens`` tokens, **then** EOS (so a target has at most
      ``max_response_tokens + 1`` tokens);
    * **batch keys** (``LongTensor``, right-padded with the pad id; masks 1/0):
      ``prompt_ids``, ``prompt_mask`` (the prompt alone, for ``generate``) always;
      ``input_ids``, ``attention_mask`` (prompt + target) and ``labels`` (``-100`` on the
      prompt and the padding) when ``with_targets``; then the family's extras
      (:meth:`CausalLMCollator.extras`).

Example:
    A family's collator only writes its prompt (and its extra fields)::

        class LastTurn(CausalLMCollator):
            def prompt_text(self, example):
                return example.history[-1].text

        batch = LastTurn(tokenizer, max_prompt_tokens=128)(examples)
        # prompt_ids, prompt_mask, input_ids, attention_mask, labels
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from torch import Tensor

from personakit.models.padding import pad_rows
from personakit.types import ResponseExample

__all__ = ["probe_special_tokens", "TokenCollator", "CausalLMCollator"]


def probe_special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Special tokens the tokenizer puts before and after a text (e.g. ``[0]``, ``[2]`` for BART).

    Returns:
        ``(prefix, suffix)`` token ids; both empty when the tokenizer adds none.
    """
    probe = "hello world"
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    return [], []


class TokenCollator:
    """Base of the collators: the tokenizer, its pad / EOS ids and special tokens, tokenising and padding.

    Args:
        tokenizer: a transformers tokenizer.
        with_targets: include the fields derived from the response (training); ``False``
            for inference.
        pad_falls_back_to_eos: use EOS as the pad id when the tokenizer has no pad token
            (decoder-only LMs often have none).
        needs_eos: the tokenizer must have an EOS token (it ends decoder-only targets).
    """

    def __init__(self, tokenizer: Any, with_targets: bool = True, pad_falls_back_to_eos: bool = True,
                 needs_eos: bool = True):
        name = type(self).__name__
        pad = getattr(tokenizer, "pad_token_id", None)
        eos = getattr(tokenizer, "eos_token_id", None)
        if pad is None and pad_falls_back_to_eos:
            pad = eos
        if pad is None:
            raise ValueError(f"{name}: the tokenizer has no pad token (set tokenizer.pad_token)")
        if needs_eos and eos is None:
            raise ValueError(f"{name}: the tokenizer needs an eos token to end the targets")
        self.tokenizer = tokenizer
        self.with_targets = with_targets
        self.pad_token_id: int = int(pad)
        self.eos_token_id: Optional[int] = None if eos is None else int(eos)
        self.special_prefix, self.special_suffix = probe_special_tokens(tokenizer)

    def _tok(self, text: str) -> list[int]:
        """``text`` tokenised without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @staticmethod
    def _pad(rows: Sequence[Sequence[int]], value: int) -> Tensor:
        return pad_rows(rows, value)

    def _add(self, batch: dict[str, Tensor], name: str, rows: Sequence[Sequence[int]],
             mask_name: Optional[str]) -> None:
        """``batch[name]`` = the rows padded with the pad id; ``batch[mask_name]`` = their mask."""
        batch[name] = pad_rows(rows, self.pad_token_id)
        if mask_name is not None:
            batch[mask_name] = pad_rows([[1] * len(r) for r in rows], 0)

    def _add_sequences(self, batch: dict[str, Tensor], names: tuple[str, str, str], prompts: Sequence[list[int]],
                       targets: Sequence[list[int]]) -> None:
        """Decoder-only prompt + target rows as ``names = (ids, mask, labels)``, labels on the target only."""
        self._add(batch, names[0], [p + t for p, t in zip(prompts, targets)], names[1])
        batch[names[2]] = pad_rows([[-100] * len(p) + t for p, t in zip(prompts, targets)], -100)


class CausalLMCollator(TokenCollator):
    """Prompt + response batches for a decoder-only LM (the convention in the module docstring).

    Subclasses implement :meth:`prompt_text` and may add fields with :meth:`extras`.

    Args:
        tokenizer: the LM's tokenizer (pad falls back to EOS; EOS required).
        max_prompt_tokens: the prompt keeps its last this many tokens.
        max_response_tokens: the response keeps its first this many tokens; EOS follows.
        with_targets: include ``input_ids``, ``attention_mask`` and ``labels``.
        target_prefix: put before the response text (``" "``: the space after the cue).
        add_special_prefix: start the prompt with the tokenizer's leading special tokens.
    """

    def __init__(self, tokenizer: Any, max_prompt_tokens: int = 256, max_response_tokens: int = 64,
                 with_targets: bool = True, target_prefix: str = " ", add_special_prefix: bool = True):
        name = type(self).__name__
        for field, value in (("max_prompt_tokens", max_prompt_tokens), ("max_response_tokens", max_response_tokens)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {field} must be an integer >= 1, got {value!r}")
        super().__init__(tokenizer, with_targets=with_targets)
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_tokens = max_response_tokens
        self.target_prefix = target_prefix
        self.add_special_prefix = add_special_prefix

    def prompt_text(self, example: ResponseExample) -> str:
        """The prompt of an example (implemented by the family)."""
        raise NotImplementedError

    def prompt_ids(self, example: ResponseExample) -> list[int]:
        """The prompt's token ids: its last ``max_prompt_tokens`` tokens after the leading special tokens."""
        ids = self._tok(self.prompt_text(example))[-self.max_prompt_tokens:]
        return (self.special_prefix + ids) if self.add_special_prefix else ids

    def target_ids(self, example: ResponseExample) -> list[int]:
        """The target's token ids: the first ``max_response_tokens`` tokens of the response, then EOS."""
        return self._tok(self.target_prefix + example.response.strip())[: self.max_response_tokens] + [
            int(self.eos_token_id)]  # type: ignore[arg-type]

    def extras(self, examples: Sequence[ResponseExample]) -> dict[str, Tensor]:
        """The family's extra fields of a batch (none here)."""
        return {}

    def __call__(self, examples: Sequence[ResponseExample]) -> dict[str, Tensor]:
        """Tokenise a list of examples into a batch (keys in the module docstring)."""
        if not examples:
            raise ValueError(f"{type(self).__name__}: got an empty list of examples")
        prompts = [self.prompt_ids(ex) for ex in examples]
        batch: dict[str, Tensor] = {}
        self._add(batch, "prompt_ids", prompts, "prompt_mask")
        if self.with_targets:
            targets = [self.target_ids(ex) for ex in examples]
            self._add_sequences(batch, ("input_ids", "attention_mask", "labels"), prompts, targets)
        batch.update(self.extras(examples))
        return batch
