"""DenseRetriever: dot-product scores, embedding caches (memory and disk), differentiable path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from personakit.retrieval import CallableEncoder, DenseRetriever, MeanPoolingEncoder, mean_pool
from personakit.types import ProfileItem, UserProfile

LETTERS = "abcdefghijklmnopqrstuvwxyz"


class CountingEncoder:
    """Letter-count embeddings; records every text it encodes."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts):
        self.seen.extend(texts)
        return torch.tensor([[t.count(c) for c in LETTERS] for t in texts], dtype=torch.float32)


class CharBag(nn.Module):
    """A tiny trainable encoder: mean of character embeddings."""

    def __init__(self, dim: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.EmbeddingBag(128, dim, mode="mean")

    def forward(self, texts):
        ids = [torch.tensor([ord(c) % 128 for c in t] or [0]) for t in texts]
        offsets = torch.tensor([0] + [len(x) for x in ids[:-1]]).cumsum(0)
        return self.emb(torch.cat(ids), offsets)  # (n, dim)


def _profile(uid, texts):
    return UserProfile(user_id=uid, items=[ProfileItem(id=f"{uid}-{i}", text=t) for i, t in enumerate(texts)])


def test_scores_are_dot_products_of_embeddings():
    enc = CountingEncoder()
    texts = ["abc", "zzz top", "banana"]
    for normalize in (False, True):
        r = DenseRetriever(encoder=enc, normalize=normalize)
        d = enc(texts)
        q = enc(["ban"])
        if normalize:
            d, q = torch.nn.functional.normalize(d, dim=-1), torch.nn.functional.normalize(q, dim=-1)
        np.testing.assert_allclose(r.score("ban", texts), (q @ d.T)[0].double().numpy(), rtol=1e-6)
    assert [x.index for x in DenseRetriever(encoder=enc).retrieve("zz", texts, k=1)] == [1]


def test_profile_embeddings_are_never_recomputed_for_an_indexed_user():
    enc = CountingEncoder()
    r = DenseRetriever(encoder=enc, batch_size=2)
    u1, u2 = _profile("u1", ["apple", "pear", "plum"]), _profile("u2", ["kiwi"])
    r.retrieve_batch(["ap", "ki", "pl"], [u1, u2, u1], k=2)
    first = list(enc.seen)
    assert sorted(first) == sorted(["apple", "pear", "plum", "kiwi", "ap", "ki", "pl"])
    enc.seen.clear()
    for _ in range(3):
        r.score("apple pie", _profile("u1", ["apple", "pear", "plum"]))  # equal copy of u1
        r.retrieve("kiwi", u2, k=1)
    assert enc.seen == ["apple pie", "kiwi"] * 3  # only queries are encoded
    enc.seen.clear()
    r.score("x", _profile("u1", ["apple", "pear", "plum", "fig"]))  # u1's profile changed
    assert enc.seen == ["apple", "pear", "plum", "fig", "x"]


def test_disk_cache_is_reused_across_instances(tmp_path):
    enc = CountingEncoder()
    u = _profile("u", ["alpha", "beta", "gamma"])
    s1 = DenseRetriever(encoder=enc, cache_dir=tmp_path).score("alp", u)
    files = list(tmp_path.rglob("*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.tmp"))
    enc.seen.clear()
    s2 = DenseRetriever(encoder=enc, cache_dir=tmp_path).score("alp", u)  # fresh memory cache
    assert enc.seen == ["alp"]
    np.testing.assert_array_equal(s1, s2)
    from safetensors.torch import load_file

    assert load_file(str(files[0]))["embeddings"].shape == (3, 26)
    files[0].write_bytes(b"corrupt")  # a broken file is recomputed, not trusted
    enc.seen.clear()
    s3 = DenseRetriever(encoder=enc, cache_dir=tmp_path).score("alp", u)
    assert enc.seen == ["alpha", "beta", "gamma", "alp"]
    np.testing.assert_array_equal(s1, s3)


def test_empty_profile_and_bad_args():
    r = DenseRetriever(encoder=CountingEncoder())
    assert r.score("q", []).shape == (0,)
    assert r.retrieve("q", [], k=3) == []
    with pytest.raises(ValueError, match="batch_size"):
        DenseRetriever(encoder=CountingEncoder(), batch_size=0)
    with pytest.raises(TypeError, match="encoder must be"):
        DenseRetriever(encoder=3)
    bad = DenseRetriever(encoder=lambda texts: torch.zeros(len(texts) + 1, 4))
    with pytest.raises(ValueError, match="expected \\(n, D\\)"):
        bad.score("q", ["a"])


def test_differentiable_path_with_a_module_encoder():
    module = CharBag()
    r = DenseRetriever(encoder=module, normalize=True)
    assert any(p is module.emb.weight for p in r.module.parameters())
    q = r.encode_queries(["hello"])  # (1, 8)
    d = r.encode_documents(["hello world", "goodbye"])  # (2, 8)
    assert q.shape == (1, 8) and d.shape == (2, 8) and q.requires_grad
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(2))
    loss = -(q @ d.T).log_softmax(-1)[0, 0]
    loss.backward()
    assert module.emb.weight.grad is not None and module.emb.weight.grad.abs().sum() > 0
    # the inference path gives the same scores
    np.testing.assert_allclose(r.score("hello", ["hello world", "goodbye"]), (q @ d.T)[0].detach().double().numpy(),
                               rtol=1e-5)


def test_mean_pooling_encoder_with_a_tiny_local_bert(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["the", "cat", "sat", "on", "mat", "dog", "ran"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    tok = BertTokenizer(vocab_file=str(vocab))
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32)).eval()
    enc = MeanPoolingEncoder(model, tok)
    alone = enc(["the cat"])
    padded = enc(["the cat", "the dog ran on the mat"])
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)  # padding does not leak in
    r = DenseRetriever(encoder=(model, tok), normalize=False)
    assert r.score("cat", ["the cat sat", "dog ran"]).shape == (2,)
    h = torch.randn(2, 3, 4)
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    torch.testing.assert_close(mean_pool(h, m), torch.stack([h[0, :2].mean(0), h[1, 0]]))


def test_callable_encoder_repr_and_name():
    enc = CallableEncoder(CountingEncoder(), name="letters")
    assert enc.name == "letters"
    assert "encoder=" in repr(DenseRetriever(encoder=enc))


@pytest.mark.real_model
def test_minilm_dense_retrieval(minilm_path):
    r = DenseRetriever("minilm")
    texts = ["the stock market fell sharply today", "puppies are wonderful pets", "a lecture on quantum physics"]
    top = r.retrieve("I love my dog", texts, k=1)[0]
    assert top.index == 1
    q = r.encode_queries(["I love my dog"]).detach()
    np.testing.assert_allclose(r.embed(["I love my dog"]).numpy(), q.cpu().numpy(), atol=1e-5)
