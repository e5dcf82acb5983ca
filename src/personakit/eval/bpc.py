"""Bits per character (BPC): a language model's code length of the references, per character.

Perplexity depends on the tokenizer (a model with longer tokens has fewer, harder
predictions); dividing the total negative log-likelihood in bits by the number of
*characters* makes the number comparable across tokenizers (GRAG §5).
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Literal, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["bits_per_character", "reference_log_likelihoods", "model_bits_per_character"]

LogLikelihood = Union[float, Sequence[float], "torch.Tensor"]


def _total(ll: LogLikelihood, i: int) -> float:
    if hasattr(ll, "detach"):  # a torch tensor (torch is not imported here, to keep this module light)
        value = float(ll.detach().double().sum())
    elif isinstance(ll, numbers.Real):
        value = float(ll)
    else:
        try:
            value = math.fsum(float(x) for x in ll)
        except TypeError as err:
            raise TypeError(f"bits_per_character: log-likelihood {i} is {type(ll).__name__}; "
                            "expected a float or a sequence of per-token floats") from err
    if math.isnan(value) or value > 1e-6:
        raise ValueError(f"bits_per_character: log-likelihood {i} is {value}; natural-log likelihoods must be <= 0 "
                         "(pass log-probabilities, not losses)")
    return value


def bits_per_character(token_log_likelihoods: Sequence[LogLikelihood], texts: Sequence[str],
                       reduction: Literal["corpus", "mean"] = "corpus") -> float:
    r"""Bits per character from natural-log likelihoods.

    $$\mathrm{BPC} = \frac{-\sum_i \log p(x_i)}{\ln 2 \cdot \sum_i |x_i|},$$

    where $\log p(x_i)$ is the natural-log likelihood of text $x_i$ (the sum of its
    token log-probabilities) and $|x_i|$ its number of characters (Unicode code
    points, spaces included).  ``reduction="corpus"`` (default) divides the total
    over all texts by the total number of characters, i.e. the average code length
    of a character of the corpus; ``"mean"`` averages the per-text BPC instead.

    Args:
        token_log_likelihoods: Per text, either its total natural-log likelihood (a
            float) or its per-token log-probabilities (a list or tensor, summed).
        texts: The texts, for their character counts.
        reduction: ``"corpus"`` or ``"mean"``.

    Returns:
        BPC (lower is better).

    Example:
        >>> round(bits_per_character([[-math.log(2)] * 4], ["abcd"]), 6)  # 1 bit per token, 1 char per token
        1.0
        >>> round(bits_per_character([-2 * math.log(2), 0.0], ["ab", "cd"]), 6)  # 2 bits over 4 characters
        0.5
    """
    if isinstance(texts, str):
        raise TypeError("bits_per_character: texts must be a sequence of strings, not a single string")
    if len(token_log_likelihoods) != len(texts):
        raise ValueError(f"bits_per_character: {len(token_log_likelihoods)} log-likelihoods but {len(texts)} texts")
    if len(texts) == 0:
        raise ValueError("bits_per_character: empty input (no texts)")
    if reduction not in ("corpus", "mean"):
        raise ValueError(f"bits_per_character: reduction must be 'corpus' or 'mean', got {reduction!r}")
    totals = [_total(ll, i) for i, ll in enumerate(token_log_likelihoods)]
    lengths = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"bits_per_character: text {i} is {type(t).__name__}; expected a string")
        lengths.append(len(t))
    if reduction == "corpus":
        n_chars = sum(lengths)
        if n_chars == 0:
            raise ValueError("bits_per_character: every text is empty; BPC is undefined")
        return -math.fsum(totals) / (math.log(2) * n_chars)
    for i, n in enumerate(lengths):
        if n == 0:
            raise ValueError(f"bits_per_character: text {i} is empty; its BPC is undefined (use reduction='corpus')")
    return sum(-ll / (math.log(2) * n) for ll, n in zip(totals, lengths)) / len(lengths)


def _pad(seqs: list[list[int]], value: int) -> "torch.Tensor":
    import torch

    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def reference_log_likelihoods(model: Any, tokenizer: Any, references: Sequence[str],
                              contexts: Sequence[str] | None = None, batch_size: int = 8,
                              append_eos: bool = False) -> list[float]:
    r"""Natural-log likelihood of each reference under a Hugging Face language model.

    *Causal LMs*: the input is ``[BOS] + context tokens + reference tokens`` (each
    part tokenised on its own, without special tokens, so the reference's tokens do
    not depend on the context); only the reference tokens (plus EOS when
    ``append_eos``) are scored, $\sum_t \log p(y_t \mid \text{BOS}, c, y_{<t})$.
    Without a BOS token the tokenizer's EOS starts the sequence (GPT-2 style).  Put any
    separator (a space, a newline, a chat template) into the context yourself.

    *Seq2seq models* (``model.config.is_encoder_decoder``): the encoder reads the
    context (an empty string when there is none) and the labels are the tokenizer's
    encoding of the reference *with* its special tokens, exactly the tokens a
    seq2seq training loss counts.

    Batches are right-padded; the model is put in eval mode during scoring (and
    restored afterwards) so dropout does not change the result.

    Args:
        model: A ``transformers`` causal LM or encoder-decoder LM.
        tokenizer: Its tokenizer.
        references: Texts to score.
        contexts: Optional prompt per reference, conditioned on but not scored.
        batch_size: References per forward pass.
        append_eos: Causal LMs only: also score an EOS token after the reference.

    Returns:
        One log-likelihood (natural log, $\le 0$) per reference.
    """
    if isinstance(references, str):
        raise TypeError("model_bits_per_character: references must be a sequence of strings, not a single string")
    references = list(references)
    if not references:
        raise ValueError("model_bits_per_character: empty input (no references)")
    if contexts is not None:
        if isinstance(contexts, str):
            raise TypeError("model_bits_per_character: contexts must be a sequence of strings, not a single string")
        contexts = list(contexts)
        if len(contexts) != len(references):
            raise ValueError(f"model_bits_per_character: {len(references)} references but {len(contexts)} contexts")
    if batch_size < 1:
        raise ValueError(f"model_bits_per_character: batch_size must be >= 1, got {batch_size}")
    for i, r in enumerate(references):
        if not isinstance(r, str):
            raise TypeError(f"model_bits_per_character: reference {i} is {type(r).__name__}; expected a string")

    import torch

    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out: list[float] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(references), batch_size):
                refs = references[start:start + batch_size]
                ctxs = contexts[start:start + batch_size] if contexts is not None else [""] * len(refs)
                if seq2seq:
                    out.extend(_seq2seq_batch(model, tokenizer, refs, ctxs, pad_id, device, start))
                else:
                    out.extend(_causal_batch(model, tokenizer, refs, ctxs, pad_id, device, start, append_eos))
    finally:
        model.train(was_training)
    return out


def _causal_batch(model, tokenizer, refs, ctxs, pad_id, device, offset, append_eos) -> list[float]:
    import torch

    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    seqs, first, lasts = [], [], []
    for k, (ref, ctx) in enumerate(zip(refs, ctxs)):
        prefix = ([start_id] if start_id is not None else []) + (_encode(tokenizer, ctx, False) if ctx else [])
        target = _encode(tokenizer, ref, False)
        if append_eos:
            if tokenizer.eos_token_id is None:
                raise ValueError("model_bits_per_character: append_eos=True but the tokenizer has no EOS token")
            target = target + [tokenizer.eos_token_id]
        if not prefix:
            raise ValueError(f"model_bits_per_character: reference {offset + k}: the tokenizer has neither a BOS nor "
                             "an EOS token and there is no context, so the first reference token cannot be scored")
        seqs.append(prefix + target)
        first.append(len(prefix))  # position of the first scored token
        lasts.append(len(prefix) + len(target))
    input_ids = _pad(seqs, pad_id).to(device)  # (B, T)
    mask = torch.zeros_like(input_ids)
    for i, n in enumerate(lasts):
        mask[i, :n] = 1
    logits = model(input_ids=input_ids, attention_mask=mask).logits  # (B, T, V)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V): position t predicts token t+1
    token_lp = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    positions = torch.arange(input_ids.shape[1] - 1, device=device).unsqueeze(0)  # (1, T-1)
    firsts = torch.tensor(first, device=device).unsqueeze(1) - 1
    ends = torch.tensor(lasts, device=device).unsqueeze(1) - 1
    scored = (positions >= firsts) & (positions < ends)  # (B, T-1)
    return [float(v) for v in (token_lp.double() * scored).sum(dim=1).cpu()]


def _seq2seq_batch(model, tokenizer, refs, ctxs, pad_id, device, offset) -> list[float]:
    import torch

    enc = [_encode(tokenizer, ctx, True) for ctx in ctxs]
    for k, e in enumerate(enc):
        if not e:
            raise ValueError(f"model_bits_per_character: context {offset + k} encodes to no tokens and the encoder "
                             "needs at least one; give a non-empty context")
    labels_list = [list(tokenizer(text_target=ref)["input_ids"]) for ref in refs]
    for k, lab in enumerate(labels_list):
        if not lab:
            raise ValueError(f"model_bits_per_character: reference {offset + k} encodes to no tokens")
    input_ids = _pad(enc, pad_id).to(device)  # (B, S)
    attention_mask = torch.zeros_like(input_ids)
    for i, e in enumerate(enc):
        attention_mask[i, : len(e)] = 1
    labels = _pad(labels_list, -100).to(device)  # (B, T)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits  # (B, T, V)
    logp = torch.log_softmax(logits.float(), dim=-1)
    scored = labels != -100
    token_lp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return [float(v) for v in (token_lp.double() * scored).sum(dim=1).cpu()]


def model_bits_per_character(model: Any, tokenizer: Any, references: Sequence[str],
                             contexts: Sequence[str] | None = None, batch_size: int = 8,
                             append_eos: bool = False, reduction: Literal["corpus", "mean"] = "corpus") -> float:
    r"""BPC of ``references`` under a Hugging Face causal or seq2seq LM.

    Scores each reference with :func:`reference_log_likelihoods` (optionally
    conditioned on a context that is not counted) and divides the total negative
    log-likelihood in bits by the references' total number of characters
    (:func:`bits_per_character`).

    Args:
        model: A ``transformers`` causal LM or encoder-decoder LM.
        tokenizer: Its tokenizer.
        references: Texts to score.
        contexts: Optional prompt per reference (conditioned on, not scored).
        batch_size: References per forward pass.
        append_eos: Causal LMs: also count an EOS token after each reference.
        reduction: ``"corpus"`` (total bits / total characters) or ``"mean"`` (mean
            of per-reference BPC).

    Returns:
        BPC (lower is better).

    Example:
        >>> model, tok = load_causal_lm("smollm2")  # doctest: +SKIP
        >>> model_bits_per_character(model, tok, ["I love my dog."],
        ...                          contexts=["Tell me about pets. "])  # doctest: +SKIP
        1.9...
    """
    lls = reference_log_likelihoods(model, tokenizer, references, contexts, batch_size, append_eos)
    return bits_per_character(lls, list(references), reduction=reduction)
