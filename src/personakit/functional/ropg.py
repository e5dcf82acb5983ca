r"""Pure maths of ROPG: retriever training from LLM feedback (Salemi et al., SIGIR 2024, §4).

The retriever $R_\theta$ defines a policy over the top-$l$ candidates $P_{x,l}$ of the
*initial* retriever (Eq. 1, top-$l$ approximation):

$$\pi_\theta(d \mid x) = \frac{\exp(R_\theta(\phi_q(x), d) / \tau)}
  {\sum_{d' \in P_{x,l}} \exp(R_\theta(\phi_q(x), d') / \tau)}.$$

* ROPG-RL (Eqs. 2–3): one document $d \sim \pi_\theta$ per input, reward
  $r = \mathrm{EVAL}(y, M(x,[d])) - \mathrm{EVAL}(y, M(x,[d_b]))$ with $d_b$ the initial
  retriever's top document, loss $-r \log \pi_\theta(d \mid x)$
  (:func:`ropg_rl_loss`, :func:`ropg_rl_rewards`).
* ROPG-KD (Eqs. 4–5): target $p_t(d \mid x) = \mathrm{softmax}_{d \in P_{x,l}}
  (\mathrm{EVAL}(y, M(x,[d])) / \tau_t)$, loss
  $\mathrm{KL}(p_t \,\|\, \pi_\theta) = \sum_d p_t(d \mid x) \log \frac{p_t(d \mid x)}{\pi_\theta(d \mid x)}$
  (:func:`ropg_kd_loss`).

The paper uses $\tau = \tau_t = 1$.  Every function accepts an optional boolean ``mask``
``[B, l]`` (``True`` = a real candidate) for inputs whose profile has fewer than
$l$ entries; masked candidates get probability exactly $0$.  Per-sample values are
returned (``[B]``); reduce them yourself or use :mod:`personakit.losses.ropg`.

Example:
    >>> import torch
    >>> evals = torch.tensor([[0.0, 1.0, 0.0]])
    >>> rewards = ropg_rl_rewards(evals, torch.tensor([1]))  # sampled d = 1, baseline d_b = 0
    >>> rewards
    tensor([1.])
    >>> ropg_kd_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]]))  # pi = p_t
    tensor([0.])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from personakit.functional.losses import _check_batch

__all__ = [
    "masked_scores",
    "policy_log_probs",
    "policy_entropy",
    "kd_target_distribution",
    "ropg_rl_rewards",
    "ropg_rl_loss",
    "ropg_kd_loss",
]


def _check_candidates(who: str, scores: Tensor, name: str = "scores") -> None:
    if scores.dim() == 2 and scores.shape[1] == 0:
        raise ValueError(f"{who}{name} has no candidates (shape {tuple(scores.shape)}); every input needs at least "
                         "one (a softmax over no candidates is undefined)")


def _check_mask(scores: Tensor, mask: Tensor | None, name: str = "scores") -> Tensor | None:
    if scores.dim() != 2:
        raise ValueError(f"{name} must be [B, l], got shape {tuple(scores.shape)}")
    _check_candidates("", scores, name)
    if mask is None:
        return None
    if mask.shape != scores.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match {name} shape {tuple(scores.shape)}")
    mask = mask.to(device=scores.device, dtype=torch.bool)
    if not bool(mask.any(dim=1).all()):
        rows = (~mask.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"mask has no candidate in rows {rows}; every input needs at least one candidate")
    return mask


def masked_scores(scores: Tensor, mask: Tensor | None = None, temperature: float = 1.0) -> Tensor:
    r"""Scores divided by $\tau$, with masked candidates set to a large negative number.

    The fill value is finite (half the dtype's minimum), so softmax gives exactly $0$
    there and gradients stay finite (no ``0 * inf``).

    Shapes:
        scores, mask: ``[B, l]`` → ``[B, l]``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    mask = _check_mask(scores, mask)
    logits = scores / temperature  # (B, l)
    if mask is not None:
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min / 2)
    return logits


