r"""The questioner-specific low-rank stream of the dual-tower responder (Zeng et al., 2024, §4.2).

:class:`LowRankSpecificEncoder` wraps the decoder layers of a Hugging Face causal LM (the
*general* tower, unchanged) and runs a *questioner-specific* stream beside it:

* per layer, a :class:`LowRankFeedForward` (hidden → $r$ → hidden with the backbone's
  activation and gating) after a copy of the layer's post-attention norm;
* fed by the **same attention output** as the general layer;
* whose input is the token embeddings plus a learned questioner embedding;
* whose contribution is added element-wise to the general stream before the LM head.

Architecture glue (where the layers, their attention and their post-attention norm
live) is in :data:`SPECIFIC_STREAM_GLUE`: the Llama family (``LlamaDecoderLayer``:
SmolLM2, Mistral, Qwen2/Qwen3 share its layout: ``self_attn``, ``post_attention_layernorm``,
a gated ``mlp``) and GPT-2 (``GPT2Block``: ``attn``, ``ln_2``, a plain ``mlp``).
"""

from __future__ import annotations

import copy
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Optional

import torch
from pydantic import Field
from torch import Tensor, nn

from personakit.config import BaseConfig
from personakit.backbones.peft import unwrap_peft
from personakit.modules._wrapper import LayerWrapper, find_wrapper, remove_wrapper

__all__ = [
    "LowRankFeedForward",
    "SpecificBlock",
    "SpecificStreamLayer",
    "LowRankSpecificEncoder",
    "LowRankSpecificEncoderConfig",
    "SPECIFIC_STREAM_GLUE",
    "UnknownQuestioner",
]

UnknownQuestioner = Literal["general", "default"]


@dataclass(frozen=True)
class _Glue:
    """Where the parts of one decoder-layer family are."""

    layers: str  # attribute of the stack (model.base_model) holding the ModuleList
    attention: str  # attribute of a layer: its self-attention module
    norm: str  # attribute of a layer: the norm before its feed-forward block
    gate: Optional[str]  # attribute of layer.mlp whose presence means a gated FFN (None: never gated)
    activation: tuple[str, ...]  # attributes of layer.mlp holding the activation module
    final_norm: str  # attribute of the stack: the norm after the last layer (before the LM head)


SPECIFIC_STREAM_GLUE: dict[str, _Glue] = {
    "llama": _Glue(layers="layers", attention="self_attn", norm="post_attention_layernorm", gate="gate_proj",
                   activation=("act_fn",), final_norm="norm"),
    "gpt2": _Glue(layers="h", attention="attn", norm="ln_2", gate=None, activation=("act",), final_norm="ln_f"),
}
"""Layer layouts the specific stream knows: ``"llama"`` (Llama, SmolLM2, Mistral, Qwen2, Qwen3, ...) and
``"gpt2"``.  A model is matched by the attributes present, not by its name."""


def _find_glue(stack: nn.Module) -> tuple[str, _Glue, nn.ModuleList]:
    for name, glue in SPECIFIC_STREAM_GLUE.items():
        layers = getattr(stack, glue.layers, None)
        if isinstance(layers, nn.ModuleList) and len(layers):
            first = layers[0]
            if any(find_wrapper(layer, _is_specific_layer) is not None for layer in layers):
                raise ValueError(
                    f"LowRankSpecificEncoder: the layers of {type(stack).__name__}.{glue.layers} are already wrapped "
                    "by another LowRankSpecificEncoder (e.g. a DualTowerResponder built on this backbone). Give each "
                    "model its own backbone: copy.deepcopy(backbone) *before* the first model wraps it, or load it "
                    "again; or unwrap() the first encoder")
            if (hasattr(first, glue.attention) and hasattr(first, glue.norm) and hasattr(first, "mlp")
                    and isinstance(getattr(stack, glue.final_norm, None), nn.Module)):
                return name, glue, layers
    raise TypeError(
        f"LowRankSpecificEncoder: unsupported layer layout in {type(stack).__name__}; supported: "
        + ", ".join(f"{k} (layers '{g.layers}' with '{g.attention}', '{g.norm}', 'mlp'; final norm '{g.final_norm}')"
                    for k, g in SPECIFIC_STREAM_GLUE.items()))


