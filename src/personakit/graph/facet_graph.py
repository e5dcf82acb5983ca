r"""Reliability-gated facet message passing of CoPersona (Zhang et al., 2026, §3.3, Eqs. 9-12).

Imports ``torch_geometric``; :mod:`personakit.graph` loads this module lazily.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import spmm

from personakit.config import BaseConfig
from personakit.graph.gate import MonotoneGate, MonotoneGateConfig

__all__ = ["FacetGraph", "FacetGraphConfig"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                "identity": lambda t: t}


class FacetGraph(MessagePassing):
    r"""Reliability-gated message passing over user-level neighbours, then cross-facet self-attention.

    CoPersona's parametric branch (§3.3).  Every user $u$ has $M$ facet states
    $h_u^{(0,m)} = e_u^{(m)}$ (Eq. 9) and shares one neighbour set $\mathcal{N}_u$ across
    facets (e.g. the combined layer of :func:`~personakit.graph.build_multiplex_graph`).
    Per facet,

    $$
    \tilde h_u^{(m)} = \frac{\sum_{v \in \mathcal{N}_u} a_{uv}\, h_v^{(0,m)}}{\sum_{v \in \mathcal{N}_u} a_{uv}},
    \qquad
    h_u^{(m)} = \sigma\!\Big(W\big(\gamma_u^{(m)} h_u^{(0,m)} + (1 - \gamma_u^{(m)})\, \tilde h_u^{(m)}\big)\Big),
    $$

    with $\gamma_u^{(m)} = $ :class:`MonotoneGate` $(r_u^{(m)})$ and $W$ one projection shared
    by all facets (Eq. 11, "$W$ a shared projection").  Then a self-attention over the $M$
    facets of each user, with a residual connection, and the facets are concatenated
    (Eq. 12): $h_u = [h_u^{(1)} \Vert \dots \Vert h_u^{(M)}]$.

    Choices the paper leaves open (documented departures):

    * **Aggregation.** The paper's Agg is "e.g. mean".  Without ``edge_weight`` it is the
      plain mean ($a_{uv} = 1$); with ``edge_weight`` it is the weighted mean above
      (weights must be $\ge 0$, e.g. the combined scores of the multiplex graph).
    * **Isolated users.** A user with no neighbour (or zero total weight) gets
      $\tilde h_u = h_u^{(0)}$, so the update falls back to its own embedding.
    * **No users.** ``x`` of shape ``[0, M, d]`` (with no edges) gives an empty
      ``[0, M d']`` output rather than an error: a graph with no users has no persona
      vectors, and an empty shard or filter result then flows through unchanged.
    * **Edge weights** must be finite and non-negative; an ``inf`` or ``NaN`` weight
      raises ``ValueError`` naming ``edge_weight`` and the edges (an ``inf`` weight
      would make the weighted mean $\infty / \infty = $ ``NaN``; clamping it would
      pick an arbitrary finite value, so it is refused rather than silently changed).
    * **Attention.** ``nn.MultiheadAttention`` over the facet axis with a residual
      ($h \leftarrow h + \operatorname{Attn}(h)$); the paper does not say whether a
      residual or a normalisation is used.  ``attention=False`` skips it.
    * $\sigma$ is ReLU by default (Appendix C: "hidden size 512, ReLU, dropout 0.1").

    The neighbour mean is one sparse-dense product on the flattened ``[N, M d]`` states
    (PyG's fused ``message_and_aggregate``), so no ``[E, M d]`` message tensor is formed.

    Args:
        in_dim: facet embedding size $d$.
        out_dim: output size $d'$ per facet.
        num_facets: number of facets $M$.
        num_heads: attention heads over the facets; must divide ``out_dim``.
        gate: a :class:`MonotoneGate`, its config, or ``None`` for ``MonotoneGate(4)``.
        dropout: dropout after the activation and on the attention weights.
        activation: $\sigma$: ``"relu"``, ``"gelu"``, ``"tanh"``, ``"sigmoid"`` or ``"identity"``.
        attention: apply the cross-facet self-attention.

    Shapes:
        - x: ``[N, M, d]``; reliability: ``[N, M]`` integer levels
        - edge_index: ``[2, E]`` (column ``(v, u)``: $v \in \mathcal{N}_u$); edge_weight: ``[E]``
        - output: ``[N, M d']``

    Example:
        >>> import torch
        >>> layer = FacetGraph(in_dim=8, out_dim=6, num_facets=3, num_heads=2)
        >>> x = torch.randn(4, 3, 8)
        >>> reliability = torch.randint(0, 4, (4, 3))
        >>> edge_index = torch.tensor([[1, 2, 0, 3], [0, 0, 1, 2]])
        >>> layer(x, reliability, edge_index).shape
        torch.Size([4, 18])

    Citation:
        Zhang, Wang, Madhu, Bui, Roznyatovskiy and Ying (2026). *CoPersona: Collaborative
        Persona Graphs for Robust LLM Personalization.* KDD '26.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_facets: int,
        num_heads: int = 1,
        gate: MonotoneGate | MonotoneGateConfig | None = None,
        dropout: float = 0.0,
        activation: Literal["relu", "gelu", "tanh", "sigmoid", "identity"] = "relu",
        attention: bool = True,
    ):
        super().__init__(aggr="add")
        if in_dim < 1 or out_dim < 1 or num_facets < 1:
            raise ValueError(f"FacetGraph: in_dim ({in_dim}), out_dim ({out_dim}) and num_facets ({num_facets}) "
                             "must be >= 1")
        if num_heads < 1 or out_dim % num_heads != 0:
            raise ValueError(f"FacetGraph: num_heads ({num_heads}) must divide out_dim ({out_dim})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FacetGraph: dropout must be in [0, 1), got {dropout}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"FacetGraph: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.in_dim, self.out_dim, self.num_facets = in_dim, out_dim, num_facets
        self.num_heads, self.dropout, self.activation = num_heads, dropout, activation
        if gate is None:
            gate = MonotoneGate()
        elif isinstance(gate, MonotoneGateConfig):
            gate = gate.build()
        if not isinstance(gate, MonotoneGate):
            raise TypeError(f"FacetGraph: gate must be a MonotoneGate, its config or None, got {type(gate).__name__}")
        self.gate = gate
        self.lin = nn.Linear(in_dim, out_dim)
        self.attn = nn.MultiheadAttention(out_dim, num_heads, dropout=dropout, batch_first=True) if attention else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset the gate, the shared projection $W$ and the attention."""
        super().reset_parameters()
        self.gate.reset_parameters()
        self.lin.reset_parameters()
        if self.attn is not None:
            self.attn._reset_parameters()

    # ------------------------------------------------------------------ pieces
    def neighbor_mean(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        r"""$\tilde h_u$: the (weighted) mean of the neighbours' states; own state for isolated users.

        Args:
            x: ``[N, M, d]`` (or any ``[N, ...]``) node states.
            edge_index: ``[2, E]`` long, column ``(v, u)`` for $v \in \mathcal{N}_u$.
            edge_weight: optional ``[E]`` finite, non-negative weights $a_{uv}$.

        Returns:
            Same shape as ``x`` (empty for no users).

        Raises:
            ValueError: ``edge_index`` is not ``[2, E]`` or names a missing node, or
                ``edge_weight`` is not ``[E]``, not finite or negative.
        """
        n = x.shape[0]
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"FacetGraph: edge_index must be [2, E], got {tuple(edge_index.shape)}")
        edge_index = edge_index.long().to(x.device)
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
            raise ValueError(f"FacetGraph: edge_index refers to node {int(edge_index.max())} (or a negative one) but "
                             f"x has {n} nodes")
        num_edges = edge_index.shape[1]
        if edge_weight is None:
            weight = torch.ones(num_edges, dtype=x.dtype, device=x.device)
        else:
            if tuple(edge_weight.shape) != (num_edges,):
                raise ValueError(f"FacetGraph: edge_weight must be [E] = [{num_edges}], got {tuple(edge_weight.shape)}")
            weight = edge_weight.to(dtype=x.dtype, device=x.device)
            if num_edges and not bool(torch.isfinite(weight).all()):
                bad = (~torch.isfinite(weight)).nonzero().flatten()
                raise ValueError(f"FacetGraph: edge_weight must be finite in {x.dtype} (it weights a mean; inf / inf "
                                 f"is NaN), got {edge_weight[bad[:5].to(edge_weight.device)].tolist()} at edges "
                                 f"{bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}")
            if num_edges and bool((weight < 0).any()):
                raise ValueError("FacetGraph: edge_weight must be non-negative (it weights a mean)")
        if n == 0:  # no users (so, as checked above, no edges): nothing to average
            return x.clone()
        src, dst = edge_index
        total = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, dst, weight)  # (N,)
        if edge_weight is not None and not bool(torch.isfinite(total).all()):
            node = int((~torch.isfinite(total)).nonzero()[0])
            raise ValueError(f"FacetGraph: edge_weight of the edges into node {node} sum to inf in {x.dtype}; "
                             "scale the weights down (the mean only depends on their ratios)")
        norm = weight / total[dst].clamp_min(torch.finfo(x.dtype).tiny)  # (E,)
        order = dst.argsort(stable=True)
        crow = torch.zeros(n + 1, dtype=torch.long, device=x.device)
        crow[1:] = torch.bincount(dst, minlength=n).cumsum(0)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            adj_t = torch.sparse_csr_tensor(crow, src[order], norm[order], (n, n), check_invariants=False)  # (N, N)
        flat = x.reshape(n, -1)  # (N, M d)
        mean = self.propagate(adj_t, x=flat).view_as(x)  # (N, M, d)
        isolated = (total <= 0).nonzero().flatten()
        if len(isolated):  # in place, on the isolated rows only (a full-size where() cost a copy of x)
            mean[isolated] = x[isolated]
        return mean

    def message(self, x_j: Tensor, edge_weight: Tensor | None = None) -> Tensor:  # used only for edge_index inputs
        return x_j if edge_weight is None else edge_weight.unsqueeze(-1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        return spmm(adj_t, x, reduce="sum")  # (N, M d)

    @staticmethod
    def mix(x: Tensor, gamma: Tensor, neighbor_mean: Tensor) -> Tensor:
        r"""$\gamma\, h_u^{(0)} + (1 - \gamma)\, \tilde h_u$, the input of $W$ in Eq. 11.

        Args:
            x: ``[N, M, d]`` own states.
            gamma: ``[N, M]`` gates.
            neighbor_mean: ``[N, M, d]`` from :meth:`neighbor_mean`.

        Returns:
            ``[N, M, d]``: ``x`` where $\gamma = 1$, ``neighbor_mean`` where $\gamma = 0$.
        """
        g = gamma.unsqueeze(-1).to(x.dtype)  # (N, M, 1)
        # lerp(a, b, g) = a + g (b - a) in one pass; exact at g = 0 (a) and g = 1 (b)
        return torch.lerp(neighbor_mean, x, g.expand_as(x))

    def gated_input(self, x: Tensor, reliability: Tensor, edge_index: Tensor,
                    edge_weight: Tensor | None = None) -> Tensor:
        """The gated mix before the projection $W$: ``mix(x, gate(reliability), neighbor_mean(...))``, ``[N, M, d]``."""
        self._check(x, reliability)
        return self.mix(x, self.gate(reliability), self.neighbor_mean(x, edge_index, edge_weight))

    def _check(self, x: Tensor, reliability: Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.num_facets or x.shape[2] != self.in_dim:
            raise ValueError(f"FacetGraph(num_facets={self.num_facets}, in_dim={self.in_dim}): x must be "
                             f"[N, {self.num_facets}, {self.in_dim}], got {tuple(x.shape)}")
        if tuple(reliability.shape) != tuple(x.shape[:2]):
            raise ValueError(f"FacetGraph: reliability must be [N, M] = {list(x.shape[:2])}, got "
                             f"{tuple(reliability.shape)}")

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, reliability: Tensor, edge_index: Tensor,
                edge_weight: Tensor | None = None) -> Tensor:
        """Collaborative persona vectors.

        Args:
            x: ``[N, M, d]`` facet embeddings.
            reliability: ``[N, M]`` integer reliability levels.
            edge_index: ``[2, E]`` user-level neighbour edges (column ``(v, u)``: $v \\in \\mathcal{N}_u$).
            edge_weight: optional ``[E]`` finite, non-negative weights of the neighbour mean.

        Returns:
            ``[N, M * out_dim]`` (``[0, M * out_dim]`` for no users).

        Raises:
            ValueError: bad shapes, an edge to a missing node, or an ``edge_weight`` that is
                not finite or negative (the message names the field).
        """
        n = x.shape[0]
        self._check(x, reliability)
        gamma = self.gate(reliability)  # (N, M)
        mean = self.neighbor_mean(x, edge_index, edge_weight)  # (N, M, d)
        if torch.is_grad_enabled() or n <= self.ROW_BLOCK:
            return self._update(x, gamma, mean)
        # inference on many users: the per-user update in row blocks, so that its intermediates
        # ([rows, M, 3 d'] in the attention) stay small and no [N, M, d] mix is materialised
        out = x.new_empty(n, self.num_facets * self.out_dim)  # (N, M d')
        for start in range(0, n, self.ROW_BLOCK):
            rows = slice(start, start + self.ROW_BLOCK)
            out[rows] = self._update(x[rows], gamma[rows], mean[rows])
        return out

    ROW_BLOCK = 8192
    """Users per block of the no-grad forward (the result does not depend on it)."""

    def _update(self, x: Tensor, gamma: Tensor, mean: Tensor) -> Tensor:
        r"""Eqs. 11-12 for a block of users: gate mix, $W$, $\sigma$, dropout, cross-facet attention: ``[n, M d']``."""
        h = _ACTIVATIONS[self.activation](self.lin(self.mix(x, gamma, mean)))  # (n, M, d')
        h = F.dropout(h, p=self.dropout, training=self.training)
        if self.attn is not None:
            attended, _ = self.attn(h, h, h, need_weights=False)  # (n, M, d')
            h = h + attended
        return h.reshape(x.shape[0], self.num_facets * self.out_dim)  # (n, M d'); n = 0 gives [0, M d']

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, out_dim={self.out_dim}, num_facets={self.num_facets}, "
                f"num_heads={self.num_heads}, dropout={self.dropout}, activation={self.activation!r}, "
                f"attention={self.attn is not None}")

    def __repr__(self) -> str:  # MessagePassing's repr hides extra_repr
        return nn.Module.__repr__(self)


class FacetGraphConfig(BaseConfig):
    """Config of :class:`FacetGraph`."""

    _target_ = FacetGraph

    in_dim: int = Field(..., ge=1, description="Facet embedding size $d$ (e.g. 384 for MiniLM, 768 for mpnet).")
    out_dim: int = Field(..., ge=1, description="Output size $d'$ per facet (the paper: 512).")
    num_facets: int = Field(..., ge=1, description="Number of facets $M$.")
    num_heads: int = Field(1, ge=1, description=(
        "Attention heads of the cross-facet self-attention; must divide ``out_dim``."))
    gate: MonotoneGateConfig | None = Field(None, description=(
        "The reliability gate (``None``: ``MonotoneGate(4)``, shared across facets)."))
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "Dropout after the activation and on the attention weights (the paper: 0.1)."))
    activation: Literal["relu", "gelu", "tanh", "sigmoid", "identity"] = Field("relu", description=(
        "The nonlinearity $\\sigma$ of Eq. 11."))
    attention: bool = Field(True, description="Apply the cross-facet self-attention.")

    @model_validator(mode="after")
    def _heads_divide_out_dim(self) -> "FacetGraphConfig":
        if self.out_dim % self.num_heads != 0:
            raise ValueError(f"num_heads ({self.num_heads}) must divide out_dim ({self.out_dim})")
        return self
