r"""Attention-based personalisation style extractor of GRAG (PostGRAG, §3.3.1 and §3.3.3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from personakit.config import BaseConfig
from personakit.functional.losses import masked_mean

__all__ = ["StyleExtractor", "StyleExtractorConfig", "concat_masked"]


class StyleExtractor(nn.Module):
    r"""Style extractor $\text{SE}$ of GRAG (Liu et al., 2026, §3.3.1): persona-queried attention + masked mean.

    The persona encoding $E_P$ attends to a context encoding $E_X$ with multi-head
    attention, and the attended persona positions are averaged:

    $$\text{head}_j = \operatorname{softmax}\!\Big(\frac{(E_P W^Q_j)(E_X W^K_j)^\top}{\sqrt{d_h}} + M\Big)\, E_X W^V_j,
      \qquad A = [\text{head}_1; \dots; \text{head}_h]\, W^O,$$
    $$\mathcal{S} = \frac{\sum_t m^P_t A_t}{\sum_t m^P_t},$$

    where $M$ is $-\infty$ on padded context positions and $d_h = d / h$.

    * The personalisation style $\mathcal{S}_P = \text{SE}_P(E_P, [E_H; E_{R_G}])$ (§3.3.1)
      describes what the persona adds to the history and the generic response.
    * The null ("generic") style $\mathcal{S}_G = \text{SE}_G(E_P, [E_H; E_{R_P}])$ (§3.3.3)
      is a **second, separately trained** instance of this class applied to the history
      and the personalised response; build the concatenated context with
      :func:`concat_masked`.

    Padding never matters, to the output or to the gradients: padded positions of both
    inputs are set to zero before the projections (so ``NaN`` or ``inf`` padding
    reaches neither the output nor any gradient, and no gradient reaches a padded
    input), padded context positions get zero attention weight (they are excluded
    from the softmax), and padded persona positions are excluded from the mean.
    Appending padding with arbitrary values leaves the output unchanged, and the
    output and gradients are bit-identical to those with zero padding.  A
    persona row whose context is empty attends to nothing (its attention output is
    zero before $W^O$); a row with an empty persona gives the zero vector.

    Args:
        d_model: hidden size $d$ of the encodings (and of the style vector).
        num_heads: number of attention heads $h$; must divide ``d_model``.
        dropout: dropout on the attention weights (training only).

    Shapes:
        - persona_states: ``[B, Tp, D]``, persona_mask: ``[B, Tp]``
        - context_states: ``[B, Tc, D]``, context_mask: ``[B, Tc]``
        - output: ``[B, D]``

    Example:
        >>> import torch
        >>> se_p, se_g = StyleExtractor(16, num_heads=2), StyleExtractor(16, num_heads=2)
        >>> e_p, m_p = torch.randn(3, 5, 16), torch.ones(3, 5)
        >>> e_h, m_h = torch.randn(3, 7, 16), torch.ones(3, 7)
        >>> e_rg, m_rg = torch.randn(3, 4, 16), torch.ones(3, 4)
        >>> s_p = se_p(e_p, m_p, *concat_masked((e_h, m_h), (e_rg, m_rg)))
        >>> s_p.shape
        torch.Size([3, 16])

    Citation:
        Liu, Symons and Vatsavai (2026). *GRAG: Generic Response-Augmented Generation
        Framework for Personalized Conversational Systems.* arXiv:2606.21097.
    """

    def __init__(self, d_model: int, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        if d_model < 1 or num_heads < 1 or d_model % num_heads != 0:
            raise ValueError(f"StyleExtractor: num_heads ({num_heads}) must divide d_model ({d_model})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"StyleExtractor: dropout must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections and zero biases (as ``nn.MultiheadAttention``)."""
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def forward(
        self,
        persona_states: Tensor,
        persona_mask: Tensor | None,
        context_states: Tensor,
        context_mask: Tensor | None,
    ) -> Tensor:
        """Style vector of each example.

        Args:
            persona_states: $E_P$, the query sequence ``[B, Tp, D]``.
            persona_mask: ``[B, Tp]``, 1 for persona tokens, 0 for padding (``None``: all valid).
            context_states: the key/value sequence ``[B, Tc, D]`` (e.g. $[E_H; E_{R_G}]$).
            context_mask: ``[B, Tc]``, 1 for context tokens, 0 for padding (``None``: all valid).

        Returns:
            ``[B, D]`` style vectors.
        """
        if persona_states.dim() != 3 or context_states.dim() != 3:
            raise ValueError(
                f"StyleExtractor: expected [B, T, D] states, got persona {tuple(persona_states.shape)} "
                f"and context {tuple(context_states.shape)}"
            )
        b, tp, d = persona_states.shape
        if d != self.d_model or context_states.size(-1) != self.d_model or context_states.size(0) != b:
            raise ValueError(
                f"StyleExtractor(d_model={self.d_model}): got persona {tuple(persona_states.shape)} "
                f"and context {tuple(context_states.shape)}"
            )
        tc = context_states.size(1)
        if context_mask is None:
            context_mask = torch.ones(b, tc, dtype=torch.bool, device=context_states.device)
        if persona_mask is None:
            persona_mask = torch.ones(b, tp, dtype=torch.bool, device=persona_states.device)
        if tuple(context_mask.shape) != (b, tc) or tuple(persona_mask.shape) != (b, tp):
            raise ValueError(
                f"StyleExtractor: masks must be [B, T]; got persona_mask {tuple(persona_mask.shape)} for "
                f"{(b, tp)} and context_mask {tuple(context_mask.shape)} for {(b, tc)}"
            )
        context_valid, persona_valid = context_mask.to(torch.bool), persona_mask.to(torch.bool)
        key_valid = context_valid[:, None, None, :]  # (B, 1, 1, Tc)
        # Padded positions may hold anything (even inf/NaN): zero them *before* the projections, so that
        # no NaN reaches k, v or q, and the gradients (0 x padded value in the projections' backward) stay
        # finite.  Masking the scores alone keeps the output finite but not the gradients.
        zero = torch.zeros((), dtype=context_states.dtype, device=context_states.device)
        context_states = torch.where(context_valid[..., None], context_states, zero)  # (B, Tc, D)
        persona_states = torch.where(persona_valid[..., None], persona_states, zero.to(persona_states.dtype))

        q = self._split_heads(self.q_proj(persona_states))  # (B, H, Tp, Dh)
        k = self._split_heads(self.k_proj(context_states))  # (B, H, Tc, Dh)
        v = self._split_heads(self.v_proj(context_states))  # (B, H, Tc, Dh); padded rows: the bias, weight 0

        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, H, Tp, Tc)
        scores = scores.masked_fill(~key_valid, float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        weights = torch.nan_to_num(weights, nan=0.0)  # rows with an empty context attend to nothing
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        attended = (weights @ v).transpose(1, 2).reshape(b, tp, d)  # (B, Tp, D)
        attended = self.out_proj(attended)  # (B, Tp, D)
        return masked_mean(attended, persona_valid, dim=1)  # (B, D)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, dropout={self.dropout}"


def concat_masked(*parts: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor]:
    r"""Concatenate encodings and their masks along the sequence: $[E_H; E_{R_G}]$.

    Each part keeps its own padding; the padded positions stay masked inside the
    concatenation, which :class:`StyleExtractor` ignores.

    Args:
        *parts: ``(states [B, Ti, D], mask [B, Ti] or None)`` pairs.

    Returns:
        ``(states [B, sum Ti, D], mask [B, sum Ti])`` with a boolean mask.

    Example:
        >>> a, b = torch.zeros(2, 3, 4), torch.ones(2, 5, 4)
        >>> states, mask = concat_masked((a, torch.ones(2, 3)), (b, None))
        >>> states.shape, mask.shape
        (torch.Size([2, 8, 4]), torch.Size([2, 8]))
    """
    if not parts:
        raise ValueError("concat_masked: give at least one (states, mask) pair")
    states, masks = [], []
    for i, (x, m) in enumerate(parts):
        if x.dim() != 3:
            raise ValueError(f"concat_masked: part {i} states must be [B, T, D], got {tuple(x.shape)}")
        if m is None:
            m = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        elif tuple(m.shape) != tuple(x.shape[:2]):
            raise ValueError(f"concat_masked: part {i} mask {tuple(m.shape)} does not match states {tuple(x.shape)}")
        states.append(x)
        masks.append(m.to(torch.bool))
    return torch.cat(states, dim=1), torch.cat(masks, dim=1)  # (B, sum T, D), (B, sum T)


class StyleExtractorConfig(BaseConfig):
    """Config of :class:`StyleExtractor`."""

    _target_ = StyleExtractor

    d_model: int = Field(..., ge=1, description=(
        "Hidden size of the encodings and of the style vector (the backbone's ``d_model``)."))
    num_heads: int = Field(8, ge=1, description="Number of attention heads; must divide ``d_model``.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the attention weights (training only).")

    @model_validator(mode="after")
    def _heads_divide_d_model(self) -> "StyleExtractorConfig":
        if self.d_model % self.num_heads != 0:
            raise ValueError(f"num_heads ({self.num_heads}) must divide d_model ({self.d_model})")
        return self
