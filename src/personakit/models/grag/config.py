r"""Config of the GRAG models: :class:`GRAGConfig` (a transformers ``PreTrainedConfig``).

:class:`GRAGConfig` holds the backbone's own config (as a dict, with its class name,
so any transformers model is rebuilt exactly) and the GRAG settings: the method
(``"presft"``, ``"pregrag"``, ``"postgrag"``), the PreSFT input mode, the loss weights
$\alpha$ and $\beta$ of $L = L_P + \alpha L_G + \beta L_{CJEPA}$ (GRAG Eq. 2–3), the
style extractors' heads and dropout, optional LoRA, and how many encoder passes the
post-fusion encodings may use.  It is written to ``config.json`` by
``save_pretrained`` and read back by ``from_pretrained``.  :class:`LoraSettings` (now in
:mod:`personakit.backbones.peft`) is re-exported here.
"""

from __future__ import annotations

from typing import Any, Optional

from transformers import AutoConfig

from personakit.backbones.peft import LoraSettings
from personakit.models.base import PersonaModelConfig

__all__ = ["GRAGConfig", "LoraSettings", "GRAG_METHODS", "PRESFT_MODES", "METHOD_DEFAULTS", "STYLE_INITS",
           "PROMPT_FORMATS"]

GRAG_METHODS = ("presft", "pregrag", "postgrag")
"""The model families: PreSFT baselines, pre-fusion PreGRAG, post-fusion PostGRAG."""
PRESFT_MODES = ("hist", "tst")
"""PreSFT inputs: ``"hist"`` = $[P; H]$, ``"tst"`` = $[P; R_G]$ (GRAG §4.2.2)."""

METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    "presft": {"alpha": 0.0, "beta": 0.0},
    "pregrag": {"alpha": 0.0, "beta": 0.05},
    "postgrag": {"alpha": 0.5, "beta": 0.05},
}
r"""The loss weights a method gets when ``alpha`` / ``beta`` are not given: the one place that sets them.

$\beta = 0.05$ is the paper's best value on SPC for PostGRAG (GRAG §4.3); $\alpha = 0.5$ is
**ours**: the paper searches $\alpha \in \{0, \dots, 1\}$ and does not print the value it kept.
PreSFT has neither term, PreGRAG no style removal ($\alpha = 0$, §3.5)."""

STYLE_INITS = ("zero", "paper")
r"""How PostGRAG's style extractors start: ``"zero"`` (the default, a departure from the paper: the
output projection $W^O$ of $\text{SE}_P$ and $\text{SE}_G$ starts at zero, so $\mathcal{S} = 0$ and the
pretrained decoder is untouched at step 0) or ``"paper"`` (Xavier-uniform $W^O$, as
``nn.MultiheadAttention``: a random style of norm ~30 is added at every layer from the first step)."""

PROMPT_FORMATS = ("auto", "plain", "chat")
"""Decoder-only prompt layout: ``"chat"`` (the tokenizer's chat template: persona in the system
message, history as user / assistant turns, the reply as the assistant's turn ending with the
template's end-of-turn token), ``"plain"`` (``persona: P`` / ``user: ...`` / ``agent:`` lines), or
``"auto"`` (``"chat"`` when the tokenizer has a chat template, else ``"plain"``)."""


