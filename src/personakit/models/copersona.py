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

PAG's profile summary is the user's own (moderate/strong) facet summaries, a departure:
the paper's PAG writes a separate free-text profile.  The graph encoder runs over the
whole user graph at each training step (fine for thousands of users; sample subgraphs
for more).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from transformers import AutoConfig, PreTrainedConfig

from personakit.backbones.text import decode_batch
from personakit.models._save import load_saved_tokenizer, write_config_files
from personakit.models.grag.config import LoraSettings
from personakit.types import ResponseExample, UserProfile

__all__ = ["COPERSONA_VARIANTS", "CoPersonaConfig", "CoPersonaContext", "CoPersonaOutput", "CoPersonaCollator",
           "CoPersonaModel", "build_copersona_prompt"]

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

CONFIG_NAME, WEIGHTS_NAME, GRAPH_NAME, CONTEXT_NAME = "config.json", "model.safetensors", "graph.safetensors", "context.json"


class CoPersonaConfig(PreTrainedConfig):
    r"""Config of :class:`CoPersonaModel`: the backbone's config plus the CoPersona settings.

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
        max_prompt_tokens, max_target_tokens: input budgets (the prompt keeps its end).
        backbone, backbone_class: the causal LM's config dict and class name.
        lora: :class:`~personakit.models.grag.LoraSettings` dict (paper r 16, alpha 32, dropout 0.05), ``None``: full fine-tuning.
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
    max_target_tokens: int = 64
    backbone: Optional[dict] = None
    backbone_class: Optional[str] = None
    lora: Optional[dict] = None

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.lora, LoraSettings):
            self.lora = self.lora.model_dump()
        super().__post_init__(**kwargs)
        if self.variant not in COPERSONA_VARIANTS:
            raise ValueError(f"CoPersonaConfig: field 'variant' must be one of {sorted(COPERSONA_VARIANTS)}, "
                             f"got {self.variant!r}")
        for name in ("num_facets", "facet_dim", "graph_hidden", "num_virtual_tokens", "projector_hidden",
                     "max_item_tokens", "max_peer_tokens", "max_prompt_tokens", "max_target_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"CoPersonaConfig: field {name!r} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.lora is not None:
            LoraSettings.model_validate(self.lora)

    @property
    def uses_soft_prompt(self) -> bool:
        return COPERSONA_VARIANTS[self.variant][0]

    @property
    def uses_history(self) -> bool:
        return COPERSONA_VARIANTS[self.variant][1]

    @property
    def uses_profile_summary(self) -> bool:
        return COPERSONA_VARIANTS[self.variant][2]

    @property
    def uses_peer_context(self) -> bool:
        return COPERSONA_VARIANTS[self.variant][3]


AutoConfig.register(CoPersonaConfig.model_type, CoPersonaConfig, exist_ok=True)


@dataclass
class CoPersonaContext:
    """Everything the model reads about the users besides the conversation.

    Attributes:
        user_ids: graph row order.
        histories: user → history (:class:`~personakit.types.UserProfile`), for BM25.
        peer_context: user → linearised peer evidence (non-parametric branch).
        profile_summary: user → the user's own reliable facet summaries (PAG).
        facet_embeddings: ``[N, M, d]``; reliability ``[N, M]``; edge_index ``[2, E]`` (parametric branch).
    """

    user_ids: list[str]
    histories: dict[str, UserProfile] = field(default_factory=dict)
    peer_context: dict[str, str] = field(default_factory=dict)
    profile_summary: dict[str, str] = field(default_factory=dict)
    facet_embeddings: Optional[Tensor] = None
    reliability: Optional[Tensor] = None
    edge_index: Optional[Tensor] = None

    @classmethod
    def build(cls, profiles: Sequence[UserProfile], facets: Mapping[str, Any], embeddings: Any, graph: Any, *,
              max_neighbors: int = 3, max_peer_tokens: int = 256, count_tokens: Any = None) -> "CoPersonaContext":
        """From the pipeline's outputs: profiles, ``{user: UserFacets}``, ``FacetEmbeddings`` and the ``MultiplexGraph``."""
        from personakit.retrieval.neighbors import PeerContextRetriever

        ids = list(embeddings.user_ids)
        rows = [facets[u].facets for u in ids]
        peers = PeerContextRetriever(graph, rows, embeddings.facet_names, max_neighbors=max_neighbors,
                                     max_tokens=max_peer_tokens, max_tokens_per_peer=max_peer_tokens,
                                     count_tokens=count_tokens)
        by_id = {p.user_id: p for p in profiles}
        summary = {u: "\n".join(f"{f.facet}: {f.summary}" for f in facets[u].facets
                                if f.reliability in ("moderate", "strong")) for u in ids}
        return cls(user_ids=ids, histories={u: by_id[u] for u in ids if u in by_id},
                   peer_context={u: peers.context(i) for i, u in enumerate(ids)}, profile_summary=summary,
                   facet_embeddings=embeddings.embeddings.float(), reliability=embeddings.reliability.long(),
                   edge_index=graph.edge_index.long())

    def index(self, user_id: Optional[str]) -> int:
        try:
            return self.user_ids.index(user_id)  # type: ignore[arg-type]
        except ValueError:
            raise KeyError(f"user {user_id!r} is not in the CoPersona context ({len(self.user_ids)} users)") from None


