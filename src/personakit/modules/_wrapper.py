"""The base of the modules that wrap one layer of a backbone (style injection, specific stream).

A :class:`LayerWrapper` holds the original layer as ``wrapped_layer`` and is *transparent*:

* **state dict**: the keys of the wrapped layer come out without the ``wrapped_layer.``
  segment (``h.0.attn.c_attn.weight``, not ``h.0.wrapped_layer.attn.c_attn.weight``), so
  ``state_dict()`` of a wrapped backbone equals that of the unwrapped one: a transformers
  ``save_pretrained``, ``safetensors.torch.save_model`` or a peft adapter saved while
  wrapped loads on the unwrapped model.  ``load_state_dict`` accepts the clean keys, the
  ``wrapped_layer.`` keys, and the ``base_layer.`` keys of checkpoints written before
  the wrapper's attribute was renamed.
* **names**: ``named_modules`` lists the wrapper and then the wrapped layer under the
  wrapper's own path, so ``named_parameters`` / ``named_buffers`` give the unwrapped
  names too, matching the state dict (peft derives its adapter keys from
  ``named_modules``; ``get_submodule`` / ``get_parameter`` resolve those names through the
  attribute lookup below).
* **peft**: the wrapper has no ``base_layer`` attribute (peft's ``merge_and_unload`` takes
  any module with one for a tuner layer) and does not pass peft's tuner-layer names on to
  the wrapped layer, so peft walks through it to the LoRA layers inside and merges them;
  assigning a submodule of the wrapped layer on the wrapper (as peft does when it injects
  LoRA into a direct child such as BART's ``fc1``) replaces it in the wrapped layer.
* **attributes**: other unknown attributes are looked up on the wrapped layer
  (``layer.self_attn`` still works).

Wrappers may nest (a specific stream over a style-injection layer): :func:`find_wrapper`
and :func:`remove_wrapper` work on the chain of wrappers at one position of a layer list.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

from torch import Tensor, nn

__all__ = ["LayerWrapper", "WRAPPED", "LEGACY_WRAPPED", "find_wrapper", "remove_wrapper", "wrapper_chain"]

WRAPPED = "wrapped_layer"
"""Attribute (and state-dict segment inside the module tree) holding the wrapped layer."""

LEGACY_WRAPPED = "base_layer"
"""The attribute's name before it was renamed (it collided with peft's); accepted when loading."""

# names peft looks for to recognise a tuner layer; never looked up on the wrapped layer
_NOT_DELEGATED = frozenset({
    WRAPPED, LEGACY_WRAPPED, "get_base_layer", "merge", "unmerge", "unload_and_optionally_merge_module",
})


def _strip_state_dict_segment(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """State-dict post-hook: ``<prefix>wrapped_layer.<rest>`` becomes ``<prefix><rest>`` (order kept)."""
    inner = prefix + WRAPPED + "."
    keys = [k for k in state_dict if k.startswith(inner)]
    for key in keys:  # these keys are the last ones written, so re-inserting them keeps the order
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:  # the clean paths get the wrapped modules' metadata too (the wrapper's own wins)
        inner_path = prefix + WRAPPED
        for path in [p for p in metadata if p == inner_path or p.startswith(inner)]:
            metadata.setdefault(prefix[:-1] if path == inner_path else prefix + path[len(inner):], metadata[path])


def _add_state_dict_segment(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                            missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """Load pre-hook: ``<prefix><rest>`` and ``<prefix>base_layer.<rest>`` become ``<prefix>wrapped_layer.<rest>``."""
    inner = prefix + WRAPPED + "."
    legacy = prefix + LEGACY_WRAPPED + "."
    # a wrapped layer that has a `base_layer` child of its own (a peft tuner layer) keeps such keys
    accept_legacy = LEGACY_WRAPPED not in module._modules[WRAPPED]._modules
    own = set(module._parameters) | set(module._buffers) | (set(module._modules) - {WRAPPED})
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        rest = key[len(prefix):]
        if accept_legacy and key.startswith(legacy):
            rest = rest[len(legacy) - len(prefix):]
        elif rest.split(".", 1)[0] in own:
            continue  # the wrapper's own entry
        state_dict[inner + rest] = state_dict.pop(key)


class LayerWrapper(nn.Module):
    """Holds ``wrapped_layer``, transparently for state dicts and peft (see the module docstring).

    Args:
        wrapped_layer: the original layer.
        layer_index: position of the layer in its stack (for ``repr`` and hooks).
    """

    def __init__(self, wrapped_layer: nn.Module, layer_index: int = 0):
        super().__init__()
        self.wrapped_layer = wrapped_layer
        self.layer_index = layer_index
        self.register_state_dict_post_hook(_strip_state_dict_segment)
        self.register_load_state_dict_pre_hook(_add_state_dict_segment)

    def map_hidden(self, output: Any, fn: Callable[[Tensor], Tensor]) -> Any:
        """``fn`` applied to the hidden state the layer returned (the tensor, or element 0 of a tuple)."""
        if isinstance(output, Tensor):
            return fn(output)  # (B, T, D)
        if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
            return (fn(output[0]),) + tuple(output[1:])  # hidden state first, rest unchanged
        raise TypeError(
            f"{type(self).__name__}: {type(self.wrapped_layer).__name__} returned {type(output).__name__}; "
            "expected a hidden-state tensor or a tuple whose first element is one"
        )

    def named_modules(self, memo: Optional[set] = None, prefix: str = "", remove_duplicate: bool = True
                      ) -> Iterator[tuple[str, nn.Module]]:
        """The wrapper, then the wrapped layer and its submodules under the wrapper's own path.

        ``named_parameters`` / ``named_buffers`` (and peft, which names adapter weights
        after ``named_modules``) thus see the unwrapped model's names, matching ``state_dict()``.
        """
        if memo is None:
            memo = set()
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                path = prefix if name == WRAPPED else prefix + ("." if prefix else "") + name
                yield from module.named_modules(memo, path, remove_duplicate)

    def __setattr__(self, name: str, value: Any) -> None:
        # a submodule / parameter / buffer of the wrapped layer is replaced there (peft replaces target
        # modules through `setattr(parent, name, lora_layer)` with the parent found by its clean path)
        inner = _innermost(self)
        slots = ("_modules", "_parameters", "_buffers")
        if (inner is not None and name not in self.__dict__ and not any(name in self.__dict__[d] for d in slots)
                and any(name in inner.__dict__[d] for d in slots)):
            setattr(inner, name, value)
        else:
            super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapped = self.__dict__.get("_modules", {}).get(WRAPPED)
            if wrapped is None or name in _NOT_DELEGATED or name.startswith("__"):
                raise
            return getattr(wrapped, name)


def _innermost(wrapper: nn.Module) -> Optional[nn.Module]:
    """The layer at the bottom of ``wrapper``'s chain (``None`` while the wrapper is being built)."""
    layer: Optional[nn.Module] = wrapper
    while isinstance(layer, LayerWrapper):
        layer = layer.__dict__.get("_modules", {}).get(WRAPPED)
    return layer


