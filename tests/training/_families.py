"""Every trainer family behind one small interface, for the contract tests (not collected by pytest).

A :class:`Family` builds a tiny model, its training data and a trainer from common
settings (:class:`Settings`), so ``test_trainer_contract.py`` and ``_contract_worker.py``
check the same properties of GRAG (PreSFT, PostGRAG), the questioner-aware responder,
CoPersona, ROPG-RL, ROPG-KD and RSPG with one test each.

It also holds the tiny builders of the ROPG and RSPG tests (a bag-of-words retriever, a
keyword task, a tiny BERT selector and a colour-matching task).
"""

from __future__ import annotations

import functools
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE.parent, HERE.parent / "models", HERE.parent / "models" / "grag", HERE.parent / "facets"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from personakit.types import ProfileItem  # noqa: E402

# ------------------------------------------------------------------------------ ROPG helpers
WORDS = ["apple", "river", "stone", "cloud", "music", "paper", "green", "tiger", "lamp", "bread", "ocean", "chair"]


class BagOfWords(nn.Module):
    """A tiny retriever: mean word embeddings, dot-product scores; implements ``score_candidates``."""

    def __init__(self, dim: int = 8, seed: int = 0):
        super().__init__()
        self.vocab = {w: i + 1 for i, w in enumerate(WORDS)}
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.EmbeddingBag(len(WORDS) + 1, dim, mode="mean")
        with torch.no_grad():
            self.emb.weight.copy_(0.1 * torch.randn(len(WORDS) + 1, dim, generator=g))
        self.drop = nn.Dropout(0.1)  # exercises the global RNG on resume

    def encode(self, texts):
        ids = [[self.vocab.get(w, 0) for w in t.split()] or [0] for t in texts]
        flat = torch.tensor([i for row in ids for i in row])
        offsets = torch.tensor([0] + [len(r) for r in ids[:-1]]).cumsum(0)
        return self.drop(self.emb(flat, offsets))  # (n, D)

    def score_candidates(self, queries, docs):
        q = self.encode(queries)  # (B, D)
        width = max(len(d) for d in docs)
        rows = []
        for b, row in enumerate(docs):
            s = self.encode(row) @ q[b]  # (l_b,)
            rows.append(nn.functional.pad(s, (0, width - len(row))))
        return torch.stack(rows)  # (B, L)


def keyword_task(n: int = 12, l: int = 6, seed: int = 0):
    """Queries and profiles; the frozen 'LLM' does well (EVAL 1) only with documents containing 'apple'."""
    rng = np.random.default_rng(seed)
    others = [w for w in WORDS if w != "apple"]
    queries, profiles = [], []
    for i in range(n):
        queries.append(" ".join(rng.choice(others, 2, replace=False)))
        docs = [" ".join(rng.choice(others, 3, replace=False)) for _ in range(l)]
        for j in rng.choice(l, 2, replace=False):
            docs[j] = "apple " + docs[j]
        profiles.append([ProfileItem(id=f"{i}-{j}", text=t) for j, t in enumerate(docs)])
    return queries, profiles


def keyword_feedback(examples, candidates):
    assert all(isinstance(it, ProfileItem) for row in candidates for it in row)
    return [np.array([1.0 if "apple" in it.text else 0.0 for it in row]) for row in candidates]


def ropg_items(n: int = 12, l: int = 6, top_l: int = 16):
    from personakit.retrieval import BM25Retriever
    from personakit.training import prepare_ropg_items

    queries, profiles = keyword_task(n, l)
    return prepare_ropg_items(queries, profiles, initial_retriever=BM25Retriever(), top_l=top_l,
                              feedback=keyword_feedback)


# ------------------------------------------------------------------------------ RSPG helpers
KEYS = ["red", "green", "blue"]
FILL = ["the", "a", "news", "story", "about", "today", "user", "wrote"]


def tiny_bert(seed: int = 0, hidden: int = 16, heads: int = 2, dropout: float = 0.0):
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + KEYS + FILL + ["input", "doc"])}
    tok = BertTokenizer(vocab=vocab)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=heads,
                                 intermediate_size=2 * hidden, max_position_embeddings=32, hidden_dropout_prob=dropout,
                                 attention_probs_dropout_prob=dropout))
    return model, tok


def matching_task(n: int, seed: int, post: bool = False):
    """3 retrievers; each retrieves one document, tagged with a colour; the input asks for one colour.

    EVAL is 1 for the retriever whose document colour matches the input's colour, else 0;
    which retriever that is changes from input to input.  Pre: the prompt holds the
    document.  Post: the prompts are alike and the LLM's output carries the colour.
    """
    from personakit.training.rspg import RSPGItem

    rng = random.Random(seed)
    items = []
    for k in range(n):
        want = rng.randrange(3)
        docs = rng.sample(range(3), 3)  # retriever i found a document of colour docs[i]
        fill = rng.choice(FILL)
        if post:
            prompts = [f"input {KEYS[want]} {fill}"] * 3
            outputs = [f"doc {KEYS[d]}" for d in docs]
        else:
            prompts = [f"input {KEYS[want]} {fill} doc {KEYS[d]}" for d in docs]
            outputs = None
        items.append(RSPGItem(prompts=prompts, outputs=outputs, evals=[float(d == want) for d in docs], id=f"x{k}"))
    return items


