r"""Small helpers for multi-process training (``torchrun`` / ``accelerate launch``, any backend).

They work on top of an initialised ``torch.distributed`` process group (Accelerate
initialises it, with the ``gloo`` backend on CPU and ``nccl`` on GPUs) and degrade to
no-ops in a single process, so a trainer calls them unconditionally.

* :func:`rank_slice`: the contiguous, balanced share of ``n`` items a rank processes;
* :func:`broadcast_object`: send a picklable object from one rank to all;
* :func:`all_reduce_sum`: sum a list of floats over the ranks;
* :func:`find_free_port`: a free TCP port for ``MASTER_PORT`` (tests, local launches).

Example:
    >>> [rank_slice(5, world_size=2, rank=r) for r in range(2)]
    [slice(0, 3, None), slice(3, 5, None)]
    >>> broadcast_object({"a": 1})  # single process: returned as is
    {'a': 1}
"""

from __future__ import annotations

import socket
from typing import Any, Sequence

import torch

__all__ = ["rank_slice", "is_distributed", "world_size", "rank", "broadcast_object", "all_reduce_sum",
           "find_free_port"]


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group with more than one process is running."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def rank_slice(n: int, world_size: int, rank: int) -> slice:
    r"""The contiguous share of ``n`` items processed by ``rank``: sizes differ by at most one.

    With $n = qW + r$, ranks $0 \dots r-1$ get $q+1$ items and the others $q$; the shares
    are consecutive, so concatenating them in rank order gives the original sequence
    (a run on $W$ processes sees the same micro-batches as one process with $W$ times
    the gradient-accumulation steps).

    Args:
        n: Number of items (>= 0).
        world_size: Number of processes (>= 1).
        rank: This process's rank, ``0 <= rank < world_size``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank_slice: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if n < 0:
        raise ValueError(f"rank_slice: n must be >= 0, got {n}")
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (1 if rank < r else 0))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (pickled; the other ranks' ``obj`` is ignored)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sum of ``values`` over all ranks (in float64; identical on every rank)."""
    values = [float(v) for v in values]
    if not is_distributed() or not values:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (for ``MASTER_PORT``; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return int(s.getsockname()[1])