def policy_log_probs(scores: Tensor, mask: Tensor | None = None, temperature: float = 1.0) -> Tensor:
    r"""$\log \pi_\theta(d \mid x)$ over the candidates (Eq. 1, top-$l$ approximation).

    Args:
        scores: Retriever scores $R_\theta(\phi_q(x), d)$ ``[B, l]``.
        mask: ``True`` for real candidates ``[B, l]`` (``None``: all real).
        temperature: Policy temperature $\tau$ (paper: 1).

    Returns:
        Log-probabilities ``[B, l]`` (masked entries are very negative, probability 0).
    """
    return F.log_softmax(masked_scores(scores, mask, temperature), dim=-1)  # (B, l)


def policy_entropy(log_probs: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Entropy $H(\pi) = -\sum_d \pi(d) \log \pi(d)$ per input ``[B]`` (masked entries contribute 0)."""
    p = log_probs.exp()
    terms = p * log_probs  # (B, l)
    if mask is not None:
        terms = terms.masked_fill(~mask.to(device=terms.device, dtype=torch.bool), 0.0)
    return -terms.sum(dim=-1)  # (B,)


def kd_target_distribution(evals: Tensor, mask: Tensor | None = None, temperature: float = 1.0) -> Tensor:
    r"""ROPG-KD target $p_t(d \mid x) = \mathrm{softmax}(\mathrm{EVAL}(y, M(x,[d])) / \tau_t)$ (Eq. 4).

    Args:
        evals: Per-candidate EVAL scores ``[B, l]``.
        mask: ``True`` for real candidates.
        temperature: $\tau_t$ (paper: 1).  EVAL metrics lie in $[0, 1]$, so with
            $\tau_t = 1$ the target is close to uniform; a smaller $\tau_t$ sharpens it.

    Returns:
        Probabilities ``[B, l]`` (exactly 0 at masked candidates).
    """
    return F.softmax(masked_scores(evals, mask, temperature), dim=-1)  # (B, l)


def ropg_rl_rewards(evals: Tensor, sampled: Tensor, baseline_index: int | Tensor = 0) -> Tensor:
    r"""ROPG-RL reward (Eq. 2): $\mathrm{EVAL}(d) - \mathrm{EVAL}(d_b)$ per input.

    Args:
        evals: Per-candidate EVAL scores ``[B, l]``.
        sampled: Index of the sampled document $d$ per input ``[B]``.
        baseline_index: Index of $d_b$, the initial retriever's top document: an int
            for every input (``0`` when candidates are in the initial retriever's
            order) or a ``[B]`` tensor.

    Returns:
        Rewards ``[B]``.
    """
    if evals.dim() != 2:
        raise ValueError(f"evals must be [B, l], got shape {tuple(evals.shape)}")
    sampled = sampled.to(device=evals.device, dtype=torch.long).view(-1)
    if sampled.shape[0] != evals.shape[0]:
        raise ValueError(f"sampled has {sampled.shape[0]} entries for a batch of {evals.shape[0]}")
    if isinstance(baseline_index, Tensor):
        base = baseline_index.to(device=evals.device, dtype=torch.long).view(-1)
        if base.shape[0] != evals.shape[0]:
            raise ValueError(f"baseline_index has {base.shape[0]} entries for a batch of {evals.shape[0]}")
    else:
        base = torch.full_like(sampled, int(baseline_index))
    chosen = evals.gather(1, sampled[:, None]).squeeze(1)  # (B,)
    baseline = evals.gather(1, base[:, None]).squeeze(1)  # (B,)
    return chosen - baseline


def ropg_rl_loss(scores: Tensor, sampled: Tensor, rewards: Tensor, mask: Tensor | None = None,
                 temperature: float = 1.0) -> Tensor:
    r"""ROPG-RL per-input loss (Eq. 3, negated for minimisation): $-r \cdot \log \pi_\theta(d \mid x)$.

    The reward is treated as a constant (detached).  Its gradient with respect to the
    scores is $-\frac{r}{\tau}(\mathbf{1}_d - \pi_\theta)$, the REINFORCE estimator.

    Args:
        scores: Retriever scores ``[B, l]``.
        sampled: Sampled document index per input ``[B]`` (must be a real candidate).
        rewards: Rewards ``[B]`` (e.g. from :func:`ropg_rl_rewards`).
        mask: ``True`` for real candidates.
        temperature: Policy temperature $\tau$.

    Returns:
        Per-input losses ``[B]``.

    Raises:
        ValueError: the batch is empty (``B = 0``: the loss of no inputs is undefined, its
            mean would be ``NaN``), a row has no candidate, or a sampled index is out of
            range or masked.
    """
    _check_batch("ropg_rl_loss", scores=scores)
    log_probs = policy_log_probs(scores, mask, temperature)  # (B, l)
    sampled = sampled.to(device=scores.device, dtype=torch.long).view(-1)
    if sampled.shape[0] != scores.shape[0]:
        raise ValueError(f"sampled has {sampled.shape[0]} entries for a batch of {scores.shape[0]}")
    if bool(((sampled < 0) | (sampled >= scores.shape[1])).any()):
        raise ValueError(f"sampled indices must lie in [0, {scores.shape[1]}), got {sampled.tolist()}")
    if mask is not None and not bool(mask.to(scores.device).bool().gather(1, sampled[:, None]).all()):
        raise ValueError("a sampled index points at a masked (padding) candidate")
    rewards = rewards.to(device=scores.device, dtype=log_probs.dtype).detach().view(-1)
    if rewards.shape[0] != scores.shape[0]:
        raise ValueError(f"rewards has {rewards.shape[0]} entries for a batch of {scores.shape[0]}")
    chosen = log_probs.gather(1, sampled[:, None]).squeeze(1)  # (B,)
    return -rewards * chosen


def ropg_kd_loss(scores: Tensor, evals: Tensor, mask: Tensor | None = None, temperature: float = 1.0,
                 target_temperature: float = 1.0) -> Tensor:
    r"""ROPG-KD per-input loss (Eq. 5): $\mathrm{KL}(p_t \,\|\, \pi_\theta)$.

    $$\mathrm{KL}(p_t \,\|\, \pi_\theta) = \sum_{d \in P_{x,l}} p_t(d \mid x)
      \left(\log p_t(d \mid x) - \log \pi_\theta(d \mid x)\right)$$

    with $p_t = \mathrm{softmax}(\mathrm{EVAL}/\tau_t)$ (no gradient) and
    $\pi_\theta = \mathrm{softmax}(\text{scores}/\tau)$.  Terms with $p_t = 0$
    contribute $0$.  It is $0$ exactly when $\pi_\theta = p_t$, e.g. when
    $\text{scores}/\tau = \mathrm{EVAL}/\tau_t$ up to a constant per input.

    Args:
        scores: Retriever scores ``[B, l]``.
        evals: Per-candidate EVAL scores ``[B, l]`` (constants).
        mask: ``True`` for real candidates.
        temperature: Policy temperature $\tau$.
        target_temperature: Target temperature $\tau_t$.

    Returns:
        Per-input KL divergences ``[B]`` (non-negative).

    Raises:
        ValueError: the batch is empty (``B = 0``: the loss of no inputs is undefined, its
            mean would be ``NaN``), the shapes differ, or a row has no candidate.
    """
    _check_batch("ropg_kd_loss", scores=scores, evals=evals)
    if evals.shape != scores.shape:
        raise ValueError(f"evals shape {tuple(evals.shape)} does not match scores shape {tuple(scores.shape)}")
    log_pi = policy_log_probs(scores, mask, temperature)  # (B, l)
    evals = evals.to(device=scores.device, dtype=log_pi.dtype).detach()
    log_pt = F.log_softmax(masked_scores(evals, mask, target_temperature), dim=-1)  # (B, l)
    p_t = log_pt.exp()
    terms = p_t * (log_pt - log_pi)  # (B, l); 0 where p_t = 0 (both logs stay finite)
    if mask is not None:
        terms = terms.masked_fill(~mask.to(device=terms.device, dtype=torch.bool), 0.0)
    return terms.sum(dim=-1)  # (B,)