def fresh_selector(seed: int = 0, dropout: float = 0.1, mode: str = "pre"):
    from personakit.retrieval.selector import RetrieverSelector

    model, tok = tiny_bert(seed=seed, dropout=dropout)
    torch.manual_seed(123)
    return RetrieverSelector((model, tok), mode=mode, pooling="cls", max_length=32)


# ------------------------------------------------------------------------------ the interface
@dataclass
class Settings:
    """Loop settings, mapped onto each family's config."""

    max_steps: int = 6
    batch_size: int = 2
    accumulation: int = 1
    learning_rate: float = 1e-3
    warmup: int = 0
    seed: int = 0
    output_dir: Optional[str] = None
    save_steps: Optional[int] = None
    max_grad_norm: Optional[float] = 1.0


@dataclass
class Family:
    """One trainer family.

    Attributes:
        id: test id.
        build: ``build(seed, dropout) -> model`` (what the trainer is given).
        module: the ``nn.Module`` whose state is compared.
        data: the training items.
        make: ``make(model, settings, data, callbacks) -> trainer`` (callbacks: callables of each record).
        item_mean: the loss of a batch is the mean of its items' losses (so accumulation
            equals one large batch); GRAG and CoPersona average over tokens instead.
        matches_one_process: 2 processes x 1 micro-batch train like 1 process x 2 (not with the
            questioner's queue of negatives, nor ROPG-RL's per-micro-batch sampling).
        lr_factor: ``lr_factor(step, total, warmup)``: the schedule.
    """

    id: str
    build: Callable[[int, bool], Any]
    module: Callable[[Any], nn.Module]
    data: Callable[[], list]
    make: Callable[..., Any]
    item_mean: bool
    matches_one_process: bool
    lr_factor: Callable[[int, int, int], float]
    fit_kwargs: dict = field(default_factory=dict)

    def fit(self, trainer: Any, data: list, *, resume: bool = False, stop: Optional[int] = None) -> list[dict]:
        """Train; returns the trainer's whole history (restored records included)."""
        from personakit.training import GRAGTrainer, RSPGTrainer

        if isinstance(trainer, GRAGTrainer):
            trainer.train(resume_from="latest" if resume else None, stop_after_step=stop)
        elif isinstance(trainer, RSPGTrainer):  # resumes from output_dir by itself (config.resume)
            trainer.train(data, stop_after_step=stop)
        else:
            trainer.train(data, resume_from="latest" if resume else None, stop_after_step=stop)
        return trainer.history


def _linear(final: float) -> Callable[[int, int, int], float]:
    from personakit.training.schedules import linear_decay_schedule

    return lambda s, total, w: linear_decay_schedule(total, final, w)(s)


def _to_zero(s: int, total: int, w: int) -> float:
    from personakit.training.schedules import linear_warmup_decay_schedule

    return linear_warmup_decay_schedule(total, w)(s)


def _cosine(s: int, total: int, w: int) -> float:
    from personakit.training.schedules import cosine_schedule

    return cosine_schedule(total, w)(s)


def _grag_config(cls, s: Settings, **extra):
    return cls(max_steps=s.max_steps, batch_size=s.batch_size, gradient_accumulation_steps=s.accumulation,
               learning_rate=s.learning_rate, seed=s.seed, output_dir=s.output_dir, save_steps=s.save_steps,
               keep_last=None, logging_steps=1, max_grad_norm=s.max_grad_norm, use_cpu=True, progress=False,
               eval_at_epoch_end=False, eval_metrics=["loss"], **extra)


# GRAG -----------------------------------------------------------------------------------
def _grag_examples(n: int = 8):
    import _grag_worker as worker

    return worker.training_examples(n)


def _build_postgrag(seed: int, dropout: bool):
    import _grag_worker as worker

    return worker.build_bart_postgrag(seed) if dropout else worker.build_llama_postgrag(seed)


def _build_presft(seed: int, dropout: bool):
    from grag_testkit import build_backbone, tokenizer_for

    from personakit.models.grag import PreSFT

    return PreSFT.from_backbone(build_backbone("bart" if dropout else "llama", seed=seed),
                                tokenizer_for("bart" if dropout else "llama"))


def _make_grag(model, s: Settings, data, callbacks=None):
    from personakit.training import GRAGTrainer, GRAGTrainingConfig

    return GRAGTrainer(model, _grag_config(GRAGTrainingConfig, s, warmup_steps=s.warmup),
                       train_examples=data, callbacks=callbacks)


# questioner -------------------------------------------------------------------------------
def _build_questioner(seed: int, dropout: bool):
    from _questioner_kit import QUESTIONERS, build_lm, build_tokenizer

    from personakit.models.questioner import DualTowerResponder

    torch.manual_seed(seed)
    return DualTowerResponder.from_backbone(build_lm(seed=3 + seed), build_tokenizer(), questioners=QUESTIONERS, rank=4,
                                            general="lora", queue_size=8, num_views=2, init_scale=0.1)


