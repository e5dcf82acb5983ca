"""RetrieverSelector (RSPG-Pre / RSPG-Post): input formats, batching, pooling, persistence."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from personakit.functional.losses import masked_mean
from personakit.retrieval.selector import RetrieverSelector, RetrieverSelectorConfig, SelectionResult
from personakit.testing import assert_config_matches

WORDS = ["input", "doc", "red", "green", "blue", "the", "cat", "sat", "on", "mat", "dog", "ran", "comedy", "drama"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread (and the test machine is shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_bert(seed: int = 0, dropout: float = 0.0):
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}
    tok = BertTokenizer(vocab=vocab)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=dropout,
                                 attention_probs_dropout_prob=dropout))
    return model.eval(), tok


def make_selector(mode="pre", pooling="cls", max_length=32, **kwargs) -> RetrieverSelector:
    model, tok = tiny_bert()
    torch.manual_seed(1)
    return RetrieverSelector((model, tok), mode=mode, pooling=pooling, max_length=max_length, **kwargs).eval()


PROMPTS = [["input red doc red", "input red doc blue", "input red doc green"],
           ["input the cat sat", "input the dog ran on the mat", "input drama"]]
OUTPUTS = [["red", "blue", "green"], ["comedy", "drama", "comedy drama"]]


def test_config_matches_the_constructor_and_builds():
    assert_config_matches(RetrieverSelectorConfig, exclude=["tokenizer"])
    model, tok = tiny_bert()
    cfg = RetrieverSelectorConfig(mode="post", pooling="mean", max_length=16, retriever_names=["bm25", "recency"])
    sel = cfg.build(encoder=model, tokenizer=tok)
    assert (sel.mode, sel.pooling, sel.max_length, sel.retriever_names) == ("post", "mean", 16, ["bm25", "recency"])
    assert RetrieverSelectorConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(Exception, match="unique"):
        RetrieverSelectorConfig(retriever_names=["a", "a"])
    with pytest.raises(Exception):
        RetrieverSelectorConfig(pooling="max")


def test_score_shape_one_encoder_pass_and_chunking_agree():
    sel = make_selector()
    calls = []
    sel.encoder.register_forward_hook(lambda m, a, kw, out: calls.append(kw["input_ids"].shape), with_kwargs=True)
    scores = sel.score(PROMPTS)
    assert scores.shape == (2, 3)
    assert len(calls) == 1 and calls[0][0] == 6  # all B x R texts in one pass
    chunked = sel.score(PROMPTS, batch_size=1)
    assert len(calls) == 3
    torch.testing.assert_close(chunked, scores, atol=1e-5, rtol=1e-5)
    assert sel.select(PROMPTS) == scores.argmax(-1).tolist()
    # forward has gradients, score does not
    assert sel(PROMPTS).requires_grad and not scores.requires_grad


def test_pre_formatting_is_the_plain_prompt_and_ignores_outputs():
    sel = make_selector(max_length=8)
    batch = sel.tokenize(["input the cat sat on the mat the dog ran", "red"])
    expected = sel.tokenizer(["input the cat sat on the mat the dog ran", "red"], padding=True, truncation=True,
                             max_length=8, return_tensors="pt")
    torch.testing.assert_close(batch["input_ids"], expected["input_ids"])
    assert batch["input_ids"].shape[1] == 8
    assert sel.tokenizer.decode(batch["input_ids"][1], skip_special_tokens=False).startswith("[CLS] red [SEP]")
    with pytest.raises(ValueError, match="mode='pre'"):
        sel.score(PROMPTS, OUTPUTS)
    chosen = sel.choose(PROMPTS, OUTPUTS)  # Pre: outputs are returned, never encoded
    scores = sel.score(PROMPTS)
    for b, res in enumerate(chosen):
        assert res.index == int(scores[b].argmax())
        assert res.prompt == PROMPTS[b][res.index] and res.output == OUTPUTS[b][res.index]
        assert res.scores == pytest.approx(scores[b].tolist(), abs=1e-6)
    assert [r.name for r in chosen] == [f"retriever_{r.index}" for r in chosen]


def test_post_formatting_pairs_prompt_and_output_and_keeps_the_output():
    sel = make_selector(mode="post", max_length=10)
    long_prompt = "input the cat sat on the mat the dog ran on the mat"
    batch = sel.tokenize([long_prompt, "input red"], ["comedy drama", "red"])
    tok = sel.tokenizer
    first = tok.convert_ids_to_tokens(batch["input_ids"][0])
    assert len(first) == 10
    # prompt truncated (on the right), output kept whole after [SEP]
    assert first == ["[CLS]", "input", "the", "cat", "sat", "on", "[SEP]", "comedy", "drama", "[SEP]"]
    assert batch["token_type_ids"][0].tolist() == [0] * 7 + [1] * 3
    second = tok.convert_ids_to_tokens(batch["input_ids"][1][batch["attention_mask"][1].bool()])
    assert second == ["[CLS]", "input", "red", "[SEP]", "red", "[SEP]"]
    # an output longer than the whole budget: this pair falls back to cutting both sides, the others do not
    too_long = " ".join(["drama"] * 20)
    mixed = sel.tokenize([long_prompt, "input red"], [too_long, "red"])
    assert mixed["input_ids"].shape[1] == 10
    toks = tok.convert_ids_to_tokens(mixed["input_ids"][0])
    assert toks[0] == "[CLS]" and toks.count("[SEP]") == 2 and "drama" in toks and "input" in toks
    assert tok.convert_ids_to_tokens(mixed["input_ids"][1][mixed["attention_mask"][1].bool()]) == second


def test_post_scores_read_the_outputs_and_require_them():
    sel = make_selector(mode="post")
    with pytest.raises(ValueError, match="mode='post'"):
        sel.score(PROMPTS)
    a = sel.score(PROMPTS, OUTPUTS)
    swapped = [list(reversed(o)) for o in OUTPUTS]
    b = sel.score(PROMPTS, swapped)
    assert a.shape == b.shape == (2, 3)
    assert not torch.allclose(a, b)
    # pairs give the same as separate outputs
    pairs = [list(zip(p, o)) for p, o in zip(PROMPTS, OUTPUTS)]
    torch.testing.assert_close(sel.score(pairs), a)
    res = sel.choose(PROMPTS, OUTPUTS)
    assert all(isinstance(r, SelectionResult) and r.output == OUTPUTS[k][r.index] for k, r in enumerate(res))


def test_named_retrievers_and_mapping_inputs():
    sel = make_selector(retriever_names=["bm25", "recency", "contriever"])
    as_maps = [dict(zip(["bm25", "recency", "contriever"], p)) for p in PROMPTS]
    shuffled = [{k: m[k] for k in ["contriever", "bm25", "recency"]} for m in as_maps]  # order of keys irrelevant
    torch.testing.assert_close(sel.score(shuffled), sel.score(PROMPTS))
    res = sel.choose(shuffled)
    assert [r.name for r in res] == [["bm25", "recency", "contriever"][r.index] for r in res]
    assert res[0].names == ["bm25", "recency", "contriever"]
    with pytest.raises(ValueError, match="expected 3"):
        sel.score([["a", "b"]])
    with pytest.raises(ValueError, match="differ"):
        sel.score([{"bm25": "a", "recency": "b", "dense": "c"}])


def test_input_errors_name_the_input():
    sel = make_selector()
    with pytest.raises(ValueError, match="input 1"):
        sel.score([["a", "b"], ["a", "b", "c"]])
    with pytest.raises(ValueError, match="input 0"):
        sel.score(["a single string"])
    with pytest.raises(ValueError, match="input 0, retriever 1"):
        sel.score([["a", 3]])
    with pytest.raises(ValueError, match="outputs"):
        make_selector(mode="post").score(PROMPTS, OUTPUTS[:1])
    with pytest.raises(ValueError, match="tokenizer"):
        RetrieverSelector(tiny_bert()[0])
    with pytest.raises(ValueError, match="mode"):
        RetrieverSelector(tiny_bert(), mode="during")


@pytest.mark.parametrize("pooling", ["cls", "mean", "last"])
def test_pooling_matches_a_manual_computation(pooling):
    sel = make_selector(pooling=pooling)
    texts = ["input red doc red", "input the cat sat on the mat"]
    batch = sel.tokenize(texts)
    hidden = sel.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"]).last_hidden_state
    mask = batch["attention_mask"]
    if pooling == "cls":
        pooled = hidden[:, 0]
    elif pooling == "mean":
        pooled = masked_mean(hidden, mask)
    else:
        pooled = torch.stack([hidden[i, int(mask[i].sum()) - 1] for i in range(2)])
    expected = (pooled @ sel.head.weight.T).squeeze(-1) + sel.head.bias
    torch.testing.assert_close(sel.score_encoded(batch), expected)
    # padding does not change a text's score
    alone = sel.score_encoded(sel.tokenize(texts[:1]))
    torch.testing.assert_close(alone, expected[:1], atol=1e-5, rtol=1e-5)


def test_temperature_divides_the_scores():
    base = make_selector()
    hot = make_selector(temperature=2.0)
    torch.testing.assert_close(hot.score(PROMPTS), base.score(PROMPTS) / 2)


class _RecordingEncoder(nn.Module):
    """A non-HF encoder with Longformer's `global_attention_mask` argument."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=4)
        self.emb = nn.Embedding(50, 4)
        self.seen = None

    def forward(self, input_ids, attention_mask=None, global_attention_mask=None):
        self.seen = global_attention_mask
        return SimpleNamespace(last_hidden_state=self.emb(input_ids))


