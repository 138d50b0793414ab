"""Parallel decomposition of the loop kernels: enough equal tasks for many cores, and correct
results on the shapes that cut those tasks unevenly.

Target: at every shape of 256 x 512 x 512 or more (batch x in x out), each parallel loop of each
kernel has at least 256 independent tasks (4 per thread at 64 threads), with sizes that depend on
the shape only. Correctness against the float64 reference, both dtypes, on odd shapes that cross
every block: MR = 8, NR = 32 / 16, the k-block (1024 / 512), the 256-column start of a tile, the
32-row db leaf and the 32-step packing run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import reference as ref
from helpers import DTYPE_IDS, DTYPES, assert_close, randn
from fastlinear.backends import loops
from fastlinear.kernels import _sums
from fastlinear.kernels import grad_bias as bias_kernels
from fastlinear.kernels import grad_weight as weight_kernels
from fastlinear.kernels import activation as activation_kernels
from fastlinear.kernels.packed import packed_forward, packed_grad_input, packed_grad_weight
from fastlinear.kernels.packed._micro import MICRO
from fastlinear.kernels.packed._driver import PACK_STEPS, tile_shape
from fastlinear.kernels.packed._workspace import KC

TASKS = 256
BATCHES = (256, 300, 1024, 4096)
FEATURES = (512, 520, 1000, 1024, 4096)
LARGE = [(n, k, m) for n, k, m in itertools.product(BATCHES, FEATURES, FEATURES)]


def _ceil(a, b):
    return -(-a // b)


def _packed_tasks(rows, cols, k, dtype):
    """(tiles, packing tasks of the first k-block) of the packed GEMM for C (rows, cols) and a
    reduction of length k."""
    mr, nr = MICRO[np.dtype(dtype)]
    mp, np_ = _ceil(rows, mr), _ceil(cols, nr)
    tr, tc = tile_shape(mp, np_, mr, nr)
    chunks = _ceil(min(k, KC[np.dtype(dtype)]), PACK_STEPS)
    return _ceil(mp, tr) * _ceil(np_, tc), (mp + np_) * chunks


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_packed_gemm_has_at_least_4_tasks_per_thread_at_64_threads(dtype):
    for n, k, m in LARGE:
        # forward: C = y (n, m) over k; grad_weight: C = dw (m, k) over n; grad_input: C = dx (n, k) over m
        for what, rows, cols, red in (("forward", n, m, k), ("grad_weight", m, k, n), ("grad_input", n, k, m)):
            tiles, packs = _packed_tasks(rows, cols, red, dtype)
            assert tiles >= TASKS and packs >= TASKS, f"{what} {n}x{k}x{m}: {tiles} tiles, {packs} packing tasks"


def test_tiles_are_equal_apart_from_the_edges_and_ignore_the_thread_count():
    """A tile is (row panels, column panels) from the shape alone; halving keeps the two sides in
    proportion (1024^3 float32: 64 x 64 elements, 256 tiles)."""
    assert tile_shape(128, 32, 8, 32) == (8, 2)
    for mp, np_ in itertools.product((1, 5, 32, 33, 128, 512), (1, 7, 16, 33, 128)):
        tr, tc = tile_shape(mp, np_, 8, 32)
        assert 1 <= tr <= mp and 1 <= tc <= max(np_, 1)
        assert _ceil(mp, tr) * _ceil(np_, tc) >= min(TASKS, mp * np_)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_direct_kernels_have_at_least_4_tasks_per_thread_at_64_threads(dtype):
    """The shapes of 256 x 512 x 512 or more that the loops backend sends to the direct kernels."""
    strip = _sums.strip_length
    nr = 32 if dtype == np.float32 else 16
    sent = 0
    for n, k, m in LARGE:
        # grad_weight: dw (m, k), summed over n; grad_input: dx (n, k), summed over m
        for op, rows, cols, depth in (("grad_weight", m, k, n), ("grad_input", n, k, m)):
            if n * k * m > loops.PACKED and not loops.too_narrow(op, np.dtype(dtype).itemsize, n, k, m):
                continue
            sent += 1
            # the weight gradient's last full row block takes the rows below it (`row_tasks`)
            col_blocks = _ceil(cols, nr)
            row_blocks = (_sums.row_tasks(rows, 8, col_blocks) if op == "grad_weight"
                          else _ceil(rows, 8))
            s = strip(row_blocks, col_blocks, depth * 8 * nr)
            assert row_blocks * _ceil(col_blocks, s) >= TASKS, (n, k, m)
    assert sent  # 256 x 512 x 512 itself is one of them


def test_batch_reductions_have_at_least_4_tasks_per_thread_at_64_threads():
    """grad_bias and the activation gradient at (batch, out) of 256 x 512 or more."""
    for n, m in itertools.product(BATCHES, FEATURES):
        leaves = _sums.leaf_count(n)
        # both size their blocks for the threads they run on (no bit depends on the width): at 64
        # threads they get as many tasks
        cols = _sums.column_block(leaves, m, bias_kernels._BIAS_COLS, bias_kernels._BIAS_TASKS_PER_THREAD * 64)
        assert leaves * _ceil(m, cols) >= TASKS, (n, m, "grad_bias")
        cols = _sums.column_block(leaves, m, activation_kernels._COLS,
                                  activation_kernels._TASKS_PER_THREAD * 64)
        assert leaves * _ceil(m, cols) >= TASKS, (n, m, "activation_grad")


# (n, in, out): odd, crossing MR / NR / the leaf / the packing run / KC of both dtypes / 256 columns
SHAPES = [(257, 513, 515), (33, 1100, 1030), (1030, 70, 300), (2100, 40, 33), (65, 1025, 9),
          (300, 520, 530)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_packed_products_match_the_float64_reference(dtype, shape, rng):
    n, k, m = shape
    x, w, b, dy = randn(rng, (n, k), dtype), randn(rng, (m, k), dtype), randn(rng, m, dtype), randn(rng, (n, m), dtype)
    y = np.empty((n, m), dtype)
    packed_forward(y, x, w, b, 0)
    assert_close(y, ref.forward(x, w, b), ref.magnitude_forward(x, w, b), k, dtype, "y")
    dw = np.full((m, k), 0.5, dtype)
    db = np.full(m, 0.5, dtype)
    packed_grad_weight(dw, db, dy, x, dtype(0.25), True)
    assert_close(dw, 0.5 + 0.25 * ref.grad_weight(dy, x), 0.5 + 0.25 * ref.magnitude_grad_weight(dy, x), n, dtype, "dw")
    assert_close(db, 0.5 + 0.25 * ref.grad_bias(dy), 0.5 + 0.25 * ref.magnitude_grad_bias(dy), n, dtype, "db")
    packed_grad_weight(dw, db, dy, x, dtype(1), False)
    assert_close(dw, ref.grad_weight(dy, x), ref.magnitude_grad_weight(dy, x), n, dtype, "dw")
    assert_close(db, ref.grad_bias(dy), ref.magnitude_grad_bias(dy), n, dtype, "db")
    dx = np.empty((n, k), dtype)
    packed_grad_input(dx, dy, w)
    assert_close(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), m, dtype, "dx")


@pytest.mark.parametrize("shape", [(1, 3, 1), (31, 5, 17), (33, 40, 300), (1100, 45, 19), (4097, 10, 70)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_batch_reductions_match_the_float64_reference(dtype, shape, rng):
    """grad_bias (serial and parallel), the direct grad_weight's db and dw (row runs of DW_ROWS),
    and the activation gradient's db, on batches that cross leaves and runs unevenly."""
    n, k, m = shape
    x, dy = randn(rng, (n, k), dtype), randn(rng, (n, m), dtype)
    leaves = _sums.leaf_buffer(dtype, n, m)
    for kernel, extra in ((bias_kernels.grad_bias_serial, ()), (bias_kernels.grad_bias_parallel, (2,)),
                          (bias_kernels.grad_bias_parallel, (64,))):
        db = np.full(m, 2.0, dtype)
        kernel(db, dy, dtype(0.5), True, leaves, *extra)
        assert_close(db, 2 + 0.5 * ref.grad_bias(dy), 2 + 0.5 * ref.magnitude_grad_bias(dy), n, dtype, kernel.__name__)
    dw = np.empty((m, k), dtype)
    db = np.empty(m, dtype)
    loops.grad_weight(dw, db, dy, x, dtype(1), False)
    assert_close(dw, ref.grad_weight(dy, x), ref.magnitude_grad_weight(dy, x), n, dtype, "dw")
    assert_close(db, ref.grad_bias(dy), ref.magnitude_grad_bias(dy), n, dtype, "db")
    g = np.empty((n, m), dtype)
    y = np.abs(randn(rng, (n, m), dtype))  # relu: derivative 1 where y > 0
    y[::3] = 0
    activation_kernels.activation_grad(g, db, dy, y, 1, dtype(1), False)
    gr = np.where(y > 0, dy, 0).astype(np.float64)
    assert np.array_equal(g, gr.astype(dtype))
    assert_close(db, gr.sum(axis=0), np.abs(gr).sum(axis=0), n, dtype, "activation db")


