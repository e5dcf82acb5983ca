r"""Config of CoPersona: :class:`CoPersonaConfig` and the variants :data:`COPERSONA_VARIANTS`."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig

from personakit.models.base import PersonaModelConfig

__all__ = ["COPERSONA_VARIANTS", "COPERSONA_INPUTS", "CoPersonaConfig"]

COPERSONA_INPUTS = ("soft_prompt", "history", "profile_summary", "peer_context")
"""The inputs a variant may use, in the order of the flags of :data:`COPERSONA_VARIANTS`."""

COPERSONA_VARIANTS = {
    # variant: (soft prompt, self history, profile summary, peer context)
    "copersona": (True, True, False, True),
    "no_nonparametric": (True, True, False, False),
    "no_parametric": (False, True, False, True),
    "nonperso": (False, False, False, False),
    "rag": (False, True, False, False),
    "pag": (False, True, True, False),
}
"""The model variants and which inputs each one uses."""

_INT_FIELDS = ("num_facets", "facet_dim", "graph_hidden", "num_virtual_tokens", "projector_hidden",
               "max_item_tokens", "max_peer_tokens", "max_prompt_tokens", "max_response_tokens")


class CoPersonaConfig(PersonaModelConfig):
    r"""Config of :class:`~personakit.models.copersona.CoPersonaModel`: the backbone's config plus the
    CoPersona settings.

    Args:
        variant: one of :data:`COPERSONA_VARIANTS`.
        num_facets: $M$.
        facet_dim: $d$, size of the facet embeddings (384 MiniLM, 768 mpnet).
        graph_hidden: $d'$ of :class:`~personakit.graph.FacetGraph` (paper: 512).
        graph_dropout: dropout of the graph encoder (paper: 0.1).
        num_virtual_tokens: $L$ (paper: 20).
        projector_hidden: hidden width of the soft-prompt projector (paper: 512).
        retrieval_k: self-history items retrieved with BM25 (paper: 4).
        max_item_tokens: tokens per retrieved history item.
        max_peer_tokens: tokens of the whole peer context.
        max_neighbors: peers per facet (paper: up to 3).
        max_prompt_tokens: the prompt keeps its last this many tokens.
        max_response_tokens: the response keeps its first this many tokens, then EOS (the
            causal-LM convention of :mod:`personakit.models.collators`).  The old field
            ``max_target_tokens`` (response + EOS) is still read: ``max_target_tokens=N``
            is ``max_response_tokens=N - 1``, the same batches.
        backbone: the causal LM's config dict.
        backbone_class: the causal LM's class name.
        lora: :class:`~personakit.backbones.peft.LoraSettings` dict (paper r 16, ``lora_alpha`` 32,
            dropout 0.05); ``None``: full fine-tuning.
    """

    model_type = "personakit-copersona"

    variant: str = "copersona"
    num_facets: int = 5
    facet_dim: int = 384
    graph_hidden: int = 512
    graph_dropout: float = 0.1
    num_virtual_tokens: int = 20
    projector_hidden: int = 512
    retrieval_k: int = 4
    max_item_tokens: int = 64
    max_peer_tokens: int = 256
    max_neighbors: int = 3
    max_prompt_tokens: int = 512
    max_response_tokens: int = 63

    def __post_init__(self, **kwargs: Any) -> None:
        old = kwargs.pop("max_target_tokens", None)
        if old is not None:  # the old name counted the EOS
            if not isinstance(old, int) or old < 2:
                raise ValueError(f"CoPersonaConfig: field 'max_target_tokens' must be an integer >= 2, got {old!r}")
            self.max_response_tokens = old - 1
        super().__post_init__(**kwargs)  # LoRA and backbone normalised, then validate_settings()

    def validate_settings(self) -> None:
        """Check the settings; the message names the field."""
        if self.variant not in COPERSONA_VARIANTS:
            raise ValueError(f"CoPersonaConfig: field 'variant' must be one of {sorted(COPERSONA_VARIANTS)}, "
                             f"got {self.variant!r}")
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CoPersonaConfig: field {name!r} must be an integer >= 1, got {value!r}")

    @property
    def inputs(self) -> dict[str, bool]:
        """Which of :data:`COPERSONA_INPUTS` the variant uses."""
        return dict(zip(COPERSONA_INPUTS, COPERSONA_VARIANTS[self.variant]))

    uses_soft_prompt = property(lambda self: self.inputs["soft_prompt"], doc="Whether the variant has the soft prompt.")
    uses_history = property(lambda self: self.inputs["history"], doc="Whether the prompt has the BM25 self-history.")
    uses_profile_summary = property(lambda self: self.inputs["profile_summary"],
                                    doc="Whether the prompt has the user's profile summary (PAG).")
    uses_peer_context = property(lambda self: self.inputs["peer_context"], doc="Whether the prompt has peer context.")


AutoConfig.register(CoPersonaConfig.model_type, CoPersonaConfig, exist_ok=True)