def build_copersona_prompt(example: ResponseExample, config: CoPersonaConfig, context: Optional[CoPersonaContext],
                           retriever: Any = None, count_tokens: Any = None) -> str:
    """The text prompt of ``example`` for ``config.variant`` (sections in the module docstring's order)."""
    from personakit.retrieval.neighbors import _truncate

    count = count_tokens or (lambda t: len(t.split()))
    parts = ["Continue the conversation as the user would, in their own voice."]
    user = example.user_id
    if context is not None and user is not None:
        if config.uses_history and user in context.histories and context.histories[user].items:
            from personakit.retrieval.bm25 import BM25Retriever

            retriever = retriever or BM25Retriever()
            query = example.history[-1].text if example.history else ""
            hits = retriever.retrieve(query, context.histories[user], k=config.retrieval_k)
            lines = [f"- {_truncate(' '.join(h.text.split()), config.max_item_tokens, count)}" for h in hits]
            parts.append("[The user's earlier messages]\n" + "\n".join(lines))
        if config.uses_profile_summary and context.profile_summary.get(user):
            parts.append("[The user's profile]\n" + context.profile_summary[user])
        if config.uses_peer_context and context.peer_context.get(user):
            parts.append("[Similar users]\n" + context.peer_context[user])
    convo = "\n".join(f"{t.speaker.capitalize()}: {' '.join(t.text.split())}" for t in example.history)
    parts.append("[Conversation]\n" + convo)
    parts.append(f"{example.agent.capitalize()}:")
    return "\n\n".join(parts)


@dataclass
class CoPersonaOutput:
    """Output of :meth:`CoPersonaModel.forward`.

    Attributes:
        loss: mean token cross-entropy over the real target tokens (``None`` without labels).
        logits: ``[B, L + T, V]`` (the virtual tokens included when a soft prompt is used).
        labels: ``[B, L + T]`` labels aligned with ``logits`` (``-100`` on virtual tokens), or ``None``.
        soft_prompt: ``[B, L, H]`` or ``None``.
    """

    loss: Optional[Tensor]
    logits: Tensor
    labels: Optional[Tensor] = None
    soft_prompt: Optional[Tensor] = None

    def losses(self) -> dict[str, float]:
        return {} if self.loss is None else {"loss": float(self.loss.detach())}