def test_short_reductions_give_each_task_enough_work():
    """Where a block is little work (a short reduction), a parallel task of the direct gradient
    kernels takes enough blocks for `MIN_TASK_WORK` multiply-adds, or a whole row of blocks; only
    the last strip of a row holds less. At long reductions nothing changes (one block per task
    until there are more than `TASKS` blocks)."""
    for row_blocks, col_blocks, depth in itertools.product((1, 16, 64), (1, 3, 25, 49, 128),
                                                           (1, 2, 8, 33, 64, 128)):
        work = depth * 8 * 32
        s = _sums.strip_length(row_blocks, col_blocks, work)
        assert 1 <= s <= col_blocks
        assert s * work >= _sums.MIN_TASK_WORK or s == col_blocks, (row_blocks, col_blocks, depth)
        if work >= _sums.MIN_TASK_WORK:
            assert s == max(1, min(col_blocks, row_blocks * col_blocks // TASKS))
    # float32 8x784x128 weight gradient: 25 column blocks of 8 x 32 over 8 batch rows
    assert _sums.strip_length(16, 25, 8 * 8 * 32) == 8


def test_the_rows_below_the_last_full_block_join_its_task():
    """`row_tasks`: one task per 8-row block of dw, except that fewer than 8 rows left at the
    bottom join the last full block's task (they reuse its part of x while it is in cache) where
    there are at least two column blocks."""
    got = {m: _sums.row_tasks(m, 8, 2) for m in (0, 1, 7, 8, 9, 10, 15, 16, 17, 24, 31)}
    assert got == {0: 0, 1: 1, 7: 1, 8: 1, 9: 1, 10: 1, 15: 1, 16: 2, 17: 2, 24: 3, 31: 3}
    # with one column block they stay a task of their own: two tasks rather than one
    got = {m: _sums.row_tasks(m, 8, 1) for m in (8, 9, 10, 15, 16, 17)}
    assert got == {8: 1, 9: 2, 10: 2, 15: 2, 16: 2, 17: 3}
