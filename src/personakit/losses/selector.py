r"""KL distillation loss of the retriever selector (RSPG; Salemi et al., SIGIR 2024, §3.2, Eq. 5–7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from personakit.config import BaseConfig
from personakit.functional.losses import Reduction
from personakit.functional.selector import selection_target, selector_kl
from personakit.losses.base import BaseLoss, LossOutput

__all__ = ["SelectorKLLoss", "SelectorKLLossOutput", "SelectorKLLossConfig", "normalize_evals"]

TargetNormalization = Literal["none", "range"]


def normalize_evals(evals: Tensor, normalization: TargetNormalization = "none") -> Tensor:
    r"""EVAL scores rescaled per input before the target softmax.

    * ``"none"``: unchanged (the paper's Eq. 5).
    * ``"range"``: $(\mathrm{EVAL}_i - \max_j \mathrm{EVAL}_j) / (\max_j \mathrm{EVAL}_j - \min_j \mathrm{EVAL}_j)$,
      in $[-1, 0]$: the best retriever gets 0 and the worst $-1$ on every input, whatever the
      metric's scale; an input whose retrievers all tie gets zeros (a uniform target).

    Args:
        evals: ``[B, R]`` downstream scores.
        normalization: ``"none"`` or ``"range"``.

    Returns:
        ``[B, R]``.
    """
    if normalization == "none":
        return evals
    if normalization != "range":
        raise ValueError(f"normalization must be 'none' or 'range'; got {normalization!r}")
    top = evals.max(dim=-1, keepdim=True).values  # (B, 1)
    spread = top - evals.min(dim=-1, keepdim=True).values  # (B, 1)
    safe = torch.where(spread > 0, spread, torch.ones_like(spread))
    return torch.where(spread > 0, (evals - top) / safe, torch.zeros_like(evals))  # (B, R)


@dataclass
class SelectorKLLossOutput(LossOutput):
    r"""Terms of :class:`SelectorKLLoss` (each reduced like the loss).

    Attributes:
        loss: $\mathrm{KL}(P_{RS} \,\|\, P_{S_w})$.
        cross_entropy: $-\sum_i P_{RS}(R_i) \log P_{S_w}(R_i)$.
        target_entropy: $H(P_{RS})$ (constant in the selector's parameters;
            ``loss = cross_entropy - target_entropy``).
        target_agreement: 1 where the selector's argmax has the highest target
            probability (a best retriever), else 0.
    """

    cross_entropy: Tensor
    target_entropy: Tensor
    target_agreement: Tensor


class SelectorKLLoss(BaseLoss):
    r"""KL divergence between the downstream-performance distribution and the selector's, RSPG Eq. (7).

    $$\mathcal{L} = \frac{1}{|B|} \sum_{(x, u, y) \in B} \sum_{i=1}^{|R|}
      P_{RS}(R_i \mid x; u, y) \log \frac{P_{RS}(R_i \mid x; u, y)}{P_{S_w}(R_i \mid x)},$$

    $$P_{RS}(R_i \mid x; u, y) = \operatorname{softmax}_i\big(\mathrm{EVAL}(y, M(\phi_p(x, R_i(\phi_q(x); P_u)))) / \tau_t\big),
      \qquad P_{S_w}(R_i \mid x) = \operatorname{softmax}_i\big(S_w(R_i, x)\big).$$

    The loss takes the selector's scores (``[B, R]`` logits, e.g. from
    :meth:`personakit.retrieval.RetrieverSelector.forward`) and the precomputed EVAL
    scores, never the model.

    **Departures from the paper (both off by default).** The target temperature $\tau_t$
    is not in the paper (it is $1$ there, the default here).  EVAL metrics in $[0, 1]$
    give a soft target (two retrievers scoring 1 and 0 get probabilities 0.73 / 0.27),
    so a smaller $\tau_t$ can be used to sharpen it.  ``normalization="range"`` rescales
    each input's EVALs to $[-1, 0]$ first (:func:`normalize_evals`): with generation
    metrics such as ROUGE-1 the retrievers of one input often differ by 0.01–0.05, and
    ``softmax(EVAL / 0.1)`` is then nearly uniform (0.10 vs 0.12: 0.45 / 0.55), so the
    selector gets almost no signal about which retriever is best; after the rescaling
    the best and worst retriever of every input differ by $1/\tau_t$ in the target's
    logits.  Inputs whose retrievers all tie keep a uniform target.

    Args:
        temperature: $\tau_t > 0$ of the target distribution.
        normalization: ``"none"`` (the paper's) or ``"range"`` (per-input rescaling of
            the EVALs to $[-1, 0]$ before the target softmax; see :func:`normalize_evals`).
        reduction: ``"mean"`` over the batch (the paper's), ``"sum"`` or ``"none"`` (``[B]``).

    Shapes:
        - scores, evals: ``[B, R]``
        - output: scalar (``[B]`` with ``reduction="none"``)

    Example:
        >>> import torch
        >>> loss = SelectorKLLoss()
        >>> evals = torch.tensor([[1.0, 0.0, 0.0]])
        >>> loss(evals.clone(), evals)  # scores equal to EVAL: the two distributions coincide
        tensor(0.)
        >>> round(loss(torch.zeros(1, 3), evals).item(), 4)  # a uniform selector
        0.1233

    Citation:
        Salemi, Kallumadi and Zamani (2024). *Optimization Methods for Personalizing
        Large Language Models through Retrieval Augmentation.* SIGIR.
    """

    output_cls: ClassVar[type[LossOutput]] = SelectorKLLossOutput

    def __init__(self, temperature: float = 1.0, reduction: Reduction = "mean",
                 normalization: TargetNormalization = "none"):
        super().__init__(reduction=reduction)
        if temperature <= 0:
            raise ValueError(f"SelectorKLLoss: temperature must be > 0, got {temperature}")
        if normalization not in ("none", "range"):
            raise ValueError(f"SelectorKLLoss: normalization must be 'none' or 'range', got {normalization!r}")
        self.temperature = float(temperature)
        self.normalization = normalization

    def compute_parts(self, scores: Tensor, evals: Tensor) -> dict[str, Tensor]:
        """Per-input terms.

        Args:
            scores: selector logits ``[B, R]``.
            evals: downstream scores ``[B, R]`` (higher is better).

        Returns:
            ``{"loss", "cross_entropy", "target_entropy", "target_agreement"}``, each ``[B]``.
        """
        evals = normalize_evals(evals.detach().to(scores.device, scores.dtype), self.normalization)  # (B, R)
        kl = selector_kl(scores, evals, temperature=self.temperature)  # (B,)
        target = selection_target(evals, self.temperature)  # (B, R)
        log_target = target.clamp_min(1e-45).log()
        entropy = -(target * log_target).sum(-1)  # (B,)
        cross_entropy = -(target * F.log_softmax(scores, dim=-1)).sum(-1)  # (B,)
        best = target.max(-1, keepdim=True).values  # (B, 1)
        agree = (target.gather(1, scores.argmax(-1, keepdim=True)) >= best).squeeze(1).to(scores.dtype)  # (B,)
        return {"loss": kl, "cross_entropy": cross_entropy, "target_entropy": entropy, "target_agreement": agree}

    def forward_with_parts(self, scores: Tensor, evals: Tensor) -> SelectorKLLossOutput:  # type: ignore[override]
        """The loss and its terms."""
        return self.reduce(self.compute_parts(scores, evals))  # type: ignore[return-value]

    def forward(self, scores: Tensor, evals: Tensor) -> Tensor:  # type: ignore[override]
        """$\\mathrm{KL}(\\operatorname{softmax}(\\mathrm{EVAL}/\\tau_t) \\,\\|\\, \\operatorname{softmax}(s))$, reduced."""
        return self.forward_with_parts(scores, evals).loss

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalization={self.normalization!r}, reduction={self.reduction!r}"


class SelectorKLLossConfig(BaseConfig):
    """Config of :class:`SelectorKLLoss`."""

    _target_ = SelectorKLLoss

    temperature: float = Field(1.0, gt=0.0, description=(
        "Temperature $\\tau_t$ of the target softmax over EVAL scores (the paper's is 1)."))
    reduction: Literal["mean", "sum", "none"] = Field("mean", description=(
        "Reduction over the batch: ``\"mean\"`` (paper), ``\"sum\"`` or ``\"none\"``."))
    normalization: Literal["none", "range"] = Field("none", description=(
        "Per-input rescaling of the EVALs before the target softmax: ``\"none\"`` (paper) or ``\"range\"`` "
        "($(\\mathrm{EVAL} - \\max) / (\\max - \\min) \\in [-1, 0]$, so small metric differences still give a "
        "sharp target; all-tie inputs stay uniform)."))
