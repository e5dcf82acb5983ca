r"""Batches of the dual-tower responder: :class:`QuestionerCollator`."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from personakit.models.collators import CausalLMCollator
from personakit.modules.question_clusterer import CLUSTER_KEY
from personakit.types import ResponseExample

__all__ = ["QuestionerCollator"]


class QuestionerCollator(CausalLMCollator):
    r"""Tokenise :class:`~personakit.types.ResponseExample` s for a
    :class:`~personakit.models.questioner.DualTowerResponder`.

    Prompt (decoder-only): optional ``"persona: P"`` line (``include_persona``; ``P`` is
    ``example.persona``), then the last ``max_history_turns`` turns, one line each,
    ``"{user_label}: text"`` for the questioner's turns and ``"{agent_label}: text"`` for
    the responder's, then the cue ``"{agent_label}:"``.  Prompt truncation, target
    (``" " + response``, at most ``max_response_tokens`` tokens, then EOS) and the keys
    ``prompt_ids``, ``prompt_mask``, ``input_ids``, ``attention_mask``, ``labels`` follow the
    causal-LM convention of :mod:`personakit.models.collators`.

    Extra fields: ``questioner_ids`` ``[B]`` (the example's ``questioner_id`` through
    ``questioner_index``; 0 when unknown or missing) and ``cluster_ids`` ``[B]``
    (``metadata["question_cluster"]``, 0 when missing).

    Args:
        tokenizer: the backbone's tokenizer (pad falls back to EOS).
        questioner_index: ``{questioner id: index}`` (``DualTowerConfig.questioner_index()``).
        max_prompt_tokens: the prompt keeps its last this many tokens.
        max_response_tokens: the response keeps its first this many tokens.
        max_history_turns: keep the last this many turns (``None``: all).
        include_persona: put ``example.persona`` in the prompt.
        user_label: role name of the questioner's turns in the prompt.
        agent_label: role name of the responder's turns and the cue.
        with_targets: include the target fields.
    """

    def __init__(self, tokenizer: Any, questioner_index: Mapping[str, int], max_prompt_tokens: int = 256,
                 max_response_tokens: int = 64, max_history_turns: Optional[int] = None,
                 include_persona: bool = False, user_label: str = "user", agent_label: str = "agent",
                 with_targets: bool = True):
        if max_history_turns is not None and max_history_turns < 1:
            raise ValueError(f"QuestionerCollator: max_history_turns must be >= 1 or None, got {max_history_turns}")
        super().__init__(tokenizer, max_prompt_tokens=max_prompt_tokens, max_response_tokens=max_response_tokens,
                         with_targets=with_targets)
        self.questioner_index = dict(questioner_index)
        self.max_history_turns = max_history_turns
        self.include_persona = include_persona
        self.user_label = user_label
        self.agent_label = agent_label

    def prompt_text(self, example: ResponseExample) -> str:
        """The prompt of an example (see the class docstring)."""
        history = example.history if self.max_history_turns is None else example.history[-self.max_history_turns:]
        lines = []
        if self.include_persona:
            lines.append(f"persona: {example.persona.to_text() or '(none)'}")
        lines += [f"{self.agent_label if t.speaker == example.agent else self.user_label}: {' '.join(t.text.split())}"
                  for t in history]
        lines.append(f"{self.agent_label}:")
        return "\n".join(lines)

    def extras(self, examples: Sequence[ResponseExample]) -> dict[str, Tensor]:
        """``questioner_ids`` and ``cluster_ids``, ``[B]`` each."""
        qids = [self.questioner_index.get(ex.questioner_id, 0) if ex.questioner_id is not None else 0
                for ex in examples]
        cids = [int(ex.metadata.get(CLUSTER_KEY, 0)) for ex in examples]
        return {"questioner_ids": torch.tensor(qids, dtype=torch.long),
                "cluster_ids": torch.tensor(cids, dtype=torch.long)}
