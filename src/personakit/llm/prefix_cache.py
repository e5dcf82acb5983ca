r"""Prefix-sharing key/value-cache engine: the prompt pass of a batch of causal-LM prompts.

Prompts built from one template share their first tokens (the system message, the
instructions), and the prompts of successive turns of one dialogue repeat the history of
the earlier turns.  For a batch of token-id lists $x_1, \dots, x_B$ the engine

* runs the longest prefix $P = \min_{i > 1} \operatorname{lcp}(x_1, x_i)$ common to the
  batch (when at least ``min_shared_prefix`` tokens, leaving one token of each prompt)
  through the model once and repeats its key/value cache over the batch;
* lets a prompt that agrees with a longer prompt of its batch for at least
  ``min_shared_prefix`` more tokens copy those tokens' keys and values from that
  prompt's prefill (:meth:`PrefixCacheEngine.branch_points`), prefilling only the rest;
* prefills in sub-batches of ``prefill_batch_size`` (each left-padded only to its own
  longest prompt) and merges their caches into one, laid out per row as
  ``[shared prefix | padding | rest of the prompt]`` with the padding masked, in buffers
  with room reserved for the new tokens (decoding then writes in place instead of
  copying the cache at every step).

Positions come from the attention mask, as generation computes them, so every token
keeps the position it has unpadded and the logits equal those of each prompt run alone
(up to floating-point ties).  :class:`~personakit.llm.HFGenerator` tokenises, decodes
and calls this engine; the engine works on token ids and a Hugging Face causal LM whose
cache is a ``transformers.DynamicCache``.  Importing this module does not import torch
or transformers.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Optional

from personakit.backbones.compat import cache_argument

__all__ = ["PrefixCacheEngine"]


class PrefixCacheEngine:
    """Prefill a batch of prompts (token ids) sharing what they share, for generation or scoring.

    Args:
        model: a Hugging Face causal LM, in eval mode.
        pad_token_id: the id written in padded positions (masked out).
        share_prefix: encode the token prefix shared by a batch once.
        min_shared_prefix: shortest shared prefix worth encoding separately (also the
            fewest tokens a prompt must share with a longer one to reuse its prefill).
        reuse_prefill: let a prompt reuse the prefill of a longer prompt of its batch
            (needs ``share_prefix``; off by itself for models whose cache keeps only a
            sliding window of positions in some layer).
        prefill_batch_size: prompts per prompt pass (:meth:`merged_prefill`); ``None``
            prefills a batch at once.

    Example:
        >>> engine = PrefixCacheEngine(model, pad_token_id=0, min_shared_prefix=3)  # doctest: +SKIP
        >>> engine.shared_prefix_length([[5, 6, 7, 8, 9], [5, 6, 7, 8, 2]])  # doctest: +SKIP
        4
        >>> input_ids, attention_mask, cache = engine.prepare(encoded, max_new_tokens=16)  # doctest: +SKIP
        >>> logits = engine.prefill_logits(encoded)  # (B, V) next-token logits  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        pad_token_id: int,
        *,
        share_prefix: bool = True,
        min_shared_prefix: int = 16,
        reuse_prefill: bool = True,
        prefill_batch_size: Optional[int] = None,
    ):
        if min_shared_prefix < 1:
            raise ValueError(f"min_shared_prefix must be >= 1, got {min_shared_prefix}")
        if prefill_batch_size is not None and prefill_batch_size < 1:
            raise ValueError(f"prefill_batch_size must be >= 1 or None, got {prefill_batch_size}")
        self.model = model
        self.pad_token_id = int(pad_token_id)
        self.share_prefix = bool(share_prefix)
        self.min_shared_prefix = int(min_shared_prefix)
        self.reuse_prefill = bool(reuse_prefill)
        self.prefill_batch_size = prefill_batch_size
        # copying keys and values between prompts needs every cache layer to hold every position
        self._full_cache = _holds_every_position(model)
        # a prompt pass only needs the last position's logits (or none) when the model can skip the rest
        self._last_logits = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}

    @property
    def device(self) -> Any:
        """The device the model runs on (the CPU when it has no parameters)."""
        return _model_device(self.model)

    @property
    def reuses_prefill(self) -> bool:
        """Whether prompts may copy keys and values from a longer prompt of their batch."""
        return self.share_prefix and self.reuse_prefill and self._full_cache

    def __repr__(self) -> str:
        return (f"PrefixCacheEngine(share_prefix={self.share_prefix}, min_shared_prefix={self.min_shared_prefix}, "
                f"reuse_prefill={self.reuse_prefill}, prefill_batch_size={self.prefill_batch_size})")

    # ------------------------------------------------------------- planning
    def shared_prefix_length(self, encoded: list[list[int]]) -> int:
        """Tokens of the prefix common to ``encoded`` that :meth:`prepare` encodes once (0: none).

        At least one token of every prompt is left after the prefix (generation needs it),
        and a prefix shorter than ``min_shared_prefix`` is not worth a separate pass.
        """
        if not self.share_prefix or len(encoded) < 2:
            return 0
        limit = min(len(ids) for ids in encoded) - 1
        length = min([limit] + [_common_length(encoded[0], ids) for ids in encoded[1:]])
        return length if length >= self.min_shared_prefix else 0

    def branch_points(self, encoded: list[list[int]]) -> list[tuple[int, int]]:
        """For each prompt, the prompt of the batch whose prefill it reuses and how many tokens.

        Past the batch's shared prefix (:meth:`shared_prefix_length`), a prompt that agrees
        with a longer one for at least ``min_shared_prefix`` more tokens (an earlier turn of
        the same dialogue, say) takes those tokens' keys and values from it and prefills
        only the rest.  Returns ``(source, reused)`` per prompt: ``(i, 0)`` for a prompt
        prefilled in full, which is what every prompt gets without ``share_prefix`` or
        ``reuse_prefill``.
        Every prompt's last token is left out (generation starts by running it).
        """
        import torch

        shared = self.shared_prefix_length(encoded)
        rests = [ids[shared:-1] for ids in encoded]
        points = [(i, 0) for i in range(len(encoded))]
        width = max((len(r) for r in rests), default=0)
        if not self.reuses_prefill or len(encoded) < 2 or width < self.min_shared_prefix:
            return points
        table = torch.full((len(rests), width), -1, dtype=torch.long)
        for i, ids in enumerate(rests):
            table[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        sources: list[int] = []  # prompts prefilled in full, longest first
        for i in sorted(range(len(rests)), key=lambda i: -len(rests[i])):
            n = len(rests[i])
            if sources and n >= self.min_shared_prefix:
                # tokens each earlier (longer) source agrees with this prompt on, from the start
                agree = (table[sources, :n] == table[i, :n]).cumprod(-1).sum(-1)
                best = int(agree.argmax())
                if int(agree[best]) >= self.min_shared_prefix:
                    points[i] = (sources[best], int(agree[best]))
                    continue
            sources.append(i)
        return points

    def batch_order(self, encoded: list[list[int]]) -> list[int]:
        """Longest first, keeping prompts that share a prefix beyond the common one together.

        With ``share_prefix``, prompts whose tokens agree for at least
        ``min_shared_prefix`` tokens past the prefix *all* prompts share (the turns of one
        dialogue, say) form a group, so that a batch can prefill their common part once
        (:meth:`branch_points`); groups run longest first, and so do the prompts in a
        group.  Without such groups this is a plain sort by length, longest first (the
        slowest batch runs first, so a progress bar's estimate is pessimistic).

        Args:
            encoded: the token ids of each prompt.

        Returns:
            A permutation of ``range(len(encoded))``.
        """
        group = list(range(len(encoded)))  # the group (its first member's index) of each prompt
        if self.reuses_prefill and len(encoded) > 2:
            lexical = sorted(range(len(encoded)), key=lambda i: encoded[i])
            # the prefix common to all prompts is the one the lexically first and last share
            common = _common_length(encoded[lexical[0]], encoded[lexical[-1]])
            for a, b in zip(lexical, lexical[1:]):
                if _common_length(encoded[a], encoded[b]) >= common + self.min_shared_prefix:
                    group[b] = group[a]
        longest: dict[int, int] = {}
        for i, g in enumerate(group):
            longest[g] = max(longest.get(g, 0), len(encoded[i]))
        return sorted(range(len(encoded)), key=lambda i: (-longest[group[i]], group[i], -len(encoded[i])))

    # ------------------------------------------------------------ model calls
    def layout(self, prefix: list[int], rests: list[list[int]], width: int) -> tuple[Any, Any]:
        """``input_ids`` and ``attention_mask`` ``[n, P + width]`` (CPU): ``prefix``, then each rest left-padded."""
        import torch

        shared = len(prefix)
        input_ids = torch.full((len(rests), shared + width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rests), shared + width), dtype=torch.long)
        if shared:
            input_ids[:, :shared] = torch.tensor(prefix, dtype=torch.long)
            attention_mask[:, :shared] = 1
        for row, ids in enumerate(rests):  # left padding (after the shared prefix)
            if ids:
                input_ids[row, shared + width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, shared + width - len(ids):] = 1
        return input_ids, attention_mask

    def extend(self, input_ids: Any, attention_mask: Any, cache: Any) -> Any:
        """Run ``input_ids`` ``[n, T]`` after what ``cache`` holds; ``attention_mask`` ``[n, cached + T]``.

        Positions come from the mask, as generation computes them, so left padding anywhere
        leaves every token the position it has unpadded.
        """
        device = _model_device(self.model)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
        return self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                          position_ids=positions.to(device), **{cache_argument(self.model): cache}, use_cache=True,
                          **self._last_logits)

    def encode_prefix(self, prefix_ids: Any, batch: int) -> Any:
        """The key/value cache of ``prefix_ids`` ``[1, P]``, repeated over ``batch`` rows."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self.model(input_ids=prefix_ids, **{cache_argument(self.model): cache}, use_cache=True, **self._last_logits)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache

    # ------------------------------------------------------------ prompt pass
    def prepare(self, encoded: list[list[int]], max_new_tokens: int) -> tuple[Any, Any, Optional[Any]]:
        """The inputs that generating ``encoded`` as one batch starts from.

        The merged sub-batch prefill (:meth:`merged_prefill`) when prompts reuse another's
        prefill or there are more prompts than ``prefill_batch_size``; otherwise the
        shared prefix's cache repeated over the batch (:meth:`encode_prefix`) and the rest
        of each prompt, left-padded after it, to be prefilled by generation.

        Args:
            encoded: the token ids of each prompt.
            max_new_tokens: tokens generation will add (room reserved in a merged cache).

        Returns:
            ``(input_ids, attention_mask, cache)``: ``[B, T]`` each, and the cache of the
            first columns (``None``: nothing prefilled, generation runs all of ``input_ids``).
        """
        points = self.branch_points(encoded)
        prefilled = None
        if (self.prefill_batch_size is not None and len(encoded) > self.prefill_batch_size) \
                or any(reused for _, reused in points):
            prefilled = self.merged_prefill(encoded, max_new_tokens, points)
        if prefilled is not None:
            return prefilled
        shared = self.shared_prefix_length(encoded)  # P: tokens encoded once for the whole batch
        rests = [ids[shared:] for ids in encoded]
        input_ids, attention_mask = self.layout(encoded[0][:shared], rests, max(len(r) for r in rests))
        cache = self.encode_prefix(input_ids[:1, :shared].to(self.device), len(encoded)) if shared else None
        return input_ids, attention_mask, cache

    def prefill_logits(self, encoded: list[list[int]]) -> Any:
        """The logits of each prompt's next token ``[B, V]`` (float, on the model's device).

        Runs only the prompt pass that generating ``encoded`` as one batch starts with
        (:meth:`merged_prefill`, then each prompt's last token); nothing is decoded.

        Args:
            encoded: the token ids of each prompt (at least one).
        """
        import torch
        from transformers import DynamicCache

        prefilled = self.merged_prefill(encoded, 1)
        if prefilled is None:  # one-token prompts and no shared prefix: nothing to prefill before the last token
            input_ids, attention_mask = self.layout([], encoded, 1)
            cache = DynamicCache(config=self.model.config)
        else:
            input_ids, attention_mask, cache = prefilled
        with torch.inference_mode():
            out = self.extend(input_ids[:, -1:], attention_mask, cache)
        return out.logits[:, -1].float()  # (B, V)

    def merged_prefill(self, encoded: list[list[int]], max_new_tokens: int,
                       points: Optional[list[tuple[int, int]]] = None) -> Optional[tuple[Any, Any, Any]]:
        """Prefill the prompts ``encoded`` in sub-batches and merge their caches into one.

        Every prompt but its last token is prefilled (generation starts by running the last
        token).  The shared prefix is run once; the prompts prefilled in full come first,
        in sub-batches of ``prefill_batch_size`` (all at once when ``None``) sorted by
        length; then the prompts that reuse part of another's prefill
        (:meth:`branch_points`) run only their own tokens after a copy of those keys and
        values.  The merged layout of a row is ``[shared prefix | padding | rest of the
        prompt without its last token]``, the padding masked out; positions come from the
        attention mask as in generation, so every token keeps the position it has unpadded.
        Returns ``input_ids`` and ``attention_mask`` ``[B, P + W + 1]`` (the last column is
        each prompt's last token) and the cache of the first ``P + W`` columns, with room
        reserved for ``max_new_tokens`` more; ``None`` when there is nothing to prefill.
        ``points``: :meth:`branch_points` of ``encoded`` when already computed.
        """
        import torch
        from transformers import DynamicCache

        shared = self.shared_prefix_length(encoded)  # P
        prefix = encoded[0][:shared]
        rests = [ids[shared:-1] for ids in encoded]  # what the sub-batches prefill
        width = max(len(r) for r in rests)  # W
        if not shared and not width:
            return None
        device = _model_device(self.model)
        if points is None:
            points = self.branch_points(encoded)
        tails = [rests[i][reused:] for i, (_, reused) in enumerate(points)]
        size = self.prefill_batch_size or len(encoded)
        passes: list[list[int]] = []
        for reusing in (False, True):  # the prompts prefilled in full first: the others copy from them
            rows = sorted((i for i, (_, reused) in enumerate(points) if bool(reused) == reusing),
                          key=lambda i: -len(tails[i]))  # similar lengths together
            passes += [rows[start:start + size] for start in range(0, len(rows), size)]
        # the merged layout, with each prompt's last token in the extra column generation starts from
        input_ids, attention_mask = self.layout(prefix, [ids[shared:] for ids in encoded], width + 1)
        prefix_cache = self.encode_prefix(torch.tensor([prefix], device=device), 1) if shared else None
        buffers: list[tuple[Any, Any]] = []  # per layer: keys and values [B, H, P + W + new, D]
        with torch.inference_mode():
            for rows in passes:
                reused = [points[i][1] for i in rows]
                longest_reused, longest_tail = max(reused), max(len(tails[i]) for i in rows)
                if not (shared or longest_reused or longest_tail):
                    continue  # one-token prompts with no shared prefix: nothing cached, all padding
                n, past = len(rows), shared + longest_reused
                # this pass's rows: [shared prefix | padding | reused keys/values | padding | own tokens]
                mask = torch.zeros((n, past + longest_tail), dtype=torch.long)
                mask[:, :shared] = 1
                source_columns = []  # per row, the cache columns of its prompt, in order
                for j, i in enumerate(rows):
                    own = len(tails[i])
                    mask[j, past - reused[j]:past] = 1
                    mask[j, past + longest_tail - own:] = 1
                    source_columns.append(list(range(shared)) + list(range(past - reused[j], past))
                                          + list(range(past + longest_tail - own, past + longest_tail)))
                cache = DynamicCache(config=self.model.config)
                if past:
                    if longest_reused:
                        # the reused columns of each row's source, right-aligned (the masked padding
                        # before them reads whatever columns precede them)
                        src = torch.tensor([points[i][0] for i in rows], device=device)[:, None]
                        cols = torch.tensor([[shared + width - len(rests[points[i][0]]) - longest_reused + r + k
                                              for k in range(longest_reused)] for i, r in zip(rows, reused)],
                                            device=device).clamp(min=0)
                    for index, layer in enumerate(cache.layers):
                        keys, values = [], []
                        if prefix_cache is not None:
                            keys.append(prefix_cache.layers[index].keys.expand(n, -1, -1, -1))
                            values.append(prefix_cache.layers[index].values.expand(n, -1, -1, -1))
                        if longest_reused:  # the indexed view is (n, cols, H, D)
                            keys.append(buffers[index][0][src, :, cols].transpose(1, 2))
                            values.append(buffers[index][1][src, :, cols].transpose(1, 2))
                        layer.update(torch.cat(keys, 2) if len(keys) > 1 else keys[0].contiguous(),
                                     torch.cat(values, 2) if len(values) > 1 else values[0].contiguous())
                if longest_tail:
                    ids, _ = self.layout([], [tails[i] for i in rows], longest_tail)
                    self.extend(ids, mask, cache)
                # write each row's prompt into its merged layout: [prefix | padding | rest], right-aligned
                longest = max(shared + len(rests[i]) for i in rows)
                dst_rows = torch.tensor(rows, device=device)[:, None]
                dst_cols, src_cols = [], []
                for j, i in enumerate(rows):
                    count = len(source_columns[j])
                    pad = longest - count  # columns of padding written with whatever column 0 holds
                    dst_cols.append(list(range(shared)) + list(range(shared + width - (longest - shared),
                                                                     shared + width)))
                    src_cols.append(source_columns[j][:shared] + [0] * pad + source_columns[j][shared:])
                dst = torch.tensor(dst_cols, device=device)
                local = torch.arange(n, device=device)[:, None]
                srcc = torch.tensor(src_cols, device=device)
                for index, layer in enumerate(cache.layers):
                    if len(buffers) == index:  # (B, H, P + W + new, D); padding stays zero and masked
                        shape = (len(encoded), layer.keys.shape[1], shared + width + max_new_tokens + 1,
                                 layer.keys.shape[-1])
                        buffers.append((layer.keys.new_zeros(shape), layer.values.new_zeros(shape)))
                    buffers[index][0][dst_rows, :, dst] = layer.keys[local, :, srcc]
                    buffers[index][1][dst_rows, :, dst] = layer.values[local, :, srcc]
        merged = DynamicCache(config=self.model.config)
        for index, (keys, values) in enumerate(buffers):
            merged.layers[index] = _reserved_layer(merged.layers[index], keys, values, shared + width)
        return input_ids.to(device), attention_mask.to(device), merged


def _reserved_layer(layer: Any, key_buffer: Any, value_buffer: Any, length: int) -> Any:
    """A cache layer holding the first ``length`` positions of ``key_buffer``/``value_buffer`` ``[B, H, L, D]``.

    Decoding appends one position per step; a plain ``DynamicLayer`` copies its whole
    cache to do so (``torch.cat``), which at a large batch costs a good part of the step on
    a CPU.  The returned layer writes into the rest of the buffers instead and falls back
    to the plain behaviour once they are full or the batch changes.  A layer of another
    kind (sliding window, quantised) is filled the plain way.
    """
    from transformers.cache_utils import DynamicLayer

    if type(layer) is not DynamicLayer:
        layer.update(key_buffer[..., :length, :], value_buffer[..., :length, :])
        return layer
    cls = _reserved_layer_class()
    reserved = cls.__new__(cls)
    reserved.__dict__.update(layer.__dict__)
    reserved.adopt(key_buffer, value_buffer, length)
    return reserved


@functools.lru_cache(maxsize=None)
def _reserved_layer_class() -> Any:
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        def adopt(self, key_buffer: Any, value_buffer: Any, length: int) -> None:
            if not self.is_initialized:
                self.lazy_initialization(key_buffer, value_buffer)
            self._key_buffer, self._value_buffer = key_buffer, value_buffer
            self.keys, self.values = key_buffer[..., :length, :], value_buffer[..., :length, :]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            buffer = self._key_buffer
            if self.is_initialized and self.keys.data_ptr() == buffer.data_ptr():
                start, count = self.keys.shape[-2], key_states.shape[-2]
                if key_states.shape[0] == buffer.shape[0] and start + count <= buffer.shape[-2]:
                    buffer[..., start:start + count, :] = key_states
                    self._value_buffer[..., start:start + count, :] = value_states
                    self.keys = buffer[..., :start + count, :]
                    self.values = self._value_buffer[..., :start + count, :]
                    return self.keys, self.values
            return super().update(key_states, value_states, *args, **kwargs)

    return ReservedLayer


def _common_length(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


def _holds_every_position(model: Any) -> bool:
    """Whether every layer of ``model``'s dynamic cache keeps all positions (no sliding window)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:  # a model without a usable config: do not copy caches between prompts
        return False
    return all(type(layer) is DynamicLayer for layer in layers)


def _accepts(model: Any, argument: str) -> bool:
    """Whether ``model.forward`` takes ``argument``."""
    try:
        return argument in inspect.signature(model.forward).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def _model_device(model: Any) -> Any:
    import torch

    device = getattr(model, "device", None)
    if device is not None:
        return device
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")
