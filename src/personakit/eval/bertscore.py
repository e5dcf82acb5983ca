"""BERTScore (Zhang et al., 2020): greedy cosine matching of contextual token embeddings."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from pydantic import Field

from personakit.config import BaseConfig
from personakit.eval.base import References, TextMetric

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BERTScore", "BERTScoreConfig", "BERTScoreOutput", "bertscore", "greedy_match"]


@dataclass(frozen=True)
class BERTScoreOutput:
    """Per-pair BERTScore.

    Attributes:
        precision: Shape ``(N,)``.
        recall: Shape ``(N,)``.
        f1: Shape ``(N,)``.
    """

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def mean(self) -> dict[str, float]:
        """Corpus means ``{"precision", "recall", "f1"}``."""
        return {"precision": float(self.precision.mean()), "recall": float(self.recall.mean()),
                "f1": float(self.f1.mean())}


def greedy_match(hyp_emb: "torch.Tensor", ref_emb: "torch.Tensor", hyp_weight: "torch.Tensor",
                 ref_weight: "torch.Tensor", hyp_candidate: "torch.Tensor | None" = None,
                 ref_candidate: "torch.Tensor | None" = None) -> tuple[float, float, float]:
    r"""BERTScore of one pair from its token embeddings.

    $$P = \frac{\sum_{i} w_i \max_{j} \cos(\hat x_i, x_j)}{\sum_i w_i},\qquad
      R = \frac{\sum_{j} w_j \max_{i} \cos(x_j, \hat x_i)}{\sum_j w_j},\qquad
      F = \frac{2PR}{P + R}.$$

    Args:
        hyp_emb: Hypothesis token embeddings, shape ``(Lh, D)``.
        ref_emb: Reference token embeddings, shape ``(Lr, D)``.
        hyp_weight: Weight of each hypothesis token (0 for special tokens), ``(Lh,)``.
        ref_weight: Weight of each reference token, ``(Lr,)``.
        hyp_candidate: Which hypothesis tokens may serve as the best match of a
            reference token, ``(Lh,)`` bool; ``None`` means all.
        ref_candidate: Same for reference tokens, ``(Lr,)``.

    Returns:
        ``(P, R, F)``; a side whose weights sum to 0 scores 0 (as ``bert-score``
        does for empty sentences) and $F = 0$ when $P + R = 0$.
    """
    import torch

    h = torch.nn.functional.normalize(hyp_emb.double(), dim=-1)  # (Lh, D)
    r = torch.nn.functional.normalize(ref_emb.double(), dim=-1)  # (Lr, D)
    sim = h @ r.T  # (Lh, Lr)
    if ref_candidate is not None:
        sim_p = sim.masked_fill(~ref_candidate.unsqueeze(0), -math.inf)
    else:
        sim_p = sim
    if hyp_candidate is not None:
        sim_r = sim.masked_fill(~hyp_candidate.unsqueeze(1), -math.inf)
    else:
        sim_r = sim
    wh, wr = hyp_weight.double(), ref_weight.double()
    if wh.sum() <= 0 or wr.sum() <= 0 or sim.numel() == 0:
        return 0.0, 0.0, 0.0
    best_p = sim_p.max(dim=1).values  # (Lh,)
    best_r = sim_r.max(dim=0).values  # (Lr,)
    precision = float((torch.where(wh > 0, best_p, 0.0) * wh).sum() / wh.sum())
    recall = float((torch.where(wr > 0, best_r, 0.0) * wr).sum() / wr.sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall != 0 else 0.0
    return precision, recall, f1


@lru_cache(maxsize=4)
def _load_named(name: str) -> tuple[Any, Any]:
    from personakit.backbones import load_encoder

    model, tokenizer = load_encoder(name)
    model.eval()
    return model, tokenizer


class BERTScore(TextMetric):
    r"""BERTScore precision, recall and F1 with any local Hugging Face encoder.

    Zhang et al. (2020) embed prediction $\hat x$ and reference $x$ with a
    contextual encoder, match each token greedily to its most similar token on the
    other side by cosine similarity, and average:

    $$P = \frac{1}{|\hat x|}\sum_{\hat x_i \in \hat x} \max_{x_j \in x} \cos(\hat x_i, x_j),\qquad
      R = \frac{1}{|x|}\sum_{x_j \in x} \max_{\hat x_i \in \hat x} \cos(x_j, \hat x_i),\qquad
      F = \frac{2PR}{P+R}.$$

    With ``idf=True`` each token is weighted by
    $\mathrm{idf}(w) = \log\frac{M + 1}{\mathrm{df}(w) + 1}$ computed over the $M$
    reference strings being scored (the smoothing of the authors' ``bert-score``
    package; unseen word pieces get $\log(M+1)$).  The corpus scores are the means
    over pairs; :meth:`pair_scores` gives the per-pair arrays.

    Details that follow the authors' ``bert-score`` package, so numbers agree with it:

    * Special tokens (``[CLS]``, ``[SEP]``, ``<s>``, ``</s>``) are encoded (they shape
      the context) but get weight 0, so they are never scored.  By default they may
      still be the best match of another token, as in ``bert-score``;
      ``match_special_tokens=False`` removes them from matching altogether.
    * With several references per prediction, P, R and F are each the maximum over
      the references.
    * A prediction or reference with no word pieces scores 0.
    * No baseline rescaling by default: raw cosine scores of contextual encoders
      crowd into a narrow high band (e.g. 0.8–0.95).  Pass ``baseline=(b_P, b_R,
      b_F)`` to report $(s - b)/(1 - b)$, with baselines measured on unrelated pairs
      for the same encoder and layer.

    The default encoder is the embedded all-MiniLM-L6-v2 (``"minilm"``, last layer),
    *not* the RoBERTa-large layer 17 of the paper, so values are comparable only
    between runs with the same encoder and layer.

    Args:
        model: Embedded name (``"minilm"``, ``"mpnet"``), local folder or hub id
            (loaded with :func:`personakit.backbones.load_encoder`), or a
            ``(model, tokenizer)`` pair.  Encoder-decoder models use their encoder.
        layer: Hidden state to use: ``None`` for the last layer, else an index into
            ``hidden_states`` (0 = embeddings, ``k`` = output of layer ``k``).
        idf: Weight tokens by inverse document frequency over the references.
        batch_size: Sentences per forward pass.
        match_special_tokens: Let special tokens serve as best matches (``bert-score``
            behaviour).
        baseline: Optional ``(precision, recall, f1)`` baselines for rescaling.
        device: Where to run; ``None`` keeps a given model where it is and puts a model
            loaded by name on CUDA when available, else CPU.

    Example:
        >>> scores = BERTScore("minilm")(["a cat sat"], ["a cat sat"])  # doctest: +SKIP
        >>> round(scores["f1"], 4)  # doctest: +SKIP
        1.0

    Reference: Zhang, Kishore, Wu, Weinberger & Artzi, "BERTScore: Evaluating Text
    Generation with BERT", ICLR 2020.
    """

    name = "bertscore"

    def __init__(self, model: str | os.PathLike[str] | tuple[Any, Any] = "minilm", layer: int | None = None,
                 idf: bool = False, batch_size: int = 32, match_special_tokens: bool = True,
                 baseline: tuple[float, float, float] | None = None, device: str | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"bertscore: batch_size must be >= 1, got {batch_size}")
        if baseline is not None and (len(baseline) != 3 or any(b >= 1 for b in baseline)):
            raise ValueError(f"bertscore: baseline must be three numbers (P, R, F) below 1, got {baseline!r}")
        self.model = model
        self.layer = layer
        self.idf = idf
        self.batch_size = batch_size
        self.match_special_tokens = match_special_tokens
        self.baseline = tuple(baseline) if baseline is not None else None
        self.device = device
        self._loaded: tuple[Any, Any] | None = None

    # ------------------------------------------------------------- encoder
    def _encoder(self) -> tuple[Any, Any, "torch.device"]:
        import torch

        if self._loaded is None:
            if isinstance(self.model, tuple):
                if len(self.model) != 2:
                    raise ValueError("bertscore: model must be a name, a path or a (model, tokenizer) pair")
                model, tokenizer = self.model
                device = torch.device(self.device) if self.device else next(model.parameters()).device
            else:
                model, tokenizer = _load_named(os.fspath(self.model))
                device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
            if getattr(model.config, "is_encoder_decoder", False):
                model = model.get_encoder()
            self._loaded = (model.to(device), tokenizer)
        model, tokenizer = self._loaded
        return model, tokenizer, next(model.parameters()).device

    def _max_length(self, model: Any, tokenizer: Any) -> int:
        limit = getattr(tokenizer, "model_max_length", None)
        if limit is None or limit > 100_000:
            limit = getattr(model.config, "max_position_embeddings", None) or 512
        return int(limit)

    def _embed(self, sentences: list[str]) -> dict[str, tuple["torch.Tensor", list[int], "torch.Tensor"]]:
        """Token embeddings ``(L, D)``, token ids and special-token mask ``(L,)`` per unique sentence."""
        import torch

        model, tokenizer, device = self._encoder()
        max_length = self._max_length(model, tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        encoded = {}
        for s in sentences:
            enc = tokenizer(s.strip(), add_special_tokens=True, truncation=True, max_length=max_length,
                            return_special_tokens_mask=True)
            encoded[s] = (list(enc["input_ids"]), list(enc["special_tokens_mask"]))
        order = sorted(encoded, key=lambda s: len(encoded[s][0]), reverse=True)
        out: dict[str, tuple["torch.Tensor", list[int], "torch.Tensor"]] = {}
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    batch = order[start:start + self.batch_size]
                    width = len(encoded[batch[0]][0])
                    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                    mask = torch.zeros((len(batch), width), dtype=torch.long)
                    for i, s in enumerate(batch):
                        n = len(encoded[s][0])
                        ids[i, :n] = torch.tensor(encoded[s][0])
                        mask[i, :n] = 1
                    outputs = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                    output_hidden_states=self.layer is not None)
                    hidden = outputs[0] if self.layer is None else outputs.hidden_states[self.layer]  # (B, T, D)
                    hidden = hidden.float().cpu()
                    for i, s in enumerate(batch):
                        n = len(encoded[s][0])
                        out[s] = (hidden[i, :n], encoded[s][0], torch.tensor(encoded[s][1], dtype=torch.bool))
        finally:
            model.train(was_training)
        return out

    # ------------------------------------------------------------- scoring
    def pair_scores(self, predictions: Sequence[str], references: References) -> BERTScoreOutput:
        """Per-pair precision, recall and F1 (arrays of shape ``(N,)``)."""
        preds, refs = self.validate(predictions, references)
        return self._pair_scores(preds, refs)

    def _pair_scores(self, predictions: list[str], references: list[list[str]]) -> BERTScoreOutput:
        import torch

        unique = list(dict.fromkeys(predictions + [r for refs in references for r in refs]))
        stats = self._embed(unique)
        idf: dict[int, float] | None = None
        n_refs = 0
        if self.idf:
            df: Counter[int] = Counter()
            for refs in references:
                for r in refs:
                    df.update(set(stats[r][1]))
                    n_refs += 1
            idf = {tok: math.log((n_refs + 1) / (c + 1)) for tok, c in df.items()}

        def weights(sentence: str) -> "torch.Tensor":
            _, ids, special = stats[sentence]
            if idf is None:
                w = torch.ones(len(ids), dtype=torch.float64)
            else:
                unseen = math.log(n_refs + 1)
                w = torch.tensor([idf.get(t, unseen) for t in ids], dtype=torch.float64)
            return w.masked_fill(special, 0.0)

        scores = np.zeros((len(predictions), 3), dtype=np.float64)
        for k, (pred, refs) in enumerate(zip(predictions, references)):
            h_emb, _, h_special = stats[pred]
            best = None
            for r in refs:
                r_emb, _, r_special = stats[r]
                prf = np.asarray(greedy_match(
                    h_emb, r_emb, weights(pred), weights(r),
                    None if self.match_special_tokens else ~h_special,
                    None if self.match_special_tokens else ~r_special,
                ))
                best = prf if best is None else np.maximum(best, prf)
            scores[k] = best
        if self.baseline is not None:
            b = np.asarray(self.baseline, dtype=np.float64)
            scores = (scores - b) / (1.0 - b)
        return BERTScoreOutput(precision=scores[:, 0], recall=scores[:, 1], f1=scores[:, 2])

    def score(self, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        return self._pair_scores(predictions, references).mean()

    def per_example(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, list[float]]:
        """``{"bertscore_precision" | "_recall" | "_f1": [value per pair]}``, encoded in batches."""
        preds, refs = self.validate(predictions, references)
        out = self._pair_scores(preds, refs)
        return {f"{self.name}_{k}": [float(v) for v in getattr(out, k)] for k in ("precision", "recall", "f1")}

    def extra_repr(self) -> str:
        model = self.model if not isinstance(self.model, tuple) else type(self.model[0]).__name__
        return f"model={model!r}, layer={self.layer}, idf={self.idf}, match_special_tokens={self.match_special_tokens}"


class BERTScoreConfig(BaseConfig):
    """Config of :class:`BERTScore` (a model given as an object is passed to ``build(model=...)``)."""

    _target_ = BERTScore
    model: str = Field("minilm", description="Embedded name, local folder or hub id of the encoder.")
    layer: int | None = Field(None, description="Hidden-state index; None for the last layer.")
    idf: bool = Field(False, description="Weight tokens by inverse document frequency over the references.")
    batch_size: int = Field(32, ge=1, description="Sentences per forward pass.")
    match_special_tokens: bool = Field(True, description="Let special tokens serve as best matches (bert-score).")
    baseline: tuple[float, float, float] | None = Field(None, description="Rescaling baselines (P, R, F).")
    device: str | None = Field(None, description="Device; None chooses automatically.")


def bertscore(predictions: Sequence[str], references: References,
              model: str | os.PathLike[str] | tuple[Any, Any] = "minilm", layer: int | None = None,
              idf: bool = False, batch_size: int = 32, match_special_tokens: bool = True,
              baseline: tuple[float, float, float] | None = None, device: str | None = None) -> dict[str, float]:
    """Mean BERTScore ``{"precision", "recall", "f1"}``; functional form of :class:`BERTScore`.

    Example:
        >>> bertscore(["the cat sat"], ["a cat sat"], model="minilm")  # doctest: +SKIP
        {'precision': 0.9..., 'recall': 0.9..., 'f1': 0.9...}
    """
    return BERTScore(model=model, layer=layer, idf=idf, batch_size=batch_size,
                     match_special_tokens=match_special_tokens, baseline=baseline, device=device)(
        predictions, references)
