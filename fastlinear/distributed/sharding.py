"""Deterministic sharding: every rank draws the same batch order and takes its own rows of each
global batch, so N ranks together see exactly the batches one process would."""

from __future__ import annotations

import numpy as np


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of ``n`` samples in ``epoch``: a permutation that depends only on (seed, epoch),
    so every rank computes the same one without communicating. Returns an (n,) int64 array."""
    if n < 0 or seed < 0 or epoch < 0:
        raise ValueError(f"n, seed and epoch must be >= 0, got n={n}, seed={seed}, epoch={epoch}")
    return np.random.default_rng([seed, epoch]).permutation(n)


def shard_rows(rows: int, rank: int, size: int) -> slice:
    """This rank's rows of a global batch of ``rows`` rows: the rank-th of ``size`` contiguous
    slices whose lengths differ by at most one. A slice may be empty (rows < size)."""
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in 0..{size - 1} for {size} ranks, got {rank}")
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    return slice(rows * rank // size, rows * (rank + 1) // size)


def global_batches(order: np.ndarray, batch_size: int):
    """Yield the global batches of an epoch: consecutive ``batch_size`` entries of ``order``,
    the last one shorter when ``batch_size`` does not divide its length."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]