def wrapper_chain(layer: nn.Module) -> list[LayerWrapper]:
    """The wrappers around a layer, outermost first (empty for an unwrapped layer)."""
    chain: list[LayerWrapper] = []
    while isinstance(layer, LayerWrapper):
        chain.append(layer)
        layer = layer.wrapped_layer
    return chain


def find_wrapper(layer: nn.Module, predicate: Callable[[LayerWrapper], bool]) -> Optional[LayerWrapper]:
    """The outermost wrapper in ``layer``'s chain for which ``predicate`` holds, else ``None``."""
    return next((w for w in wrapper_chain(layer) if predicate(w)), None)


def remove_wrapper(layers: nn.ModuleList, index: int, predicate: Callable[[LayerWrapper], bool]
                   ) -> Optional[LayerWrapper]:
    """Take the outermost wrapper matching ``predicate`` out of the chain at ``layers[index]``.

    The module it wrapped takes its place (in the list, or inside the wrapper around it).

    Returns:
        The removed wrapper, or ``None`` when none matched.
    """
    parent: Optional[LayerWrapper] = None
    for wrapper in wrapper_chain(layers[index]):
        if predicate(wrapper):
            if parent is None:
                layers[index] = wrapper.wrapped_layer
            else:
                parent.wrapped_layer = wrapper.wrapped_layer
            return wrapper
        parent = wrapper
    return None
