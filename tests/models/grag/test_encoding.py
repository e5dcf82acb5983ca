"""Batched encoding helpers: padding utilities, pass planning, stacked == separate encoding."""

from __future__ import annotations

import itertools

import pytest
import torch
from grag_testkit import PAD, build_backbone, make_examples, tokenizer_for

from personakit.models.grag import GRAGCollator, encode_segments, left_pad, pad_stack, plan_passes, trim_padding


def test_left_pad_moves_tokens_right_in_order():
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 0, 0, 0, 0], [9, 4, 3, 2, 0]])
    mask = (ids != 0).long()
    new_ids, new_mask = left_pad(ids, mask, pad_id=0)
    assert new_ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8], [9, 4, 3, 2]]
    assert new_mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]]


def test_trim_and_pad_stack():
    ids, mask = trim_padding(torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0]]), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]]))
    assert ids.shape == (2, 2)
    stacked = pad_stack([torch.ones(1, 2, 3), torch.zeros(2, 4, 3)], -1.0)
    assert stacked.shape == (3, 4, 3) and (stacked[0, 2:] == -1).all()


@pytest.mark.parametrize("items", ["segments", "rows"])
@pytest.mark.parametrize("max_passes", [1, 2, 3])
def test_plan_passes_is_optimal_against_brute_force(max_passes, items):
    if items == "segments":
        widths, rows = [7, 40, 9, 30], [2, 2, 2, 2]
    else:  # one item per row, as encode_segments plans them
        widths, rows = [12, 3, 40, 9, 9, 30, 17, 5, 22], [1] * 9

    def cost(groups):
        return sum(sum(rows[i] for i in g) * max(widths[i] for i in g) for g in groups)

    best = None
    for labels in itertools.product(range(max_passes), repeat=len(widths)):  # every assignment to <= k passes
        groups = [[i for i, lab in enumerate(labels) if lab == k] for k in range(max_passes)]
        groups = [g for g in groups if g]
        best = cost(groups) if best is None else min(best, cost(groups))
    plan = plan_passes(widths, rows, max_passes)
    assert len(plan) <= max_passes and sorted(i for g in plan for i in g) == list(range(len(widths)))
    assert cost(plan) == best


