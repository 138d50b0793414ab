"""Weight-gradient kernel of the "loops" backend: dw = scale * dy.T @ x (+ dw).

The product is "TN": the batch axis is the reduction axis. Parallelising over it would make threads
add into the same dw elements (a race; see numba #3522), so the work is split over tiles of dw
instead: ``_ROWS`` output features by ``_COLS`` input features. Each tile is summed over the whole
batch by one thread, in batch order, into a local accumulator, so the result is the same for any
thread count. The innermost loop is a unit-stride multiply-add along a row of x.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import PARALLEL

_ROWS = 16
_COLS = 512


@njit(**PARALLEL)
def grad_weight(dw, dy, x, scale, accumulate):
    """dw = scale * dy.T @ x, or dw += scale * dy.T @ x when ``accumulate``."""
    # dy is (n, out), x is (n, in), dw is (out, in)
    n, k = x.shape
    m = dy.shape[1]
    row_tiles = (m + _ROWS - 1) // _ROWS
    col_tiles = (k + _COLS - 1) // _COLS
    for t in prange(row_tiles * col_tiles):
        j0 = (t // col_tiles) * _ROWS
        p0 = (t % col_tiles) * _COLS
        rows = min(j0 + _ROWS, m) - j0
        cols = min(p0 + _COLS, k) - p0
        acc = np.zeros((rows, cols), dtype=dw.dtype)
        # Inner loops index 1-D row views from 0: with offsets like acc[j - j0, p - p0] Numba's
        # negative-index handling stopped LLVM vectorizing (8 vs 106 GFLOP/s at 256x512x512 f32).
        for i in range(n):
            xrow = x[i, p0:p0 + cols]
            for jj in range(rows):
                c = dy[i, j0 + jj]
                arow = acc[jj]
                for q in range(cols):
                    arow[q] += c * xrow[q]
        for jj in range(rows):
            out = dw[j0 + jj, p0:p0 + cols]
            arow = acc[jj]
            if accumulate:
                for q in range(cols):
                    out[q] += scale * arow[q]
            else:
                for q in range(cols):
                    out[q] = scale * arow[q]
