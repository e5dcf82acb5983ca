"""The base of the modules that wrap one layer of a backbone (style injection, specific stream)."""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

__all__ = ["LayerWrapper"]


class LayerWrapper(nn.Module):
    """Holds ``base_layer``; unknown attributes are looked up on it (``layer.self_attn`` still works)."""

    def __init__(self, base_layer: nn.Module, layer_index: int = 0):
        super().__init__()
        self.base_layer = base_layer
        self.layer_index = layer_index

    def map_hidden(self, output: Any, fn: Callable[[Tensor], Tensor]) -> Any:
        """``fn`` applied to the hidden state the layer returned (the tensor, or element 0 of a tuple)."""
        if isinstance(output, Tensor):
            return fn(output)  # (B, T, D)
        if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
            return (fn(output[0]),) + tuple(output[1:])  # hidden state first, rest unchanged
        raise TypeError(
            f"{type(self).__name__}: {type(self.base_layer).__name__} returned {type(output).__name__}; "
            "expected a hidden-state tensor or a tuple whose first element is one"
        )

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)
