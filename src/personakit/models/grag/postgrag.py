r"""PostGRAG: the post-fusion GRAG model (§3.3), trained with $L_P + \alpha L_G + \beta L_{CJEPA}$ (Eq. 3)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from personakit.functional.losses import last_token_pool
from personakit.losses import CJEPALoss
from personakit.models.grag.base import GRAGModel
from personakit.backbones.compat import cache_argument
from personakit.models.grag.encoding import KeyValues, continuation, left_pad, pad_stack, stack_key_values
from personakit.models.grag.outputs import GRAGOutput
from personakit.modules import StyleEnhancedDecoder, StyleExtractor, concat_masked, wrap_style_decoder

__all__ = ["PostGRAG"]


class PostGRAG(GRAGModel):
    r"""PostGRAG (Liu et al., 2026, §3.3–3.5): separate encodings, a style extractor and a style-enhanced decoder.

    1. **Separate encodings** (§3.3): $E_P$, $E_H$, $E_{R_G}$ (and $E_{R_P}$ in training) are
       encoded separately, stacked along the batch dimension in at most
       ``config.encoder_passes`` encoder passes (4 by default: the rows of all four are
       grouped by length into the passes that compute the least padding; 1 puts all $4B$
       rows in one pass padded to the longest; the states equal separate passes).
    2. **Style extractor** (§3.3.1): $\mathcal{S}_P = \text{SE}_P(E_P, [E_H; E_{R_G}])$.
    3. **Style-enhanced decoder** (§3.3.2): the decoder attends to $E_H$ (encoder
       hidden states) and $h_i \leftarrow \mathcal{S}_P + h_i$ at every decoder layer;
       its logits give $R_P$ and $L_P$.
    4. **Style removal** (§3.3.3): $\mathcal{S}_G = \text{SE}_G(E_P, [E_H; E_{R_P}])$ from a
       second extractor; the decoder, attending to $E_{R_P}$ with $\mathcal{S}_G$ at every
       layer, reconstructs $R_G$: token loss $L_G$.  The two decodings run as two decoder
       passes, each padded only to its own length (``config.decoder_passes=2``, the
       default), or as **one** pass over $2B$ rows with encoder states, labels and styles
       stacked (``decoder_passes=1``); the losses are the same.
    5. **C-JEPA** (§3.4): $\mathcal{E}_C$, $\mathcal{E}_P$, $\mathcal{E}_G$ = last non-padding
       tokens of $E_H$, $E_{R_P}$, $E_{R_G}$; $L_{CJEPA} = \cos(C, G) - \cos(C, P)$ (the
       stated intent; the printed Eq. 1 has the opposite sign, see
       :class:`~personakit.losses.CJEPALoss`).

    $$L_{post} = L_P + \alpha L_G + \beta L_{CJEPA}.$$

    $L_G$ is computed only when $\alpha > 0$ and $L_{CJEPA}$ only when $\beta > 0$ (unless
    ``compute_unweighted_losses``); with $\alpha = \beta = 0$ the $R_P$ encoding is
    skipped.  ``generate`` needs only $P$, $H$, $R_G$.

    **Decoder-only backbones** (GRAG §4.3.2, "the decoder is repurposed to execute the
    encoding steps"): $E_X$ is the LM's last hidden states (after its final norm) of
    $X$ alone, with no style.  There is no cross-attention, so "the decoder attends to
    $E_H$" becomes: the LM **continues** its own unstyled encoding of $H$ (ending with the
    agent cue; its key/value cache) with $R_P$, and $\mathcal{S}_P$ is added to the output
    of every layer at the positions of that continuation only.  The prompt keeps its
    unstyled keys and values, as an encoder-decoder's decoder attends to unstyled
    encoder states; the last token of $H$ is fed again under the style (its cached copy
    masked) so that the first token of $R_P$ is predicted from a styled state too.
    Style removal likewise continues the encoding of $R_P$ with the ``"generic
    response:"`` cue + $R_G$ under $\mathcal{S}_G$, loss on the $R_G$ tokens.  Both
    continuations are one LM pass over $2B$ rows, and nothing is read twice: a
    training step costs the four encodings plus about $|R_P| + |R_G|$ styled tokens
    per example.  ``generate`` does the same (the prompt but its last token is read
    without style, then generation continues under $\mathcal{S}_P$), so training and
    inference agree.

    Modules: ``style_extractor`` ($\text{SE}_P$), ``generic_style_extractor``
    ($\text{SE}_G$, always built so checkpoints do not depend on $\alpha$),
    ``style_projection`` (identity unless the encoder and decoder sizes differ, as in
    an ``EncoderDecoderModel`` of two different stacks), and :attr:`style_decoder`, the
    :class:`~personakit.modules.StyleEnhancedDecoder` wrapping the backbone's decoder
    layers (not a registered submodule: its layers are the backbone's).

    Batch: ``persona_ids``, ``history_ids``, ``generic_ids``, ``response_ids`` (+ masks);
    encoder-decoder: ``labels`` ($R_P$), ``generic_labels`` ($R_G$); decoder-only:
    ``input_ids``/``attention_mask``/``labels`` ($H$ + $R_P$) and
    ``generic_input_ids``/``generic_attention_mask``/``generic_labels`` ($R_P$ + $R_G$).

    Args (config): ``alpha`` (0.5, ours), ``beta`` (0.05, the paper's best on SPC),
    ``extractor_heads`` (8, ours), ``extractor_dropout`` (0.1, ours), ``encoder_passes`` (4),
    ``style_init`` (``"zero"``); the defaults come from
    :data:`~personakit.models.grag.config.METHOD_DEFAULTS`.

    **Style initialisation (a departure from the paper).** With ``style_init="zero"`` (the
    default) the output projections $W^O$ of both extractors start at zero, so
    $\mathcal{S}_P = \mathcal{S}_G = 0$ at step 0 and a freshly built PostGRAG predicts exactly
    what its pretrained backbone predicts; $W^O$ gets a gradient from the first step and the
    style grows as far as the loss asks.  The paper's BART is post-norm and trains 20
    epochs; in a pre-norm decoder (Llama, SmolLM2) a random style of norm ~30 added at every
    layer next to hidden states of norm ~56 wrecks the pretrained model (measured: BPC 2.56
    after 12 LoRA steps against 0.98 for PreSFT(Hist)).  ``style_init="paper"`` keeps the
    Xavier-uniform $W^O$ of ``nn.MultiheadAttention``.  The equations are unchanged.

    **Where the style is added.** ``style_layers=None`` (the default) adds it at every
    decoder layer, as the paper.  ``style_layers=[0]`` (any list of layer indices) adds it
    at those layers only; a departure for pre-norm decoders, where the every-layer
    addition accumulates in the residual stream (see the GRAG docs' benchmark section).

    **The persona in $H$.** ``persona_in_history=True`` begins $H$ with the persona, exactly as
    PreSFT(Hist)'s input (:class:`~personakit.models.grag.GRAGCollator`): the decoder then reads
    the persona directly as well as through $\mathcal{S}_P$, and with ``style_init="zero"`` a
    fresh PostGRAG's $L_P$ equals a fresh PreSFT(Hist)'s on the same batch.  In the paper the
    decoder attends to $E_H$ alone and the persona reaches it only through the style; this is a
    departure, off by default.

    **Precision.**  The extractors run in their own parameters' dtype (fp32 by default)
    on encodings cast to it, and the style is cast to the decoder's dtype where it is
    added, so a bf16 backbone (frozen, with fp32 LoRA adapters) works as is.

    Example:
        >>> from transformers import BartConfig, BartForConditionalGeneration
        >>> cfg = BartConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        ...                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        ...                  vocab_size=99, max_position_embeddings=64)
        >>> model = PostGRAG.from_backbone(BartForConditionalGeneration(cfg), extractor_heads=2)
        >>> model.style_decoder.num_layers
        1

    Citation:
        Liu, Symons and Vatsavai (2026). *GRAG: Generic Response-Augmented Generation
        Framework for Personalized Conversational Systems.* arXiv:2606.21097.
    """

    METHOD = "postgrag"

    def _setup(self) -> None:
        d_enc, d_dec = self.encoder_hidden_size, self.decoder_hidden_size
        heads, dropout = self.config.extractor_heads, float(self.config.extractor_dropout)
        self.style_extractor = StyleExtractor(d_enc, num_heads=heads, dropout=dropout)
        self.generic_style_extractor = StyleExtractor(d_enc, num_heads=heads, dropout=dropout)
        self.style_projection: nn.Module = nn.Identity() if d_enc == d_dec else nn.Linear(d_enc, d_dec)
        if self.config.style_init == "zero":
            for extractor in (self.style_extractor, self.generic_style_extractor):
                nn.init.zeros_(extractor.out_proj.weight)
                nn.init.zeros_(extractor.out_proj.bias)
        self.cjepa = CJEPALoss()
        # not registered as a submodule: its decoder belongs to the backbone (no duplicate state-dict keys)
        object.__setattr__(self, "_style_decoder",
                           wrap_style_decoder(self.backbone, active_layers=self.config.style_layers))

    @property
    def style_decoder(self) -> StyleEnhancedDecoder:
        """The :class:`~personakit.modules.StyleEnhancedDecoder` over the backbone's decoder layers."""
        return self._style_decoder  # type: ignore[return-value]

    # ------------------------------------------------------------------ pieces
    def personal_style(self, persona: tuple[Tensor, Tensor], history: tuple[Tensor, Tensor],
                       generic: tuple[Tensor, Tensor]) -> Tensor:
        r"""$\mathcal{S}_P = \text{SE}_P(E_P, [E_H; E_{R_G}])$, projected to the decoder size: ``[B, D_dec]``."""
        return self._style(self.style_extractor, persona, concat_masked(history, generic))

    def generic_style(self, persona: tuple[Tensor, Tensor], history: tuple[Tensor, Tensor],
                      response: tuple[Tensor, Tensor]) -> Tensor:
        r"""$\mathcal{S}_G = \text{SE}_G(E_P, [E_H; E_{R_P}])$, projected to the decoder size: ``[B, D_dec]``."""
        return self._style(self.generic_style_extractor, persona, concat_masked(history, response))

    def _style(self, extractor: StyleExtractor, persona: tuple[Tensor, Tensor], context: tuple[Tensor, Tensor]
               ) -> Tensor:
        """``extractor(E_P, context)`` in the extractor's dtype (the encodings may be bf16), projected: ``[B, D_dec]``."""
        dtype = extractor.q_proj.weight.dtype
        style = extractor(persona[0].to(dtype), persona[1], context[0].to(dtype), context[1])  # (B, D_enc)
        return self.style_projection(style)  # (B, D_dec)

    def _styled_logits(self, style: Tensor, states: Tensor, states_mask: Tensor, labels: Tensor,
                       decoder_inputs_embeds: Optional[Tensor] = None) -> Tensor:
        """Encoder-decoder: teacher-forced decoder logits over given encoder states under ``style``."""
        with self.style_decoder.use_style(style):
            return self.decode_encoder_decoder(states, states_mask, labels, decoder_inputs_embeds)

    def _decode(self, style: Tensor, states: tuple[Tensor, Tensor], cache: Optional[KeyValues],
                target: tuple[Optional[Tensor], Optional[Tensor], Tensor],
                embeds: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """One styled, teacher-forced decoding of ``target = (ids, mask, labels)``: ``(logits, labels)``.

        Encoder-decoder: the decoder attends to ``states`` (encoder states and mask) and
        ``labels`` are its targets (``embeds``: their decoder input embeddings, see
        :meth:`decoder_input_embeds`).  Decoder-only: ``ids`` continues ``cache``, the
        encoding of the prefix whose mask is ``states[1]`` (see :meth:`_continue`).
        """
        if self.is_encoder_decoder:
            return self._styled_logits(style, states[0], states[1], target[2], embeds), target[2]
        assert cache is not None and target[0] is not None and target[1] is not None
        return self._continue(style, [cache], [states[1]], [target])  # type: ignore[list-item]

    def _continue(self, style: Tensor, caches: list[KeyValues], prefix_masks: list[Tensor],
                  sequences: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        r"""Decoder-only styled decoding that continues cached encodings (one LM pass over all branches).

        Branch $i$ has a prefix already encoded without style (``caches[i]``, mask
        ``prefix_masks[i]``, right-padded, e.g. $H$ + cue) and a full sequence
        ``(ids, mask, labels)`` = prefix + target.  Each row continues from the **last
        token of its prefix**, which is fed again (its cached copy is masked out) so
        that the first target token is predicted from a styled state, as every later
        one; position ids continue the prefix's.  The style is added at every layer to
        the continuation's positions only: the prefix keeps its unstyled keys and values,
        as an encoder-decoder's decoder attends to unstyled encoder states.

        Returns:
            ``(logits [sum B_i, W, V], labels [sum B_i, W])`` of the stacked continuations.
        """
        from transformers import DynamicCache

        tails, prefix = [], []
        for mask_p, (ids, mask, labels) in zip(prefix_masks, sequences):
            start = (mask_p.sum(dim=1) - 1).clamp_min(0)  # (B,): the prefix's last token is fed again
            tails.append(continuation(ids, mask, labels, start, self.pad_token_id))
            kept = mask_p.clone()
            kept[torch.arange(kept.size(0), device=kept.device), start] = 0  # (B, T_p)
            prefix.append(kept)
        tail_ids = pad_stack([t[0] for t in tails], self.pad_token_id)  # (N, W)
        tail_mask = pad_stack([t[1] for t in tails], 0)  # (N, W)
        tail_labels = pad_stack([t[2] for t in tails], -100)  # (N, W)
        positions = pad_stack([t[3] for t in tails], 0)  # (N, W)
        prefix_mask = pad_stack(prefix, 0)  # (N, T_p)
        cache = DynamicCache(ddp_cache_data=stack_key_values(caches))  # (N, H, T_p, d) per layer
        with self.style_decoder.use_style(style):
            out = self.base_model(input_ids=tail_ids, attention_mask=torch.cat([prefix_mask, tail_mask], dim=1),
                                  position_ids=positions, **{cache_argument(self.base_model): cache}, use_cache=True)
        return out.logits, tail_labels

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        persona_ids: Tensor,
        persona_mask: Tensor,
        history_ids: Tensor,
        history_mask: Tensor,
        generic_ids: Tensor,
        generic_mask: Tensor,
        response_ids: Optional[Tensor] = None,
        response_mask: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        generic_labels: Optional[Tensor] = None,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        generic_input_ids: Optional[Tensor] = None,
        generic_attention_mask: Optional[Tensor] = None,
    ) -> GRAGOutput:
        r"""Teacher-forced logits of $R_P$ and every loss term.

        Args:
            persona_ids, persona_mask: ``[B, Tp]`` $P$ alone.
            history_ids, history_mask: ``[B, Th]`` $H$ alone (decoder-only: ending with the agent cue).
            generic_ids, generic_mask: ``[B, Tg]`` $R_G$ alone.
            response_ids, response_mask: ``[B, Tr]`` $R_P$ alone (training: $\mathcal{S}_G$, C-JEPA).
            labels: ``[B, T]`` $R_P$ targets (encoder-decoder: decoder labels;
                decoder-only: aligned with ``input_ids``, ``-100`` on the prompt).
            generic_labels: ``[B, T']`` $R_G$ targets of the style removal.
            input_ids, attention_mask: decoder-only $H$ + $R_P$ sequence.
            generic_input_ids, generic_attention_mask: decoder-only $R_P$ + $R_G$ sequence.

        Returns:
            :class:`GRAGOutput` (``style`` = $\mathcal{S}_P$).
        """
        encdec = self.is_encoder_decoder
        if labels is None:
            raise ValueError("PostGRAG.forward needs labels (use generate() for inference)")
        if not encdec and input_ids is None:
            raise ValueError("PostGRAG.forward: a decoder-only backbone needs input_ids/attention_mask (H + R_P)")
        has_response = response_ids is not None and response_mask is not None
        g_batch = generic_labels is not None and (encdec or generic_input_ids is not None)
        want_g = self._wants(self.config.alpha) and has_response and g_batch
        want_c = self._wants(self.config.beta) and has_response

        segments = [(persona_ids, persona_mask), (history_ids, history_mask), (generic_ids, generic_mask)]
        if want_g or want_c:
            segments.append((response_ids, response_mask))  # type: ignore[arg-type]
        caches: dict[int, KeyValues] = {}
        if encdec:
            encoded = self.encode_segments(segments)
        else:  # the caches of H (and R_P) are continued by the styled decodings
            encoded, caches = self.encode_segments_with_cache(segments, (1, 3) if want_g else (1,))
        persona, history, generic = encoded[:3]  # (B, T_x, D_enc), (B, T_x)
        response = encoded[3] if len(encoded) > 3 else None
        style_p = self.personal_style(persona, history, generic)  # (B, D_dec)

        batch = persona_ids.size(0)
        loss_g = None
        if want_g and self.config.decoder_passes == 1:  # one pass over 2B rows: R_P over E_H, R_G over E_RP
            assert response is not None and generic_labels is not None
            style = torch.cat([style_p, self.generic_style(persona, history, response)])  # (2B, D_dec)
            if encdec:
                states = pad_stack([history[0], response[0]], 0.0)  # (2B, S, D)
                states_mask = pad_stack([history[1], response[1]], 0)  # (2B, S)
                stacked = pad_stack([labels, generic_labels], -100)  # (2B, T)
                logits_all = self._styled_logits(style, states=states, states_mask=states_mask, labels=stacked)
                labels_p, labels_g = labels, generic_labels
            else:
                logits_all, cont_labels = self._continue(
                    style, [caches[1], caches[3]], [history[1], response[1]],
                    [(input_ids, attention_mask, labels),
                     (generic_input_ids, generic_attention_mask, generic_labels)])  # type: ignore[list-item]
                labels_p, labels_g = cont_labels[:batch], cont_labels[batch:]
            logits = logits_all[:batch, : labels_p.size(1)]  # (B, T, V)
            logits_g = logits_all[batch:, : labels_g.size(1)]  # (B, T', V)
        else:  # each decoding in its own pass, padded to its own targets and states
            targets = [(input_ids, attention_mask, labels)]
            if want_g:
                targets.append((generic_input_ids, generic_attention_mask, generic_labels))  # type: ignore[arg-type]
            # encoder-decoder: the decoder inputs of both passes are embedded in one lookup
            embeds = self.decoder_input_embeds(*(t[2] for t in targets)) if encdec else [None] * len(targets)
            logits, labels_p = self._decode(style_p, history, caches.get(1), targets[0], embeds[0])
            if want_g:
                assert response is not None
                logits_g, labels_g = self._decode(self.generic_style(persona, history, response), response,
                                                  caches.get(3), targets[1], embeds[1])
        loss_p = self.token_loss(logits, labels_p)
        if want_g:
            loss_g = self.token_loss(logits_g, labels_g)
            if self.config.alpha == 0:
                loss_g = loss_g.detach()
        out_labels = None if encdec else labels_p

        loss_cjepa = None
        if want_c:
            assert response is not None
            loss_cjepa = self.cjepa(
                last_token_pool(*history), last_token_pool(*response), last_token_pool(*generic)
            )  # E_C from E_H, E_P from E_RP, E_G from E_RG
            if self.config.beta == 0:
                loss_cjepa = loss_cjepa.detach()
        return GRAGOutput(loss=self._combine(loss_p, loss_g, loss_cjepa), loss_p=loss_p, loss_g=loss_g,
                          loss_cjepa=loss_cjepa, logits=logits, style=style_p, labels=out_labels)

    # ------------------------------------------------------------------ generation
    def _generate(self, inputs: Mapping[str, Tensor], **kwargs: Any) -> Tensor:
        p_ids, p_mask, h_ids, h_mask, g_ids, g_mask = self.require(
            inputs, "persona_ids", "persona_mask", "history_ids", "history_mask", "generic_ids", "generic_mask")
        persona, history, generic = self.encode_segments([(p_ids, p_mask), (h_ids, h_mask), (g_ids, g_mask)])
        style_p = self.personal_style(persona, history, generic)  # (B, D_dec)
        if self.is_encoder_decoder:
            with self.style_decoder.use_style(style_p):
                return self._generate_encoder_decoder(history[0], history[1], **kwargs)
        return self._generate_continuing(h_ids, h_mask, style_p, **kwargs)

    def _generate_continuing(self, ids: Tensor, mask: Tensor, style: Tensor, **kwargs: Any) -> Tensor:
        """Decoder-only generation as in training: $H$ without its last token is read
        without style (its cache), then generation continues under the style from that
        last token on (see :meth:`_continue`).  Returns the new tokens ``[B, T_new]``."""
        from transformers import DynamicCache

        ids, mask = left_pad(ids, mask, self.pad_token_id)  # (B, T)
        base = self.base_model
        if ids.size(1) < 2:  # nothing to cache
            with self.style_decoder.use_style(style):
                return self._generate_from_prompt(ids, mask, **kwargs)
        positions = (mask.long().cumsum(dim=1) - 1).clamp_min(0)  # as generate() computes them
        cache = DynamicCache(config=base.config)
        base(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
             **{cache_argument(base): cache}, use_cache=True)
        config = base.generation_config
        expand = max(int(kwargs.get("num_beams") or config.num_beams or 1),
                     int(kwargs.get("num_return_sequences") or config.num_return_sequences or 1))
        if expand > 1:  # generate() expands the inputs, not a given cache
            cache.batch_repeat_interleave(expand)
        with self.style_decoder.use_style(style):
            out = base.generate(input_ids=ids, attention_mask=mask, **{cache_argument(base): cache}, **kwargs)
        return out[:, ids.size(1):]
