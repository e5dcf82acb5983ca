r"""Shared logic of the style-enhanced decoder (GRAG §3.3.2): wrap every decoder layer, add a style."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import Tensor, nn

from personakit.backbones.peft import unwrap_peft
from personakit.modules._wrapper import LayerWrapper, find_wrapper, remove_wrapper

__all__ = ["StyleInjectionLayer", "StyleEnhancedDecoder", "add_style", "unwrap_peft"]


def add_style(hidden: Tensor, style: Tensor) -> Tensor:
    r"""$h \leftarrow \mathcal{S} + h$, broadcasting the style over the sequence positions.

    Args:
        hidden: ``[B, T, D]`` hidden states of one layer.
        style: ``[B', D]`` style vectors or one ``[D]`` vector for the whole batch.
            ``B = B'`` is the usual case; when ``B`` is a multiple of ``B'`` (beam search
            or ``num_return_sequences`` in ``generate()`` expand the batch with
            ``repeat_interleave``) each style is repeated ``B / B'`` times in place.

    Returns:
        ``[B, T, D]``, in the dtype of ``hidden``.
    """
    if style.dim() == 1:
        style = style.expand(hidden.size(0), -1)  # (D,) -> (B, D)
    if style.dim() != 2 or style.size(-1) != hidden.size(-1):
        raise ValueError(
            f"style must be [B, D] or [D] with D = {hidden.size(-1)} (the decoder's hidden size), "
            f"got {tuple(style.shape)}"
        )
    batch, style_batch = hidden.size(0), style.size(0)
    if batch != style_batch:
        if style_batch == 0 or batch % style_batch != 0:
            raise ValueError(
                f"style batch size {style_batch} does not match the decoder batch size {batch} "
                f"(nor divides it, as beam search / num_return_sequences expansion would)"
            )
        style = style.repeat_interleave(batch // style_batch, dim=0)  # (B', D) -> (B, D)
    style = style.to(device=hidden.device, dtype=hidden.dtype)
    return hidden + style.unsqueeze(1)  # (B, T, D) + (B, 1, D)


class StyleInjectionLayer(LayerWrapper):
    r"""Wraps one decoder layer and adds the current style to its output hidden state.

    $h_i \leftarrow \mathcal{S} + h_i$, where $h_i$ is the hidden-state output of the
    wrapped layer ``wrapped_layer`` (the tensor it returns, or element 0 of the tuple it
    returns; the other elements, such as T5's position biases, pass through).  With no
    style set the output of ``wrapped_layer`` is returned as is (the same object).

    The style is state of the wrapper set by :class:`StyleEnhancedDecoder` for the
    duration of a call; it is not a parameter or buffer.  Unknown attributes are looked
    up on ``wrapped_layer`` (``layer.self_attn`` still works).  The wrapper is transparent
    to state dicts and to peft (see :class:`~personakit.modules._wrapper.LayerWrapper`):
    ``state_dict()`` has the original layer's keys, and ``merge_and_unload()`` of a peft
    model merges the LoRA layers inside it.

    Args:
        wrapped_layer: the original decoder layer.
        layer_index: position of the layer in its decoder (for ``repr`` and hooks).
    """

    def __init__(self, wrapped_layer: nn.Module, layer_index: int = 0):
        super().__init__(wrapped_layer, layer_index)
        self.style: Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        output = self.wrapped_layer(*args, **kwargs)
        style = self.style
        if style is None:
            return output
        return self.map_hidden(output, lambda hidden: add_style(hidden, style))  # (B, T, D)

    def extra_repr(self) -> str:
        return f"layer_index={self.layer_index}, style={'set' if self.style is not None else 'None'}"


def _is_style_layer(module: nn.Module) -> bool:
    return isinstance(module, StyleInjectionLayer)


def _style_wrapper(layer: nn.Module) -> StyleInjectionLayer | None:
    """The :class:`StyleInjectionLayer` in ``layer``'s chain of wrappers, if any."""
    return find_wrapper(layer, _is_style_layer)  # type: ignore[return-value]


def _get_path(root: nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _has_module_list(root: nn.Module, path: str) -> bool:
    try:
        return isinstance(_get_path(root, path), nn.ModuleList)
    except AttributeError:
        return False


def _hidden_size(config: Any) -> int | None:
    for name in ("d_model", "hidden_size", "n_embd"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


class StyleEnhancedDecoder(nn.Module):
    r"""Style-enhanced decoder of GRAG (Liu et al., 2026, §3.3.2): $h_i \leftarrow \mathcal{S} + h_i$ at every layer.

    "Within the decoder, the personalized style embedding $\mathcal{S}_P$ supplements
    the hidden states at each decoding layer, i.e. $h_i \leftarrow \mathcal{S}_P + h_i$,
    where $h_i$ is the hidden state of the $i$-th decoder layer."  Precisely: the style
    vector $\mathcal{S} \in \mathbb{R}^{B \times D}$ is added to the **output hidden state
    of each decoder layer**, broadcast over all positions, so the next layer (or the
    final norm / LM head after the last layer) sees $h_i + \mathcal{S}$.  Token
    embeddings and the final layer norm are not changed.

    The wrapper does not monkey-patch: each entry of the decoder's layer ``ModuleList``
    is replaced by a :class:`StyleInjectionLayer` that holds the original layer as
    ``wrapped_layer`` and adds the style on its output.  The replacement is in place, so
    the full model that owns ``decoder`` (``BartForConditionalGeneration``,
    ``LlamaForCausalLM``, ...) uses the styled layers too, which is how ``generate()``
    works: the style set by :meth:`use_style` applies at every generation step, with
    or without the KV cache.  With no style (``style=None``) every layer returns its
    original output object, so the model is unchanged bit for bit.

    Subclasses hold the architecture glue (where the layer list lives, how to find the
    decoder in a full model): :class:`~personakit.modules.BartStyleDecoder`,
    :class:`~personakit.modules.T5StyleDecoder`,
    :class:`~personakit.modules.EncoderDecoderStyleDecoder`,
    :class:`~personakit.modules.CausalStyleDecoder`;
    :func:`~personakit.modules.wrap_style_decoder` picks one from a model.  This base
    class works on any decoder whose layers sit in a ``ModuleList`` given by
    ``layers_path``.

    Notes:
        - The style may have a batch of ``B'`` when the decoder runs on ``B = k B'``
          rows (beam search, ``num_return_sequences``); it is repeated in place.
        - ``output_hidden_states=True`` of transformers records each layer's output
          through hooks on the original layer classes, i.e. **before** the style is
          added (the last entry is the final output and includes it).  Hook the
          :class:`StyleInjectionLayer` modules to see the styled states.
        - The style is stored on the layer wrappers while a call runs (not
          thread-safe across concurrent calls on one model).
        - The wrappers are transparent to state dicts and parameter names:
          ``state_dict()`` and ``named_parameters()`` of the wrapped model have the
          unwrapped model's names, so transformers' ``save_pretrained`` of the wrapped
          model writes a checkpoint ``from_pretrained`` loads into the plain model
          class, and peft adapters saved while wrapped load on the unwrapped model.
          peft's ``merge_and_unload()`` works on a wrapped model (the wrappers stay).
          :meth:`unwrap` restores the original layers.
        - A second :class:`StyleEnhancedDecoder` over layers that are already wrapped
          (a second GRAG model on the same backbone, ``wrap_style_decoder`` called
          twice) shares the existing :class:`StyleInjectionLayer` wrappers: each
          applies its style for the duration of its own calls (:meth:`use_style`),
          but a style set with :meth:`set_style` is seen by both, and :meth:`unwrap`
          of one unwraps the other.  Give each model its own backbone
          (``copy.deepcopy(backbone)``) to keep them independent.  Other wrappers (a
          :class:`~personakit.modules.SpecificStreamLayer`) may sit around or inside
          the style wrappers.

    Args:
        decoder: the decoder stack whose layers get the style (``BartDecoder``,
            T5's decoder ``T5Stack``, ``LlamaModel``, ``GPT2Model``, a BERT decoder's
            ``BertModel``, ...).
        layers_path: dotted attribute path of the layer ``ModuleList`` inside
            ``decoder`` (``"layers"``, ``"block"``, ``"h"``, ``"encoder.layer"``).
            Defaults to the subclass's ``LAYERS_PATH``, else the first of those that
            exists.
        active_layers: the layer indices that get the style (``None``, the default and
            the paper's form: every layer); see :attr:`active_layers`.

    Shapes:
        - style: ``[B, D]`` (or ``[D]``), ``D`` the decoder hidden size.
        - each layer output: ``[B, T, D]`` → ``[B, T, D]``.

    Example:
        >>> import torch
        >>> from transformers import BartConfig, BartForConditionalGeneration
        >>> from personakit.modules import wrap_style_decoder
        >>> cfg = BartConfig(d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        ...                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        ...                  vocab_size=99, max_position_embeddings=64)
        >>> model = BartForConditionalGeneration(cfg).eval()
        >>> styled = wrap_style_decoder(model)            # BartStyleDecoder over model.model.decoder
        >>> ids, style = torch.tensor([[5, 6, 7, 2]]), torch.randn(1, 16)
        >>> with styled.use_style(style):                 # every decoder layer: h_i <- S + h_i
        ...     out = model.generate(ids, max_new_tokens=3, do_sample=False)
        >>> out.shape[0]
        1

    Citation:
        Liu, Symons and Vatsavai (2026). *GRAG: Generic Response-Augmented Generation
        Framework for Personalized Conversational Systems.* arXiv:2606.21097.
    """

    #: Path of the layer ``ModuleList`` inside the decoder stack (set by the glue).
    LAYERS_PATH: ClassVar[str | None] = None
    #: Candidate paths tried when neither ``layers_path`` nor ``LAYERS_PATH`` is given.
    CANDIDATE_PATHS: ClassVar[tuple[str, ...]] = ("layers", "block", "h", "layer", "encoder.layer")
    #: Short architecture name (registry key of the glue).
    ARCHITECTURE: ClassVar[str] = "generic"

    def __init__(self, decoder: nn.Module, layers_path: str | None = None,
                 active_layers: Sequence[int] | None = None):
        super().__init__()
        path = layers_path or self.LAYERS_PATH
        if path is None:
            path = next((p for p in self.CANDIDATE_PATHS if _has_module_list(decoder, p)), None)
        if path is None or not _has_module_list(decoder, path):
            raise TypeError(
                f"{type(self).__name__}: {type(decoder).__name__} has no layer ModuleList at "
                f"{path or ' / '.join(self.CANDIDATE_PATHS)!r}; pass layers_path= or use wrap_style_decoder(model)"
            )
        layer_list: nn.ModuleList = _get_path(decoder, path)
        if len(layer_list) == 0:
            raise ValueError(f"{type(self).__name__}: {type(decoder).__name__}.{path} is empty")
        styled = [_style_wrapper(layer) is not None for layer in layer_list]
        if any(styled) and not all(styled):
            raise ValueError(
                f"{type(self).__name__}: only some layers of {type(decoder).__name__}.{path} are wrapped by "
                "StyleInjectionLayer; unwrap() the StyleEnhancedDecoder that wrapped them, or wrap a fresh "
                "copy of the backbone"
            )
        if not any(styled):  # (when all are styled, this decoder shares their wrappers: see Notes)
            for i, layer in enumerate(layer_list):
                layer_list[i] = StyleInjectionLayer(layer, layer_index=i)
        self.decoder = decoder
        self.layers_path = path
        self.hidden_size = _hidden_size(getattr(decoder, "config", None))
        self.active_layers = active_layers

    # ------------------------------------------------------------------ glue hooks
    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """Whether this glue handles ``model`` (a full HF model); overridden by the glue."""
        return False

    @classmethod
    def locate_decoder(cls, model: nn.Module) -> nn.Module:
        """The decoder stack inside the full model ``model``; overridden by the glue."""
        raise NotImplementedError(f"{cls.__name__} cannot locate a decoder; construct it with the decoder directly")

    @classmethod
    def from_model(cls, model: nn.Module, active_layers: Sequence[int] | None = None) -> "StyleEnhancedDecoder":
        """Wrap the decoder of the full model ``model`` (in place) and return the wrapper."""
        return cls(cls.locate_decoder(unwrap_peft(model)), active_layers=active_layers)

    # ------------------------------------------------------------------ style state
    @property
    def style_layers(self) -> list[StyleInjectionLayer]:
        """The :class:`StyleInjectionLayer` wrappers, in decoder order."""
        layers = [_style_wrapper(layer) for layer in _get_path(self.decoder, self.layers_path)]
        if not all(layer is not None for layer in layers):
            raise RuntimeError(f"{type(self).__name__}: the decoder was unwrapped; wrap it again to use a style")
        return layers  # type: ignore[return-value]

    @property
    def num_layers(self) -> int:
        return len(self.style_layers)

    @property
    def active_layers(self) -> tuple[int, ...] | None:
        """The layers that get the style (indices into the decoder's layers), or ``None`` for every layer.

        ``None`` is the paper's form ($h_i \leftarrow \mathcal{S} + h_i$ at every layer).
        A subset (negative indices count from the end) adds the style only to those
        layers' outputs: in a pre-norm decoder (Llama, SmolLM2) the residual stream is
        never normalised between layers, so a style added at each of $N$ layers adds up
        to $N \mathcal{S}$, while one injection adds it once.  Setting it while a style
        is applied re-applies that style to the new layers.
        """
        return self._active_layers

    @active_layers.setter
    def active_layers(self, layers: Sequence[int] | None) -> None:
        if layers is None:
            chosen = None
        else:
            n = self.num_layers
            if isinstance(layers, (str, bytes)) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                          for i in layers):
                raise TypeError(f"active_layers must be None or a sequence of int layer indices, got {layers!r}")
            bad = [i for i in layers if not -n <= i < n]
            if bad or not layers:
                raise ValueError(f"active_layers must be non-empty indices in [-{n}, {n}) for this {n}-layer decoder, "
                                 f"got {list(layers)!r}")
            chosen = tuple(sorted({i % n for i in layers}))
        style = self.style if "_active_layers" in self.__dict__ else None
        self.__dict__["_active_layers"] = chosen
        if style is not None:
            self.set_style(style)

    def _is_active(self, index: int) -> bool:
        return self._active_layers is None or index in self._active_layers

    @property
    def style(self) -> Tensor | None:
        """The style currently applied (``None`` when the decoder runs unmodified)."""
        first = 0 if self._active_layers is None else self._active_layers[0]
        return self.style_layers[first].style

    def set_style(self, style: Tensor | None) -> None:
        """Apply ``style`` ``[B, D]`` (or ``[D]``) to every active layer until changed; ``None`` removes it."""
        if style is not None:
            if not isinstance(style, Tensor) or style.dim() not in (1, 2):
                raise ValueError(f"style must be a [B, D] or [D] tensor, got {getattr(style, 'shape', type(style))}")
            if self.hidden_size is not None and style.size(-1) != self.hidden_size:
                raise ValueError(
                    f"style has size {style.size(-1)} in its last dimension; the decoder hidden size is {self.hidden_size}"
                )
        for i, layer in enumerate(self.style_layers):
            layer.style = style if self._is_active(i) else None

    def clear_style(self) -> None:
        """Remove the style: the decoder runs unmodified."""
        self.set_style(None)

    @contextmanager
    def use_style(self, style: Tensor | None) -> Iterator["StyleEnhancedDecoder"]:
        """Context manager: apply ``style`` inside the block, restore the previous style after.

        Use it around ``model(...)`` or ``model.generate(...)`` of the full model.
        """
        previous = self.style
        self.set_style(style)
        try:
            yield self
        finally:
            self.set_style(previous)

    # ------------------------------------------------------------------ forward / undo
    def forward(self, *args: Any, style: Tensor | None = None, **kwargs: Any) -> Any:
        """Run the wrapped decoder stack with ``style`` added at every layer.

        Args:
            *args, **kwargs: the decoder stack's own arguments (e.g. ``input_ids``,
                ``encoder_hidden_states``, ``attention_mask``, ``past_key_values``).
            style: ``[B, D]`` style vectors; ``None`` runs the decoder unmodified.

        Returns:
            Whatever the decoder stack returns (a transformers model output).
        """
        with self.use_style(style):
            return self.decoder(*args, **kwargs)

    def unwrap(self) -> nn.Module:
        """Put the original layers back into the decoder and return the decoder.

        Only the :class:`StyleInjectionLayer` wrappers are removed (other wrappers stay);
        a decoder sharing them (see Notes) is unwrapped too.
        """
        layer_list: nn.ModuleList = _get_path(self.decoder, self.layers_path)
        for i in range(len(layer_list)):
            remove_wrapper(layer_list, i, _is_style_layer)
        return self.decoder

    def extra_repr(self) -> str:
        active = "all" if self._active_layers is None else list(self._active_layers)
        return (
            f"architecture={self.ARCHITECTURE!r}, decoder={type(self.decoder).__name__}, "
            f"layers_path={self.layers_path!r}, hidden_size={self.hidden_size}, active_layers={active}"
        )

    def __repr__(self) -> str:  # the full decoder repr is long; show the summary only
        return f"{type(self).__name__}({self.extra_repr()}, num_layers={self.num_layers})"
