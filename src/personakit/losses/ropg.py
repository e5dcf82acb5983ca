r"""ROPG losses: retriever training from LLM feedback (Salemi et al., SIGIR 2024, §4.1–4.2).

Both losses take the retriever's scores over the top-$l$ candidates of the initial
retriever, never the retriever itself; the maths is in :mod:`personakit.functional.ropg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field
from torch import Tensor

from personakit.config import BaseConfig
from personakit.functional.losses import Reduction, _check_batch
from personakit.functional.ropg import (
    _check_candidates,
    policy_entropy,
    policy_log_probs,
    ropg_kd_loss,
    ropg_rl_loss,
    ropg_rl_rewards,
)
from personakit.losses.base import BaseLoss, LossOutput

__all__ = ["ROPGRLLoss", "ROPGRLLossOutput", "ROPGRLLossConfig", "ROPGKDLoss", "ROPGKDLossOutput", "ROPGKDLossConfig"]


def _check_temperature(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


@dataclass
class ROPGRLLossOutput(LossOutput):
    r"""Terms of :class:`ROPGRLLoss` (each reduced like the loss).

    Attributes:
        loss: $-r \log \pi_\theta(d \mid x)$.
        reward: $r = \mathrm{EVAL}(d) - \mathrm{EVAL}(d_b)$.
        log_prob: $\log \pi_\theta(d \mid x)$ of the sampled document.
        entropy: entropy of $\pi_\theta(\cdot \mid x)$.
    """

    reward: Tensor
    log_prob: Tensor
    entropy: Tensor


class ROPGRLLoss(BaseLoss):
    r"""ROPG-RL policy-gradient loss (Salemi et al., SIGIR 2024, §4.1, Eqs. 1–3).

    The retriever is a policy over the top-$l$ candidates of the initial retriever,
    $\pi_\theta(d \mid x) = \mathrm{softmax}_d(R_\theta(\phi_q(x), d) / \tau)$.  One
    document $d \sim \pi_\theta$ is sampled per input (by the caller: see
    :class:`personakit.training.ROPGRLTrainer`) and rewarded with

    $$r(d; x, y) = \mathrm{EVAL}(y, M(\phi_p(x, [d]))) - \mathrm{EVAL}(y, M(\phi_p(x, [d_b])))$$

    where $d_b$ is the initial retriever's top document.  The objective
    $\max_\theta \frac{1}{|B|}\sum_{(x,y) \in B} r \log \pi_\theta(d \mid x)$ becomes the loss

    $$\mathcal{L}_{RL} = -\frac{1}{|B|} \sum_{(x, y) \in B} r(d; x, y)\, \log \pi_\theta(d \mid x),$$

    whose gradient with respect to the scores is $-\frac{r}{\tau}(\mathbf{1}_d - \pi_\theta)$.
    The reward is a constant (no gradient flows through it).

    The paper's policy has no temperature ($\tau = 1$, raw Contriever dot products);
    ``temperature`` is an addition for retrievers with bounded scores (cosine
    similarity in $[-1, 1]$ gives an almost uniform policy at $\tau = 1$).

    **Empty batch.**  A batch with no examples (``B = 0``) raises ``ValueError`` naming
    the loss and the shapes, whatever the reduction (so do inputs with no candidates,
    ``l = 0``): the mean over no examples is ``NaN`` (one such step ruins the weights
    silently), and a defined stand-in such as ``0`` would hide whatever emptied the
    batch.  Skip empty batches before the loss.

    Args:
        reduction: ``"mean"`` over the batch (paper), ``"sum"`` or ``"none"`` (``[B]``).
        temperature: policy temperature $\tau > 0$.

    Shapes:
        - scores: ``[B, l]``; sampled: ``[B]`` (long); rewards: ``[B]``
        - evals (instead of rewards): ``[B, l]``; baseline_index: int or ``[B]``
        - mask (optional): ``[B, l]`` bool, ``True`` for real candidates
        - output: scalar (``[B]`` with ``reduction="none"``)

    Example:
        >>> import torch
        >>> loss = ROPGRLLoss()
        >>> scores = torch.zeros(1, 2, requires_grad=True)  # pi = (0.5, 0.5)
        >>> out = loss.forward_with_parts(scores, torch.tensor([1]), evals=torch.tensor([[0.2, 0.7]]))
        >>> round(out.reward.item(), 4), round(out.loss.item(), 4)  # -0.5 * log 0.5
        (0.5, 0.3466)
        >>> out.loss.backward(); scores.grad  # -r (onehot - pi)
        tensor([[ 0.2500, -0.2500]])

    Citation:
        Salemi, Kallumadi and Zamani (2024). *Optimization Methods for Personalizing
        Large Language Models through Retrieval Augmentation.* SIGIR.
        REINFORCE: Williams (1992), *Simple statistical gradient-following algorithms
        for connectionist reinforcement learning.*
    """

    output_cls: ClassVar[type[LossOutput]] = ROPGRLLossOutput

    def __init__(self, reduction: Reduction = "mean", temperature: float = 1.0):
        super().__init__(reduction=reduction)
        self.temperature = _check_temperature("ROPGRLLoss: temperature", temperature)

    def compute_parts(self, scores: Tensor, sampled: Tensor, rewards: Tensor | None = None, *,
                      evals: Tensor | None = None, baseline_index: int | Tensor = 0,
                      mask: Tensor | None = None) -> dict[str, Tensor]:
        """Per-input terms.

        Args:
            scores: retriever scores ``[B, l]``.
            sampled: index of the sampled document per input ``[B]``.
            rewards: rewards ``[B]``; or leave ``None`` and pass ``evals``.
            evals: per-candidate EVAL scores ``[B, l]``; the reward is
                ``evals[b, sampled[b]] - evals[b, baseline_index]``.
            baseline_index: index of $d_b$ in the candidates (``0``: the initial
                retriever's top document when candidates are in its order).
            mask: ``True`` for real candidates ``[B, l]``.

        Returns:
            ``{"loss", "reward", "log_prob", "entropy"}``, each ``[B]``.

        Raises:
            ValueError: an empty batch (``B = 0``) or no candidates (``l = 0``), whatever
                the reduction (the message names the loss and the shape), or bad
                indices / rewards.
        """
        if (rewards is None) == (evals is None):
            raise ValueError("ROPGRLLoss: pass exactly one of `rewards` and `evals`")
        _check_batch(type(self).__name__, scores=scores, sampled=sampled)
        _check_candidates(f"{type(self).__name__}: ", scores)
        if rewards is None:
            assert evals is not None
            rewards = ropg_rl_rewards(evals.to(scores.device), sampled, baseline_index)  # (B,)
        rewards = rewards.detach().to(device=scores.device, dtype=scores.dtype)
        log_probs = policy_log_probs(scores, mask, self.temperature)  # (B, l)
        loss = ropg_rl_loss(scores, sampled, rewards, mask, self.temperature)  # (B,)
        chosen = log_probs.gather(1, sampled.to(scores.device).long().view(-1, 1)).squeeze(1)  # (B,)
        return {"loss": loss, "reward": rewards, "log_prob": chosen.detach(),
                "entropy": policy_entropy(log_probs.detach(), mask)}

    def forward_with_parts(self, scores: Tensor, sampled: Tensor, rewards: Tensor | None = None, *,  # type: ignore[override]
                           evals: Tensor | None = None, baseline_index: int | Tensor = 0,
                           mask: Tensor | None = None) -> ROPGRLLossOutput:
        """The loss with its reward, log-probability and entropy terms."""
        return self.reduce(self.compute_parts(scores, sampled, rewards, evals=evals,  # type: ignore[return-value]
                                              baseline_index=baseline_index, mask=mask))

    def forward(self, scores: Tensor, sampled: Tensor, rewards: Tensor | None = None, *,  # type: ignore[override]
                evals: Tensor | None = None, baseline_index: int | Tensor = 0, mask: Tensor | None = None) -> Tensor:
        r"""$-r \log \pi_\theta(d \mid x)$, reduced over the batch."""
        return self.forward_with_parts(scores, sampled, rewards, evals=evals, baseline_index=baseline_index,
                                       mask=mask).loss

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, temperature={self.temperature}"


@dataclass
class ROPGKDLossOutput(LossOutput):
    r"""Terms of :class:`ROPGKDLoss` (each reduced like the loss).

    Attributes:
        loss: $\mathrm{KL}(p_t \,\|\, \pi_\theta)$.
        entropy: entropy of the policy $\pi_\theta$.
        target_entropy: entropy of the target $p_t$.
    """

    entropy: Tensor
    target_entropy: Tensor


class ROPGKDLoss(BaseLoss):
    r"""ROPG-KD distillation loss (Salemi et al., SIGIR 2024, §4.2, Eqs. 4–5).

    The target distribution over the top-$l$ candidates is the softmax of the LLM's
    per-document EVAL scores, and the retriever's policy is pulled towards it:

    $$p_t(d \mid x) = \frac{\exp(\mathrm{EVAL}(y, M(\phi_p(x,[d]))) / \tau_t)}
      {\sum_{d'} \exp(\mathrm{EVAL}(y, M(\phi_p(x,[d']))) / \tau_t)}, \qquad
      \mathcal{L}_{KD} = \frac{1}{|B|} \sum_{(x,y) \in B} \sum_{d} p_t(d \mid x)
      \log \frac{p_t(d \mid x)}{\pi_\theta(d \mid x)}.$$

    The paper uses $\tau_t = 1$ (and no policy temperature, $\tau = 1$).  With EVAL
    in $[0, 1]$ (accuracy, ROUGE-1) the $\tau_t = 1$ target is close to uniform, so a
    smaller ``target_temperature`` (e.g. 0.1) gives a sharper signal; both default to
    the paper's value.  The loss is $0$ exactly when
    $\text{scores}/\tau = \mathrm{EVAL}/\tau_t$ up to a per-input constant.

    **Empty batch.**  A batch with no examples (``B = 0``) raises ``ValueError`` naming
    the loss and the shapes, whatever the reduction (so do inputs with no candidates,
    ``l = 0``): the mean over no examples is ``NaN`` (one such step ruins the weights
    silently), and a defined stand-in such as ``0`` would hide whatever emptied the
    batch.  Skip empty batches before the loss.

    Args:
        reduction: ``"mean"`` over the batch (paper), ``"sum"`` or ``"none"`` (``[B]``).
        temperature: policy temperature $\tau > 0$.
        target_temperature: target temperature $\tau_t > 0$.

    Shapes:
        - scores, evals: ``[B, l]``; mask (optional): ``[B, l]`` bool
        - output: scalar (``[B]`` with ``reduction="none"``)

    Example:
        >>> import torch
        >>> loss = ROPGKDLoss()
        >>> evals = torch.tensor([[0.0, 1.0, 0.5]])
        >>> loss(evals.clone(), evals).item()  # pi = p_t
        0.0
        >>> loss(torch.zeros(1, 3), evals).item() > 0
        True

    Citation:
        Salemi, Kallumadi and Zamani (2024). *Optimization Methods for Personalizing
        Large Language Models through Retrieval Augmentation.* SIGIR.
        Distillation for IR: Zamani and Bendersky (2023), *Multivariate Representation
        Learning for Information Retrieval.* SIGIR.
    """

    output_cls: ClassVar[type[LossOutput]] = ROPGKDLossOutput

    def __init__(self, reduction: Reduction = "mean", temperature: float = 1.0, target_temperature: float = 1.0):
        super().__init__(reduction=reduction)
        self.temperature = _check_temperature("ROPGKDLoss: temperature", temperature)
        self.target_temperature = _check_temperature("ROPGKDLoss: target_temperature", target_temperature)

    def compute_parts(self, scores: Tensor, evals: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Per-input terms.

        Args:
            scores: retriever scores ``[B, l]``.
            evals: per-candidate EVAL scores ``[B, l]``.
            mask: ``True`` for real candidates ``[B, l]``.

        Returns:
            ``{"loss", "entropy", "target_entropy"}``, each ``[B]``.

        Raises:
            ValueError: an empty batch (``B = 0``) or no candidates (``l = 0``), whatever
                the reduction (the message names the loss and the shape).
        """
        _check_batch(type(self).__name__, scores=scores, evals=evals)
        _check_candidates(f"{type(self).__name__}: ", scores)
        evals = evals.to(device=scores.device, dtype=scores.dtype)
        loss = ropg_kd_loss(scores, evals, mask, self.temperature, self.target_temperature)  # (B,)
        log_pi = policy_log_probs(scores.detach(), mask, self.temperature)  # (B, l)
        log_pt = policy_log_probs(evals, mask, self.target_temperature)  # (B, l): log p_t
        return {"loss": loss, "entropy": policy_entropy(log_pi, mask), "target_entropy": policy_entropy(log_pt, mask)}

    def forward_with_parts(self, scores: Tensor, evals: Tensor, mask: Tensor | None = None) -> ROPGKDLossOutput:  # type: ignore[override]
        """The loss with the policy and target entropies."""
        return self.reduce(self.compute_parts(scores, evals, mask))  # type: ignore[return-value]

    def forward(self, scores: Tensor, evals: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        r"""$\mathrm{KL}(p_t \,\|\, \pi_\theta)$, reduced over the batch."""
        return self.forward_with_parts(scores, evals, mask).loss

    def extra_repr(self) -> str:
        return (f"reduction={self.reduction!r}, temperature={self.temperature}, "
                f"target_temperature={self.target_temperature}")


class ROPGRLLossConfig(BaseConfig):
    """Config of :class:`ROPGRLLoss`."""

    _target_ = ROPGRLLoss

    reduction: Literal["mean", "sum", "none"] = Field("mean", description=(
        "Reduction over the batch: ``\"mean\"`` (paper), ``\"sum\"`` or ``\"none\"``."))
    temperature: float = Field(1.0, gt=0.0, description=(
        "Policy temperature $\\tau$: $\\pi = \\mathrm{softmax}(\\text{scores}/\\tau)$ (paper: 1)."))


class ROPGKDLossConfig(BaseConfig):
    """Config of :class:`ROPGKDLoss`."""

    _target_ = ROPGKDLoss

    reduction: Literal["mean", "sum", "none"] = Field("mean", description=(
        "Reduction over the batch: ``\"mean\"`` (paper), ``\"sum\"`` or ``\"none\"``."))
    temperature: float = Field(1.0, gt=0.0, description=(
        "Policy temperature $\\tau$: $\\pi = \\mathrm{softmax}(\\text{scores}/\\tau)$ (paper: 1)."))
    target_temperature: float = Field(1.0, gt=0.0, description=(
        "Target temperature $\\tau_t$: $p_t = \\mathrm{softmax}(\\mathrm{EVAL}/\\tau_t)$ (paper: 1)."))
