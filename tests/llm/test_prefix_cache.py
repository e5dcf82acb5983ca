"""The prefix-sharing key/value-cache engine alone: token ids in, prompt-pass logits and caches out."""

import pytest
import torch

from personakit.llm.prefix_cache import PrefixCacheEngine, _common_length, _reserved_layer

SYSTEM = [5, 6, 7, 8, 9, 10, 11, 12]  # a "system message" every prompt starts with
HISTORY = [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]  # a dialogue history later turns repeat


def _batch():  # ids below the tiny model's vocabulary of 44
    """Token-id prompts: three turns of one dialogue (each repeats the history) and two unrelated ones."""
    return [
        SYSTEM + HISTORY[:4] + [38, 39],
        SYSTEM + HISTORY[:8] + [40],
        SYSTEM + HISTORY + [41, 42, 43],
        SYSTEM + [31, 32, 33, 34, 35],
        SYSTEM + [36],
    ]


def _alone(model, encoded):
    """Reference: each prompt run on its own, unpadded; the logits of its next token ``[B, V]``."""
    with torch.inference_mode():
        return torch.stack([model(input_ids=torch.tensor([ids])).logits[0, -1] for ids in encoded])


def test_shared_prefix_length_rules(tiny_lm):
    model, _ = tiny_lm
    engine = PrefixCacheEngine(model, 0, min_shared_prefix=3)
    assert engine.shared_prefix_length([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6]]) == 4
    assert engine.shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 4, 6]]) == 3  # one token of each prompt is left
    assert engine.shared_prefix_length([[1, 2, 9, 4], [1, 2, 3, 4]]) == 0  # shorter than min_shared_prefix
    assert engine.shared_prefix_length([[1, 2, 3, 4, 5]]) == 0  # a single prompt: nothing to share
    assert PrefixCacheEngine(model, 0, share_prefix=False).shared_prefix_length([[1] * 40, [1] * 40 + [2]]) == 0
    with pytest.raises(ValueError, match="min_shared_prefix"):
        PrefixCacheEngine(model, 0, min_shared_prefix=0)
    with pytest.raises(ValueError, match="prefill_batch_size"):
        PrefixCacheEngine(model, 0, prefill_batch_size=0)


def test_branch_points_against_a_brute_force_search(tiny_lm):
    """Each reusing prompt copies from the longest agreement with a prompt prefilled in full, longer than it."""
    model, _ = tiny_lm
    engine = PrefixCacheEngine(model, 0, min_shared_prefix=3)
    encoded = _batch()
    shared = engine.shared_prefix_length(encoded)
    assert shared == len(SYSTEM)
    points = engine.branch_points(encoded)
    rests = [ids[shared:-1] for ids in encoded]
    sources = [i for i, (_, reused) in enumerate(points) if reused == 0]
    for i, (source, reused) in enumerate(points):
        if reused == 0:
            assert source == i
            continue
        assert source in sources and len(rests[source]) >= len(rests[i])
        assert rests[i][:reused] == rests[source][:reused] and reused >= engine.min_shared_prefix
        # brute force: no full prompt agrees with this one for longer
        assert reused == max(_common_length(rests[i], rests[j]) for j in sources if j != i)
    assert points[2] == (2, 0) and points[0] == (2, 4) and points[1] == (2, 8)  # the turns reuse the longest
    assert points[3][1] == points[4][1] == 0
    assert all(r == 0 for _, r in PrefixCacheEngine(model, 0, min_shared_prefix=3, reuse_prefill=False)
               .branch_points(encoded))


def test_batch_order_is_a_permutation_keeping_groups_together(tiny_lm):
    model, _ = tiny_lm
    encoded = _batch()
    shuffled = [encoded[i] for i in (3, 0, 4, 2, 1)]
    order = PrefixCacheEngine(model, 0, min_shared_prefix=3).batch_order(shuffled)
    assert sorted(order) == list(range(len(shuffled)))
    assert order[:3] == [3, 4, 1]  # the dialogue's turns first (it holds the longest prompt), longest first
    plain = PrefixCacheEngine(model, 0, share_prefix=False).batch_order(shuffled)
    lengths = [len(shuffled[i]) for i in plain]
    assert lengths == sorted(lengths, reverse=True)


