"""The activation's backward step, fused with the bias gradient: ``g = dy * act'(y)`` and
``db (+)= scale * g.sum(0)`` in one pass over dy.

This is the first read of dy in a fused layer's backward; the weight and input gradients are then
computed from ``g``. Work is split by columns: each thread owns a block of ``_COLS`` columns and
walks every row of it, so the rows of that block are read with unit stride, each ``db[j]`` is summed
over the batch in row order, and the result does not depend on the number of threads. Problems of
fewer than ``_SERIAL_MAX`` elements run serially: a parallel region costs more than they do.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import PARALLEL, SERIAL
from ..activations import grad

_COLS = 64
_SERIAL_MAX = 1 << 14


@njit(**SERIAL)
def _columns(g, db, dy, y, act, scale, accumulate, j0, j1):
    """Columns j0:j1 of the fused activation/bias gradient."""
    n = dy.shape[0]
    one = g.dtype.type(1)
    acc = np.zeros(j1 - j0, dtype=g.dtype)
    for i in range(n):
        gi = g[i]
        dyi = dy[i]
        yi = y[i]
        for j in range(j0, j1):
            v = grad(dyi[j], yi[j], act, one)
            gi[j] = v
            acc[j - j0] += v
    if db is not None:
        for j in range(j0, j1):
            if accumulate:
                db[j] += scale * acc[j - j0]
            else:
                db[j] = scale * acc[j - j0]


@njit(**SERIAL)
def _serial(g, db, dy, y, act, scale, accumulate):
    _columns(g, db, dy, y, act, scale, accumulate, 0, dy.shape[1])


@njit(**PARALLEL)
def _parallel(g, db, dy, y, act, scale, accumulate):
    m = dy.shape[1]
    blocks = (m + _COLS - 1) // _COLS
    for t in prange(blocks):
        j0 = t * _COLS
        _columns(g, db, dy, y, act, scale, accumulate, j0, min(j0 + _COLS, m))


def activation_grad(g, db, dy, y, act, scale, accumulate):
    """g = dy * act'(y); when ``db`` is not None also db (+)= scale * g.sum(axis=0)."""
    if dy.size < _SERIAL_MAX:
        _serial(g, db, dy, y, act, scale, accumulate)
    else:
        _parallel(g, db, dy, y, act, scale, accumulate)
