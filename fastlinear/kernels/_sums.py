"""Long sums over the batch in a fixed tree, so that float32 error does not grow with the batch.

Adding n rows one after another in float32 loses accuracy in proportion to n: with dy = 0.1
everywhere, 2**20 rows summed in order give 105891.84 where the exact sum is 104857.6 (1% off),
because every addition rounds against an ever larger running sum. The bias gradients therefore
sum in two stages, both in an order fixed by the shape alone:

1. leaves: each run of `LEAF` consecutive rows is summed in order (per column) into one partial sum;
   these are the parallel tasks, one (run of rows, block of columns) each;
2. `combine_into` (one column) or `tree_add` (a block of columns at once, the same additions): the
   leaves of a column are added `FAN` at a time, in order, and the results again `FAN` at a time,
   over four levels; 32**5 = 2**25 rows before the top level holds more than one sum.

At 2**20 float32 rows no value is the result of more than 32 additions in a row, and the relative
error of the sum stays below 1e-6 (0.1 everywhere: 9e-7; uniform [0, 1): 1e-7; normal: 2e-7, in a
float32 simulation of this order), where in-order addition gives 1e-2, 2e-5 and 1e-5. With
fewer than `LEAF` rows the sum is the plain in-order one. The order never depends on the number of
threads, so results stay bitwise identical for any thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._config import ORDERED
from . import _scratch

#: rows added in order into one leaf
LEAF = 32
#: partial sums added in order at each level above the leaves
FAN = 32
#: fewest independent tasks a parallel kernel aims for at large shapes: 4 per thread at 64 threads
TASKS = 256
#: narrowest column block of a leaf task: 16 float32 values, one 64-byte cache line
MIN_COLS = 16


@njit(**ORDERED)
def leaf_count(n):
    """Number of leaves of an n-row sum (at least 1, so that an empty batch gives zeros)."""
    return max((n + LEAF - 1) // LEAF, 1)


#: 0 and 1 as run-time integers (numpy scalars, typed int64): a kernel function called with the
#: constant 0 or 1 is compiled a second time, specialised to that literal, besides the int64
#: version its other callers use. INDEX0 is a first row or column block; ONE_LEAF one row piece
#: for `column_block`'s combining passes.
INDEX0 = np.intp(0)
ONE_LEAF = np.intp(1)


#: multiply-adds a parallel task of the direct gradient kernels is made to do (the last strip of
#: a row may do less, see `strip_length`): below it, entering the task and calling its blocks
#: (each call updates reference counts with atomic instructions) cost as much as the arithmetic.
#: Measured on the weight gradient, 2 threads, us per call with 1 / 4 / 8 blocks per task (2-core
#: AMD EPYC, znver5): float32 8x784x128 20.3 / 13.5 / 12.8, 16x512x256 31.8 / 24.4 / 22.2;
#: float64 8x784x128 35.5 / 21.1 / 19.6, 2x1000x100 31.3 / 20.4 / 14.7. One 8 x 32 block over 8
#: batch rows is 2,048.
MIN_TASK_WORK = 1 << 14


@njit(**ORDERED)
def row_tasks(m, mr, col_blocks):
    """Rows of parallel tasks of the direct weight gradient for m rows of dw in blocks of mr rows
    and col_blocks column blocks: one per block, except that the rows left below the last full
    block (m % mr of them, where m > mr) join that block's task when there are at least two
    column blocks (so that at least two tasks remain). Each task reads its columns of x over the
    whole batch; as a task of its own those few rows read them a second time from memory where x
    does not fit in cache (4096x256x10 took about twice the time of 4096x256x8). Joined, the
    serial kernel on one thread at 4096x256x10 went from 486-504 to 327-329 us (float32) and from
    1125-1130 to 734-791 us (float64; ``asv_benchmarks/scripts/serial_parallel.py``, 2-core Intel
    Xeon, ``rocketlake``, see ``_generate``)."""
    if m > mr and m % mr and col_blocks > 1:
        return m // mr
    return (m + mr - 1) // mr


@njit(**ORDERED)
def strip_length(row_blocks, col_blocks, block_work):
    """Column blocks per parallel task of the direct gradient kernels, whose blocks each do
    ``block_work`` multiply-adds: 1, or more when there are over `TASKS` blocks (fewer divisions
    and calls; at least `TASKS` tasks stay, 4 per thread at 64 threads) or when a block does less
    than `MIN_TASK_WORK` (enough blocks to reach it, or a whole row of blocks). The last strip of
    a row holds what is left (25 blocks at 8 per strip: 8, 8, 8 and 1). Depends only on the
    shape."""
    by_count = (row_blocks * col_blocks) // TASKS
    by_work = (MIN_TASK_WORK + block_work - 1) // max(block_work, 1)
    return max(1, min(col_blocks, max(by_count, by_work)))


@njit(**ORDERED)
def column_block(leaves, m, widest, tasks):
    """Columns per leaf task: ``widest``, halved while there are fewer than ``tasks`` tasks and the
    block is wider than `MIN_COLS`."""
    cols = widest
    while cols > MIN_COLS and leaves * ((m + cols - 1) // cols) < tasks:
        cols //= 2
    return cols


@njit(**ORDERED)
def combine_into(db, j, leaves, nleaves, scale, accumulate):
    """db[j] (+)= scale * (the sum of leaves[0:nleaves, j] in the fixed tree described in the module
    docstring). Writes its result rather than returning it: no float32 value is boxed (widened)."""
    z = leaves.dtype.type(0)
    s1 = s2 = s3 = s4 = z
    for c in range(nleaves):
        s1 += leaves[c, j]
        if (c + 1) % FAN == 0:
            s2 += s1
            s1 = z
            if (c + 1) % (FAN * FAN) == 0:
                s3 += s2
                s2 = z
                if (c + 1) % (FAN * FAN * FAN) == 0:
                    s4 += s3
                    s3 = z
    s2 += s1
    s3 += s2
    s4 += s3
    if accumulate:
        db[j] += scale * s4
    else:
        db[j] = scale * s4


#: rows after the leaves that hold the running sums of the levels above them (`tree_add`)
LEVELS = 4


def leaf_buffer(dtype, n: int, m: int):
    """Scratch for the leaves of an (n, m) column sum: a (leaf count + `LEVELS`, m) C-contiguous
    array from this Python thread's reused buffers (`fastlinear.kernels._scratch`); the last
    `LEVELS` rows hold the level sums of `tree_add`."""
    return _scratch.shaped("leaves", dtype, (max(-(-n // LEAF), 1) + LEVELS, m))


@njit(**ORDERED)
def tree_start(s1, s2, s3, s4):
    """Zero the four level sums of a column block before its first `tree_add`."""
    z = s1.dtype.type(0)
    for q in range(s1.shape[0]):
        s1[q] = z
        s2[q] = z
        s3[q] = z
        s4[q] = z


@njit(**ORDERED)
def tree_add(s1, s2, s3, s4, leaf, c):
    """Step c of `combine_into` for a block of columns at once: leaf (the block's partial sums of
    leaf c) goes into the level sums s1..s4, each a (block width,) row. Every column sees the same
    additions in the same order as `combine_into` gives it, so the bits are the same; the adds run
    across contiguous columns, so they vectorize, where `combine_into` walks a column with the
    stride of a whole row."""
    w = s1.shape[0]
    for q in range(w):
        s1[q] += leaf[q]
    if (c + 1) % FAN == 0:
        for q in range(w):
            s2[q] += s1[q]
            s1[q] = 0
        if (c + 1) % (FAN * FAN) == 0:
            for q in range(w):
                s3[q] += s2[q]
                s2[q] = 0
            if (c + 1) % (FAN * FAN * FAN) == 0:
                for q in range(w):
                    s4[q] += s3[q]
                    s3[q] = 0


@njit(**ORDERED)
def tree_finish_into(db, j0, s1, s2, s3, s4, scale, accumulate):
    """db[j0:j0+w] (+)= scale * (the block's tree sum), after the last `tree_add`: the end of
    `combine_into` for each of the w columns."""
    for q in range(s1.shape[0]):
        total = s4[q] + (s3[q] + (s2[q] + s1[q]))
        if accumulate:
            db[j0 + q] += scale * total
        else:
            db[j0 + q] = scale * total


@njit(**ORDERED)
def column_sum_into(db, j, a, scale, accumulate):
    """db[j] (+)= scale * a[:, j].sum(), in the same tree as `combine_into` over leaves of `LEAF`
    rows (for a few columns; the reads stride a whole row)."""
    z = a.dtype.type(0)
    n = a.shape[0]
    s1 = s2 = s3 = s4 = z
    for c in range(leaf_count(n)):
        s0 = z
        for i in range(c * LEAF, min(c * LEAF + LEAF, n)):
            s0 += a[i, j]
        s1 += s0
        if (c + 1) % FAN == 0:
            s2 += s1
            s1 = z
            if (c + 1) % (FAN * FAN) == 0:
                s3 += s2
                s2 = z
                if (c + 1) % (FAN * FAN * FAN) == 0:
                    s4 += s3
                    s3 = z
    s2 += s1
    s3 += s2
    s4 += s3
    if accumulate:
        db[j] += scale * s4
    else:
        db[j] = scale * s4


@njit(**ORDERED)
def combine_block_into(db, leaves, nleaves, j0, j1, scale, accumulate):
    """db[j0:j1] (+)= scale * (the tree sum of leaves[:nleaves, j0:j1]), the level sums kept in
    the `LEVELS` rows after the leaves (`leaf_buffer`)."""
    s1, s2, s3, s4 = (leaves[nleaves, j0:j1], leaves[nleaves + 1, j0:j1],
                      leaves[nleaves + 2, j0:j1], leaves[nleaves + 3, j0:j1])
    tree_start(s1, s2, s3, s4)
    for c in range(nleaves):
        tree_add(s1, s2, s3, s4, leaves[c, j0:j1], c)
    tree_finish_into(db, j0, s1, s2, s3, s4, scale, accumulate)
