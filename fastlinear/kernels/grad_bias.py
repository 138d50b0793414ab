"""Bias-gradient kernels, serial and parallel: db (+)= scale * dy.sum(0), summed over the batch in
the fixed tree of `_sums` (runs of 32 rows in order, then 32 partial sums at a time), so float32
error does not grow with the batch. The weight-gradient kernels fuse the same sums
(``grad_weight``, ``packed/``), and so does the activation gradient (``activation``).

``grad_bias_serial`` has no parallel region (entering one costs about 1.4 us) and does the same
additions as ``grad_bias_parallel``, in one pass over dy.
"""

from __future__ import annotations

from numba import njit, prange

from .._config import ORDERED
from .._config import PARALLEL as _PARALLEL
from .._config import SERIAL as _SERIAL
from ._sums import (LEAF, ONE_LEAF, column_block, combine_block_into, leaf_count, tree_add,
                    tree_finish_into, tree_start)


@njit(**ORDERED)
def _bias_leaf(out, dy, c, j0, j1):
    """out[:] = dy[rows of leaf c, j0:j1].sum(0), whole row segments added in order."""
    out[:] = 0
    for i in range(c * LEAF, min(c * LEAF + LEAF, dy.shape[0])):
        row = dy[i, j0:j1]
        for q in range(j1 - j0):
            out[q] += row[q]


#: widest column block of a parallel task; `_sums.column_block` halves it until every thread has
#: `_BIAS_TASKS_PER_THREAD` tasks. A column-at-a-time sum reads dy with a whole row's stride and
#: ran 20-45x slower than numpy; narrow blocks cost too. 2 threads, float32, microseconds, column
#: blocks of 16 / 64 / 256 / 1024 (2-core AMD EPYC, znver4): 256x512 32.6 / 13.6 / 13.0 / 12.0;
#: 1024x1024 229 / 119 / 91 / 74; 256x4096 200 / 91 / 70 / 65 (numpy's ``sum(0)``: 25, 130, 113).
#: Any width gives the same bits (each column's additions are its own), so the width may follow
#: the thread count.
_BIAS_COLS = 1024
_BIAS_TASKS_PER_THREAD = 4


@njit(**ORDERED)
def _bias_block(db, dy, j0, j1, scale, accumulate, leaves):
    """db[j0:j1] (+)= scale * dy[:, j0:j1].sum(0) in one pass over dy: each leaf is summed into a
    scratch row and added into the level sums at once (`_sums.tree_add`), so only a few rows of
    the block's width are ever written. Uses row 0 and the level rows of ``leaves``."""
    nleaves = leaf_count(dy.shape[0])
    top = nleaves  # the level rows follow the leaves
    leaf = leaves[0, j0:j1]
    s1, s2, s3, s4 = (leaves[top, j0:j1], leaves[top + 1, j0:j1], leaves[top + 2, j0:j1],
                      leaves[top + 3, j0:j1])
    tree_start(s1, s2, s3, s4)
    for c in range(nleaves):
        _bias_leaf(leaf, dy, c, j0, j1)
        tree_add(s1, s2, s3, s4, leaf, c)
    tree_finish_into(db, j0, s1, s2, s3, s4, scale, accumulate)


#: column block of the serial kernel. Measured on one thread of a
#: 2-core AMD EPYC (znver4), float32 / float64, microseconds, block of 256 / 512 / 1024 / 2048
#: columns, numpy's ``sum(0)`` for scale: 1024x1024 160 / 136 / 91 / 93 (numpy 105), float64
#: 299 / 264 / 194 / 194 (numpy 243); 256x512 16.7 / 14.2 / 14.1 / 13.1 (numpy 19.5); 256x4096
#: 121 / 121 / 113 / 105 (numpy 104).
_BIAS_SERIAL_COLS = 1024


@njit(**_SERIAL)
def grad_bias_serial(db, dy, scale, accumulate, leaves):
    """db (+)= scale * dy.sum(0) on one thread, with the same additions as `grad_bias_parallel`
    (same bits), one block of `_BIAS_SERIAL_COLS` columns at a time."""
    # dy is (n, out), db is (out,), leaves is `_sums.leaf_buffer(dtype, n, out)`
    m = dy.shape[1]
    for j0 in range(0, m, _BIAS_SERIAL_COLS):
        _bias_block(db, dy, j0, min(j0 + _BIAS_SERIAL_COLS, m), scale, accumulate, leaves)


@njit(**_PARALLEL)
def grad_bias_parallel(db, dy, scale, accumulate, leaves, threads):
    """db (+)= scale * dy.sum(0). Tasks are (leaf of `LEAF` rows, block of columns) pairs, each
    writing its partial sums to ``leaves``; then each block of columns combines its leaves in the
    fixed tree of `fastlinear.kernels._sums`, so the result is the same for any number of threads
    (``threads``, the count in use, only sets how wide the blocks are)."""
    # dy is (n, out), db is (out,), leaves is `_sums.leaf_buffer(dtype, n, out)`
    n, m = dy.shape
    nleaves = leaf_count(n)
    cols = column_block(nleaves, m, _BIAS_COLS, _BIAS_TASKS_PER_THREAD * threads)
    blocks = (m + cols - 1) // cols
    for t in prange(nleaves * blocks):
        c = t // blocks
        j0 = (t % blocks) * cols
        j1 = min(j0 + cols, m)
        _bias_leaf(leaves[c, j0:j1], dy, c, j0, j1)
    # the combining pass has only column blocks to split: narrower ones, so every thread gets some
    wide = column_block(ONE_LEAF, m, _BIAS_COLS, _BIAS_TASKS_PER_THREAD * threads)
    for t in prange((m + wide - 1) // wide):
        j0 = t * wide
        combine_block_into(db, leaves, nleaves, j0, min(j0 + wide, m), scale, accumulate)
