"""Decoding generated token ids back to text, the same way for every tokenizer family."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["decode_batch", "needs_space_cleanup"]


def needs_space_cleanup(tokenizer: Any) -> bool:
    """Whether ``tokenizer``'s plain decode leaves spaces around punctuation (``"i ' m"``).

    WordPiece tokenizers (BERT, MiniLM, ...) decode by joining tokens with spaces, so
    ``"I'm fine."`` comes back as ``"i ' m fine ."`` unless
    ``clean_up_tokenization_spaces`` is on, which transformers 5 no longer does by
    default.  Byte-level BPE (GPT-2, Llama, SmolLM2) and SentencePiece tokenizers keep
    the original spacing and must not be cleaned up.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is not None:
        return type(decoder).__name__ == "WordPiece"
    return "bert" in type(tokenizer).__name__.lower()


def decode_batch(tokenizer: Any, sequences: Any, skip_special_tokens: bool = True) -> list[str]:
    """``tokenizer.batch_decode`` with spacing repaired for WordPiece tokenizers, stripped.

    Args:
        tokenizer: a transformers tokenizer.
        sequences: ``[B, T]`` token ids (tensor or nested lists).
        skip_special_tokens: drop padding, BOS/EOS, [CLS]/[SEP], ...

    Returns:
        One string per row.

    Example:
        >>> from transformers import BertTokenizerFast  # doctest: +SKIP
        >>> decode_batch(bert_tokenizer, bert_tokenizer(["I'm fine."])["input_ids"])  # doctest: +SKIP
        ["i'm fine."]
    """
    rows: Sequence[Any] = sequences.tolist() if hasattr(sequences, "tolist") else sequences
    texts = tokenizer.batch_decode(rows, skip_special_tokens=skip_special_tokens,
                                   clean_up_tokenization_spaces=needs_space_cleanup(tokenizer))
    return [t.strip() for t in texts]
