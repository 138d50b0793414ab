"""The packed (large-shape) kernels of the loops backend against the float64 reference: every
product, both dtypes, shapes that are 1, odd, or cross the block sizes (MR 8; NR 32 / 16;
KC 1024 / 512; NC 256), bias or not, every activation, accumulate or not, db or not; plus
determinism across thread counts, NaN/Inf propagation, workspace reuse and the generated
micro-kernel sources."""

from __future__ import annotations

import concurrent.futures as cf
import re

import numba
import numpy as np
import pytest

import reference as ref
from helpers import DTYPE_IDS, DTYPES, assert_close, randn
from fastlinear.kernels import packed
from fastlinear._config import FASTMATH
from fastlinear.kernels.packed import _workspace
from fastlinear.kernels.packed._micro import MICRO, micro_kernel

ACTS = {
    packed.ACT_NONE: lambda v: v,
    packed.ACT_RELU: lambda v: np.maximum(v, 0.0),
    packed.ACT_SIGMOID: lambda v: 1.0 / (1.0 + np.exp(-v)),
    packed.ACT_TANH: np.tanh,
}
ACT_IDS = ["none", "relu", "sigmoid", "tanh"]

# (n, in, out). 1030 / 1100 in a reduction cross KC for both dtypes (2100: three float32
# k-blocks); 257 / 300 / 520 output columns cross NC = 256; 9 / 17 / 33 cross MR and NR.
SHAPES = [
    (1, 1, 1), (1, 5, 3), (3, 1, 7), (9, 31, 17), (8, 32, 32), (17, 64, 33), (33, 129, 65),
    (64, 300, 257), (37, 1100, 45), (5, 2100, 19), (1030, 20, 40), (40, 70, 520),
    (0, 4, 3), (4, 0, 3), (4, 3, 0),
]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


@pytest.fixture(scope="module", autouse=True)
def compiled():
    """Compile (or load) both dtypes once for the module."""
    for dt in DTYPES:
        packed.compile_packed(dt)


def _data(rng, n, k, m, dtype):
    return randn(rng, (n, k), dtype), randn(rng, (m, k), dtype), randn(rng, m, dtype), randn(rng, (n, m), dtype)