def test_layout_left_pads_after_the_prefix(tiny_lm):
    model, _ = tiny_lm
    input_ids, mask = PrefixCacheEngine(model, 99).layout([1, 2], [[3], [4, 5, 6]], 3)
    assert input_ids.tolist() == [[1, 2, 99, 99, 3], [1, 2, 4, 5, 6]]
    assert mask.tolist() == [[1, 1, 0, 0, 1], [1, 1, 1, 1, 1]]


@pytest.mark.parametrize("prefill_batch_size", [None, 1, 2])
@pytest.mark.parametrize("reuse_prefill", [True, False])
def test_prefill_logits_equal_each_prompt_alone(tiny_lm, prefill_batch_size, reuse_prefill):
    model, _ = tiny_lm
    encoded = _batch()
    engine = PrefixCacheEngine(model, 0, min_shared_prefix=3, reuse_prefill=reuse_prefill,
                               prefill_batch_size=prefill_batch_size)
    logits = engine.prefill_logits(encoded)  # (B, V)
    assert logits.shape == (len(encoded), model.config.vocab_size)
    torch.testing.assert_close(logits, _alone(model, encoded), atol=1e-4, rtol=1e-4)


def test_prefill_logits_without_anything_to_prefill(tiny_lm):
    model, _ = tiny_lm
    encoded = [[5], [6], [7]]  # one-token prompts, no shared prefix
    torch.testing.assert_close(PrefixCacheEngine(model, 0).prefill_logits(encoded), _alone(model, encoded),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("prefill_batch_size", [None, 2])
def test_prepare_then_last_tokens_continue_each_prompt(tiny_lm, prefill_batch_size):
    """The inputs ``prepare`` returns, run after its cache, give each prompt's own next-token logits."""
    model, _ = tiny_lm
    encoded = _batch()
    engine = PrefixCacheEngine(model, 0, min_shared_prefix=3, prefill_batch_size=prefill_batch_size)
    input_ids, mask, cache = engine.prepare(encoded, max_new_tokens=4)
    assert cache is not None and input_ids.shape == mask.shape
    cached = cache.get_seq_length()
    with torch.inference_mode():
        out = engine.extend(input_ids[:, cached:], mask, cache)
    torch.testing.assert_close(out.logits[:, -1], _alone(model, encoded), atol=1e-4, rtol=1e-4)


def test_no_prefill_reuse_for_a_sliding_window_cache(tiny_lm):
    from types import SimpleNamespace

    from transformers import MistralConfig

    model, _ = tiny_lm
    assert PrefixCacheEngine(model, 0).reuses_prefill  # a Llama cache keeps every position
    window = SimpleNamespace(config=MistralConfig(num_hidden_layers=2, sliding_window=8))  # only its cache is read
    engine = PrefixCacheEngine(window, 0, min_shared_prefix=3)
    assert not engine.reuses_prefill  # its cache keeps only 8 positions
    assert all(reused == 0 for _, reused in engine.branch_points(_batch()))
    assert PrefixCacheEngine(SimpleNamespace(), 0).reuses_prefill is False  # no usable config: no copies


def test_reserved_cache_layer_grows_in_place_and_falls_back_when_full():
    from transformers.cache_utils import DynamicLayer

    keys, values = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    room = torch.zeros(2, 3, 2, 5)  # buffers with room for 2 more positions
    layer = _reserved_layer(DynamicLayer(), torch.cat([keys, room], -2), torch.cat([values, room], -2), 4)
    torch.testing.assert_close(layer.keys, keys)
    buffer = layer.keys.data_ptr()
    new_k, new_v = torch.randn(2, 3, 1, 5), torch.randn(2, 3, 1, 5)
    k, v = layer.update(new_k, new_v)
    assert k.data_ptr() == buffer and layer.get_seq_length() == 5  # written into the reserved room
    torch.testing.assert_close(k, torch.cat([keys, new_k], -2))
    torch.testing.assert_close(v, torch.cat([values, new_v], -2))
    layer.update(new_k, new_v)
    k, _ = layer.update(new_k, new_v)  # the room was for 2: the third grows the plain way
    assert layer.get_seq_length() == 7 and k.data_ptr() != buffer
    torch.testing.assert_close(k[..., 4:, :], new_k.expand(2, 3, 3, 5))


def test_importing_the_engine_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, personakit.llm.prefix_cache; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
