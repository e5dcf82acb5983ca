r"""Pure maths of retriever selection (RSPG; Salemi et al., SIGIR 2024, §3.2 and §6).

Every function takes an ``evals`` matrix of shape ``[B, R]``: for each of ``B``
inputs, the downstream score $\mathrm{EVAL}(y, M(\phi_p(x, R_i(\phi_q(x); P_u))))$ of
the LLM output obtained with the prompt built from retriever $R_i$ (higher is
better: accuracy, ROUGE-1, or the normalised LaMP-3 score).

* :func:`selection_target` — the teacher distribution of Eq. (5),
  $P_{RS}(R_i \mid x) = \operatorname{softmax}_i(\mathrm{EVAL}_i / \tau_t)$.
* :func:`selector_kl` — the per-input KL divergence of Eq. (7),
  $\mathrm{KL}(P_{RS} \,\|\, P_{S_w})$ with $P_{S_w} = \operatorname{softmax}(s)$ (Eq. 6).
* :func:`selection_success_rate` — Table 4: the fraction of inputs whose chosen
  retriever is one of the best (ties: choosing any of them counts).
* :func:`selected_performance` — Table 3: the mean EVAL of the chosen retrievers.
* :func:`oracle_upper_bound` / :func:`oracle_lower_bound` / :func:`oracle_bounds` —
  Table 5: the mean over inputs of the max / min EVAL across retrievers.
* :func:`retriever_means` / :func:`best_single_retriever` — each retriever used for
  every input (the baselines of Table 3).

Example:
    >>> import torch
    >>> evals = [[0.0, 1.0, 0.0], [0.5, 0.5, 0.2]]  # 2 inputs, 3 retrievers
    >>> selection_success_rate([1, 0], evals)
    1.0
    >>> oracle_bounds(evals)
    (0.1, 0.75)
    >>> selector_kl(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]]))
    tensor([0.])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "selection_target",
    "selector_kl",
    "selection_success_rate",
    "selected_performance",
    "oracle_upper_bound",
    "oracle_lower_bound",
    "oracle_bounds",
    "retriever_means",
    "best_single_retriever",
]


def _as_matrix(evals: Any, name: str = "evals") -> Tensor:
    x = evals if isinstance(evals, Tensor) else torch.as_tensor(evals, dtype=torch.float64)
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape [B, R] with R >= 1; got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.to(torch.float64)
    return x


def _as_choices(chosen: Any, n: int, n_retrievers: int) -> Tensor:
    c = chosen if isinstance(chosen, Tensor) else torch.as_tensor(list(chosen), dtype=torch.long)
    c = c.reshape(-1).long()
    if c.numel() != n:
        raise ValueError(f"chosen has {c.numel()} entries but evals has {n} rows")
    if n and (int(c.min()) < 0 or int(c.max()) >= n_retrievers):
        raise ValueError(f"chosen indices must lie in [0, {n_retrievers}); got min {int(c.min())}, max {int(c.max())}")
    return c


def selection_target(evals: Tensor, temperature: float = 1.0) -> Tensor:
    r"""Teacher distribution over retrievers, Eq. (5): $\operatorname{softmax}_i(\mathrm{EVAL}_i / \tau_t)$.

    The paper uses $\tau_t = 1$; a smaller $\tau_t$ sharpens the target towards the
    best retrievers (useful when EVAL lies in $[0, 1]$ and differences are small).

    Args:
        evals: ``[B, R]`` downstream scores.
        temperature: $\tau_t > 0$.

    Returns:
        ``[B, R]`` probabilities (rows sum to 1).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    return F.softmax(_as_matrix(evals) / temperature, dim=-1)  # (B, R)