@pytest.mark.parametrize("kind", ["bart", "t5", "bert2bert", "llama"])
@pytest.mark.parametrize("max_passes", [1, 2])
def test_batched_encoding_equals_separate_encoding(kind, max_passes):
    from personakit.models.grag import PostGRAG

    model = PostGRAG.from_backbone(build_backbone(kind), tokenizer_for(kind), extractor_heads=2).eval()
    batch = model.make_collator()(make_examples())
    names = ("persona", "history", "generic", "response")
    segments = [(batch[f"{n}_ids"], batch[f"{n}_mask"]) for n in names]
    with torch.no_grad():
        together = encode_segments(model.encode, segments, PAD, max_passes=max_passes)
        for (ids, mask), (states, out_mask) in zip(segments, together):
            ids, mask = trim_padding(ids, mask)
            alone = model.encode(ids, mask)
            assert torch.equal(out_mask, mask)
            valid = mask.bool()
            torch.testing.assert_close(states[valid], alone[valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bart", "t5", "bert2bert", "llama"])
def test_all_passes_share_one_embedding_lookup(kind):
    """With several passes, the model's encodings look up every pass's tokens in one call (one
    dense embedding gradient in training) and give the states of encoding from the ids."""
    from personakit.models.grag import PostGRAG

    model = PostGRAG.from_backbone(build_backbone(kind), tokenizer_for(kind), extractor_heads=2).eval()
    model.config.encoder_passes = 4
    batch = model.make_collator()(make_examples())
    segments = [(batch[f"{n}_ids"], batch[f"{n}_mask"]) for n in ("persona", "history", "generic", "response")]
    lookups = []
    hook = model.input_embeddings().register_forward_hook(lambda m, args, out: lookups.append(args[0].shape))
    try:
        with torch.no_grad():
            together = model.encode_segments(segments)
    finally:
        hook.remove()
    # one lookup, of no more positions than the segments trimmed to their own widths hold: rows of
    # similar length share a pass, so short rows of a long segment are not padded to its width
    assert len(lookups) == 1
    assert lookups[0][0] < sum(ids.numel() for ids, _ in (trim_padding(*seg) for seg in segments))
    with torch.no_grad():
        for (ids, mask), (states, _) in zip(segments, together):
            ids, mask = trim_padding(ids, mask)
            valid = mask.bool()
            torch.testing.assert_close(states[valid], model.encode(ids, mask)[valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_passes", [1, 2])
def test_encoded_caches_equal_separate_encoding(max_passes):
    """The cache cut from a stacked pass equals the cache of encoding the segment alone (real tokens)."""
    from personakit.models.grag import PostGRAG

    model = PostGRAG.from_backbone(build_backbone("llama"), tokenizer_for("llama"), extractor_heads=2).eval()
    model.config.encoder_passes = max_passes
    batch = model.make_collator()(make_examples())
    segments = [(batch[f"{n}_ids"], batch[f"{n}_mask"]) for n in ("persona", "history", "generic", "response")]
    with torch.no_grad():
        states, caches = model.encode_segments_with_cache(segments, (1, 3))
        assert sorted(caches) == [1, 3]
        for index in (1, 3):
            ids, mask = trim_padding(*segments[index])
            alone_states, alone = model.encode_with_cache(ids, mask)
            assert len(caches[index]) == len(alone) == model.base_model.config.num_hidden_layers
            real = mask.bool()
            for (k, v), (k_ref, v_ref) in zip(caches[index], alone):
                assert k.shape == k_ref.shape == (ids.size(0), k_ref.size(1), ids.size(1), k_ref.size(3))
                torch.testing.assert_close(k.transpose(1, 2)[real], k_ref.transpose(1, 2)[real], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(v.transpose(1, 2)[real], v_ref.transpose(1, 2)[real], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(states[index][0][real], alone_states[real], atol=1e-5, rtol=1e-5)


def test_continuation_and_stack_key_values():
    from personakit.models.grag.encoding import continuation, stack_key_values

    ids = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]])
    mask = (ids > 0).long()
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 7, 8, -100, -100]])
    tail, tail_mask, tail_labels, pos = continuation(ids, mask, labels, torch.tensor([1, 2]), pad_id=0)
    assert tail.tolist() == [[2, 3, 4, 5], [8, 0, 0, 0]]
    assert tail_mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert tail_labels.tolist() == [[-100, 3, 4, 5], [8, -100, -100, -100]]
    assert pos[:, 0].tolist() == [1, 2] and pos[0].tolist() == [1, 2, 3, 4]
    a = [(torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4))]
    b = [(torch.full((2, 2, 5, 4), 2.0), torch.full((2, 2, 5, 4), 3.0))]
    (k, v), = stack_key_values([a, b])
    assert k.shape == (3, 2, 5, 4) and bool((k[0, :, 3:] == 0).all()) and bool((k[0, :, :3] == 1).all())
    assert bool((v[1:] == 3).all())
    with pytest.raises(ValueError, match="same number of layers"):
        stack_key_values([a, a + a])


def test_row_grouping_keeps_every_token_of_left_padded_rows():
    """Rows are cut to their last real token, so a left-padded segment loses nothing."""
    from personakit.models.grag import PostGRAG

    model = PostGRAG.from_backbone(build_backbone("bert2bert"), tokenizer_for("bert2bert"), extractor_heads=2).eval()
    batch = model.make_collator()(make_examples())
    history = left_pad(batch["history_ids"], batch["history_mask"], PAD)
    segments = [(batch["persona_ids"], batch["persona_mask"]), history]
    with torch.no_grad():
        together = encode_segments(model.encode, segments, PAD, max_passes=4)
        for (ids, mask), (states, out_mask) in zip(segments, together):
            ids, mask = trim_padding(ids, mask)
            assert torch.equal(out_mask, mask)
            valid = mask.bool()
            torch.testing.assert_close(states[valid], model.encode(ids, mask)[valid], atol=1e-5, rtol=1e-5)
