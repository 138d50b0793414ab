"""The simplest correct Numba loops for the four linear-layer kernels.

These are the "naive" backend: one output element per innermost loop, summed left to right, no
blocking and no reassociation. They exist as a readable baseline to compare the tuned kernels with.

Conventions shared by every kernel in ``fastlinear.kernels``:

* outputs come first in the argument list and are preallocated by the caller;
* all arrays are C-contiguous and share one float dtype (float32 or float64), checked by the caller;
* ``scale`` has that same dtype, so float32 arithmetic never widens to float64;
* ``accumulate`` says whether to add to the output (``out += scale * result``) or overwrite it
  (``out = scale * result``); when overwriting, the old contents of ``out`` are never read.
"""

from __future__ import annotations

from numba import njit, prange

from .._config import NAIVE
from ..activations import apply, grad


@njit(**NAIVE)
def forward(y, x, w, b, act):
    """y = act(x @ w.T + b), with ``b`` an array or None and ``act`` an activation code."""
    # x is (n, in), w is (out, in), b is (out,) or None, y is (n, out)
    n, k = x.shape
    m = w.shape[0]
    for i in prange(n):
        for j in range(m):
            acc = y.dtype.type(0)
            for p in range(k):
                acc += x[i, p] * w[j, p]
            if b is not None:
                acc += b[j]
            y[i, j] = apply(acc, act, y.dtype.type(1))


@njit(**NAIVE)
def grad_weight(dw, db, dy, x, scale, accumulate):
    """dw = scale * dy.T @ x, added to dw when ``accumulate``; also the bias gradient into
    ``db`` (see `grad_bias`) unless it is None."""
    # dy is (n, out), x is (n, in), dw is (out, in); parallel over output rows, so no races
    n, k = x.shape
    m = dy.shape[1]
    for j in prange(m):
        for p in range(k):
            acc = dw.dtype.type(0)
            for i in range(n):
                acc += dy[i, j] * x[i, p]
            if accumulate:
                dw[j, p] += scale * acc
            else:
                dw[j, p] = scale * acc
        if db is not None:
            acc = db.dtype.type(0)
            for i in range(n):
                acc += dy[i, j]
            if accumulate:
                db[j] += scale * acc
            else:
                db[j] = scale * acc


@njit(**NAIVE)
def grad_bias(db, dy, scale, accumulate):
    """db = scale * dy.sum(axis=0), added to db when ``accumulate``."""
    # dy is (n, out), db is (out,)
    n, m = dy.shape
    for j in prange(m):
        acc = db.dtype.type(0)
        for i in range(n):
            acc += dy[i, j]
        if accumulate:
            db[j] += scale * acc
        else:
            db[j] = scale * acc


@njit(**NAIVE)
def grad_input(dx, dy, w):
    """dx = dy @ w."""
    # dy is (n, out), w is (out, in), dx is (n, in)
    n, m = dy.shape
    k = w.shape[1]
    for i in prange(n):
        for p in range(k):
            acc = dx.dtype.type(0)
            for j in range(m):
                acc += dy[i, j] * w[j, p]
            dx[i, p] = acc


@njit(**NAIVE)
def activation_grad(g, db, dy, y, act, scale, accumulate):
    """g = dy * act'(y) from the forward output ``y``; db (+)= scale * g.sum(axis=0) unless None."""
    n, m = dy.shape
    one = g.dtype.type(1)
    for j in prange(m):
        acc = g.dtype.type(0)
        for i in range(n):
            g[i, j] = grad(dy[i, j], y[i, j], act, one)
            acc += g[i, j]
        if db is not None:
            if accumulate:
                db[j] += scale * acc
            else:
                db[j] = scale * acc
