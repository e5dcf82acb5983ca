import pytest

from personakit.backbones import decode_batch, needs_space_cleanup


@pytest.mark.real_model
def test_wordpiece_spacing_is_repaired(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    assert needs_space_cleanup(tokenizer)
    ids = tokenizer(["I'm fine, don't worry!", "ok ."])["input_ids"]
    assert decode_batch(tokenizer, ids) == ["i'm fine, don't worry!", "ok."]


def test_byte_level_bpe_keeps_spacing():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(i): i - 32 for i in range(32, 127)}
    backend = Tokenizer(models.BPE(vocab={**vocab, "Ġ": len(vocab)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    assert not needs_space_cleanup(tokenizer)
    ids = tokenizer(["a ' b ."])["input_ids"]
    assert decode_batch(tokenizer, ids) == ["a ' b ."]
