"""The three products of the linear layer on the packed GEMM (`_driver.gemm`).

These are the large-shape kernels of the "loops" backend. Like every kernel they do no checking:
arrays must be C-contiguous with one float dtype (float32 or float64) and matching shapes, and
``scale`` a numpy scalar of that dtype. Results are bitwise identical across runs and thread
counts.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import _scratch
from .._scratch import EMPTY
from .._sums import leaf_buffer
from ._act import ACT_NONE
from ._driver import NC_IN_TILE, b_in_tile_balanced, gemm
from ._workspace import MC, row_blocks, workspace

_NO_LEAVES = {dt: np.empty((0, 0), dt) for dt in EMPTY}

#: batch rows up to which `packed_forward` reads w in place instead of packing it: it computes
#: y.T = w @ x.T, so that only x is packed (as B) and w's rows feed the micro-kernel's broadcasts
#: directly (`_driver.gemm`'s ``a_in_place``; the same products summed in the same order, so the
#: same bits as packing w). Packing w costs out * in element copies per call whatever the batch,
#: so it weighs most at small batches (44% of the forward at 64x4096x4096 float32, 17% at
#: 256x512x512: ``asv_benchmarks/scripts/packed_profile.py --phases``). Time with w packed / time
#: with w in place, float32 / float64, ``packed_profile.py --in-place --threads 1`` (``--threads
#: 2`` in brackets), 2-core Intel Xeon KVM guest (rocketlake): 32x2048x2048 3.91 / 1.77 (3.89 /
#: 3.29), 64x4096x4096 1.73 / 1.41 (2.31 / 1.73), 128x1024x1024 1.52 / 1.52 (2.05 / 2.37); mixed
#: above: 256x512x512 0.99 / 1.26 (1.05 / 1.42), 1024x1024x1024 0.95 / 1.00 (1.01 / 1.08). Earlier
#: rounds timed call after call, one process per thread count, ranged wider (64x4096x4096
#: 2.45-2.6 / 1.5-2.0, 256x1024x1024 1.52 / 1.24, 256x512x512 0.79-1.19 / 0.84-1.28,
#: 1024x1024x1024 0.77-1.05), so 128 keeps the clear wins. The built-in value; `fastlinear tune`
#: measures this machine's (``fastlinear.tuning.in_place_rows``).
W_IN_PLACE_ROWS = 128
#: batch rows up to which `packed_grad_input`, and `packed_forward` above `W_IN_PLACE_ROWS`, pack
#: w's panels in the tiles that use them instead of all of w per k-block (`_driver.gemm`'s
#: ``b_in_tile``: tiles of all the batch rows by `_driver.NC_IN_TILE` = 256 columns, each packing
#: its own KC x 256 block of w, 1 MiB for either dtype, into this thread's part of the B buffer,
#: where it stays in L2 while every row panel uses it; the same sums in the same order, so the
#: same bits). Packed whole, w's k-block (KC x 4096 features: 16 MiB float32) is written out and
#: read back from memory (packing was 51% of the input gradient at 64x4096x4096 float32). Time
#: packed whole / time packed in the tiles, forward and input gradient, float32 / float64,
#: ``asv_benchmarks/scripts/packed_profile.py --in-tile --threads 1`` (``--threads 2`` in
#: brackets), 2-core Intel Xeon KVM guest (rocketlake), one run each: 16x4096x4096 1.30-1.33 /
#: 1.46 (1.94-1.97 / 1.28-1.29), 64x4096x4096 1.22-1.25 / 1.21-1.26 (1.61-1.64 / 1.61-1.71),
#: 128x1024x1024 1.30-1.31 / 1.27-1.29 (1.57-1.58 / 1.56), 256x512x512 1.00-1.04 / 1.17-1.18
#: (1.09-1.16 / 1.24-1.25), 256x4096x4096 1.30-1.34 / 1.34-1.36 (1.36-1.40 / 1.28), 512x1024x1024
#: 1.20-1.22 / 1.19-1.20 (1.17-1.18 / 1.15); above the limit the gain fades: 1024x1024x1024
#: 1.10 / 1.06 (1.06-1.08 / 1.05), 2048x1024x1024 1.01-1.04 / 1.02 (1.01 / 1.03-1.04). Packing in
#: the tiles has ceil(columns / 256) parallel tasks where the driver's usual tiles have at least
#: 256 from 256x512x512 up (``tile_shape``), so it runs only where `_driver.b_in_tile_balanced`
#: finds the tiles enough for the threads. `fastlinear tune` measures this machine's limit
#: (``fastlinear.tuning.in_tile_rows``), at its thread count. (Tiles of 128 or 512 columns, tried
#: on the input gradient at 16-128 rows by editing `_driver.NC_IN_TILE`, were not faster overall:
#: 128 about the same, 512 slower where few tiles could not feed both threads.)
W_IN_TILE_ROWS = 512


def _packed_b(ws, dt, n: int) -> np.ndarray:
    """The packed B buffer of one k-block, shared by all threads: ceil(n / NR) * NR * KC elements
    from this Python thread's reused scratch."""
    return _scratch.buffer("packed_b", dt, -(-n // ws.nr) * ws.nr * ws.kc)


def in_tile_b(ws, dt, threads: int, cols: int) -> np.ndarray:
    """The B buffer of a ``b_in_tile`` call on ``threads`` threads with ``cols`` columns of C:
    one tile's KC x min(NC_IN_TILE, ceil(cols / NR) * NR) block per thread (at most 1 MiB for
    either dtype), from this Python thread's reused scratch; thread ids stay below ``threads``
    (``numba.get_thread_id``)."""
    width = min(NC_IN_TILE, -(-cols // ws.nr) * ws.nr)
    return _scratch.buffer("packed_b", dt, threads * width * ws.kc)


def _in_tile_threads(n: int, limit: int, cols: int) -> int:
    """Numba's thread count when a product of ``n`` batch rows and ``cols`` columns of C packs w
    in its tiles (``n`` up to ``limit`` and MC, and the tiles keep the threads busy,
    `_driver.b_in_tile_balanced`), else 0."""
    threads = numba.get_num_threads()
    return threads if n <= min(limit, MC) and b_in_tile_balanced(cols, threads) else 0


def _prepare(dtype):
    """Workspace for ``dtype``. (The driver compiles, or loads from Numba's cache, on its first
    call; compiling it compiles the micro-kernel, see `_micro`.)"""
    return workspace(dtype)


def packed_forward(y: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                   act: int = ACT_NONE, w_in_place_rows: int = W_IN_PLACE_ROWS,
                   w_in_tile_rows: int = W_IN_TILE_ROWS) -> None:
    """y = act(x @ w.T + b); ``b`` may be None; act 0 none, 1 relu, 2 sigmoid, 3 tanh. Up to
    ``w_in_place_rows`` batch rows (default `W_IN_PLACE_ROWS`; the loops backend passes the one
    `fastlinear tune` measured), and never above `_workspace.MC` (x is then packed whole, MC *
    KC elements at most), w is read in place; above it, up to ``w_in_tile_rows`` (default
    `W_IN_TILE_ROWS`, likewise; never above MC), w's panels are packed by the tiles that use them
    where the ceil(out_features / 256) tiles keep Numba's threads busy
    (`_driver.b_in_tile_balanced`); otherwise all of w is packed for each k-block. The same
    bits every way."""
    # x is (n, in), w is (out, in), b is (out,) or None, y is (n, out)
    dt = y.dtype
    ws = _prepare(dt)
    empty = EMPTY[dt]
    n = y.shape[0]
    bias = empty if b is None else b
    if n <= min(w_in_place_rows, MC):
        # y.T = w @ x.T with w read in place: only x (and a partial last panel of w) is packed
        gemm(y, True, w, True, True, x, True, False, x.shape[1], dt.type(1), empty, _NO_LEAVES[dt],
             False, bias, b is not None, int(act), False, ws.mr, ws.nr, ws.kc,
             ws.packed_a(ws.mr), _packed_b(ws, dt, n), ws.tiles)
        return
    threads = _in_tile_threads(n, w_in_tile_rows, y.shape[1])
    if threads:
        # w's panels packed by the tiles that use them
        gemm(y, False, x, True, False, w, True, True, x.shape[1], dt.type(1), empty,
             _NO_LEAVES[dt], False, bias, b is not None, int(act), False, ws.mr, ws.nr, ws.kc,
             ws.packed_a(n), in_tile_b(ws, dt, threads, y.shape[1]), ws.tiles)
        return
    bpack = _packed_b(ws, dt, y.shape[1])
    for rows in row_blocks(n):  # bounded packing memory, same result (see _workspace.MC)
        gemm(y[rows], False, x[rows], True, False, w, True, False, x.shape[1], dt.type(1), empty,
             _NO_LEAVES[dt], False, bias, b is not None, int(act), False,
             ws.mr, ws.nr, ws.kc, ws.packed_a(rows.stop - rows.start), bpack, ws.tiles)


def packed_grad_weight(dw: np.ndarray, db: np.ndarray | None, dy: np.ndarray, x: np.ndarray,
                       scale, accumulate: bool) -> None:
    """dw (+)= scale * dy.T @ x; when ``db`` is not None, db (+)= scale * dy.sum(0), summed while
    dy is packed. ``+=`` when ``accumulate``, ``=`` otherwise (for both)."""
    # dy is (n, out), x is (n, in), dw is (out, in), db is (out,) or None
    dt = dw.dtype
    ws = _prepare(dt)
    empty = EMPTY[dt]
    leaves = _NO_LEAVES[dt] if db is None else leaf_buffer(dt, x.shape[0], dw.shape[0])
    gemm(dw, False, dy, False, False, x, False, False, x.shape[0], dt.type(scale),
         empty if db is None else db, leaves, db is not None, empty, False, ACT_NONE,
         bool(accumulate),
         ws.mr, ws.nr, ws.kc, ws.packed_a(dw.shape[0]), _packed_b(ws, dt, dw.shape[1]), ws.tiles)


def packed_grad_input(dx: np.ndarray, dy: np.ndarray, w: np.ndarray,
                      w_in_tile_rows: int = W_IN_TILE_ROWS) -> None:
    """dx = dy @ w. Up to ``w_in_tile_rows`` batch rows (default `W_IN_TILE_ROWS`; the loops
    backend passes the one `fastlinear tune` measured; never above `_workspace.MC`), w's panels
    are packed by the tiles that use them where the ceil(in_features / 256) tiles keep Numba's
    threads busy (`_driver.b_in_tile_balanced`); otherwise all of w is packed for each k-block.
    The same bits either way."""
    # dy is (n, out), w is (out, in), dx is (n, in)
    dt = dx.dtype
    ws = _prepare(dt)
    empty = EMPTY[dt]
    n = dx.shape[0]
    threads = _in_tile_threads(n, w_in_tile_rows, dx.shape[1])
    if threads:
        gemm(dx, False, dy, True, False, w, False, True, w.shape[0], dt.type(1), empty,
             _NO_LEAVES[dt], False, empty, False, ACT_NONE, False, ws.mr, ws.nr, ws.kc,
             ws.packed_a(n), in_tile_b(ws, dt, threads, dx.shape[1]), ws.tiles)
        return
    bpack = _packed_b(ws, dt, dx.shape[1])
    for rows in row_blocks(n):  # bounded packing memory, same result (see _workspace.MC)
        gemm(dx[rows], False, dy[rows], True, False, w, False, False, w.shape[0], dt.type(1), empty,
             _NO_LEAVES[dt], False, empty, False, ACT_NONE, False, ws.mr, ws.nr, ws.kc,
             ws.packed_a(rows.stop - rows.start), bpack, ws.tiles)


def compile_packed(dtype) -> None:
    """Compile (or load from Numba's cache) the packed kernels for ``dtype`` now rather than on
    first use: one tiny call of each product."""
    dt = np.dtype(dtype)
    one = np.ones((1, 1), dt)
    packed_forward(np.empty((1, 1), dt), one, one, None, ACT_NONE)
    packed_grad_weight(np.empty((1, 1), dt), np.empty(1, dt), one, one, dt.type(1), False)
    packed_grad_input(np.empty((1, 1), dt), one, one)
