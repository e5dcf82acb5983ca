r"""Multi-view augmentation of the questioner-aware responder (Zeng et al., 2024, §4.4)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from pydantic import Field
from torch import Tensor, nn

from personakit.config import BaseConfig

__all__ = ["MultiViewProjector", "MultiViewProjectorConfig"]


class MultiViewProjector(nn.Module):
    r"""$V$ learned projections of one representation: extra positive views per dialogue (Zeng et al., 2024, §4.4).

    "We generate multiple views for each dialogue by applying different projection
    matrices": for a pooled representation $z \in \mathbb{R}^{D}$,

    $$z^{(v)} = W_v z + b_v, \qquad v = 1, \dots, V, \quad W_v \in \mathbb{R}^{D' \times D}.$$

    The views of one dialogue are positives of each other in
    :class:`~personakit.losses.QuestionerContrastiveLoss`; views of dialogues by other
    questioners in the same question cluster are negatives, so each dialogue
    contributes $V$ anchors and $V - 1$ positives without more data.

    Initialisation: each $W_v$ is the identity (or, when $D' \ne D$, a scaled random
    semi-orthogonal matrix) plus a small independent Gaussian perturbation, and
    $b_v = 0$, so the views start close to the representation but distinct.

    Args:
        num_views: $V \ge 1$.
        dim: input size $D$.
        out_dim: output size $D'$ (default $D$).
        bias: learn $b_v$.
        init_noise: standard deviation of the perturbation added to the initial $W_v$.

    Shapes:
        - input: ``[B, D]``
        - output: ``[B, V, D']``

    Example:
        >>> proj = MultiViewProjector(num_views=3, dim=8, out_dim=4)
        >>> proj(torch.randn(5, 8)).shape
        torch.Size([5, 3, 4])

    Citation:
        Zeng, Niu, Wu, Lv and Chen (2024). *Personalized LLM for Generating Customized
        Responses to the Same Query from Different Users.* arXiv:2412.11736.
    """

    def __init__(self, num_views: int, dim: int, out_dim: Optional[int] = None, bias: bool = True,
                 init_noise: float = 0.02):
        super().__init__()
        if num_views < 1:
            raise ValueError(f"MultiViewProjector: num_views must be >= 1, got {num_views}")
        if dim < 1 or (out_dim is not None and out_dim < 1):
            raise ValueError(f"MultiViewProjector: dim and out_dim must be >= 1, got {dim} and {out_dim}")
        if init_noise < 0:
            raise ValueError(f"MultiViewProjector: init_noise must be >= 0, got {init_noise}")
        self.num_views = int(num_views)
        self.dim = int(dim)
        self.out_dim = int(out_dim) if out_dim is not None else int(dim)
        self.init_noise = float(init_noise)
        self.weight = nn.Parameter(torch.empty(self.num_views, self.out_dim, self.dim))
        self.bias = nn.Parameter(torch.empty(self.num_views, self.out_dim)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for v in range(self.num_views):
                if self.out_dim == self.dim:
                    self.weight[v].copy_(torch.eye(self.dim))
                else:
                    nn.init.orthogonal_(self.weight[v])
                    self.weight[v].mul_(math.sqrt(max(self.dim, self.out_dim) / self.dim))
            if self.init_noise:
                self.weight.add_(torch.randn_like(self.weight) * self.init_noise)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """Project ``[B, D]`` into ``[B, V, D']``."""
        if x.dim() != 2 or x.size(-1) != self.dim:
            raise ValueError(f"MultiViewProjector: expected input [B, {self.dim}], got {tuple(x.shape)}")
        out = torch.einsum("vod,bd->bvo", self.weight.to(x.dtype), x)  # (B, V, D')
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)  # (B, V, D') + (V, D')
        return out

    def extra_repr(self) -> str:
        return f"num_views={self.num_views}, dim={self.dim}, out_dim={self.out_dim}, bias={self.bias is not None}"


class MultiViewProjectorConfig(BaseConfig):
    """Config of :class:`MultiViewProjector`."""

    _target_ = MultiViewProjector

    num_views: int = Field(2, ge=1, description="Number of views $V$.")
    dim: int = Field(..., ge=1, description="Input size $D$.")
    out_dim: Optional[int] = Field(None, ge=1, description="Output size $D'$ (default $D$).")
    bias: bool = Field(True, description="Learn a bias $b_v$ per view.")
    init_noise: float = Field(0.02, ge=0.0, description=(
        "Standard deviation of the Gaussian perturbation of the initial projections."))
