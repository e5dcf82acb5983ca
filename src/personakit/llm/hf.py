"""Batched generation with a local Hugging Face causal language model."""

from __future__ import annotations

from typing import Any, Optional

from personakit.llm.base import (
    GenerationSettings,
    Prompt,
    TextGenerator,
    messages_to_text,
    prompt_to_messages,
)
from personakit.llm.prefix_cache import PrefixCacheEngine
from personakit.backbones.compat import cache_argument

__all__ = ["HFGenerator"]


def _engine_setting(name: str, cast: Any, doc: str) -> Any:
    """A property of :class:`HFGenerator` kept on (read from and written to) its ``prefix_engine``."""
    return property(lambda self: getattr(self.prefix_engine, name),
                    lambda self, value: setattr(self.prefix_engine, name, cast(value)), doc=doc)


PLAIN_TEXT_SUFFIX = ":plain-text"
"""Appended to an :class:`HFGenerator`'s ``model_id`` when a chat model is prompted with plain text."""


class HFGenerator(TextGenerator):
    """A local Hugging Face causal LM (GPT-2, Llama, Qwen, SmolLM, ...) behind :class:`TextGenerator`.

    Each prompt is rendered with the tokenizer's chat template (a string prompt becomes a
    single user message) and a generation prompt is appended; a tokenizer without a chat
    template gets a plain-text rendering (``"User: ...\\n\\nAssistant:"``, a string prompt
    is used as is).  Prompts are sorted by token length so that each batch holds prompts
    of similar length (less padding), left-padded, generated under
    ``torch.inference_mode()`` and returned in the input order with the prompt removed.

    **Shared prefix.** Prompts built from one template share their first tokens (the
    system message, the instructions).  With ``share_prefix=True`` (default) the longest
    token prefix common to a batch (at least ``min_shared_prefix`` tokens) is run through
    the model once, its key/value cache is repeated over the batch, and only the rest of
    each prompt is prefilled, left-padded *after* the prefix (positions come from the
    attention mask, so each prompt sees the same positions as unpadded).  On a CPU, where
    prefilling is compute-bound, this removes most of a templated batch's prefill cost.
    Outputs equal the unshared run's up to floating-point ties.

    **Prompts that share more.** Past that batch-wide prefix, prompts often share a longer
    part with one another: the prompts of successive turns of one dialogue repeat the
    history of the earlier turns.  A prompt that agrees with a longer prompt of its batch
    for at least ``min_shared_prefix`` more tokens takes those tokens' keys and values from
    that prompt's prefill and prefills only the rest (:meth:`branch_points`), and the
    batches are formed so that such prompts travel together (:meth:`_batch_order`).  On
    the built-in corpus this cuts the prefilled tokens by a third.

    **Prefill in smaller batches.** On a CPU the prompt pass is compute-bound (padding
    costs as much as tokens) while a decoding step gets cheaper per row the more rows it
    carries.  With ``prefill_batch_size`` smaller than ``batch_size``, each batch's prompts
    (already sorted by length) are prefilled in sub-batches of ``prefill_batch_size``,
    each left-padded only to its own longest prompt; their key/value caches are merged
    (padding between the shared prefix and the rest of each prompt, masked) and all
    ``batch_size`` rows decode together in a cache reserved for the new tokens up front.

    The prompt pass is the work of a
    :class:`~personakit.llm.prefix_cache.PrefixCacheEngine` (attribute ``prefix_engine``,
    which holds the settings above); this class renders, tokenises, generates and decodes.

    Greedy decoding (``temperature == 0``) gives the same output whatever the batch
    size (up to floating-point ties); sampling seeds every batch with ``settings.seed``
    inside a forked RNG, so a rerun with the same prompts, settings and batch size
    reproduces the output and the global torch RNG is left untouched.

    Args:
        model: a causal LM (``AutoModelForCausalLM``), in eval mode.
        tokenizer: its tokenizer.
        batch_size: prompts per forward pass.
        model_id: name used in cache keys; defaults to the model's ``name_or_path``.  When
            the tokenizer has a chat template but ``use_chat_template=False``, ``":plain-text"``
            is appended, so a response cache never serves a chat-template completion for the
            same prompt sent as plain text (or the other way round).
        use_chat_template: ``True`` forces the chat template (error if there is none),
            ``False`` forces plain text, ``None`` uses the template when there is one.
        max_input_tokens: keep at most this many prompt tokens (the *end* of the prompt,
            where the latest turn is); ``None`` keeps all.
        share_prefix: encode the token prefix shared by a batch once (see above).
        min_shared_prefix: shortest shared prefix worth encoding separately (also the
            fewest tokens a prompt must share with a longer one to reuse its prefill).
        reuse_prefill: let a prompt reuse the prefill of a longer prompt of its batch
            (see above; needs ``share_prefix``; off by itself for models whose cache keeps
            only a sliding window of positions in some layer).
        prefill_batch_size: prompts per prompt pass when smaller than ``batch_size``
            (see above); ``None`` prefills each batch at once.

    Example:
        >>> gen = HFGenerator.from_pretrained("smollm2")  # doctest: +SKIP
        >>> gen.generate(["Say hi."], {"max_new_tokens": 8})  # doctest: +SKIP
        ['Hi! How can I help you today?']
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 16,
        model_id: Optional[str] = None,
        use_chat_template: Optional[bool] = None,
        max_input_tokens: Optional[int] = None,
        share_prefix: bool = True,
        min_shared_prefix: int = 16,
        prefill_batch_size: Optional[int] = None,
        reuse_prefill: bool = True,
    ):
        if model_id is None:
            model_id = (
                getattr(model, "name_or_path", None)
                or getattr(getattr(model, "config", None), "_name_or_path", None)
                or type(model).__name__
            )
        has_template = bool(getattr(tokenizer, "chat_template", None))
        model_id = str(model_id)
        if has_template and use_chat_template is False and not model_id.endswith(PLAIN_TEXT_SUFFIX):
            model_id += PLAIN_TEXT_SUFFIX  # a different prompt format: never the same cache entries
        super().__init__(model_id=model_id, batch_size=batch_size)
        if use_chat_template and not has_template:
            raise ValueError(f"use_chat_template=True but the tokenizer of {self.model_id!r} has no chat template")
        if max_input_tokens is not None and max_input_tokens < 1:
            raise ValueError(f"max_input_tokens must be >= 1 or None, got {max_input_tokens}")
        self.model = model
        self.tokenizer = tokenizer
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template
        self.max_input_tokens = max_input_tokens
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        if pad is None:
            raise ValueError(f"the tokenizer of {self.model_id!r} has neither a pad token nor an eos token")
        self.prefix_engine = PrefixCacheEngine(
            model,
            int(pad),
            share_prefix=share_prefix,
            min_shared_prefix=min_shared_prefix,
            reuse_prefill=reuse_prefill,
            prefill_batch_size=prefill_batch_size,
        )

    # the prompt-pass settings live on the engine
    share_prefix = _engine_setting("share_prefix", bool, "Encode the token prefix shared by a batch once.")
    min_shared_prefix = _engine_setting("min_shared_prefix", int, "Shortest shared prefix worth its own pass.")
    reuse_prefill = _engine_setting("reuse_prefill", bool, "Reuse the prefill of a longer prompt of the batch.")
    prefill_batch_size = _engine_setting("prefill_batch_size", lambda v: v, "Prompts per prompt pass (None: all).")
    pad_token_id = _engine_setting("pad_token_id", int, "The id written in padded positions.")

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        dtype: Any = None,
        device: Any = None,
        **kwargs: Any,
    ) -> "HFGenerator":
        """Load a causal LM with :func:`personakit.backbones.load_causal_lm` and wrap it.

        Args:
            name_or_path: an embedded model name or alias (``"smollm2"``), a local
                folder, or a hub id.
            dtype: ``None`` (fp32), a dtype or its name (``"bfloat16"``), or ``"auto"``: bf16
                where ``device`` has a native bf16 path (a GPU with bf16, a CPU with AMX or
                AVX512-BF16), fp32 elsewhere (:func:`personakit.backbones.resolve_dtype`;
                ``$PERSONAKIT_DTYPE`` overrides what ``"auto"`` picks).  Greedy outputs in
                bf16 can differ from fp32 ones where two tokens' logits are close.
            device: where the model runs (``None``: the CPU).
            **kwargs: passed to the constructor (``batch_size``, ``model_id``, ...).
        """
        from personakit.backbones import load_causal_lm

        model, tokenizer = load_causal_lm(name_or_path, dtype=dtype, device=device)
        model.eval()
        kwargs.setdefault("model_id", str(name_or_path))
        return cls(model, tokenizer, **kwargs)

    # ------------------------------------------------------------- rendering
    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the model for ``prompt``."""
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(
                prompt_to_messages(prompt), tokenize=False, add_generation_prompt=True
            )
        return messages_to_text(prompt)

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of the rendered prompt (truncated on the left to ``max_input_tokens``)."""
        text = self.render(prompt)
        # a chat template already writes the special tokens it needs
        ids = self.tokenizer(text, add_special_tokens=not self.use_chat_template)["input_ids"]
        if self.max_input_tokens is not None and len(ids) > self.max_input_tokens:
            ids = ids[-self.max_input_tokens:]
        return list(ids)

    def _batch_order(self, prompts: list[Prompt]) -> list[int]:
        """Longest first, keeping prompts that share a prefix beyond the common one together.

        See :meth:`PrefixCacheEngine.batch_order`: prompts of one group (the turns of one
        dialogue, say) run in one batch so that it can prefill their common part once;
        without such groups this is a plain sort by length, longest first (the slowest
        batch runs first, so a progress bar's estimate is pessimistic).
        """
        return self.prefix_engine.batch_order([self.encode(p) for p in prompts])

    def shared_prefix_length(self, encoded: list[list[int]]) -> int:
        """Tokens of the prefix common to ``encoded`` that a batch encodes once (0: none).

        At least one token of every prompt is left after the prefix (generation needs it),
        and a prefix shorter than ``min_shared_prefix`` is not worth a separate pass
        (:meth:`PrefixCacheEngine.shared_prefix_length`).
        """
        return self.prefix_engine.shared_prefix_length(encoded)

    def branch_points(self, encoded: list[list[int]]) -> list[tuple[int, int]]:
        """For each prompt, the prompt of the batch whose prefill it reuses and how many tokens.

        Returns ``(source, reused)`` per prompt, ``(i, 0)`` for a prompt prefilled in full
        (:meth:`PrefixCacheEngine.branch_points`).
        """
        return self.prefix_engine.branch_points(encoded)

    def prefill(self, prompts: list[Prompt]) -> Any:
        """Run only the prompt pass that generating ``prompts`` as one batch starts with.

        The prompt pass is the one generation runs (the shared prefix once, the part that
        prompts of one group share once, in sub-batches of ``prefill_batch_size``); nothing
        is decoded.  Returns the logits of each prompt's next token ``[B, V]`` (float, on
        the model's device).  Useful to score a next token, and to measure how much of a
        batched generation's time is the prompt pass, which no batch size can shrink on a
        compute-bound device (see ``benchmarks/``).
        """
        if not prompts:
            raise ValueError("prefill needs at least one prompt")
        return self.prefix_engine.prefill_logits([self.encode(p) for p in prompts])

    # ------------------------------------------------------------ generation
    def _generate_batch(self, prompts: list[Prompt], settings: GenerationSettings) -> list[str]:
        import torch

        device = self.prefix_engine.device
        encoded = [self.encode(p) for p in prompts]
        input_ids, attention_mask, cache = self.prefix_engine.prepare(encoded, settings.max_new_tokens)
        width = input_ids.shape[1]
        kwargs: dict[str, Any] = dict(
            max_new_tokens=settings.max_new_tokens,
            pad_token_id=self.pad_token_id,
            do_sample=settings.do_sample,
        )
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or 0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if settings.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = settings.repetition_penalty
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is not None:
            kwargs["eos_token_id"] = eos

        with torch.inference_mode(), torch.random.fork_rng(devices=_cuda_devices(device)):
            if settings.do_sample:
                torch.manual_seed(settings.seed)
            if cache is not None:
                kwargs[cache_argument(self.model)] = cache
            out = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs
            )  # (B, T + new)
        new_tokens = out[:, width:].cpu()  # (B, new)
        return [self.tokenizer.decode(row.tolist(), skip_special_tokens=True) for row in new_tokens]

    def __repr__(self) -> str:
        return (
            f"HFGenerator(model_id={self.model_id!r}, batch_size={self.batch_size}, "
            f"use_chat_template={self.use_chat_template})"
        )


def _cuda_devices(device: Any) -> list[int]:
    if getattr(device, "type", None) == "cuda":
        return [device.index or 0]
    return []
