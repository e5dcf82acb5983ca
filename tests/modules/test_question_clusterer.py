"""QuestionClusterer: k-means (personakit.functional.kmeans) over sentence embeddings of the questions."""

from __future__ import annotations

import pytest
import torch

from _questioner_kit import make_examples
from personakit.modules import QuestionClusterer, QuestionClustererConfig
from personakit.testing import assert_config_matches


def _encoder(texts):
    # bag of two topics: donation words vs greetings
    return torch.tensor([[float(any(w in t for w in ("donate", "charity", "money"))),
                          float(any(w in t for w in ("how", "hello", "name")))] for t in texts])


def test_clusters_by_topic():
    qs = ["will you donate", "what is the charity", "how are you", "hello my name is", "money for charity"]
    c = QuestionClusterer(num_clusters=2, encoder=_encoder, seed=0)
    labels = c.fit_predict(qs)
    assert labels[0] == labels[1] == labels[4] and labels[2] == labels[3] and labels[0] != labels[2]
    assert c.centers.shape == (2, 2)
    assert c.predict(["donate money"]) == [labels[0]]


def test_k_capped_by_questions_and_predict_needs_fit():
    c = QuestionClusterer(num_clusters=10, encoder=_encoder)
    with pytest.raises(RuntimeError, match="fit"):
        c.predict(["x"])
    assert len(set(c.fit_predict(["how are you", "donate"]))) == 2


def test_assign_sets_metadata_on_copies():
    examples = make_examples(8)
    c = QuestionClusterer(num_clusters=2, encoder=_encoder)
    out = c.assign(examples)
    assert [ex.metadata["question_cluster"] for ex in out] == c.fit_predict([ex.history[-1].text for ex in examples])
    assert out[0] is not examples[0]


def test_encoder_object_and_shape_check():
    class Enc:
        def encode(self, texts):
            return _encoder(texts).numpy()

    assert len(QuestionClusterer(2, encoder=Enc()).fit_predict(["how", "donate"])) == 2
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        QuestionClusterer(2, encoder=lambda t: torch.zeros(len(t))).fit(["a", "b"])


def test_config():
    assert_config_matches(QuestionClustererConfig)


@pytest.mark.real_model
def test_minilm_clusters_paraphrases(minilm_path):
    qs = ["Would you donate to Save the Children?", "Will you give some money to the charity?",
          "How is your day going?", "How are you doing today?"]
    labels = QuestionClusterer(num_clusters=2, encoder=str(minilm_path)).fit_predict(qs)
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
