"""Bias-gradient kernel of the "loops" backend: db = scale * dy.sum(axis=0) (+ db).

Summing one column of dy per thread reads dy with a stride of a whole row and is many times slower
than numpy. Instead each thread owns a block of ``_COLS`` adjacent columns and walks down the batch,
adding whole row segments (unit stride) into a local accumulator. Each column is still summed in
batch order by one thread, so the result does not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import PARALLEL

_COLS = 256


@njit(**PARALLEL)
def grad_bias(db, dy, scale, accumulate):
    """db = scale * dy.sum(axis=0), or db += scale * dy.sum(axis=0) when ``accumulate``."""
    # dy is (n, out), db is (out,)
    n, m = dy.shape
    for t in prange((m + _COLS - 1) // _COLS):
        j0 = t * _COLS
        cols = min(j0 + _COLS, m) - j0
        acc = np.zeros(cols, dtype=db.dtype)
        for i in range(n):
            row = dy[i, j0:j0 + cols]
            for q in range(cols):
                acc[q] += row[q]
        out = db[j0:j0 + cols]
        if accumulate:
            for q in range(cols):
                out[q] += scale * acc[q]
        else:
            for q in range(cols):
                out[q] = scale * acc[q]
