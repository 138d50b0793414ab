"""The activation's backward step, fused with the bias gradient: ``g = dy * act'(y)`` and
``db (+)= scale * g.sum(0)`` in one pass over dy.

This is the first read of dy in a fused layer's backward; the weight and input gradients are then
computed from ``g``. Work is split into (run of `LEAF` rows, block of columns) tasks: each reads
its row segments with unit stride, writes its part of ``g`` and, when ``db`` is wanted, the sums
of its rows into a scratch ``leaves`` array; each column's leaves are then combined in the fixed
tree of `fastlinear.kernels._sums`, so db does not lose float32 accuracy as the batch grows and
does not depend on the number of threads. Problems of fewer than ``_SERIAL_MAX`` elements run
serially, in the same order: a parallel region costs more than they do.

The width of the column blocks is the one choice here that depends on the thread count:
each column's leaf sums are the same whichever block the column is in, so it changes no bit
(tests/kernels/test_thread_count_determinism.py), and narrow blocks cost: at 256x1024 float32,
2 threads, 32-column blocks (the width 256 tasks need) took 69 us and 256-column blocks 31 us.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import ORDERED, PARALLEL, SERIAL
from .._threads import thread_count
from ..activations import RELU, SIGMOID, TANH, grad
from ._scratch import EMPTY
from ._sums import (INDEX0, LEAF, ONE_LEAF, column_block, combine_block_into, leaf_buffer,
                    leaf_count, tree_add, tree_finish_into, tree_start)

#: widest column block of a task; `column_block` halves it until there are enough tasks. 256 rather
#: than 64: at 4096x256 float32 (tanh, no db, 2 threads) 64-column blocks took 205 us and whole
#: 256-column rows 106 us (short inner loops and a prologue per row segment).
_COLS = 256
#: tasks per thread the column blocks aim for
_TASKS_PER_THREAD = 4
#: elements below which the serial kernel runs. Serial / parallel, relu with db, 2 threads, us
#: (2-core AMD EPYC, znver4): float32 64x256 6.2 / 10.8, 64x512 9.6 / 12.3, 64x1024 (2**16)
#: 19.2 / 17.8, 256x1024 73.0 / 55.9; float64 64x1024 26.0 / 33.0, 256x1024 112 / 125.
_SERIAL_MAX = 1 << 16
#: stands in for the leaves when no bias gradient is wanted (one Numba type per dtype either way)
_NO_LEAVES = {np.dtype(t): np.empty((1, 0), t) for t in (np.float32, np.float64)}


@njit(**ORDERED)
def _rows(g, dy, y, act, i0, i1, j0, j1):
    """g[i0:i1, j0:j1] = dy * act'(y) (`activations.grad`).

    Written so that LLVM vectorizes the inner loop: one loop per activation with the code as a
    constant, and each row segment taken as a slice walked from 0. A loop from a run-time j0
    (``for j in range(j0, j1)``) over whole rows, or the code tested inside the loop, stayed
    10x slower: 2.1-2.6 ms against 0.19 ms for tanh on 4096x256 float32, one thread (3-6x slower
    than numpy in the fused layer)."""
    one = g.dtype.type(1)
    w = j1 - j0
    if act == RELU:
        for i in range(i0, i1):
            gi, dyi, yi = g[i, j0:j1], dy[i, j0:j1], y[i, j0:j1]
            for j in range(w):
                gi[j] = grad(dyi[j], yi[j], RELU, one)
    elif act == SIGMOID:
        for i in range(i0, i1):
            gi, dyi, yi = g[i, j0:j1], dy[i, j0:j1], y[i, j0:j1]
            for j in range(w):
                gi[j] = grad(dyi[j], yi[j], SIGMOID, one)
    elif act == TANH:
        for i in range(i0, i1):
            gi, dyi, yi = g[i, j0:j1], dy[i, j0:j1], y[i, j0:j1]
            for j in range(w):
                gi[j] = grad(dyi[j], yi[j], TANH, one)
    else:
        for i in range(i0, i1):
            gi, dyi = g[i, j0:j1], dy[i, j0:j1]
            for j in range(w):
                gi[j] = dyi[j]


@njit(**ORDERED)
def _leaf(g, out, dy, y, act, with_db, c, j0, j1):
    """Rows of leaf c, columns j0:j1: g = dy * act'(y), and their column sums into ``out``
    (rows added in order; each column on its own, so the adds vectorize across columns)."""
    i0, i1 = c * LEAF, min(c * LEAF + LEAF, dy.shape[0])
    _rows(g, dy, y, act, i0, i1, j0, j1)
    if with_db:
        out[:] = 0
        for i in range(i0, i1):
            gi = g[i, j0:j1]
            for j in range(j1 - j0):
                out[j] += gi[j]


@njit(**SERIAL)
def _serial(g, db, dy, y, act, scale, accumulate, leaves):
    # One block of _COLS columns at a time, each leaf added into the level sums as soon as it is
    # summed (row 0 of leaves holds it), so g and the sums stay in cache: the same additions as
    # the parallel kernel, in one pass.
    n, m = dy.shape
    nleaves = leaf_count(n)
    with_db = db.shape[0] > 0  # empty: no db (an empty layer has none to write)
    for j0 in range(0, m, _COLS):
        j1 = min(j0 + _COLS, m)
        if with_db:
            leaf = leaves[0, j0:j1]
            s1, s2, s3, s4 = (leaves[nleaves, j0:j1], leaves[nleaves + 1, j0:j1],
                              leaves[nleaves + 2, j0:j1], leaves[nleaves + 3, j0:j1])
            tree_start(s1, s2, s3, s4)
            for c in range(nleaves):
                _leaf(g, leaf, dy, y, act, with_db, c, j0, j1)
                tree_add(s1, s2, s3, s4, leaf, c)
            tree_finish_into(db, j0, s1, s2, s3, s4, scale, accumulate)
        else:
            _rows(g, dy, y, act, INDEX0, n, j0, j1)


@njit(**PARALLEL)
def _parallel(g, db, dy, y, act, scale, accumulate, leaves, threads):
    n, m = dy.shape
    nleaves = leaf_count(n)
    with_db = db.shape[0] > 0  # empty: no db (an empty layer has none to write)
    cols = column_block(nleaves, m, _COLS, _TASKS_PER_THREAD * threads)
    blocks = (m + cols - 1) // cols
    for t in prange(nleaves * blocks):
        c = t // blocks
        j0 = (t % blocks) * cols
        j1 = min(j0 + cols, m)
        out = leaves[c, j0:j1] if with_db else leaves[0, 0:0]
        _leaf(g, out, dy, y, act, with_db, c, j0, j1)
    if with_db:
        # the combining pass has only column blocks to split: narrower ones, so every thread gets
        # some (any width gives each column the same additions)
        wide = column_block(ONE_LEAF, m, _COLS, _TASKS_PER_THREAD * threads)
        for t in prange((m + wide - 1) // wide):
            j0 = t * wide
            combine_block_into(db, leaves, nleaves, j0, min(j0 + wide, m), scale, accumulate)


def activation_grad(g: np.ndarray, db: np.ndarray | None, dy: np.ndarray, y: np.ndarray, act: int,
                    scale, accumulate: bool) -> None:
    """g = dy * act'(y); when ``db`` is not None also db (+)= scale * g.sum(axis=0).

    g, dy, y are (n, out) and db is (out,) or None, C-contiguous, one float dtype (checked by the
    caller); ``scale`` is a scalar of that dtype, ``act`` an activation code."""
    if db is None:
        db = EMPTY[dy.dtype]  # one compiled signature with and without db
    leaves = leaf_buffer(dy.dtype, *dy.shape) if db.shape[0] else _NO_LEAVES[dy.dtype]
    # On one thread the serial kernel does the same arithmetic (same bits) without a parallel
    # region: 256x1024 float32 relu with db took 98 us in the parallel kernel, 67 us serially.
    threads = thread_count() if dy.size >= _SERIAL_MAX else 1
    if threads == 1:
        _serial(g, db, dy, y, act, scale, accumulate, leaves)
    else:
        _parallel(g, db, dy, y, act, scale, accumulate, leaves, threads)
