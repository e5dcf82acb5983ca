r"""Learning-rate schedules of the trainers: one linear warm-up, three decays.

Every schedule is a function ``factor(step) -> float`` for
:class:`torch.optim.lr_scheduler.LambdaLR` (the learning rate of optimizer step $s$,
0-based, is ``factor(s)`` times the peak rate).  All of them warm up the same way
(:func:`warmup_factor`): over $w$ steps the factor rises linearly,

$$\lambda(s) = \frac{s + 1}{w + 1}, \qquad s < w,$$

so the first step uses $1/(w+1)$ of the peak, the last warm-up step $w/(w+1)$, and
step $w$ the full rate.  After the warm-up:

* :func:`linear_decay_schedule`: linear decay to a fraction $f$ of the peak *at the final
  step* (GRAG §4.3: $f = 0.5$);
* :func:`linear_warmup_decay_schedule`: linear decay towards 0 at step $T$ (one past the
  final step), the decay of ``transformers.get_linear_schedule_with_warmup`` (ROPG and
  RSPG, Salemi et al. 2024 §6.1: 5% warm-up);
* :func:`cosine_schedule`: half a cosine from 1 to 0 (CoPersona, Appendix C).

Example:
    >>> [round(warmup_factor(s, 3), 3) for s in range(4)]
    [0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

import math
from typing import Callable

__all__ = [
    "warmup_factor",
    "warmup_steps_from_ratio",
    "linear_decay_schedule",
    "linear_warmup_decay_schedule",
    "cosine_schedule",
]


def warmup_factor(step: int, warmup_steps: int) -> float:
    r"""The warm-up multiplier $(s + 1) / (w + 1)$ for $s < w$, else 1.

    Args:
        step: $s$, the 0-based optimizer step.
        warmup_steps: $w$ (0: no warm-up).
    """
    if step < warmup_steps:
        return float(step + 1) / float(warmup_steps + 1)
    return 1.0


def warmup_steps_from_ratio(ratio: float, total_steps: int) -> int:
    r"""Warm-up steps for a share of the run: $\lfloor r T \rfloor$ (ROPG / RSPG: $r = 0.05$)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"warmup ratio must be in [0, 1], got {ratio}")
    return int(math.floor(ratio * total_steps))


def _check(name: str, total_steps: int, warmup_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"{name}: total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"{name}: warmup_steps must be >= 0, got {warmup_steps}")


def linear_decay_schedule(total_steps: int, final_fraction: float = 0.5, warmup_steps: int = 0
                          ) -> Callable[[int], float]:
    r"""LR multiplier of step $s$ (0-based): :func:`warmup_factor`, then linear decay to ``final_fraction``.

    $$\lambda(s) = \begin{cases} \frac{s+1}{w+1} & s < w \\
    1 - (1 - f)\,\frac{s - w}{\max(1,\, T - 1 - w)} & s \ge w \end{cases}$$

    so the first step after warm-up uses the full learning rate and the final step
    ($s = T - 1$) uses exactly $f$ times it (GRAG: $f = 0.5$, "decaying linearly to 50% of
    its initial value").  Steps beyond $T - 1$ keep $f$.

    Args:
        total_steps: $T$, the number of optimizer steps.
        final_fraction: $f \in [0, 1]$.
        warmup_steps: $w$ (0: none).

    Example:
        >>> fn = linear_decay_schedule(5, 0.5)
        >>> [fn(s) for s in range(5)]
        [1.0, 0.875, 0.75, 0.625, 0.5]
    """
    _check("linear_decay_schedule", total_steps, warmup_steps)
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"linear_decay_schedule: final_fraction must be in [0, 1], got {final_fraction}")
    span = max(1, total_steps - 1 - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_factor(step, warmup_steps)
        progress = min(1.0, float(step - warmup_steps) / float(span))
        return 1.0 - (1.0 - final_fraction) * progress

    return factor


def linear_warmup_decay_schedule(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    r"""LR multiplier: :func:`warmup_factor`, then $\lambda(s) = (T - s) / \max(1, T - w)$, never below 0.

    The decay reaches 0 at $s = T$, one step after the final one (the convention of
    ``transformers.get_linear_schedule_with_warmup``), so the final step uses
    $1 / (T - w)$ of the peak.

    Example:
        >>> fn = linear_warmup_decay_schedule(5, warmup_steps=1)
        >>> [fn(s) for s in range(5)]
        [0.5, 1.0, 0.75, 0.5, 0.25]
    """
    _check("linear_warmup_decay_schedule", total_steps, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_factor(step, warmup_steps)
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))

    return factor


def cosine_schedule(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    r"""LR multiplier: :func:`warmup_factor`, then $\tfrac12(1 + \cos(\pi p))$, $p = (s - w) / \max(1, T - w)$.

    Example:
        >>> fn = cosine_schedule(4, warmup_steps=1)
        >>> [round(fn(s), 3) for s in range(4)]
        [0.5, 1.0, 0.75, 0.25]
    """
    _check("cosine_schedule", total_steps, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_factor(step, warmup_steps)
        p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * p))

    return factor
