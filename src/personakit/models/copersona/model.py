r"""CoPersona's model: :class:`CoPersonaModel` (causal LM + LoRA + facet graph + soft prompt).

See :mod:`personakit.models.copersona` for the method and its variants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn

from personakit.backbones.peft import LoraSettings
from personakit.models.base import PersonaModel
from personakit.models.copersona.collator import CoPersonaCollator
from personakit.models.copersona.config import CoPersonaConfig
from personakit.models.copersona.context import CoPersonaContext, load_context, save_context
from personakit.models.copersona.outputs import CoPersonaOutput

__all__ = ["CoPersonaModel"]


class CoPersonaModel(PersonaModel):
    """Causal LM + LoRA + FacetGraph + soft prompt + BM25 self-history + peer context
    (see :mod:`personakit.models.copersona`).

    Built with :meth:`~personakit.models.base.PersonaModel.from_backbone` (``context=`` and the
    :class:`~personakit.models.copersona.CoPersonaConfig` fields; ``lora`` defaults to the paper's
    r 16, ``lora_alpha`` 32, dropout 0.05, ``lora=None`` for full fine-tuning).  The checkpoint
    folder also holds the context (``graph.safetensors`` + ``context.json``).

    Args:
        config: :class:`~personakit.models.copersona.CoPersonaConfig`.
        backbone: the causal LM (built randomly from ``config.backbone`` when ``None``).
        tokenizer: its tokenizer (for :meth:`respond`, :meth:`make_collator`, saving).
        context: the :class:`~personakit.models.copersona.CoPersonaContext` (set later with
            :meth:`set_context`).

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM  # doctest: +SKIP
        >>> model = CoPersonaModel.from_backbone(LlamaForCausalLM(cfg), tok, num_facets=3, facet_dim=8)  # doctest: +SKIP
    """

    METHOD: ClassVar[str] = "copersona"
    config_class = CoPersonaConfig
    GENERATE_INPUTS: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "prompt_ids", "prompt_mask",
                                                  "user_index", "labels")

    def __init__(self, config: CoPersonaConfig, backbone: Optional[nn.Module] = None, tokenizer: Any = None,
                 context: Optional[CoPersonaContext] = None):
        super().__init__(config, backbone, tokenizer)
        hidden = self.base_model.get_input_embeddings().weight.shape[1]
        self.facet_graph: Optional[nn.Module] = None
        self.projector: Optional[nn.Module] = None
        if config.uses_soft_prompt:
            from personakit.graph import FacetGraph
            from personakit.modules.soft_prompt import SoftPromptProjector

            self.facet_graph = FacetGraph(config.facet_dim, config.graph_hidden, config.num_facets,
                                          dropout=config.graph_dropout)
            self.projector = SoftPromptProjector(config.num_facets * config.graph_hidden, hidden,
                                                 num_virtual_tokens=config.num_virtual_tokens)
        self.context: Optional[CoPersonaContext] = None
        self._prompt_cache: dict[int, Tensor] = {}
        if context is not None:
            self.set_context(context)

    # ------------------------------------------------------------------ construction
    @classmethod
    def default_settings(cls, **settings: Any) -> dict[str, Any]:
        """The paper's LoRA (r 16, ``lora_alpha`` 32, dropout 0.05) unless ``lora`` is given (``None``: none)."""
        settings.setdefault("lora", LoraSettings())
        return settings

    @classmethod
    def split_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """``context`` goes to ``__init__``."""
        return {"context": settings.pop("context", None)}

    def set_context(self, context: CoPersonaContext) -> None:
        """Attach the users' context (clears the soft-prompt cache)."""
        if self.config.uses_soft_prompt:
            for name in ("facet_embeddings", "reliability", "edge_index"):
                if getattr(context, name) is None:
                    raise ValueError(f"CoPersonaModel: the context lacks {name!r}, needed by the soft prompt")
            n, m, d = context.facet_embeddings.shape  # type: ignore[union-attr]
            if (m, d) != (self.config.num_facets, self.config.facet_dim) or n != len(context.user_ids):
                raise ValueError(f"CoPersonaModel: facet embeddings {tuple(context.facet_embeddings.shape)} do not "
                                 f"match [N={len(context.user_ids)}, M={self.config.num_facets}, d={self.config.facet_dim}]")
            if context.own_rows is not None and (len(context.own_rows) != n
                                                 or any(not 0 <= int(i) < n for i in context.own_rows)):
                raise ValueError(f"CoPersonaModel: context.own_rows must list one row in 0..{n - 1} per user "
                                 f"({n} users), got {len(context.own_rows)} entries")
        self.context = context
        self._prompt_cache.clear()

    # ------------------------------------------------------------------ soft prompts
    def persona_vectors(self) -> Tensor:
        r"""$\mathbf h_u$ for every user: ``[N, M * graph_hidden]`` (Eq. 12).

        With ``context.own_rows`` (the swapped-facets control, :func:`~personakit.models.copersona.swap_own_facets`)
        user $u$'s own facets are row ``own_rows[u]``'s while its neighbours and theirs stay: every
        user gets a copy node $N + u$ with those features and $u$'s incoming edges, and the copies'
        outputs are returned (one forward over $2N$ nodes).
        """
        assert self.facet_graph is not None and self.context is not None
        dev = next(self.facet_graph.parameters()).device
        c = self.context
        x, r, e = c.facet_embeddings.to(dev), c.reliability.to(dev), c.edge_index.to(dev)
        if c.own_rows is None:
            return self.facet_graph(x, r, e)
        n = x.shape[0]
        own = torch.as_tensor(c.own_rows, dtype=torch.long, device=dev)  # (N,)
        copies = e.clone()
        copies[1] += n  # column (v, u) -> (v, N + u): the copy of u hears u's neighbours
        h = self.facet_graph(torch.cat([x, x[own]]), torch.cat([r, r[own]]), torch.cat([e, copies], dim=1))  # (2N, .)
        return h[n:]

    def soft_prompts(self, user_index: Tensor) -> Tensor:
        r"""$\mathbf S_u$ for each row: ``[B, L, H]`` (Eq. 13); cached per user in eval mode."""
        if self.projector is None:
            raise ValueError(f"CoPersonaModel: variant {self.config.variant!r} has no soft prompt")
        if self.context is None:
            raise ValueError("CoPersonaModel: no context; call set_context(...) first")
        if (user_index < 0).any():
            raise ValueError("CoPersonaModel: a user of the batch is not in the context (user_index -1)")
        if not self.training:
            wanted = [int(u) for u in user_index.tolist()]
            missing = sorted({u for u in wanted if u not in self._prompt_cache})
            if missing:
                h = self.persona_vectors()  # (N, M*d')
                sp = self.projector(h[torch.tensor(missing, device=h.device)])  # (n, L, H)
                self._prompt_cache.update({u: sp[i].detach() for i, u in enumerate(missing)})
            return torch.stack([self._prompt_cache[u] for u in wanted])  # (B, L, H)
        self._prompt_cache.clear()
        h = self.persona_vectors()  # (N, M*d')
        return self.projector(h[user_index.to(h.device)])  # (B, L, H)

    def train(self, mode: bool = True) -> "CoPersonaModel":
        self._prompt_cache.clear()
        return super().train(mode)

    # ------------------------------------------------------------------ forward / generate
    def _inputs(self, input_ids: Tensor, attention_mask: Tensor, labels: Optional[Tensor], user_index: Optional[Tensor]
                ) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        embeds = self.base_model.get_input_embeddings()(input_ids)  # (B, T, H)
        if not self.config.uses_soft_prompt:
            return embeds, attention_mask, labels, None
        if user_index is None:
            raise ValueError("CoPersonaModel: the batch lacks 'user_index' (build it with make_collator())")
        from personakit.modules.soft_prompt import prepend_soft_prompt

        sp = self.soft_prompts(user_index).to(embeds.dtype)  # (B, L, H)
        embeds, attention_mask, labels = prepend_soft_prompt(embeds, attention_mask, labels, sp)  # (B, L+T, ...)
        return embeds, attention_mask, labels, sp

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Optional[Tensor] = None,
                user_index: Optional[Tensor] = None, prompt_ids: Optional[Tensor] = None,
                prompt_mask: Optional[Tensor] = None) -> CoPersonaOutput:
        """Teacher-forced pass; ``loss`` is Eq. 14 (mean over the real target tokens).

        Args:
            input_ids: ``[B, T]`` prompt + target.
            attention_mask: ``[B, T]``.
            labels: ``[B, T]`` (``-100`` on the prompt and padding).
            user_index: ``[B]`` rows of the users in the context (the soft prompt).
            prompt_ids: the prompts alone (for :meth:`generate`); unused here.
            prompt_mask: their mask; unused here.
        """
        embeds, mask, labels, sp = self._inputs(input_ids, attention_mask, labels, user_index)
        out = self.backbone(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False)
        return CoPersonaOutput(loss=out.loss, logits=out.logits, labels=labels, soft_prompt=sp)

    @torch.no_grad()
    def generate(self, batch: Optional[dict[str, Tensor]] = None, **kwargs: Any) -> Tensor:
        """Generate from right-padded prompts (``prompt_ids`` / ``prompt_mask`` of a :meth:`make_collator`
        batch, or ``input_ids`` / ``attention_mask``); returns ``[B, T_new]`` new tokens."""
        inputs, kwargs = self.generate_inputs(batch, kwargs)
        names = ("prompt_ids", "prompt_mask") if inputs.get("prompt_ids") is not None else ("input_ids",
                                                                                          "attention_mask")
        ids, mask = self.require(inputs, *names)
        embeds, mask, _, _ = self._inputs(ids, mask, None, inputs.get("user_index"))
        order = torch.argsort(mask, dim=1, stable=True)  # padding first (left padding), order kept
        embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))  # (B, L+T, H)
        mask = mask.gather(1, order)
        return self.backbone.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)

    # ------------------------------------------------------------------ text level
    def build_collator(self, tokenizer: Any, with_targets: bool = True) -> CoPersonaCollator:  # type: ignore[override]
        """A :class:`~personakit.models.copersona.CoPersonaCollator` over this model's config and context."""
        return CoPersonaCollator(tokenizer, self.config, self.context, with_targets=with_targets)

    def clean_response(self, text: str) -> str:
        """The first line of the generated text, stripped (the reply ends where the next turn would start)."""
        return text.split("\n")[0].strip()

    # ------------------------------------------------------------------ save / load
    def save_extra(self, directory: Path) -> None:
        """The context: ``graph.safetensors`` and ``context.json``."""
        if self.context is not None:
            save_context(self.context, directory)

    @classmethod
    def load_extra(cls, directory: Path) -> dict[str, Any]:
        return {"context": load_context(directory)}
