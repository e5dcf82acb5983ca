r"""PreGRAG: the pre-fusion GRAG model (§3.2), trained with $L_P + \beta L_{CJEPA}$ (Eq. 2)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from personakit.functional.losses import last_token_pool
from personakit.losses import CJEPALoss
from personakit.models.grag.base import GRAGModel
from personakit.models.grag.outputs import GRAGOutput

__all__ = ["PreGRAG"]


class PreGRAG(GRAGModel):
    r"""PreGRAG (Liu et al., 2026, §3.2 and §3.4): $H' = [P; H; R_G]$ as one input, plus C-JEPA.

    "$P$, $H$, and $R_G$ are concatenated as a single long input, $H' = [P; H; R_G]$ ...
    $E_{H'} = \text{Encoder}(H')$ ... For decoder-only models, $E_{H'} = \text{Decoder}(H')$."
    The decoder produces $R_P$; the loss is (Eq. 2)

    $$L_{pre} = L_P + \beta\, L_{CJEPA}, \qquad
      L_{CJEPA} = \cos(\mathcal{E}_C, \mathcal{E}_G) - \cos(\mathcal{E}_C, \mathcal{E}_P)$$

    with $\mathcal{E}_C$ the last non-padding token of $E_{H'}$ and $\mathcal{E}_P$,
    $\mathcal{E}_G$ the last non-padding tokens of the encodings of $R_P$ and $R_G$
    alone (one batched encoder pass over both).  The C-JEPA sign is the paper's stated
    intent, not its printed Eq. 1 (see :class:`~personakit.losses.CJEPALoss`).  PreGRAG
    has no style removal ($\alpha = 0$, §3.5).

    Decoder-only backbones: $E_{H'}$ is the LM's last hidden states (after the final
    norm) of the prompt $H'$; since the LM is causal, the state of the last prompt
    token in the training pass over prompt + $R_P$ equals that of the prompt alone, so
    $\mathcal{E}_C$ is read from that pass (no extra encoding).  $R_P$ and $R_G$ are
    encoded by the same LM, alone.

    Batch: as :class:`~personakit.models.grag.PreSFT` plus ``response_ids``,
    ``response_mask``, ``generic_ids``, ``generic_mask``.

    Args (config): ``beta`` ($\beta$, default 0.05).

    Citation:
        Liu, Symons and Vatsavai (2026). *GRAG: Generic Response-Augmented Generation
        Framework for Personalized Conversational Systems.* arXiv:2606.21097.
    """

    METHOD = "pregrag"

    def _setup(self) -> None:
        self.cjepa = CJEPALoss()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Optional[Tensor] = None,
        response_ids: Optional[Tensor] = None,
        response_mask: Optional[Tensor] = None,
        generic_ids: Optional[Tensor] = None,
        generic_mask: Optional[Tensor] = None,
        prompt_ids: Optional[Tensor] = None,
        prompt_mask: Optional[Tensor] = None,
    ) -> GRAGOutput:
        r"""Teacher-forced logits, $L_P$ and $L_{CJEPA}$.

        Args:
            input_ids, attention_mask: ``[B, S]`` $H'$ (encoder-decoder) or $H'$ + target (decoder-only).
            labels: ``[B, T]`` $R_P$ targets (``-100`` ignored).
            response_ids, response_mask: ``[B, Tr]`` $R_P$ alone (for $\mathcal{E}_P$).
            generic_ids, generic_mask: ``[B, Tg]`` $R_G$ alone (for $\mathcal{E}_G$).
            prompt_ids, prompt_mask: generation prompts (decoder-only); unused here.
        """
        base = self.base_model
        if self.is_encoder_decoder:
            if labels is None:
                raise ValueError("PreGRAG.forward: an encoder-decoder backbone needs labels (use generate() otherwise)")
            fused = self.encode(input_ids, attention_mask)  # E_H': (B, S, D)
            logits = self.decode_encoder_decoder(fused, attention_mask, labels)  # (B, T, V)
            context = last_token_pool(fused, attention_mask)  # (B, D)
            target = labels
        else:  # logits from the earliest target on; ``target`` is aligned with them
            logits, target, hidden = self.causal_lm_forward(input_ids, attention_mask, labels)  # (B, W, V), (B, S, D)
            context = None
            if labels is not None:
                supervised = labels != -100
                if not bool(supervised.any(dim=1).all()):
                    raise ValueError("PreGRAG.forward: every row of labels needs a target token")
                last_prompt = supervised.int().argmax(dim=1) - 1  # (B,) the token before the first target
                context = hidden[torch.arange(hidden.size(0), device=hidden.device), last_prompt]  # (B, D)
        loss_p = None if target is None else self.token_loss(logits, target)

        loss_cjepa = None
        if self._wants(self.config.beta) and context is not None and response_ids is not None and generic_ids is not None:
            (e_rp, m_rp), (e_rg, m_rg) = self.encode_segments([(response_ids, response_mask), (generic_ids, generic_mask)])
            loss_cjepa = self.cjepa(context, last_token_pool(e_rp, m_rp), last_token_pool(e_rg, m_rg))
            if self.config.beta == 0:
                loss_cjepa = loss_cjepa.detach()
        return GRAGOutput(loss=self._combine(loss_p, None, loss_cjepa), loss_p=loss_p, loss_cjepa=loss_cjepa,
                          logits=logits, labels=None if self.is_encoder_decoder else target)
