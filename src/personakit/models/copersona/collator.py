r"""Prompts and batches of CoPersona: :func:`build_copersona_prompt`, :class:`CoPersonaCollator`."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from personakit.models.collators import CausalLMCollator
from personakit.models.copersona.config import CoPersonaConfig
from personakit.models.copersona.context import CoPersonaContext
from personakit.types import ResponseExample

__all__ = ["build_copersona_prompt", "CoPersonaCollator"]


def build_copersona_prompt(example: ResponseExample, config: CoPersonaConfig, context: Optional[CoPersonaContext],
                           retriever: Any = None, count_tokens: Any = None) -> str:
    """The text prompt of ``example`` for ``config.variant`` (sections in the module docstring's order)."""
    from personakit.retrieval.neighbors import _truncate

    count = count_tokens or (lambda t: len(t.split()))
    parts = ["Continue the conversation as the user would, in their own voice."]
    user = example.user_id
    if context is not None and user is not None:
        if config.uses_history and user in context.histories and context.histories[user].items:
            from personakit.retrieval.bm25 import BM25Retriever

            retriever = retriever or BM25Retriever()
            query = example.history[-1].text if example.history else ""
            hits = retriever.retrieve(query, context.histories[user], k=config.retrieval_k)
            lines = [f"- {_truncate(' '.join(h.text.split()), config.max_item_tokens, count)}" for h in hits]
            parts.append("[The user's earlier messages]\n" + "\n".join(lines))
        if config.uses_profile_summary and context.profile_summary.get(user):
            parts.append("[The user's profile]\n" + context.profile_summary[user])
        if config.uses_peer_context and context.peer_context.get(user):
            parts.append("[Similar users]\n" + context.peer_context[user])
    convo = "\n".join(f"{t.speaker.capitalize()}: {' '.join(t.text.split())}" for t in example.history)
    parts.append("[Conversation]\n" + convo)
    parts.append(f"{example.agent.capitalize()}:")
    return "\n\n".join(parts)


class CoPersonaCollator(CausalLMCollator):
    """Examples → CoPersona batches (the causal-LM convention of :mod:`personakit.models.collators`).

    The prompt (:func:`build_copersona_prompt`) keeps its last ``config.max_prompt_tokens``
    tokens and gets no special tokens (the soft prompt, when there is one, comes first); the
    target is `` response``, at most ``config.max_response_tokens`` tokens, then EOS.  Keys:
    ``prompt_ids``, ``prompt_mask``; with targets ``input_ids``, ``attention_mask``,
    ``labels`` (``-100`` on the prompt and padding); and ``user_index`` ``[B]``, each example's
    row in the context's graph (``-1`` without a soft prompt).

    Args:
        tokenizer: the LM's tokenizer.
        config: the model's :class:`~personakit.models.copersona.CoPersonaConfig`.
        context: the users' :class:`~personakit.models.copersona.CoPersonaContext` (``None``: no
            retrieved history, peer context or soft prompt).
        with_targets: include the target fields.
    """

    def __init__(self, tokenizer: Any, config: CoPersonaConfig, context: Optional[CoPersonaContext],
                 with_targets: bool = True):
        from personakit.retrieval.bm25 import BM25Retriever

        super().__init__(tokenizer, max_prompt_tokens=config.max_prompt_tokens,
                         max_response_tokens=config.max_response_tokens, with_targets=with_targets,
                         add_special_prefix=False)
        self.config, self.context = config, context
        self.retriever = BM25Retriever()

    def _count(self, text: str) -> int:
        return len(self._tok(text))

    def prompt_text(self, example: ResponseExample) -> str:
        """The prompt of ``example`` (:func:`build_copersona_prompt`)."""
        return build_copersona_prompt(example, self.config, self.context, self.retriever, self._count)

    prompt = prompt_text

    def extras(self, examples: Sequence[ResponseExample]) -> dict[str, Tensor]:
        """``user_index`` ``[B]``."""
        soft = self.context is not None and self.config.uses_soft_prompt
        users = [self.context.index(ex.user_id) if soft else -1 for ex in examples]  # type: ignore[union-attr]
        return {"user_index": torch.tensor(users, dtype=torch.long)}