def selector_kl(scores: Tensor, evals: Tensor, temperature: float = 1.0) -> Tensor:
    r"""Per-input KL divergence of RSPG, Eq. (7) before the batch mean.

    $$\mathrm{KL}_b = \sum_{i=1}^{R} P_{RS}(R_i \mid x_b)
      \log \frac{P_{RS}(R_i \mid x_b)}{P_{S_w}(R_i \mid x_b)},\qquad
      P_{RS} = \operatorname{softmax}(\mathrm{EVAL} / \tau_t),\;
      P_{S_w} = \operatorname{softmax}(s).$$

    Computed in log space; a zero target probability contributes $0$ ($0 \log 0 = 0$).

    Args:
        scores: ``[B, R]`` selector scores $s = S_w(R_i, x)$ (logits).
        evals: ``[B, R]`` downstream scores (no gradient flows into them).
        temperature: $\tau_t$ of the target.

    Returns:
        ``[B]`` KL divergences (each $\ge 0$).
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape [B, R]; got {tuple(scores.shape)}")
    evals = _as_matrix(evals).to(device=scores.device, dtype=scores.dtype)
    if evals.shape != scores.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and evals {tuple(evals.shape)} must have the same shape")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    log_target = F.log_softmax(evals.detach() / temperature, dim=-1)  # (B, R)
    log_student = F.log_softmax(scores, dim=-1)  # (B, R)
    return F.kl_div(log_student, log_target, reduction="none", log_target=True).sum(-1)  # (B,)


def selection_success_rate(chosen: Sequence[int] | Tensor, evals: Any, atol: float = 0.0) -> float:
    r"""Table 4: the fraction of inputs whose chosen retriever achieves the best EVAL.

    $$\frac{1}{B}\sum_b \mathbb{1}\big[\mathrm{EVAL}_{b, c_b} \ge \max_i \mathrm{EVAL}_{b,i} - \epsilon\big]$$

    When several retrievers tie for the best, choosing any of them is a success
    (paper, §6.2).

    Args:
        chosen: ``[B]`` chosen retriever indices $c_b$.
        evals: ``[B, R]`` downstream scores (tensor, array or nested lists).
        atol: tolerance $\epsilon$ for ties between floating-point scores.

    Returns:
        The success rate in $[0, 1]$ (``nan`` for ``B = 0``).
    """
    ev = _as_matrix(evals)
    if ev.shape[0] == 0:
        return float("nan")
    c = _as_choices(chosen, ev.shape[0], ev.shape[1]).to(ev.device)
    picked = ev.gather(1, c[:, None]).squeeze(1)  # (B,)
    return float((picked >= ev.max(dim=1).values - atol).double().mean())


def selected_performance(chosen: Sequence[int] | Tensor, evals: Any) -> float:
    r"""Table 3: the mean downstream score of the chosen retrievers, $\frac{1}{B}\sum_b \mathrm{EVAL}_{b, c_b}$."""
    ev = _as_matrix(evals)
    if ev.shape[0] == 0:
        return float("nan")
    c = _as_choices(chosen, ev.shape[0], ev.shape[1]).to(ev.device)
    return float(ev.gather(1, c[:, None]).double().mean())


def oracle_upper_bound(evals: Any) -> float:
    r"""Table 5 upper bound: $\frac{1}{B}\sum_b \max_i \mathrm{EVAL}_{b,i}$ (a perfect selector)."""
    ev = _as_matrix(evals)
    return float(ev.max(dim=1).values.double().mean()) if ev.shape[0] else float("nan")


def oracle_lower_bound(evals: Any) -> float:
    r"""Table 5 lower bound: $\frac{1}{B}\sum_b \min_i \mathrm{EVAL}_{b,i}$ (the worst selector)."""
    ev = _as_matrix(evals)
    return float(ev.min(dim=1).values.double().mean()) if ev.shape[0] else float("nan")


def oracle_bounds(evals: Any) -> tuple[float, float]:
    """``(lower, upper)``: :func:`oracle_lower_bound` and :func:`oracle_upper_bound`."""
    return oracle_lower_bound(evals), oracle_upper_bound(evals)


def retriever_means(evals: Any) -> Tensor:
    r"""Mean downstream score of each retriever used alone, $\frac{1}{B}\sum_b \mathrm{EVAL}_{b,i}$: ``[R]``."""
    return _as_matrix(evals).double().mean(dim=0)  # (R,)


def best_single_retriever(evals: Any) -> tuple[int, float]:
    """``(index, mean EVAL)`` of the best retriever used for every input (the baseline RSPG must beat)."""
    means = retriever_means(evals)
    i = int(means.argmax())
    return i, float(means[i])
