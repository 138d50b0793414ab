"""The activation's backward step, fused with the bias gradient: ``g = dy * act'(y)`` and
``db (+)= scale * g.sum(0)`` in one pass over dy.

This is the first read of dy in a fused layer's backward; the weight and input gradients are then
computed from ``g``. Work is split into (run of `LEAF` rows, block of columns) tasks: each reads
its row segments with unit stride, writes its part of ``g`` and, when ``db`` is wanted, the sums
of its rows into a scratch ``leaves`` array; each column's leaves are then combined in the fixed
tree of `fastlinear.kernels._sums`, so db does not lose float32 accuracy as the batch grows and
does not depend on the number of threads. Problems of fewer than ``_SERIAL_MAX`` elements run
serially, in the same order: a parallel region costs more than they do.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import PARALLEL, SERIAL
from ..activations import grad
from ._sums import LEAF, ORDERED, column_block, combine_into, leaf_buffer, leaf_count

#: widest column block of a task (64 float32 values: four cache lines per row segment)
_COLS = 64
_SERIAL_MAX = 1 << 14
#: stands in for the leaves when no bias gradient is wanted (one Numba type per dtype either way)
_NO_LEAVES = {np.dtype(t): np.empty((0, 0), t) for t in (np.float32, np.float64)}


@njit(**ORDERED)
def _leaf(g, leaves, dy, y, act, with_db, c, j0, j1):
    """Rows of leaf c, columns j0:j1: g = dy * act'(y) (`activations.grad`), and their column
    sums into leaves[c]."""
    one = g.dtype.type(1)
    if with_db:
        acc = leaves[c, j0:j1]
        acc[:] = 0
    for i in range(c * LEAF, min(c * LEAF + LEAF, dy.shape[0])):
        gi = g[i]
        dyi = dy[i]
        yi = y[i]
        for j in range(j0, j1):
            v = grad(dyi[j], yi[j], act, one)
            gi[j] = v
            if with_db:
                acc[j - j0] += v


@njit(**SERIAL)
def _serial(g, db, dy, y, act, scale, accumulate, leaves):
    n, m = dy.shape
    nleaves = leaf_count(n)
    for c in range(nleaves):
        _leaf(g, leaves, dy, y, act, db is not None, c, 0, m)
    if db is not None:
        for j in range(m):
            combine_into(db, j, leaves, nleaves, scale, accumulate)


@njit(**PARALLEL)
def _parallel(g, db, dy, y, act, scale, accumulate, leaves):
    n, m = dy.shape
    nleaves = leaf_count(n)
    cols = column_block(nleaves, m, _COLS)
    blocks = (m + cols - 1) // cols
    for t in prange(nleaves * blocks):
        j0 = (t % blocks) * cols
        _leaf(g, leaves, dy, y, act, db is not None, t // blocks, j0, min(j0 + cols, m))
    if db is not None:
        for j in prange(m):
            combine_into(db, j, leaves, nleaves, scale, accumulate)


def activation_grad(g: np.ndarray, db: np.ndarray | None, dy: np.ndarray, y: np.ndarray, act: int,
                    scale, accumulate: bool) -> None:
    """g = dy * act'(y); when ``db`` is not None also db (+)= scale * g.sum(axis=0).

    g, dy, y are (n, out) and db is (out,) or None, C-contiguous, one float dtype (checked by the
    caller); ``scale`` is a scalar of that dtype, ``act`` an activation code."""
    leaves = leaf_buffer(dy.dtype, *dy.shape) if db is not None else _NO_LEAVES[dy.dtype]
    if dy.size < _SERIAL_MAX:
        _serial(g, db, dy, y, act, scale, accumulate, leaves)
    else:
        _parallel(g, db, dy, y, act, scale, accumulate, leaves)
