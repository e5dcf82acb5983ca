r"""The users' side of CoPersona: :class:`CoPersonaContext` (histories, peer context, facet graph).

It is built once from the pipeline's outputs (:meth:`CoPersonaContext.build`) and saved with
the model (``graph.safetensors`` + ``context.json``, see :func:`save_context` /
:func:`load_context`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from torch import Tensor

from personakit.types import UserProfile

__all__ = ["CoPersonaContext", "save_context", "load_context", "swap_own_facets", "without_peer_similarity",
           "GRAPH_NAME", "CONTEXT_NAME"]

GRAPH_NAME, CONTEXT_NAME = "graph.safetensors", "context.json"
_GRAPH_TENSORS = ("facet_embeddings", "reliability", "edge_index")


@dataclass
class CoPersonaContext:
    """Everything the model reads about the users besides the conversation.

    Attributes:
        user_ids: graph row order.
        histories: user → history (:class:`~personakit.types.UserProfile`), for BM25.
        peer_context: user → linearised peer evidence (non-parametric branch).
        profile_summary: user → the user's own reliable facet summaries (PAG).
        facet_embeddings: ``[N, M, d]``; reliability ``[N, M]``; edge_index ``[2, E]`` (parametric branch).
        own_rows: for each user (graph row order), the row of ``facet_embeddings`` / ``reliability``
            the soft prompt reads as the user's *own* facets, its neighbours unchanged (``None``:
            its own row).  A test-time control (:func:`swap_own_facets`); not saved.
    """

    user_ids: list[str]
    histories: dict[str, UserProfile] = field(default_factory=dict)
    peer_context: dict[str, str] = field(default_factory=dict)
    profile_summary: dict[str, str] = field(default_factory=dict)
    facet_embeddings: Optional[Tensor] = None
    reliability: Optional[Tensor] = None
    edge_index: Optional[Tensor] = None
    own_rows: Optional[list[int]] = None

    @classmethod
    def build(cls, profiles: Sequence[UserProfile], facets: Mapping[str, Any], embeddings: Any, graph: Any, *,
              max_neighbors: int = 3, max_peer_tokens: int = 256, count_tokens: Any = None) -> "CoPersonaContext":
        """From the pipeline's outputs: profiles, ``{user: UserFacets}``, ``FacetEmbeddings`` and the ``MultiplexGraph``."""
        from personakit.retrieval.neighbors import PeerContextRetriever

        ids = list(embeddings.user_ids)
        rows = [facets[u].facets for u in ids]
        peers = PeerContextRetriever(graph, rows, embeddings.facet_names, max_neighbors=max_neighbors,
                                     max_tokens=max_peer_tokens, max_tokens_per_peer=max_peer_tokens,
                                     count_tokens=count_tokens)
        by_id = {p.user_id: p for p in profiles}
        summary = {u: "\n".join(f"{f.facet}: {f.summary}" for f in facets[u].facets
                                if f.reliability in ("moderate", "strong")) for u in ids}
        return cls(user_ids=ids, histories={u: by_id[u] for u in ids if u in by_id},
                   peer_context={u: peers.context(i) for i, u in enumerate(ids)}, profile_summary=summary,
                   facet_embeddings=embeddings.embeddings.float(), reliability=embeddings.reliability.long(),
                   edge_index=graph.edge_index.long())

    def index(self, user_id: Optional[str]) -> int:
        try:
            return self.user_ids.index(user_id)  # type: ignore[arg-type]
        except ValueError:
            raise KeyError(f"user {user_id!r} is not in the CoPersona context ({len(self.user_ids)} users)") from None


