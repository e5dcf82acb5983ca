r"""KL distillation loss of the retriever selector (RSPG; Salemi et al., SIGIR 2024, §3.2, Eq. 5–7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from personakit.config import BaseConfig
from personakit.functional.losses import Reduction
from personakit.functional.selector import selection_target, selector_kl
from personakit.losses.base import BaseLoss, LossOutput

__all__ = ["SelectorKLLoss", "SelectorKLLossOutput", "SelectorKLLossConfig"]


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

    **Departure from the paper.** The target temperature $\tau_t$ is not in the paper
    (it is $1$ there, the default here).  EVAL metrics in $[0, 1]$ give a soft target
    (two retrievers scoring 1 and 0 get probabilities 0.73 / 0.27), so a smaller
    $\tau_t$ can be used to sharpen it.

    Args:
        temperature: $\tau_t > 0$ of the target distribution.
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

    def __init__(self, temperature: float = 1.0, reduction: Reduction = "mean"):
        super().__init__(reduction=reduction)
        if temperature <= 0:
            raise ValueError(f"SelectorKLLoss: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def compute_parts(self, scores: Tensor, evals: Tensor) -> dict[str, Tensor]:
        """Per-input terms.

        Args:
            scores: selector logits ``[B, R]``.
            evals: downstream scores ``[B, R]`` (higher is better).

        Returns:
            ``{"loss", "cross_entropy", "target_entropy", "target_agreement"}``, each ``[B]``.
        """
        kl = selector_kl(scores, evals, temperature=self.temperature)  # (B,)
        target = selection_target(evals.detach().to(scores.device, scores.dtype), self.temperature)  # (B, R)
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
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


class SelectorKLLossConfig(BaseConfig):
    """Config of :class:`SelectorKLLoss`."""

    _target_ = SelectorKLLoss

    temperature: float = Field(1.0, gt=0.0, description=(
        "Temperature $\\tau_t$ of the target softmax over EVAL scores (the paper's is 1)."))
    reduction: Literal["mean", "sum", "none"] = Field("mean", description=(
        "Reduction over the batch: ``\"mean\"`` (paper), ``\"sum\"`` or ``\"none\"``."))
