r"""PreSFT baselines of GRAG (§4.2.2): supervised fine-tuning on pre-fused inputs."""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor

from personakit.models.grag.base import GRAGModel
from personakit.models.grag.outputs import GRAGOutput

__all__ = ["PreSFT"]


class PreSFT(GRAGModel):
    r"""PreSFT(Hist) and PreSFT(TST) (Liu et al., 2026, §4.2.2): a task LM fine-tuned on $[P; H]$ or $[P; R_G]$.

    "Traditional conversation generation using persona and conversation history, and
    TST using persona and generic response": the input is the concatenation
    $[P; H]$ (``mode="hist"``) or $[P; R_G]$ (``mode="tst"``) and the model is trained
    with the next-word-prediction loss of the personalised response only,

    $$L = L_P = -\frac{1}{|R_P|}\sum_t \log p_\theta(r_t \mid r_{<t}, X).$$

    For an encoder-decoder backbone $X$ is the encoder input and $R_P$ the decoder
    target; for a decoder-only backbone the LM reads the prompt $X$ followed by $R_P$,
    with the loss on the $R_P$ tokens only.  $L_P$ equals the backbone's own loss on
    the same labels.

    Batch (from :meth:`make_collator`): encoder-decoder ``input_ids``,
    ``attention_mask``, ``labels``; decoder-only ``input_ids``, ``attention_mask``,
    ``labels`` (prompt + target) and ``prompt_ids``, ``prompt_mask`` (for ``generate``).

    Example:
        >>> from transformers import BartConfig, BartForConditionalGeneration
        >>> cfg = BartConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        ...                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        ...                  vocab_size=99, max_position_embeddings=64)
        >>> model = PreSFT.from_backbone(BartForConditionalGeneration(cfg), mode="tst")
        >>> model.config.mode, model.config.beta
        ('tst', 0.0)

    Citation:
        Liu, Symons and Vatsavai (2026). *GRAG: Generic Response-Augmented Generation
        Framework for Personalized Conversational Systems.* arXiv:2606.21097.
    """

    METHOD = "presft"

    @classmethod
    def default_settings(cls, mode: str = "hist", **settings: Any) -> dict[str, Any]:
        return super().default_settings(mode=mode, **settings)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Optional[Tensor] = None,
        prompt_ids: Optional[Tensor] = None,
        prompt_mask: Optional[Tensor] = None,
    ) -> GRAGOutput:
        """Teacher-forced logits and $L_P$.

        Args:
            input_ids, attention_mask: ``[B, S]`` encoder input (encoder-decoder) or
                prompt + target (decoder-only).
            labels: ``[B, T]`` targets (``-100`` ignored); required for encoder-decoder
                backbones (the decoder input is the shifted labels).
            prompt_ids, prompt_mask: generation prompts (decoder-only); unused here.

        Returns:
            :class:`GRAGOutput` with ``loss = loss_p``.
        """
        base = self.base_model
        if self.is_encoder_decoder:
            if labels is None:
                raise ValueError("PreSFT.forward: an encoder-decoder backbone needs labels (use generate() otherwise)")
            decoder_input_ids = base.prepare_decoder_input_ids_from_labels(labels=labels)  # (B, T)
            logits = base(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                          use_cache=False).logits  # (B, T, V)
            target = labels
        else:  # logits from the earliest target on; ``target`` is aligned with them
            logits, target, _ = self.causal_lm_forward(input_ids, attention_mask, labels)  # (B, W, V)
        loss_p = None if target is None else self.token_loss(logits, target)
        return GRAGOutput(loss=self._combine(loss_p, None, None), loss_p=loss_p, logits=logits,
                          labels=None if self.is_encoder_decoder else target)
