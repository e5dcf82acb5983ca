r"""CoPersona: a causal LM personalised by collaborative persona graphs (Zhang, Wang et al., KDD 2026).

The final input to the LLM is, in embedding space, $[\mathbf S_u; C_u(x'); x']$ (§3.4):

* $\mathbf S_u$, the **parametric branch**: facet embeddings $[N, M, d]$ and reliability
  labels go through :class:`~personakit.graph.FacetGraph` (reliability-gated message
  passing over the user-level neighbour edges, cross-facet attention) to
  $\mathbf h_u \in \mathbb R^{M d'}$ (Eq. 12), projected by
  :class:`~personakit.modules.SoftPromptProjector` to $L = 20$ virtual tokens (Eq. 13)
  prepended to the token embeddings (attention mask extended, labels $-100$);
* $C_u(x') = \mathrm{LINEARIZE}(\mathcal H_u(x'), \{E_u^{(m)}\})$: the BM25 top-$k$ of the
  user's own history for the query (:class:`~personakit.retrieval.BM25Retriever`) and the
  **non-parametric branch**, facet-aligned peer evidence
  (:class:`~personakit.retrieval.neighbors.PeerContextRetriever`);
* $x'$, the conversation so far.

Training minimises $-\sum_t \log P(y_t \mid y_{<t}, \mathbf S_u, C_u(x'), x')$ (Eq. 14)
with LoRA on the LLM ($r = 16$, $\alpha = 32$, dropout 0.05) and the graph encoder and
projector trained end to end.  At inference the soft prompt of each user is computed once
and cached (:meth:`CoPersonaModel.soft_prompts`).

Variants (``CoPersonaConfig.variant``), the paper's baselines and ablations (Tables 1, 5):

| variant | soft prompt | self-history (BM25) | profile summary | peer context |
| --- | --- | --- | --- | --- |
| ``copersona`` | yes | yes | | yes |
| ``no_nonparametric`` | yes | yes | | |
| ``no_parametric`` | | yes | | yes |
| ``nonperso`` | | | | |
| ``rag`` | | yes | | |
| ``pag`` | | yes | yes | |

Layout: :mod:`~personakit.models.copersona.config` (:class:`CoPersonaConfig`, the variants),
:mod:`~personakit.models.copersona.context` (:class:`CoPersonaContext`, and the test-time controls :func:`swap_own_facets` and
:func:`without_peer_similarity`; :func:`personakit.graph.random_neighbors` rewires the graph),
:mod:`~personakit.models.copersona.collator` (:func:`build_copersona_prompt`,
:class:`CoPersonaCollator`), :mod:`~personakit.models.copersona.outputs`
(:class:`CoPersonaOutput`) and :mod:`~personakit.models.copersona.model` (:class:`CoPersonaModel`).

PAG's profile summary is the user's own (moderate/strong) facet summaries, a departure:
the paper's PAG writes a separate free-text profile.  The graph encoder runs over the
whole user graph at each training step (fine for thousands of users; sample subgraphs
for more).
"""

from personakit.models.copersona.collator import CoPersonaCollator, build_copersona_prompt
from personakit.models.copersona.config import COPERSONA_INPUTS, COPERSONA_VARIANTS, CoPersonaConfig
from personakit.models.copersona.context import CoPersonaContext, swap_own_facets, without_peer_similarity
from personakit.models.copersona.model import CoPersonaModel
from personakit.models.copersona.outputs import CoPersonaOutput

__all__ = ["COPERSONA_VARIANTS", "COPERSONA_INPUTS", "CoPersonaConfig", "CoPersonaContext", "CoPersonaOutput",
           "CoPersonaCollator", "CoPersonaModel", "build_copersona_prompt", "swap_own_facets",
           "without_peer_similarity"]