def test_any_encoder_and_longformer_global_attention():
    model, tok = tiny_bert()
    enc = _RecordingEncoder()
    sel = RetrieverSelector(enc, tokenizer=tok, pooling="mean")
    assert sel.score(PROMPTS).shape == (2, 3)
    assert enc.seen is not None and enc.seen[:, 0].eq(1).all() and enc.seen[:, 1:].eq(0).all()


def test_reset_parameters_and_repr():
    sel = make_selector(mode="post", retriever_names=["a", "b"])
    with torch.no_grad():
        sel.head.bias.fill_(3.0)
    enc_before = {k: v.clone() for k, v in sel.encoder.state_dict().items()}
    sel.reset_parameters()
    assert sel.head.bias.item() == 0.0 and sel.head.weight.std().item() < 0.1
    assert all(torch.equal(v, sel.encoder.state_dict()[k]) for k, v in enc_before.items())
    text = repr(sel)
    assert "mode='post'" in text and "pooling='cls'" in text and "retriever_names=['a', 'b']" in text


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    sel = make_selector(mode="post", pooling="mean", max_length=24, retriever_names=["x", "y", "z"])
    with torch.no_grad():
        sel.head.weight.normal_()
        sel.head.bias.fill_(0.5)
    target = tmp_path / "selector"
    sel.save_pretrained(target)
    sel.save_pretrained(target)  # overwriting an existing folder is fine
    assert sorted(p.name for p in target.iterdir()) == ["encoder", "head.safetensors", "selector_config.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    cfg = json.loads((target / "selector_config.json").read_text())
    assert cfg["mode"] == "post" and cfg["encoder"] == "encoder" and cfg["retriever_names"] == ["x", "y", "z"]
    loaded = RetrieverSelector.from_pretrained(target).eval()
    assert (loaded.mode, loaded.pooling, loaded.max_length, loaded.retriever_names) == ("post", "mean", 24,
                                                                                       ["x", "y", "z"])
    torch.testing.assert_close(loaded.score(PROMPTS, OUTPUTS), sel.score(PROMPTS, OUTPUTS), atol=0, rtol=0)
    assert [r.name for r in loaded.choose(PROMPTS, OUTPUTS)] == [r.name for r in sel.choose(PROMPTS, OUTPUTS)]
    with pytest.raises(FileNotFoundError, match="selector_config.json"):
        RetrieverSelector.from_pretrained(tmp_path / "nowhere")


@pytest.mark.real_model
def test_embedded_minilm_selector(minilm_path):
    sel = RetrieverSelector(minilm_path, mode="post").eval()
    assert sel.head.in_features == 384
    res = sel.choose([["Which tag fits this movie? A dog saves a city.", "Which tag fits? profile: comedy lover"]],
                     [["action", "comedy"]])
    assert res[0].index in (0, 1) and len(res[0].scores) == 2
