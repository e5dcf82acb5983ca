r"""Question clustering of the questioner-aware responder (Zeng et al., 2024, §4.1)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
from pydantic import Field
from torch import Tensor

from personakit.config import BaseConfig
from personakit.functional.kmeans import kmeans, kmeans_assign

__all__ = ["QuestionClusterer", "QuestionClustererConfig", "CLUSTER_KEY"]

CLUSTER_KEY = "question_cluster"
"""``ResponseExample.metadata`` key that :meth:`QuestionClusterer.assign` fills (read by the questioner collator)."""

Encoder = Union[str, Callable[[list[str]], Any], Any]


class QuestionClusterer:
    r"""k-means over sentence embeddings of the questions (Zeng et al., 2024, §4.1).

    "To mitigate the impact of question diversity on questioner-contrastive learning, we
    cluster the dialogues based on question similarity and restrict the scope of
    contrastive learning within each cluster": each question $x$ (by default the last
    user turn of an example) is embedded with a sentence encoder, $e(x)$, the embeddings
    are clustered with k-means (:func:`personakit.functional.kmeans.kmeans`, k-means++
    seeding, several restarts, seeded), and each dialogue gets the index of its nearest
    centre.  New questions are assigned to the nearest centre
    (:func:`~personakit.functional.kmeans.kmeans_assign`).

    Embeddings are $L_2$-normalised before clustering (``normalize=True``), so the
    squared Euclidean distance is $2 - 2\cos$ and the clusters group questions by cosine
    similarity.  When there are fewer distinct questions than ``num_clusters``, ``k`` is
    lowered to the number of questions.

    Args:
        num_clusters: $k$ (reference code: 10).
        encoder: ``"minilm"`` (the embedded all-MiniLM-L6-v2, loaded on first use), another
            embedded name / local folder for :func:`~personakit.backbones.load_sentence_encoder`,
            an object with ``encode(texts) -> array``, or a callable ``texts -> [N, D]``.
        seed: seed of k-means.
        n_init: k-means restarts.
        normalize: $L_2$-normalise the embeddings.
        batch_size: texts per encoder call.

    Attributes:
        centers: ``[k, D]`` centres after :meth:`fit` (``None`` before).

    Example:
        >>> clusterer = QuestionClusterer(num_clusters=2, encoder=lambda texts: torch.tensor(
        ...     [[1.0, 0.0] if "donate" in t else [0.0, 1.0] for t in texts]))
        >>> labels = clusterer.fit_predict(["donate?", "will you donate", "how are you", "how is it going"])
        >>> labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
        True

    Citation:
        Zeng, Niu, Wu, Lv and Chen (2024). *Personalized LLM for Generating Customized
        Responses to the Same Query from Different Users.* arXiv:2412.11736.
    """

    def __init__(self, num_clusters: int = 10, encoder: Encoder = "minilm", seed: int = 0, n_init: int = 4,
                 normalize: bool = True, batch_size: int = 64):
        if num_clusters < 1:
            raise ValueError(f"QuestionClusterer: num_clusters must be >= 1, got {num_clusters}")
        if batch_size < 1:
            raise ValueError(f"QuestionClusterer: batch_size must be >= 1, got {batch_size}")
        self.num_clusters = int(num_clusters)
        self.encoder = encoder
        self.seed = int(seed)
        self.n_init = int(n_init)
        self.normalize = bool(normalize)
        self.batch_size = int(batch_size)
        self.centers: Optional[Tensor] = None
        self._model: Any = None

    # ------------------------------------------------------------------ embedding
    def _encode_fn(self) -> Callable[[list[str]], Any]:
        enc = self.encoder
        if isinstance(enc, str):
            if self._model is None:
                from personakit.backbones import load_sentence_encoder

                self._model = load_sentence_encoder(enc, device="cpu")
            model = self._model
            return lambda texts: model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                              show_progress_bar=False)
        if hasattr(enc, "encode") and callable(enc.encode):
            return lambda texts: enc.encode(texts)
        if callable(enc):
            return enc
        raise TypeError(f"QuestionClusterer: encoder must be a name, an object with encode() or a callable, "
                        f"got {type(enc).__name__}")

    def embed(self, questions: Sequence[str]) -> Tensor:
        """``[N, D]`` float32 embeddings of the questions (normalised when ``normalize``)."""
        questions = [str(q) for q in questions]
        if not questions:
            raise ValueError("QuestionClusterer: no questions")
        fn = self._encode_fn()
        parts = []
        for start in range(0, len(questions), self.batch_size):
            out = fn(questions[start:start + self.batch_size])
            parts.append(torch.as_tensor(out).detach().float().cpu())
        emb = torch.cat(parts)  # (N, D)
        if emb.dim() != 2 or emb.size(0) != len(questions):
            raise ValueError(f"QuestionClusterer: the encoder returned shape {tuple(emb.shape)} for "
                             f"{len(questions)} questions, expected [N, D]")
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb

    # ------------------------------------------------------------------ clustering
    def fit(self, questions: Sequence[str]) -> "QuestionClusterer":
        """Cluster the questions; keeps the centres."""
        self.fit_predict(questions)
        return self

    def fit_predict(self, questions: Sequence[str]) -> list[int]:
        """Cluster the questions and return each one's cluster index."""
        emb = self.embed(questions)
        k = min(self.num_clusters, emb.size(0))
        result = kmeans(emb, k, seed=self.seed, n_init=self.n_init)
        self.centers = result.centers
        return [int(x) for x in result.labels]

    def predict(self, questions: Sequence[str]) -> list[int]:
        """Nearest centre of each question (after :meth:`fit`)."""
        if self.centers is None:
            raise RuntimeError("QuestionClusterer.predict: call fit() first")
        return [int(x) for x in kmeans_assign(self.embed(questions), self.centers)]

    @staticmethod
    def question_of(example: Any) -> str:
        """The question of a :class:`~personakit.types.ResponseExample`: its last user turn."""
        return example.history[-1].text

    def assign(self, examples: Sequence[Any], fit: bool = True) -> list[Any]:
        """Copies of the examples with ``metadata["question_cluster"]`` set.

        Args:
            examples: :class:`~personakit.types.ResponseExample` list.
            fit: cluster these examples' questions (``False``: assign to the existing centres).
        """
        questions = [self.question_of(ex) for ex in examples]
        labels = self.fit_predict(questions) if fit else self.predict(questions)
        return [ex.model_copy(update={"metadata": {**ex.metadata, CLUSTER_KEY: k}}) for ex, k in zip(examples, labels)]

    def __repr__(self) -> str:
        enc = self.encoder if isinstance(self.encoder, str) else type(self.encoder).__name__
        return f"QuestionClusterer(num_clusters={self.num_clusters}, encoder={enc!r}, seed={self.seed})"


class QuestionClustererConfig(BaseConfig):
    """Config of :class:`QuestionClusterer` (the encoder given by name)."""

    _target_ = QuestionClusterer

    num_clusters: int = Field(10, ge=1, description="$k$ (reference code: 10).")
    encoder: str = Field("minilm", description=(
        "Sentence encoder: an embedded name (``\"minilm\"``) or a local folder."))
    seed: int = Field(0, description="Seed of k-means.")
    n_init: int = Field(4, ge=1, description="k-means restarts (lowest inertia kept).")
    normalize: bool = Field(True, description="$L_2$-normalise the embeddings (cosine clustering).")
    batch_size: int = Field(64, ge=1, description="Texts per encoder call.")
