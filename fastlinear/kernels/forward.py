"""Forward kernel of the "loops" backend: y = x @ w.T + b.

The product is "NT": each output element is a dot product of a row of x with a row of w, both
contiguous in memory, so the innermost loop is a unit-stride reduction that LLVM vectorizes once
reassociation is allowed (see ``fastlinear._config``).

Work is split into tiles of ``_ROWS`` rows of x by ``_COLS`` rows of w and the tiles are spread over
threads. Each output element belongs to exactly one tile, so threads never write the same place and
the result does not depend on how many threads run. A tile's ``_COLS`` rows of w (64 x in_features)
stay in the L2 cache while the tile's rows of x stream past them.
"""

from __future__ import annotations

from numba import njit, prange

from .._config import PARALLEL

_ROWS = 16
_COLS = 64


@njit(**PARALLEL)
def forward(y, x, w, b):
    """y = x @ w.T + b, with ``b`` an array or None. Writes every element of ``y``."""
    # x is (n, in), w is (out, in), b is (out,) or None, y is (n, out)
    n, k = x.shape
    m = w.shape[0]
    row_tiles = (n + _ROWS - 1) // _ROWS
    col_tiles = (m + _COLS - 1) // _COLS
    for t in prange(row_tiles * col_tiles):
        i0 = (t // col_tiles) * _ROWS
        j0 = (t % col_tiles) * _COLS
        for i in range(i0, min(i0 + _ROWS, n)):
            xrow = x[i]
            for j in range(j0, min(j0 + _COLS, m)):
                wrow = w[j]
                acc = y.dtype.type(0)
                for p in range(k):
                    acc += xrow[p] * wrow[p]
                if b is not None:
                    acc += b[j]
                y[i, j] = acc