def _derangement(n: int, seed: int) -> list[int]:
    """A seeded random cyclic permutation of ``range(n)`` (Sattolo's algorithm): no element stays in place."""
    import random

    perm = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)  # j < i: one cycle through every element
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def swap_own_facets(context: CoPersonaContext, seed: int = 0) -> CoPersonaContext:
    """A copy of ``context`` in which every user's own facet summaries are another user's (a control).

    The users are put in a seeded random cycle (a derangement: nobody keeps their own
    facets).  User ``u`` then reads user ``own_rows[u]``'s facet embeddings and reliability as
    its own in the soft prompt (:attr:`CoPersonaContext.own_rows`; its neighbour set and the
    neighbours' facets are unchanged) and gets that user's profile summary (PAG); the
    history and the peer context stay the user's own.  The drop in quality measures how
    much a trained model uses the user's own facets.

    Raises:
        ValueError: fewer than two users.

    Example:
        >>> c = CoPersonaContext(user_ids=["a", "b", "c"], profile_summary={"a": "A", "b": "B", "c": "C"})
        >>> s = swap_own_facets(c, seed=0)
        >>> all(i != j for i, j in enumerate(s.own_rows)), sorted(s.profile_summary.values())
        (True, ['A', 'B', 'C'])
    """
    import dataclasses

    n = len(context.user_ids)
    if n < 2:
        raise ValueError(f"swap_own_facets: {n} user(s); swapping facets needs at least two")
    rows = _derangement(n, seed)
    ids = context.user_ids
    summary = {u: context.profile_summary.get(ids[rows[i]], "") for i, u in enumerate(ids)
               if u in context.profile_summary or ids[rows[i]] in context.profile_summary}
    return dataclasses.replace(context, own_rows=rows, profile_summary=summary)


_SIMILARITY = re.compile(r"^(- peer) \(similarity [^)]*\):", flags=re.MULTILINE)


def without_peer_similarity(context: CoPersonaContext) -> CoPersonaContext:
    """A copy of ``context`` whose peer context has no similarity scores (a control).

    Every entry ``- peer (similarity 0.82): text`` of the non-parametric branch
    (:class:`~personakit.retrieval.neighbors.PeerContextRetriever`) becomes ``- peer: text``:
    the same peers and texts, without the confidence signal.

    Example:
        >>> c = CoPersonaContext(user_ids=["a"], peer_context={"a": "[Tone]\\n- peer (similarity 0.82): Warm."})
        >>> without_peer_similarity(c).peer_context["a"]
        '[Tone]\\n- peer: Warm.'
    """
    import dataclasses

    return dataclasses.replace(context, peer_context={u: _SIMILARITY.sub(r"\1:", text)
                                                      for u, text in context.peer_context.items()})


def save_context(context: CoPersonaContext, directory: Union[str, os.PathLike]) -> None:
    """Write ``context`` to ``directory``: its tensors to ``graph.safetensors``, the rest to ``context.json``
    (``own_rows``, a test-time control, is not saved)."""
    from personakit.config import atomic_write_text
    from personakit.models._save import save_state_dict

    directory = Path(directory)
    tensors = {k: getattr(context, k) for k in _GRAPH_TENSORS if getattr(context, k) is not None}
    if tensors:
        save_state_dict(tensors, directory / GRAPH_NAME)
    data = {"user_ids": context.user_ids, "peer_context": context.peer_context,
            "profile_summary": context.profile_summary,
            "histories": {u: p.model_dump(mode="json") for u, p in context.histories.items()}}
    atomic_write_text(directory / CONTEXT_NAME, json.dumps(data, ensure_ascii=False))


def load_context(directory: Union[str, os.PathLike]) -> Optional[CoPersonaContext]:
    """The context saved in ``directory`` by :func:`save_context` (``None`` when it has none).

    Raises:
        ValueError: ``context.json`` lacks a field (the message names the file and the field).
    """
    from personakit.models._save import load_state_dict_file

    directory = Path(directory)
    path = directory / CONTEXT_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("user_ids", "peer_context", "profile_summary", "histories") if k not in data]
    if missing:
        raise ValueError(f"{path}: field(s) {missing} missing")
    graph = directory / GRAPH_NAME
    tensors = load_state_dict_file(graph) if graph.is_file() else {}
    return CoPersonaContext(
        user_ids=data["user_ids"], peer_context=data["peer_context"], profile_summary=data["profile_summary"],
        histories={u: UserProfile.model_validate(p) for u, p in data["histories"].items()},
        **{k: tensors.get(k) for k in _GRAPH_TENSORS})