class GRAGConfig(PersonaModelConfig):
    r"""Config of a GRAG model: the backbone's config plus the GRAG settings.

    Args:
        method: ``"presft"``, ``"pregrag"`` or ``"postgrag"``.
        mode: PreSFT input, ``"hist"`` ($[P; H]$) or ``"tst"`` ($[P; R_G]$); ignored otherwise.
        alpha: weight $\alpha$ of the style-removal loss $L_G$ (PostGRAG only; 0 elsewhere).
            ``None`` (the default): the method's value in :data:`METHOD_DEFAULTS` (PostGRAG 0.5).
        beta: weight $\beta$ of $L_{CJEPA}$ (PreGRAG and PostGRAG; 0 for PreSFT).
            ``None`` (the default): the method's value in :data:`METHOD_DEFAULTS` (0.05).
        extractor_heads: attention heads of the style extractors $\text{SE}_P$, $\text{SE}_G$
            (8: ours; the paper does not give it).
        extractor_dropout: attention dropout of the style extractors (0.1: ours).
        style_init: ``"zero"`` (default) or ``"paper"``; see :data:`STYLE_INITS`.
        style_layers: PostGRAG: the decoder layers whose output gets the style, as layer
            indices (negative counts from the end); ``None`` (the default, the paper's form):
            every layer.  ``[0]`` adds the style once, after the first layer: in a pre-norm
            decoder the residual stream is not normalised between layers, so the paper's
            every-layer addition adds up to $N \mathcal{S}$ over $N$ layers (a departure from
            the paper when set; see :attr:`~personakit.modules.StyleEnhancedDecoder.active_layers`).
        persona_in_history: PostGRAG: $H$ begins with the persona, as PreSFT(Hist)'s input does,
            so the decoder reads the persona directly as well as through the style vector, and a
            PostGRAG with ``style_init="zero"`` starts as PreSFT(Hist) starts (a departure from
            the paper when set; ``False``, the default, is the paper's $H$ alone).  See
            :class:`~personakit.models.grag.GRAGCollator`.
        prompt_format: decoder-only prompt layout, ``"auto"`` (default), ``"chat"`` or
            ``"plain"``; see :data:`PROMPT_FORMATS`.
        backbone: the backbone's config as a dict (``backbone_config.to_dict()``).
        backbone_class: the backbone's transformers class name
            (``"BartForConditionalGeneration"``, ``"EncoderDecoderModel"``, ``"LlamaForCausalLM"``...).
        lora: :class:`~personakit.backbones.peft.LoraSettings` (its dict, or a
            ``peft.LoraConfig``) to train LoRA adapters instead of the full backbone;
            ``None`` for full fine-tuning.
        encoder_passes: PostGRAG encodes $P$, $H$, $R_G$, $R_P$ separately but batched:
            stacked along the batch dimension in at most this many encoder passes
            (1: one pass padded to the longest; 2+: the rows of all four grouped by length
            so less padding is computed; 4, the default, suits a CPU, where every padded
            position is computed).  See :func:`~personakit.models.grag.encoding.encode_segments`.
        decoder_passes: PostGRAG decodes $R_P$ (for $L_P$) and $R_G$ (for $L_G$): 2, the
            default, runs them as two decoder passes, each padded only to its own targets
            and attended states (on a compute-bound CPU the padding is what costs); 1
            stacks them into one pass over $2B$ rows padded to the longer of each (fewer,
            larger passes, which suits a GPU).  Both give the same losses.
        compute_unweighted_losses: also compute $L_G$ / $L_{CJEPA}$ when their weight
            is 0 (detached, for logging; not added to the loss).
    """

    model_type = "personakit-grag"

    method: str = "postgrag"
    mode: str = "hist"
    alpha: Optional[float] = None
    beta: Optional[float] = None
    extractor_heads: int = 8
    extractor_dropout: float = 0.1
    style_init: str = "zero"
    style_layers: Optional[list[int]] = None
    persona_in_history: bool = False
    prompt_format: str = "auto"
    encoder_passes: int = 4
    decoder_passes: int = 2
    compute_unweighted_losses: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        defaults = METHOD_DEFAULTS.get(self.method, {})
        for name in ("alpha", "beta"):
            if getattr(self, name) is None:
                setattr(self, name, defaults.get(name, 0.0))
        super().__post_init__(**kwargs)  # LoRA and backbone normalised, then validate_settings()

    def validate_settings(self) -> None:
        """Check the GRAG settings; the message names the field."""
        if self.method not in GRAG_METHODS:
            raise ValueError(f"GRAGConfig: field 'method' must be one of {GRAG_METHODS}, got {self.method!r}")
        if self.mode not in PRESFT_MODES:
            raise ValueError(f"GRAGConfig: field 'mode' must be one of {PRESFT_MODES}, got {self.mode!r}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"GRAGConfig: field {name!r} must be a number >= 0, got {value!r}")
        if self.method == "presft" and (self.alpha or self.beta):
            raise ValueError("GRAGConfig: PreSFT has no L_G or L_CJEPA; fields 'alpha' and 'beta' must be 0")
        if self.method == "pregrag" and self.alpha:
            raise ValueError("GRAGConfig: PreGRAG has no style removal (paper §3.5); field 'alpha' must be 0")
        if not isinstance(self.extractor_heads, int) or self.extractor_heads < 1:
            raise ValueError(f"GRAGConfig: field 'extractor_heads' must be >= 1, got {self.extractor_heads!r}")
        if not 0.0 <= float(self.extractor_dropout) < 1.0:
            raise ValueError(f"GRAGConfig: field 'extractor_dropout' must be in [0, 1), got {self.extractor_dropout!r}")
        if self.style_init not in STYLE_INITS:
            raise ValueError(f"GRAGConfig: field 'style_init' must be one of {STYLE_INITS}, got {self.style_init!r}")
        layers = self.style_layers
        if layers is not None and (isinstance(layers, (str, bytes)) or not isinstance(layers, (list, tuple)) or not layers
                                   or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)):
            raise ValueError(f"GRAGConfig: field 'style_layers' must be None or a non-empty list of layer indices, "
                             f"got {layers!r}")
        if layers is not None and self.method != "postgrag":
            raise ValueError(f"GRAGConfig: field 'style_layers' applies to PostGRAG only (method {self.method!r})")
        if not isinstance(self.persona_in_history, bool):
            raise ValueError(f"GRAGConfig: field 'persona_in_history' must be true or false, "
                             f"got {self.persona_in_history!r}")
        if self.persona_in_history and self.method != "postgrag":
            raise ValueError(f"GRAGConfig: field 'persona_in_history' applies to PostGRAG only (method {self.method!r})")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(
                f"GRAGConfig: field 'prompt_format' must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")
        if not isinstance(self.encoder_passes, int) or self.encoder_passes < 1:
            raise ValueError(f"GRAGConfig: field 'encoder_passes' must be >= 1, got {self.encoder_passes!r}")
        if self.decoder_passes not in (1, 2):
            raise ValueError(f"GRAGConfig: field 'decoder_passes' must be 1 or 2, got {self.decoder_passes!r}")


# let transformers' Auto* classes (e.g. AutoTokenizer reading config.json of a saved folder) recognise it
AutoConfig.register(GRAGConfig.model_type, GRAGConfig, exist_ok=True)
