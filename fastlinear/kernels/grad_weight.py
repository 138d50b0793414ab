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
        j1 = min(j0 + _ROWS, m)
        p1 = min(p0 + _COLS, k)
        acc = np.zeros((j1 - j0, p1 - p0), dtype=dw.dtype)
        for i in range(n):
            for j in range(j0, j1):
                c = dy[i, j]
                for p in range(p0, p1):
                    acc[j - j0, p - p0] += c * x[i, p]
        for j in range(j0, j1):
            for p in range(p0, p1):
                if accumulate:
                    dw[j, p] += scale * acc[j - j0, p - p0]
                else:
                    dw[j, p] = scale * acc[j - j0, p - p0]