class LowRankFeedForward(nn.Module):
    r"""A rank-$r$ feed-forward block: $\mathrm{FFN}_s(x) = W_{\downarrow}\,\big(\phi(W_g x) \odot W_u x\big)$.

    With ``gated=True`` (Llama family, SwiGLU) $W_g, W_u \in \mathbb{R}^{r \times D}$ and
    $W_{\downarrow} \in \mathbb{R}^{D \times r}$; with ``gated=False`` (GPT-2)
    $\mathrm{FFN}_s(x) = W_{\downarrow}\,\phi(W_u x)$.  Either way the output lies in the
    $r$-dimensional column space of $W_{\downarrow}$: the block has rank at most $r$.

    The input projections get PyTorch's default ``nn.Linear`` initialisation; $W_{\downarrow}$
    gets it too, multiplied by ``init_scale``: ``init_scale=0`` starts the block at zero
    (as LoRA does its $B$), so the model starts exactly as its backbone; a small value
    (the dual-tower default, 0.01) keeps the start close to the backbone while giving the
    block a non-zero output direction for the contrastive loss.

    Args:
        hidden_size: $D$.
        rank: $r$.
        activation: the activation module $\phi$ (copied from the backbone's FFN).
        gated: use the gated form.
        bias: biases on the projections.
        init_scale: factor on the default initialisation of $W_{\downarrow}$ (0: zero).

    Shapes:
        ``[..., D]`` → ``[..., D]``.

    Example:
        >>> ffn = LowRankFeedForward(16, rank=4, init_scale=1.0)
        >>> ffn(torch.randn(2, 3, 16)).shape
        torch.Size([2, 3, 16])
    """

    def __init__(self, hidden_size: int, rank: int, activation: Optional[nn.Module] = None, gated: bool = True,
                 bias: bool = False, init_scale: float = 0.0):
        super().__init__()
        if rank < 1 or hidden_size < 1:
            raise ValueError(f"LowRankFeedForward: rank and hidden_size must be >= 1, got {rank} and {hidden_size}")
        self.hidden_size = int(hidden_size)
        self.rank = int(rank)
        self.gated = bool(gated)
        if init_scale < 0:
            raise ValueError(f"LowRankFeedForward: init_scale must be >= 0, got {init_scale}")
        self.init_scale = float(init_scale)
        self.gate_proj = nn.Linear(hidden_size, rank, bias=bias) if gated else None
        self.up_proj = nn.Linear(hidden_size, rank, bias=bias)
        self.down_proj = nn.Linear(rank, hidden_size, bias=bias)
        self.act = activation if activation is not None else nn.SiLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.gate_proj, self.up_proj, self.down_proj):
            if lin is not None:
                lin.reset_parameters()
        with torch.no_grad():
            self.down_proj.weight.mul_(self.init_scale)
            if self.down_proj.bias is not None:
                self.down_proj.bias.mul_(self.init_scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_proj is not None:
            inner = self.act(self.gate_proj(x)) * self.up_proj(x)  # (..., r)
        else:
            inner = self.act(self.up_proj(x))  # (..., r)
        return self.down_proj(inner)  # (..., D)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, rank={self.rank}, gated={self.gated}, init_scale={self.init_scale}"


class SpecificBlock(nn.Module):
    r"""One layer of the specific stream: $f_l(u) = \mathrm{FFN}_s^{(l)}(\mathrm{Norm}_s^{(l)}(u))$.

    ``norm`` is a copy of the general layer's post-attention norm (trainable, starting
    from the backbone's weights); ``ffn`` a :class:`LowRankFeedForward`.  ``forward(u, e)``
    computes $\mathrm{FFN}_s(\mathrm{Norm}_s(u) + e)$: the questioner embedding $e$ is added
    after the norm (see :class:`LowRankSpecificEncoder`).
    """

    def __init__(self, norm: nn.Module, ffn: LowRankFeedForward):
        super().__init__()
        self.norm = norm
        self.ffn = ffn

    def forward(self, x: Tensor, embedding: Optional[Tensor] = None) -> Tensor:
        h = self.norm(x)
        return self.ffn(h if embedding is None else h + embedding)


class _StreamState:
    """Per-call state of the specific stream (set by :meth:`LowRankSpecificEncoder.use_questioners`)."""

    __slots__ = ("start", "active", "delta", "last_stream", "pending")

    def __init__(self, start: Tensor, active: Tensor):
        self.start = start  # (B', 1, D): the questioner embeddings
        self.active = active  # (B', 1, 1): 1 where the specific stream runs, 0 where it is off
        self.delta: Optional[Tensor] = None  # (B, T, D): sum of the block outputs so far
        self.last_stream: Optional[Tensor] = None  # (B, T, D): delta_L, the stream's output after the last layer
        self.pending = False  # delta_L computed by the last layer, not yet added after the final norm


def _expand_rows(x: Tensor, batch: int, what: str) -> Tensor:
    if x.size(0) == batch:
        return x
    if x.size(0) == 0 or batch % x.size(0) != 0:
        raise ValueError(f"LowRankSpecificEncoder: {what} batch {x.size(0)} does not divide the model batch {batch}")
    return x.repeat_interleave(batch // x.size(0), dim=0)  # beam search / num_return_sequences expansion


def _is_specific_layer(module: nn.Module) -> bool:
    return isinstance(module, SpecificStreamLayer)


class SpecificStreamLayer(LayerWrapper):
    r"""Wraps one decoder layer: runs it unchanged and advances the specific stream beside it.

    With the attention output $a_l$ of the wrapped layer (captured by a forward hook on
    its attention module) and its input $h_l$, the general stream after attention is
    $r_l = h_l + a_l$.  The specific stream $\delta_l$ (the sum of the previous block
    outputs) is advanced with the questioner embedding $e_q$ by

    $$\delta_{l+1} = \delta_l + m \cdot \mathrm{FFN}_s^{(l)}\big(\mathrm{Norm}_s^{(l)}(r_l + \delta_l) + e_q\big),$$

    ($m \in \{0, 1\}$ per row: 0 turns the stream off for that row).  The last layer
    hands $\delta_L$ to the encoder, which adds it to the output of the model's final norm,
    before the LM head.  The wrapped layer's output is always returned as is (bit for bit).
    Unknown attributes are looked up on ``wrapped_layer``; the wrapper is transparent to
    state dicts and to peft (see :class:`~personakit.modules._wrapper.LayerWrapper`).

    Args:
        wrapped_layer: the original decoder layer (or another wrapper around it, e.g. a
            :class:`~personakit.modules.StyleInjectionLayer`).
        attention: its attention module (where $a_l$ is captured).
        encoder: the owning :class:`LowRankSpecificEncoder` (held by weak reference).
        layer_index: position of the layer.
        is_last: whether it is the last layer (it adds $\delta_L$).
    """

    def __init__(self, wrapped_layer: nn.Module, attention: nn.Module, encoder: "LowRankSpecificEncoder",
                 layer_index: int, is_last: bool):
        super().__init__(wrapped_layer, int(layer_index))
        self.is_last = bool(is_last)
        object.__setattr__(self, "_encoder_ref", _EncoderRef(encoder))
        object.__setattr__(self, "_attn_out", None)
        object.__setattr__(self, "_capturing", False)
        object.__setattr__(self, "_hook", attention.register_forward_hook(self._capture))

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._capturing:
            object.__setattr__(self, "_attn_out", output[0] if isinstance(output, tuple) else output)

    def remove_hook(self) -> None:
        self._hook.remove()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        encoder = self._encoder_ref()
        state = None if encoder is None else encoder._state
        if state is None:
            return self.wrapped_layer(*args, **kwargs)
        hidden = args[0] if args else kwargs["hidden_states"]  # (B, T, D): h_l
        object.__setattr__(self, "_capturing", True)
        try:
            output = self.wrapped_layer(*args, **kwargs)
        finally:
            object.__setattr__(self, "_capturing", False)
        attn, self_attn_out = self._attn_out, None
        object.__setattr__(self, "_attn_out", self_attn_out)
        if attn is None:
            raise RuntimeError(f"SpecificStreamLayer {self.layer_index}: the attention output was not captured")
        batch = hidden.size(0)
        start = _expand_rows(state.start, batch, "questioner").to(hidden.dtype)  # (B, 1, D)
        active = _expand_rows(state.active, batch, "questioner mask").to(hidden.dtype)  # (B, 1, 1)
        if self.layer_index == 0 or state.delta is None or state.delta.shape != hidden.shape:
            state.delta = torch.zeros_like(hidden)
        general = hidden + attn  # (B, T, D): r_l, the general stream after attention
        block = encoder.blocks[self.layer_index]
        update = block(general + state.delta, start) * active  # (B, T, D): FFN_s(Norm_s(r_l + delta_l) + e_q)
        state.delta = state.delta + update
        if self.is_last:
            state.last_stream = state.delta  # (B, T, D): delta_L, added after the final norm
            state.pending = True
        return output

    def extra_repr(self) -> str:
        return f"layer_index={self.layer_index}, is_last={self.is_last}"


class _EncoderRef:
    """A weak reference to a :class:`LowRankSpecificEncoder` that follows a ``copy.deepcopy`` of the model.

    The layers and the final-norm hook hold the encoder weakly (the encoder owns them, not the
    other way round).  A plain ``weakref.ref`` survives ``copy.deepcopy`` unchanged, so a copied
    model would run the *original* encoder's stream; this one points the copy at the copied
    encoder (the one the same deepcopy makes for the model; held strongly, so a copy of the
    backbone alone keeps its encoder too).
    """

    __slots__ = ("_ref", "_keep")

    def __init__(self, encoder: "LowRankSpecificEncoder", keep: bool = False):
        self._ref = weakref.ref(encoder)
        self._keep = encoder if keep else None

    def __call__(self) -> Optional["LowRankSpecificEncoder"]:
        return self._ref()

    def __deepcopy__(self, memo: dict) -> "_EncoderRef":
        target = self._ref()
        if target is None:
            return self
        return _EncoderRef(copy.deepcopy(target, memo), keep=True)  # the copies may form a cycle; gc frees it


class _FinalNormHook:
    """Forward hook of the model's final norm (a class, not a lambda, so a deepcopy rebinds it)."""

    def __init__(self, encoder_ref: _EncoderRef):
        self.encoder_ref = encoder_ref

    def __call__(self, module: nn.Module, args: Any, output: Tensor) -> Optional[Tensor]:
        return _add_after_final_norm(self.encoder_ref, output)


def _add_after_final_norm(encoder_ref: Any, output: Tensor) -> Optional[Tensor]:
    """Forward hook of the model's final norm: ``Norm(h_L) + delta_L`` when the last layer left a pending delta_L."""
    encoder = encoder_ref()
    state = None if encoder is None else encoder._state
    if state is None or not state.pending:
        return None  # keep the norm's output
    state.pending = False
    delta = state.last_stream
    if delta is None or delta.shape != output.shape:
        raise RuntimeError(f"LowRankSpecificEncoder: the final norm's output {tuple(output.shape)} does not match "
                           f"the specific stream {None if delta is None else tuple(delta.shape)}")
    return output + delta.to(output.dtype)  # (B, T, D)


class LowRankSpecificEncoder(nn.Module):
    r"""Questioner-specific low-rank tower beside a causal LM (Zeng et al., 2024, §4.2).

    The dual tower: a *general* encoder $G_g$, the pretrained LM, captures what is common
    to the responder across questioners; a *questioner-specific* encoder $G_s$ of
    "adapted transformer blocks" whose dense feed-forward layer "is decomposed into two
    low-rank matrices" captures what is specific to a questioner-responder pair,
    "questioner-specific representations [being] intrinsically sparser".  Here, for
    layer $l$ of the backbone with input $h_l$ and attention output $a_l$:

    $$\begin{aligned}
    \delta_0 &= 0, \qquad \text{(so the first block reads } \mathrm{Norm}(E(x) + a_0) + e_q\text{)}\\
    \delta_{l+1} &= \delta_l + \mathrm{FFN}^{(l)}_s\big(\mathrm{Norm}^{(l)}_s(h_l + a_l + \delta_l) + e_q\big),\\
    \mathrm{logits} &= \mathrm{LMHead}\big(\mathrm{Norm}(h_L) + \delta_L\big),
    \end{aligned}$$

    with $e_q$ the learned embedding of questioner $q$, broadcast over the positions, and
    $\mathrm{FFN}^{(l)}_s$ a :class:`LowRankFeedForward` of rank $r$.  The general stream
    $h_l$ is the backbone's own and never sees the specific one; the specific stream
    reads the same attention output $a_l$ as the general layer, and the two are added
    element-wise before the LM head: $\delta_L$ is added to the output of the model's
    final norm.  The stream is
    position-wise (it has no attention of its own), so generation with a KV cache
    computes it for the new positions only and matches a full forward exactly.
    The *questioner-specific representation* used by the contrastive loss is
    :meth:`pooled`: the masked mean over positions of the stream's output $\delta_L$ (the
    questioner embedding itself is left out, or the loss could be met by the embedding
    table alone without training the low-rank blocks).

    **Departures and choices** (the paper's code was not available): the specific stream
    is a residual correction $\delta$ of the general one (it shares the attention
    outputs, so a separate full residual stream would count them twice when the towers
    are summed); the questioner embedding is added to every block's input *after* its
    norm, not to the residual stream before it: the residual stream of a pretrained LM
    is far larger than an embedding (SmolLM2-135M's hidden states reach norms of about
    2,000 while an embedding of token-embedding scale has a norm of about 0.5), so added
    before the norm the questioner
    changed SmolLM2's logits by about $10^{-5}$ and training could not make the responses
    depend on it; for the same reason $\delta_L$ joins the general stream *after* the
    final norm (added before it, as in an earlier version, the normalisation of a residual
    stream of norm ~1,000 shrank it to nothing and the trained model still answered every
    questioner alike); the questioner embeddings start at the scale of the normalised block
    input, not of token embeddings (``embedding_std=0.5``: SmolLM2's post-attention norms
    output an RMS of 0.1 to 0.5 per element; with 0.02, a token-embedding scale, the
    questioners were indistinguishable at the start and Adam moved them by about the learning
    rate per step, so a short run never told them apart; measured on SmolLM2 with two
    questioners given opposite targets, 12 steps moved the logits by 0.07 with 0.02 and by
    10.9 with 0.5, and only 0.5 made the greedy replies differ); the low-rank down
    projections start at ``init_scale`` times their default initialisation (0: the model starts exactly as the backbone); the norm before each
    block is a trainable copy of the layer's own.

    **Unknown questioners.** Embedding row 0 is a *default* questioner.
    ``unknown_questioner="general"`` (default): rows with questioner index 0 get no
    specific stream at all (their output is the general stream, the backbone's);
    ``"default"``: they use the default embedding (trained when the model drops known
    questioners to 0 at random, see ``DualTowerResponder``'s ``questioner_dropout``).

    The layers of ``model`` are wrapped in place by :class:`SpecificStreamLayer` (no
    monkey-patching: the ``ModuleList`` entries are replaced; :meth:`unwrap` restores
    them).  ``model`` is not registered as a submodule of the encoder; the encoder holds
    only the specific parameters.  The wrappers are transparent to state dicts and peft
    (``model.state_dict()`` has the unwrapped keys; peft's ``merge_and_unload()`` works),
    and may sit around or inside the style decoder's
    :class:`~personakit.modules.StyleInjectionLayer` wrappers.  A second encoder on
    layers that already carry a specific stream raises ``ValueError``: give each model
    its own backbone (``copy.deepcopy(backbone)`` before the first one wraps it).

    Args:
        model: a Hugging Face causal LM (``LlamaForCausalLM`` and its family, ``Qwen2ForCausalLM``,
            ``GPT2LMHeadModel``; a peft-wrapped one works too).
        num_questioners: $N$ known questioners (embedding rows $1..N$; row 0 is the default).
        rank: $r$ (default 16).
        unknown_questioner: ``"general"`` or ``"default"`` (see above).
        init_scale: factor on the initial low-rank down projections (0: zero, the model starts as the backbone).
        embedding_std: standard deviation of the initial questioner embeddings (default 0.5, see below).

    Shapes:
        - questioner_ids: ``[B]`` long in ``[0, N]``
        - the model's logits: unchanged, ``[B, T, V]``
        - :meth:`pooled`: ``[B, D]``

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        ...                   num_attention_heads=2, num_key_value_heads=1, vocab_size=50)
        >>> lm = LlamaForCausalLM(cfg).eval()
        >>> enc = LowRankSpecificEncoder(lm, num_questioners=3, rank=4)
        >>> ids = torch.tensor([[1, 2, 3]])
        >>> with enc.use_questioners(torch.tensor([2])):
        ...     logits = lm(ids).logits
        >>> logits.shape, enc.parameters_per_layer()
        (torch.Size([1, 3, 50]), 208)

    Citation:
        Zeng, Niu, Wu, Lv and Chen (2024). *Personalized LLM for Generating Customized
        Responses to the Same Query from Different Users.* arXiv:2412.11736.
    """

    def __init__(self, model: nn.Module, num_questioners: int, rank: int = 16,
                 unknown_questioner: UnknownQuestioner = "general", init_scale: float = 0.0,
                 embedding_std: float = 0.5):
        super().__init__()
        if num_questioners < 0:
            raise ValueError(f"LowRankSpecificEncoder: num_questioners must be >= 0, got {num_questioners}")
        if rank < 1:
            raise ValueError(f"LowRankSpecificEncoder: rank must be >= 1, got {rank}")
        if unknown_questioner not in ("general", "default"):
            raise ValueError(f"LowRankSpecificEncoder: unknown_questioner must be 'general' or 'default', "
                             f"got {unknown_questioner!r}")
        base = unwrap_peft(model)
        stack = getattr(base, "base_model", base)
        self.architecture, glue, layers = _find_glue(stack)
        self.glue = glue
        config = base.config
        hidden = next(getattr(config, n) for n in ("hidden_size", "n_embd", "d_model") if isinstance(getattr(config, n, None), int))
        self.hidden_size = int(hidden)
        self.num_questioners = int(num_questioners)
        self.rank = int(rank)
        self.unknown_questioner = unknown_questioner
        self.embedding_std = float(embedding_std)
        self.init_scale = float(init_scale)
        ref = next(base.parameters())
        self.questioner_embeddings = nn.Embedding(self.num_questioners + 1, self.hidden_size)
        blocks = []
        for layer in layers:
            mlp = layer.mlp
            gated = glue.gate is not None and hasattr(mlp, glue.gate)
            act = next((getattr(mlp, a) for a in glue.activation if isinstance(getattr(mlp, a, None), nn.Module)), None)
            ffn = LowRankFeedForward(self.hidden_size, self.rank, activation=copy.deepcopy(act) if act else None,
                                     gated=gated, bias=False, init_scale=init_scale)
            blocks.append(SpecificBlock(copy.deepcopy(getattr(layer, glue.norm)), ffn))
        self.blocks = nn.ModuleList(blocks)
        self.reset_parameters(blocks_too=False)
        for p in self.blocks.parameters():
            p.requires_grad_(True)
        self.to(device=ref.device, dtype=ref.dtype)
        n = len(layers)
        for i in range(n):
            layer = layers[i]
            layers[i] = SpecificStreamLayer(layer, getattr(layer, glue.attention), self, i, is_last=i == n - 1)
        object.__setattr__(self, "_layers", layers)
        object.__setattr__(self, "_state", None)
        object.__setattr__(self, "_final_norm_hook", getattr(stack, glue.final_norm).register_forward_hook(
            _FinalNormHook(_EncoderRef(self))))

    # ------------------------------------------------------------------ parameters
    def reset_parameters(self, blocks_too: bool = True) -> None:
        """Questioner embeddings $\\sim \\mathcal{N}(0, \\sigma^2)$; low-rank blocks re-initialised when ``blocks_too``."""
        nn.init.normal_(self.questioner_embeddings.weight, std=self.embedding_std)
        if blocks_too:
            for block in self.blocks:
                block.ffn.reset_parameters()

    @torch.no_grad()
    def zero_(self) -> "LowRankSpecificEncoder":
        """Zero every low-rank down projection: the specific stream then adds nothing."""
        for block in self.blocks:
            block.ffn.down_proj.weight.zero_()
            if block.ffn.down_proj.bias is not None:
                block.ffn.down_proj.bias.zero_()
        return self

    def parameters_per_layer(self) -> int:
        """Parameters added per layer: the low-rank FFN and its norm."""
        return sum(p.numel() for p in self.blocks[0].parameters())

    def num_added_parameters(self) -> int:
        """All parameters of the specific stream (blocks and questioner embeddings)."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ running
    def resolve(self, questioner_ids: Tensor) -> tuple[Tensor, Tensor]:
        """``(embeddings [B, 1, D], active [B, 1, 1])`` for questioner indices ``[B]`` (0 = unknown)."""
        ids = torch.as_tensor(questioner_ids, dtype=torch.long, device=self.questioner_embeddings.weight.device)
        if ids.dim() != 1:
            raise ValueError(f"LowRankSpecificEncoder: questioner_ids must be [B], got {tuple(ids.shape)}")
        if bool(((ids < 0) | (ids > self.num_questioners)).any()):
            raise ValueError(f"LowRankSpecificEncoder: questioner ids must be in [0, {self.num_questioners}] "
                             f"(0 = unknown), got {ids.tolist()}")
        emb = self.questioner_embeddings(ids).unsqueeze(1)  # (B, 1, D)
        if self.unknown_questioner == "general":
            active = (ids != 0).to(emb.dtype)
        else:
            active = torch.ones_like(ids, dtype=emb.dtype)
        return emb, active.view(-1, 1, 1)

    @contextmanager
    def use_questioners(self, questioner_ids: Optional[Tensor]) -> Iterator["LowRankSpecificEncoder"]:
        """Run the wrapped model with the specific stream of these questioners (``None``: the backbone alone)."""
        previous = self._state
        if questioner_ids is None:
            object.__setattr__(self, "_state", None)
        else:
            start, active = self.resolve(questioner_ids)
            object.__setattr__(self, "_state", _StreamState(start, active))
        try:
            yield self
        finally:
            last = self._state
            object.__setattr__(self, "_last_state", last)
            object.__setattr__(self, "_state", previous)

    @property
    def last_stream(self) -> Optional[Tensor]:
        r"""$\delta_L$ (``[B, T, D]``), the stream's output in the last forward pass run under :meth:`use_questioners`."""
        state = self._state if self._state is not None else getattr(self, "_last_state", None)
        return None if state is None else state.last_stream

    def pooled(self, attention_mask: Optional[Tensor] = None) -> Tensor:
        r"""Masked mean of $\delta_L$ over the positions: the pooled questioner-specific representation ``[B, D]``."""
        from personakit.functional.losses import masked_mean

        stream = self.last_stream
        if stream is None:
            raise RuntimeError("LowRankSpecificEncoder.pooled: run the model under use_questioners() first")
        return masked_mean(stream, attention_mask, dim=1)  # (B, D)

    def unwrap(self) -> None:
        """Put the original layers back into the model (the encoder's parameters stay)."""
        self._final_norm_hook.remove()
        layers = self._layers
        for i in range(len(layers)):
            removed = remove_wrapper(layers, i, lambda w: isinstance(w, SpecificStreamLayer) and w._encoder_ref() is self)
            if removed is not None:
                removed.remove_hook()  # type: ignore[attr-defined]

    def extra_repr(self) -> str:
        return (f"architecture={self.architecture!r}, layers={len(self.blocks)}, hidden_size={self.hidden_size}, "
                f"rank={self.rank}, num_questioners={self.num_questioners}, "
                f"unknown_questioner={self.unknown_questioner!r}")


class LowRankSpecificEncoderConfig(BaseConfig):
    """Config of :class:`LowRankSpecificEncoder` (``build(model=..., num_questioners=...)``)."""

    _target_ = LowRankSpecificEncoder

    rank: int = Field(16, ge=1, description="Rank $r$ of the low-rank feed-forward blocks.")
    unknown_questioner: UnknownQuestioner = Field("general", description=(
        "Unknown questioners: ``\"general\"`` (no specific stream) or ``\"default\"`` (the default "
        "embedding)."))
    init_scale: float = Field(0.0, ge=0.0, description=(
        "Factor on the default initialisation of the low-rank down projections (0: the model starts as the "
        "backbone)."))
    embedding_std: float = Field(0.5, ge=0.0, description="Standard deviation of the initial questioner embeddings.")