def _questioner_examples():
    from _questioner_kit import make_examples

    return make_examples(16)


def _make_questioner(model, s: Settings, data, callbacks=None):
    from personakit.training import QuestionerTrainer, QuestionerTrainingConfig

    return QuestionerTrainer(model, _grag_config(QuestionerTrainingConfig, s, warmup_steps=s.warmup),
                             train_examples=data, callbacks=callbacks)


# CoPersona --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _copersona_context():
    from copersona_testkit import build_context

    return build_context()


def _build_copersona(seed: int, dropout: bool):
    from copersona_kit import tiny_llama

    from personakit.models.copersona import CoPersonaModel

    model, tok = tiny_llama(seed)
    torch.manual_seed(seed)
    return CoPersonaModel.from_backbone(model, tok, context=_copersona_context(), variant="copersona", num_facets=3,
                                       facet_dim=8, graph_hidden=8, num_virtual_tokens=3, lora=None,
                                       max_prompt_tokens=48, graph_dropout=0.1 if dropout else 0.0)


def _copersona_examples():
    from copersona_kit import examples

    base = examples()
    replies = ["i like to bake cookies", "i play guitar", "night shifts are long", "cats are nice"]
    return [ex.model_copy(update={"id": f"{ex.id}:{k}", "response": replies[(i + k) % 4]})
            for k in range(2) for i, ex in enumerate(base)]


def _make_copersona(model, s: Settings, data, callbacks=None):
    from personakit.training import CoPersonaTrainer, CoPersonaTrainingConfig

    cfg = _grag_config(CoPersonaTrainingConfig, s, warmup_ratio=s.warmup / s.max_steps, weight_decay=0.0)
    return CoPersonaTrainer(model, cfg, train_examples=data, callbacks=callbacks)


# ROPG -------------------------------------------------------------------------------------
def _build_bow(seed: int, dropout: bool):
    model = BagOfWords(seed=seed)
    if not dropout:
        model.drop.p = 0.0
    return model


def _ropg_config(s: Settings):
    from personakit.training import ROPGTrainerConfig

    return ROPGTrainerConfig(learning_rate=s.learning_rate * 50, max_steps=s.max_steps, batch_size=s.batch_size,
                             gradient_accumulation_steps=s.accumulation, warmup_ratio=s.warmup / s.max_steps,
                             seed=s.seed, output_dir=s.output_dir, save_steps=s.save_steps, keep_last=None,
                             max_grad_norm=s.max_grad_norm, progress=False, target_temperature=0.5)


def _make_ropg(cls_name: str):
    def make(model, s: Settings, data, callbacks=None):
        from personakit import training

        cls = getattr(training, cls_name)
        callback = None
        if callbacks:
            def callback(record):
                for cb in callbacks:
                    cb(record)
        return cls(model, _ropg_config(s), callback=callback)

    return make


# RSPG -------------------------------------------------------------------------------------
def _make_rspg(model, s: Settings, data, callbacks=None):
    from personakit.training import RSPGTrainer

    trainer = RSPGTrainer(model, max_steps=s.max_steps, batch_size=s.batch_size,
                          gradient_accumulation_steps=s.accumulation, learning_rate=s.learning_rate * 5,
                          warmup_ratio=s.warmup / s.max_steps, seed=s.seed, output_dir=s.output_dir,
                          save_steps=s.save_steps, keep_last=20, max_grad_norm=s.max_grad_norm, progress=False)
    for cb in callbacks or []:
        trainer.callbacks.append(_as_callback(cb))
    return trainer


def _as_callback(fn):
    from personakit.training import FunctionCallback

    return FunctionCallback(fn)


FAMILIES: dict[str, Family] = {
    "grag-presft": Family("grag-presft", _build_presft, lambda m: m, _grag_examples, _make_grag, False, True,
                          _linear(0.5)),
    "grag-postgrag": Family("grag-postgrag", _build_postgrag, lambda m: m, _grag_examples, _make_grag, False, True,
                            _linear(0.5)),
    "questioner": Family("questioner", _build_questioner, lambda m: m, _questioner_examples, _make_questioner, False,
                         False, _linear(0.5)),
    "copersona": Family("copersona", _build_copersona, lambda m: m, _copersona_examples, _make_copersona, False, True,
                        _cosine),
    "ropg-rl": Family("ropg-rl", _build_bow, lambda m: m, lambda: ropg_items(8, 5), _make_ropg("ROPGRLTrainer"),
                      False, False, _to_zero),
    "ropg-kd": Family("ropg-kd", _build_bow, lambda m: m, lambda: ropg_items(8, 5), _make_ropg("ROPGKDTrainer"),
                      True, True, _to_zero),
    "rspg": Family("rspg", lambda seed, dropout: fresh_selector(seed, 0.1 if dropout else 0.0), lambda m: m,
                   lambda: matching_task(8, seed=3), _make_rspg, True, True, _to_zero),
}
"""Every trainer family, by test id."""


def settings(**kw: Any) -> Settings:
    return replace(Settings(), **kw)


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def log_records(trainer: Any) -> list[dict]:
    return [] if trainer._log is None else trainer._log.records()
