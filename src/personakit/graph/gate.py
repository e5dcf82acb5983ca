r"""Monotone reliability gate of CoPersona (Zhang et al., 2026, §3.3 and Appendix C)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from personakit.config import BaseConfig

__all__ = ["MonotoneGate", "MonotoneGateConfig"]


class MonotoneGate(nn.Module):
    r"""Learnable trust gate $\gamma_k$ per ordinal reliability level, non-decreasing in $k$ for any parameters.

    CoPersona (Appendix C) maps the reliability label $\ell(r) \in \{0, \dots, L - 1\}$
    (none, weak, moderate, strong for $L = 4$) to a gate through cumulative
    non-negative increments:

    $$
    \delta_i = \operatorname{softplus}(\tilde\delta_i) \ge 0 \quad (i = 1, \dots, L - 1), \qquad
    z_k = z_0 + \sum_{i=1}^{k} \delta_i, \qquad \gamma_k = \sigma(z_k),
    $$

    so $\gamma_0 = \sigma(z_0) \le \gamma_1 \le \dots \le \gamma_{L-1}$ (the sum starts at
    $i = 1$: the lowest level has no increment).  The paper shares the $L$ scalars across
    facets; ``num_facets`` gives the "straightforward" per-facet variant it mentions, with
    one $(z_0, \tilde\delta)$ per facet, indexed by the last dimension of the input.

    Initialisation: $z_0 = -1$ and $\tilde\delta_i = 0$ ($\delta_i = \log 2$), so the
    four levels start at $\gamma \approx (0.27, 0.43, 0.60, 0.75)$: low-evidence facets
    lean on peers, strong ones on the user (the paper does not give an initialisation).

    Args:
        num_levels: number of ordinal levels $L$.
        num_facets: ``None`` for one gate shared by all facets; else one gate per facet.

    Shapes:
        - reliability: any shape of integer levels in ``0..L-1`` (last dim = facets when
          ``num_facets`` is set)
        - output: same shape, float gates in $(0, 1)$

    Example:
        >>> gate = MonotoneGate(4)
        >>> levels = gate.levels()
        >>> bool((levels[1:] >= levels[:-1]).all())
        True
        >>> gate(torch.tensor([[0, 3], [2, 1]])).shape
        torch.Size([2, 2])

    Citation:
        Zhang, Wang, Madhu, Bui, Roznyatovskiy and Ying (2026). *CoPersona: Collaborative
        Persona Graphs for Robust LLM Personalization.* KDD '26.
    """

    def __init__(self, num_levels: int = 4, num_facets: int | None = None):
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"MonotoneGate: num_levels must be >= 1, got {num_levels}")
        if num_facets is not None and num_facets < 1:
            raise ValueError(f"MonotoneGate: num_facets must be >= 1 or None, got {num_facets}")
        self.num_levels = num_levels
        self.num_facets = num_facets
        lead = () if num_facets is None else (num_facets,)
        self.z0 = nn.Parameter(torch.empty(lead))
        self.raw_deltas = nn.Parameter(torch.empty(*lead, num_levels - 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """$z_0 = -1$, $\\tilde\\delta_i = 0$."""
        with torch.no_grad():
            self.z0.fill_(-1.0)
            self.raw_deltas.zero_()

    def logits(self) -> Tensor:
        """$z_k$ for every level: ``[L]`` (or ``[num_facets, L]``)."""
        steps = F.softplus(self.raw_deltas).cumsum(-1)  # (..., L-1)
        z0 = self.z0.unsqueeze(-1)  # (..., 1)
        return torch.cat([z0, z0 + steps], dim=-1)  # (..., L)

    def levels(self) -> Tensor:
        """$\\gamma_k$ for every level: ``[L]`` (or ``[num_facets, L]``), non-decreasing along the last dim."""
        return torch.sigmoid(self.logits())

    def forward(self, reliability: Tensor) -> Tensor:
        """Gate of each reliability label.

        Args:
            reliability: integer levels in ``0..num_levels-1``.

        Returns:
            Gates $\\gamma$ of the same shape (float, differentiable in the parameters).
        """
        if reliability.is_floating_point():
            raise ValueError(f"MonotoneGate: reliability must hold integer levels, got dtype {reliability.dtype}")
        if reliability.numel() and (int(reliability.min()) < 0 or int(reliability.max()) >= self.num_levels):
            raise ValueError(f"MonotoneGate: reliability levels must be in 0..{self.num_levels - 1}, got values "
                             f"{int(reliability.min())}..{int(reliability.max())}")
        gamma = self.levels()
        reliability = reliability.long().to(gamma.device)
        if self.num_facets is None:
            return gamma[reliability]
        if reliability.ndim == 0 or reliability.shape[-1] != self.num_facets:
            raise ValueError(f"MonotoneGate(num_facets={self.num_facets}): the last dim of reliability must be the "
                             f"facets, got shape {tuple(reliability.shape)}")
        facet = torch.arange(self.num_facets, device=gamma.device).expand_as(reliability)
        return gamma[facet, reliability]

    def extra_repr(self) -> str:
        return f"num_levels={self.num_levels}, num_facets={self.num_facets}"


class MonotoneGateConfig(BaseConfig):
    """Config of :class:`MonotoneGate`."""

    _target_ = MonotoneGate

    num_levels: int = Field(4, ge=1, description=(
        "Number of ordinal reliability levels $L$ (4: none, weak, moderate, strong)."))
    num_facets: int | None = Field(None, ge=1, description=(
        "``None`` for one gate shared across facets (the paper), else one gate per facet."))
