"""An in-process communicator for tests: N ranks as N threads of one process.

Collectives meet at a barrier; the allreduce sums the ranks' arrays in rank order (so every rank
gets the same bits, as MPI's does), and the broadcast copies root's array."""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np


class ThreadGroup:
    def __init__(self, size: int) -> None:
        self.size = size
        self.slots: list[np.ndarray | None] = [None] * size
        self.barrier = threading.Barrier(size, timeout=60)
        self.calls: list[list[str]] = [[] for _ in range(size)]


class ThreadComm:
    def __init__(self, group: ThreadGroup, rank: int) -> None:
        self.group, self.rank, self.size = group, rank, group.size

    def _exchange(self, array: np.ndarray, op: str) -> list[np.ndarray]:
        self.group.calls[self.rank].append(f"{op} {array.shape} {array.dtype}")
        self.group.slots[self.rank] = array.copy()
        self.group.barrier.wait()
        arrays = list(self.group.slots)
        self.group.barrier.wait()  # nobody overwrites a slot before everyone has read them
        return arrays

    def bcast(self, array: np.ndarray, root: int = 0) -> None:
        array[...] = self._exchange(array, "bcast")[root]

    def allreduce(self, array: np.ndarray) -> None:
        arrays = self._exchange(array, "allreduce")
        total = arrays[0].copy()
        for a in arrays[1:]:
            total += a
        array[...] = total

    def barrier(self) -> None:
        self.group.calls[self.rank].append("barrier")
        self.group.barrier.wait()


def run_ranks(size: int, work: Callable[[ThreadComm], object]) -> tuple[list, ThreadGroup]:
    """Run ``work(comm)`` on ``size`` threads; return each rank's result (or raise its error)."""
    group = ThreadGroup(size)
    results: list = [None] * size
    errors: list = [None] * size

    def target(rank: int) -> None:
        try:
            results[rank] = work(ThreadComm(group, rank))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors[rank] = exc
            group.barrier.abort()  # free the others instead of leaving them waiting

    threads = [threading.Thread(target=target, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    first = next((e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)), None)
    if first is None:
        first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results, group