class CoPersonaCollator:
    """Examples → ``input_ids``, ``attention_mask`` (right-padded), ``labels``, ``user_index``.

    The prompt (:func:`build_copersona_prompt`) keeps its last ``max_prompt_tokens``
    tokens; the target is `` response`` + EOS, at most ``max_target_tokens``; labels are
    ``-100`` on the prompt and padding.  ``with_targets=False`` gives prompts only.
    """

    def __init__(self, tokenizer: Any, config: CoPersonaConfig, context: Optional[CoPersonaContext],
                 with_targets: bool = True):
        from personakit.retrieval.bm25 import BM25Retriever

        self.tokenizer, self.config, self.context, self.with_targets = tokenizer, config, context, with_targets
        self.retriever = BM25Retriever()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, example: ResponseExample) -> str:
        return build_copersona_prompt(example, self.config, self.context, self.retriever, self._count)

    def __call__(self, examples: Sequence[ResponseExample]) -> dict[str, Tensor]:
        rows, labels, users = [], [], []
        for ex in examples:
            p_ids = self.tokenizer(self.prompt(ex), add_special_tokens=False)["input_ids"][-self.config.max_prompt_tokens:]
            if self.with_targets:
                t_ids = self.tokenizer(" " + ex.response.strip(), add_special_tokens=False)["input_ids"]
                t_ids = t_ids[: self.config.max_target_tokens - 1]
                if self.tokenizer.eos_token_id is not None:
                    t_ids = t_ids + [self.tokenizer.eos_token_id]
                rows.append(p_ids + t_ids)
                labels.append([-100] * len(p_ids) + t_ids)
            else:
                rows.append(p_ids)
            users.append(self.context.index(ex.user_id) if self.context is not None and self.config.uses_soft_prompt
                         else -1)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "user_index": torch.tensor(users, dtype=torch.long)}
        if self.with_targets:
            lab = torch.full((len(rows), width), -100, dtype=torch.long)
            for i, r in enumerate(labels):
                lab[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            batch["labels"] = lab
        return batch


class CoPersonaModel(nn.Module):
    """Causal LM + LoRA + FacetGraph + soft prompt + BM25 self-history + peer context (see the module docstring).

    Args:
        config: :class:`CoPersonaConfig`.
        backbone: the causal LM (built randomly from ``config.backbone`` when ``None``).
        tokenizer: its tokenizer (for :meth:`respond`, :meth:`make_collator`, saving).
        context: the :class:`CoPersonaContext` (set later with :meth:`set_context`).

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM  # doctest: +SKIP
        >>> model = CoPersonaModel.from_backbone(LlamaForCausalLM(cfg), tok, num_facets=3, facet_dim=8)  # doctest: +SKIP
    """

    METHOD: ClassVar[str] = "copersona"

    def __init__(self, config: CoPersonaConfig, backbone: Optional[nn.Module] = None, tokenizer: Any = None,
                 context: Optional[CoPersonaContext] = None):
        super().__init__()
        if backbone is None:
            import transformers

            cls = getattr(transformers, config.backbone_class or "", None)
            if cls is None:
                raise ValueError(f"CoPersonaConfig: field 'backbone_class' {config.backbone_class!r} is not a "
                                 "transformers model class")
            data = dict(config.backbone or {})
            data.pop("transformers_version", None)
            backbone = cls(AutoConfig.for_model(**data))
        if config.lora is not None and not callable(getattr(type(backbone), "get_base_model", None)):
            from personakit._imports import require

            require("peft", "LoRA for CoPersonaModel")
            from peft import get_peft_model

            backbone = get_peft_model(backbone, LoraSettings.model_validate(config.lora).to_peft("CAUSAL_LM"))
        self.config, self.backbone, self.tokenizer = config, backbone, tokenizer
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
    def from_backbone(cls, backbone: Union[nn.Module, str, os.PathLike], tokenizer: Any = None,
                      context: Optional[CoPersonaContext] = None, **settings: Any) -> "CoPersonaModel":
        """Wrap a causal LM (an ``nn.Module`` or an embedded name / folder such as ``"smollm2"``).

        ``settings`` are :class:`CoPersonaConfig` fields; ``lora`` defaults to the paper's
        (r 16, alpha 32, dropout 0.05); pass ``lora=None`` for full fine-tuning.
        """
        if isinstance(backbone, (str, os.PathLike)):
            from personakit.backbones import load_causal_lm

            backbone, loaded = load_causal_lm(backbone)
            tokenizer = tokenizer if tokenizer is not None else loaded
        settings.setdefault("lora", LoraSettings().model_dump())
        if isinstance(settings.get("lora"), LoraSettings):
            settings["lora"] = settings["lora"].model_dump()
        base = backbone.get_base_model() if callable(getattr(backbone, "get_base_model", None)) else backbone
        bdict = json.loads(base.config.to_json_string(use_diff=False))
        bdict.pop("transformers_version", None)
        config = CoPersonaConfig(backbone=bdict, backbone_class=type(base).__name__, **settings)
        return cls(config, backbone=backbone, tokenizer=tokenizer, context=context)

    @property
    def base_model(self) -> nn.Module:
        """The transformers causal LM (under the peft wrapper when LoRA is used)."""
        b = self.backbone
        return b.get_base_model() if callable(getattr(b, "get_base_model", None)) else b

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
        self.context = context
        self._prompt_cache.clear()

    # ------------------------------------------------------------------ soft prompts
    def persona_vectors(self) -> Tensor:
        r"""$\mathbf h_u$ for every user: ``[N, M * graph_hidden]`` (Eq. 12)."""
        assert self.facet_graph is not None and self.context is not None
        dev = next(self.facet_graph.parameters()).device
        c = self.context
        return self.facet_graph(c.facet_embeddings.to(dev), c.reliability.to(dev), c.edge_index.to(dev))

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
                user_index: Optional[Tensor] = None) -> CoPersonaOutput:
        """Teacher-forced pass; ``loss`` is Eq. 14 (mean over the real target tokens)."""
        embeds, mask, labels, sp = self._inputs(input_ids, attention_mask, labels, user_index)
        out = self.backbone(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False)
        return CoPersonaOutput(loss=out.loss, logits=out.logits, labels=labels, soft_prompt=sp)

    @torch.no_grad()
    def generate(self, batch: Optional[Mapping[str, Tensor]] = None, **kwargs: Any) -> Tensor:
        """Generate from right-padded prompts (a :meth:`make_collator` batch); returns ``[B, T_new]`` new tokens."""
        inputs = dict(batch or {})
        for name in ("input_ids", "attention_mask", "user_index", "labels"):
            if name in kwargs:
                inputs[name] = kwargs.pop(name)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        embeds, mask, _, _ = self._inputs(ids, mask, None, inputs.get("user_index"))
        order = torch.argsort(mask, dim=1, stable=True)  # padding first (left padding), order kept
        embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))  # (B, L+T, H)
        mask = mask.gather(1, order)
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None and self.tokenizer.pad_token_id is not None \
            else getattr(self.base_model.config, "eos_token_id", 0)
        kwargs.setdefault("pad_token_id", pad if not isinstance(pad, list) else pad[0])
        return self.backbone.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)

    # ------------------------------------------------------------------ text level
    def make_collator(self, tokenizer: Any = None, with_targets: bool = True) -> CoPersonaCollator:
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if tok is None:
            raise ValueError("CoPersonaModel.make_collator: give a tokenizer (the model holds none)")
        return CoPersonaCollator(tok, self.config, self.context, with_targets=with_targets)

    def respond(self, examples: Sequence[ResponseExample], batch_size: int = 8, collator: Any = None,
                **generate_kwargs: Any) -> list[str]:
        """Generated reply text per example."""
        if self.tokenizer is None:
            raise ValueError("CoPersonaModel.respond needs a tokenizer")
        collator = collator or self.make_collator(with_targets=False)
        device = next(self.parameters()).device
        texts: list[str] = []
        for s in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collator(list(examples[s:s + batch_size])).items() if k != "labels"}
            ids = self.generate(batch, **generate_kwargs)
            texts += [t.split("\n")[0].strip() for t in decode_batch(self.tokenizer, ids)]
        return texts

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: Union[str, os.PathLike], save_tokenizer: bool = True) -> Path:
        """Write ``config.json``, ``model.safetensors``, ``graph.safetensors`` + ``context.json`` (and the tokenizer)."""
        from safetensors.torch import save_file, save_model

        from personakit.config import atomic_write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (WEIGHTS_NAME + ".tmp")
        save_model(self, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, directory / WEIGHTS_NAME)
        write_config_files(directory, self.config, tokenizer=self.tokenizer if save_tokenizer else None)
        c = self.context
        if c is not None:
            tensors = {k: getattr(c, k).contiguous().cpu() for k in ("facet_embeddings", "reliability", "edge_index")
                       if getattr(c, k) is not None}
            if tensors:
                tmp = directory / (GRAPH_NAME + ".tmp")
                save_file(tensors, str(tmp))
                os.replace(tmp, directory / GRAPH_NAME)
            data = {"user_ids": c.user_ids, "peer_context": c.peer_context, "profile_summary": c.profile_summary,
                    "histories": {u: p.model_dump(mode="json") for u, p in c.histories.items()}}
            atomic_write_text(directory / CONTEXT_NAME, json.dumps(data, ensure_ascii=False))
        return directory

    @classmethod
    def from_pretrained(cls, directory: Union[str, os.PathLike], tokenizer: Any = None,
                        map_location: str = "cpu") -> "CoPersonaModel":
        """Load a model written by :meth:`save_pretrained` (weights, config, context, tokenizer)."""
        from safetensors.torch import load_file, load_model

        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{directory / CONFIG_NAME}: no CoPersona config (saved with save_pretrained?)")
        config = CoPersonaConfig.from_pretrained(str(directory))
        tokenizer = load_saved_tokenizer(directory, tokenizer, names=("tokenizer_config.json",))
        context = None
        if (directory / CONTEXT_NAME).is_file():
            data = json.loads((directory / CONTEXT_NAME).read_text(encoding="utf-8"))
            tensors = load_file(str(directory / GRAPH_NAME)) if (directory / GRAPH_NAME).is_file() else {}
            context = CoPersonaContext(
                user_ids=data["user_ids"], peer_context=data["peer_context"], profile_summary=data["profile_summary"],
                histories={u: UserProfile.model_validate(p) for u, p in data["histories"].items()},
                facet_embeddings=tensors.get("facet_embeddings"), reliability=tensors.get("reliability"),
                edge_index=tensors.get("edge_index"))
        model = cls(config, tokenizer=tokenizer, context=context)
        load_model(model, str(directory / WEIGHTS_NAME), strict=True, device=map_location)
        return model