@pytest.mark.parametrize("act", list(ACTS), ids=ACT_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_forward(rng, dtype, shape, bias, act):
    n, k, m = shape
    x, w, b, _ = _data(rng, n, k, m, dtype)
    b = b if bias else None
    y = np.full((n, m), np.nan, dtype)
    packed.packed_forward(y, x, w, b, act)
    want = ACTS[act](ref.forward(x, w, b))
    # Every activation here has slope <= 1, so the pre-activation tolerance carries over; |want|
    # adds room for the activation's own rounding (a few ulps).
    mag = ref.magnitude_forward(x, w, b) + np.abs(want)
    assert_close(y, want, mag, k, dtype, "y")


@pytest.mark.parametrize("with_db", [True, False], ids=["db", "nodb"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "add"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_grad_weight(rng, dtype, shape, accumulate, with_db):
    n, k, m = shape
    x, _, _, dy = _data(rng, n, k, m, dtype)
    scale = dtype(1.0 / max(n, 1)) if accumulate else dtype(1)
    dw0, db0 = randn(rng, (m, k), dtype), randn(rng, m, dtype)
    if not accumulate:  # old contents must be overwritten, whatever they are
        dw0[...], db0[...] = np.nan, np.nan
    dw, db = dw0.copy(), (db0.copy() if with_db else None)
    packed.packed_grad_weight(dw, db, dy, x, scale, accumulate)
    s = float(scale)
    base_w = dw0.astype(np.float64) if accumulate else 0.0
    want = base_w + s * ref.grad_weight(dy, x)
    mag = np.abs(base_w) + s * ref.magnitude_grad_weight(dy, x)
    assert_close(dw, want, mag, n + 1, dtype, "dw")
    if with_db:
        base_b = db0.astype(np.float64) if accumulate else 0.0
        want_b = base_b + s * ref.grad_bias(dy)
        mag_b = np.abs(base_b) + s * ref.magnitude_grad_bias(dy)
        assert_close(db, want_b, mag_b, n + 1, dtype, "db")


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_grad_input(rng, dtype, shape):
    n, k, m = shape
    _, w, _, dy = _data(rng, n, k, m, dtype)
    dx = np.full((n, k), np.nan, dtype)
    packed.packed_grad_input(dx, dy, w)
    assert_close(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), m, dtype, "dx")


def _all_products(x, w, b, dy, dtype):
    y = np.empty((x.shape[0], w.shape[0]), dtype)
    dw, db = np.empty_like(w), np.empty_like(b)
    dx = np.empty_like(x)
    packed.packed_forward(y, x, w, b, packed.ACT_TANH)
    packed.packed_grad_weight(dw, db, dy, x, dtype(0.25), False)
    packed.packed_grad_input(dx, dy, w)
    return y, dw, db, dx


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nan_and_inf_propagate(rng, dtype):
    n, k, m = 20, 1100, 40  # two k-blocks: the bad value is in the second one
    x, w, b, dy = _data(rng, n, k, m, dtype)
    x[3, 1050] = np.nan
    w[5, 1060] = np.inf
    x[:, 1060] = 1  # inf * 1 = +inf in column 5 ...
    y = np.empty((n, m), dtype)
    packed.packed_forward(y, x, w, b, packed.ACT_RELU)
    assert np.isnan(y[3]).all()
    others = np.arange(n) != 3
    assert np.isposinf(y[others, 5]).all()
    assert np.isfinite(np.delete(y[others], 5, axis=1)).all()
    dx = np.empty_like(x)
    dy[7, 2] = np.nan
    packed.packed_grad_input(dx, dy, w)
    assert np.isnan(dx[7]).all() and np.isfinite(np.delete(dx, 7, axis=0)[:, :1000]).all()
    dw, db = np.empty_like(w), np.empty_like(b)
    packed.packed_grad_weight(dw, db, dy, x, dtype(1), False)
    assert np.isnan(dw[2]).all() and np.isnan(db[2]) and np.isfinite(np.delete(db, 2)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_workspace_is_reused(rng, dtype):
    x, w, b, dy = _data(rng, 50, 40, 30, dtype)
    _all_products(x, w, b, dy, dtype)
    ws = _workspace.workspace(dtype)
    buffers = (ws.packed_a(50), ws.tiles)
    _all_products(x, w, b, dy, dtype)
    assert all(a is b for a, b in zip(buffers, (ws.packed_a(50), ws.tiles)))
    bigger = ws.packed_a(5000)
    assert bigger.size >= 5000 * ws.kc
    # a buffer beyond KEEP_BYTES is the call's own: the kept one stays (and stays bounded)
    assert ws.packed_a(50) is buffers[0] and ws.apack.nbytes <= _workspace.KEEP_BYTES


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_every_packing_buffer_starts_on_a_cache_line(rng, dtype):
    """The kept packed A buffer, two made for one call beyond KEEP_BYTES, and every worker's
    tile."""
    x, w, b, dy = _data(rng, 50, 40, 30, dtype)
    _all_products(x, w, b, dy, dtype)
    ws = _workspace.workspace(dtype)
    kept, bigger = ws.packed_a(50), ws.packed_a(5000)
    huge = ws.packed_a(_workspace.KEEP_BYTES // (ws.kc * dtype().itemsize) + ws.mr)
    assert huge is not ws.apack
    for a in (kept, bigger, huge, *ws.tiles):
        assert a.ctypes.data % 64 == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_forward_reads_w_in_place_with_the_bits_of_packing_it(rng, dtype, monkeypatch):
    """Up to W_IN_PLACE_ROWS batch rows the forward computes y.T = w @ x.T with w read in place,
    above them it packs w; in place gives the bits of the product with w packed, at shapes with a
    partial last panel of w (out not a multiple of MR), several k-blocks, a partial batch panel,
    an empty reduction, every activation, bias or not."""
    from fastlinear.kernels.packed import _api
    from fastlinear.kernels.packed._driver import gemm

    calls = []
    monkeypatch.setattr(_api, "gemm", lambda *a: (calls.append(a[1:5:3]), gemm(*a))[1])
    dt = np.dtype(dtype)
    ws = _workspace.workspace(dt)
    empty, no_leaves = np.empty(0, dt), np.empty((0, 0), dt)
    rows = _api.W_IN_PLACE_ROWS
    for n, k, m in [(1, 3, 9), (33, 1100, 45), (rows, 70, 67), (17, 2100, 8), (40, 0, 12)]:
        x, w, b, _ = _data(rng, n, k, m, dtype)
        for act in ACTS:
            for bias in (b, None):
                calls.clear()
                y = np.full((n, m), np.nan, dt)
                packed.packed_forward(y, x, w, bias, act)
                assert calls == [(True, True)]  # (transposed, a_in_place)
                want = np.full((n, m), np.nan, dt)
                gemm(want, False, x, True, False, w, True, False, k, dt.type(1), empty,
                     no_leaves, False, empty if bias is None else bias, bias is not None, act,
                     False, ws.mr, ws.nr, ws.kc, ws.packed_a(n), _api._packed_b(ws, dt, m),
                     ws.tiles)
                assert np.array_equal(y, want), (n, k, m, act, bias is None)
    calls.clear()
    x, w, b, _ = _data(rng, rows + 1, 70, 67, dtype)
    y = np.empty((rows + 1, 67), dt)
    packed.packed_forward(y, x, w, b, packed.ACT_NONE)
    assert calls == [(False, False)]
    assert_close(y, ref.forward(x, w, b), ref.magnitude_forward(x, w, b), 70, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_grad_input_packs_w_in_the_tiles_with_the_bits_of_packing_it_whole(rng, dtype,
                                                                          monkeypatch,
                                                                          restore_threads):
    """Up to W_IN_TILE_ROWS batch rows, where the 256-column tiles keep the threads busy, the
    input gradient packs w's panels in the tiles that use them; otherwise all of w per k-block. The bits are the same, at shapes with partial row and column panels, a partial
    last tile, several k-blocks, an empty reduction, and a batch at the limit (on one thread,
    where any number of tiles keeps the threads busy)."""
    from fastlinear.kernels.packed import _api
    from fastlinear.kernels.packed._driver import gemm

    calls = []
    monkeypatch.setattr(_api, "gemm", lambda *a: (calls.append(a[7]), gemm(*a))[1])
    rows = _api.W_IN_TILE_ROWS
    numba.set_num_threads(1)  # one tile is enough for one thread
    in_tiles = []
    for n, k, m in [(1, 3, 9), (33, 1100, 45), (rows, 300, 67), (17, 257, 2100), (9, 520, 1030),
                    (40, 12, 0), (rows + 1, 300, 67)]:
        _, w, _, dy = _data(rng, n, k, m, dtype)
        calls.clear()
        dx = np.full((n, k), np.nan, dtype)
        packed.packed_grad_input(dx, dy, w)
        assert calls == [n <= rows], (n, k, m)
        in_tiles += calls
        whole = np.full((n, k), np.nan, dtype)
        packed.packed_grad_input(whole, dy, w, 0)
        assert calls[-1] is False
        assert np.array_equal(dx, whole), (n, k, m)
        tiled = np.full((n, k), np.nan, dtype)
        packed.packed_grad_input(tiled, dy, w, n)
        assert np.array_equal(tiled, whole), (n, k, m)
        assert_close(tiled, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), m, dtype,
                     "dx")
    assert in_tiles.count(True) == 6


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_forward_packs_w_in_the_tiles_with_the_bits_of_packing_it_whole(rng, dtype, monkeypatch,
                                                                       restore_threads):
    """Above W_IN_PLACE_ROWS and up to W_IN_TILE_ROWS batch rows the forward packs w's panels in
    the tiles that use them (on one thread, where any number of tiles keeps the threads busy);
    the bits are those of w packed whole and of w read in place, at shapes with partial panels,
    a partial last tile, several k-blocks, every activation, bias or not."""
    from fastlinear.kernels.packed import _api
    from fastlinear.kernels.packed._driver import gemm

    calls = []
    monkeypatch.setattr(_api, "gemm", lambda *a: (calls.append(a[7]), gemm(*a))[1])
    lo, hi = _api.W_IN_PLACE_ROWS, _api.W_IN_TILE_ROWS
    numba.set_num_threads(1)
    for n, k, m in [(lo + 1, 70, 67), (hi, 1100, 300), (200, 2100, 257), (hi + 1, 40, 33)]:
        x, w, b, _ = _data(rng, n, k, m, dtype)
        for act in ACTS:
            for bias in (b, None):
                calls.clear()
                y = np.full((n, m), np.nan, dtype)
                packed.packed_forward(y, x, w, bias, act)
                assert calls == [n <= hi], (n, k, m)
                for in_place, in_tile in ((0, 0), (n, 0)):  # whole, in place
                    other = np.full((n, m), np.nan, dtype)
                    packed.packed_forward(other, x, w, bias, act, in_place, in_tile)
                    assert np.array_equal(y, other), (n, k, m, act, in_place)
        y = np.empty((n, m), dtype)
        packed.packed_forward(y, x, w, b, packed.ACT_NONE)
        assert_close(y, ref.forward(x, w, b), ref.magnitude_forward(x, w, b), k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_w_packed_in_the_tiles_on_two_threads_gives_the_bits_of_one(rng, dtype, restore_threads):
    """Two threads pack w in their own parts of the B buffer (thread id 1 writes the second):
    the same bits as whole, and as one thread."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs a pool of 2 threads")
    n, k, m = 200, 600, 1100  # 3 tiles of the input gradient's dx, 5 of the forward's y
    x, w, b, dy = _data(rng, n, k, m, dtype)
    out = {}
    for threads in (2, 1):
        numba.set_num_threads(threads)
        for tile in (0, n):  # whole, in the tiles
            y, dx = np.empty((n, m), dtype), np.empty((n, k), dtype)
            packed.packed_forward(y, x, w, b, packed.ACT_RELU, 0, tile)
            packed.packed_grad_input(dx, dy, w, tile)
            out[threads, tile] = y, dx
    for key, (y, dx) in out.items():
        assert np.array_equal(y, out[1, 0][0]) and np.array_equal(dx, out[1, 0][1]), key


def test_packing_w_in_the_tiles_needs_the_tiles_to_keep_the_threads_busy():
    """At least one 256-column tile per thread, and tiles >= 3/4 x rounds x threads."""
    from fastlinear.kernels.packed._driver import b_in_tile_balanced

    assert b_in_tile_balanced(256, 1) and b_in_tile_balanced(1, 1)
    assert not b_in_tile_balanced(256, 2) and b_in_tile_balanced(257, 2)
    assert b_in_tile_balanced(4096, 16)  # 16 tiles, one round
    assert not b_in_tile_balanced(4097, 16)  # 17 tiles: a second round of 1
    assert b_in_tile_balanced(24 * 256, 16)  # 24 tiles in 2 rounds of 16: 3/4
    assert not b_in_tile_balanced(23 * 256, 16)


def test_grad_input_packs_w_whole_when_threads_outnumber_the_tiles(rng, monkeypatch,
                                                                  restore_threads):
    """Fewer 256-column tiles than Numba threads would leave threads idle: w is packed whole."""
    from fastlinear.kernels.packed import _api
    from fastlinear.kernels.packed._driver import gemm

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs a pool of 2 threads")
    calls = []
    monkeypatch.setattr(_api, "gemm", lambda *a: (calls.append(a[7]), gemm(*a))[1])
    _, w, _, dy = _data(rng, 64, 256, 300, np.float32)
    for threads, in_tiles in ((1, True), (2, False)):
        numba.set_num_threads(threads)
        calls.clear()
        packed.packed_grad_input(np.empty((64, 256), np.float32), dy, w)
        assert calls == [in_tiles], threads


def test_float32_micro_kernel_stays_float32():
    """No float64 arithmetic in the float32 micro-kernel's LLVM IR."""
    fresh = numba.njit(fastmath=set(FASTMATH))(micro_kernel(*MICRO[np.dtype(np.float32)]))
    u = np.uintp
    fresh(u(4), np.ones(8 * 4, np.float32), u(0), u(1), u(8), np.ones(32 * 4, np.float32), u(0),
          u(32), np.empty(256, np.float32))
    ir = "\n".join(fresh.inspect_llvm().values())
    assert "fmul" in ir or "fma" in ir
    assert not re.search(r"fpext float .* to double|f(add|mul)( [a-z]+)* double ", ir)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_thread_pool_matches_serial(dtype):
    """Concurrent calls from several Python threads (each with its own packing buffers) give the
    serial results bit for bit."""
    def job(seed):
        rng = np.random.default_rng(seed)
        return _all_products(*_data(rng, 60 + seed, 290 + 7 * seed, 270 - seed, dtype), dtype)

    seeds = list(range(8))
    serial = [job(s) for s in seeds]
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            for s, got in zip(seeds, pool.map(job, seeds)):
                for name, g, e in zip(("y", "dw", "db", "dx"), got, serial[s]):
                    assert g.tobytes() == e.tobytes(), f"seed {s}: {name} differs from the serial call"
