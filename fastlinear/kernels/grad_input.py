"""Input-gradient kernel of the "loops" backend: dx = dy @ w.

The product is "NN". Each tile of ``_ROWS`` batch rows by ``_COLS`` input features belongs to one
thread, which sums over the output features in order into a local accumulator: for each output
feature j it adds dy[i, j] times a unit-stride segment of row j of w to every row of the tile, so a
segment of w is loaded once per tile rather than once per batch row. No two threads write the same
element of dx and the summation order is fixed, whatever the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import PARALLEL

_ROWS = 16
_COLS = 512


@njit(**PARALLEL)
def grad_input(dx, dy, w):
    """dx = dy @ w. Writes every element of ``dx``."""
    # dy is (n, out), w is (out, in), dx is (n, in)
    n, m = dy.shape
    k = w.shape[1]
    row_tiles = (n + _ROWS - 1) // _ROWS
    col_tiles = (k + _COLS - 1) // _COLS
    for t in prange(row_tiles * col_tiles):
        i0 = (t // col_tiles) * _ROWS
        p0 = (t % col_tiles) * _COLS
        rows = min(i0 + _ROWS, n) - i0
        cols = min(p0 + _COLS, k) - p0
        acc = np.zeros((rows, cols), dtype=dx.dtype)
        # 1-D row views indexed from 0 keep the inner loop vectorizable (see grad_weight.py).
        for j in range(m):
            wrow = w[j, p0:p0 + cols]
            for ii in range(rows):
                c = dy[i0 + ii, j]
                arow = acc[ii]
                for q in range(cols):
                    arow[q] += c * wrow[q]
        for ii in range(rows):
            dx[i0 + ii, p0:p0 + cols] = acc[ii]
