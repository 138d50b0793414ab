"""The "blas" backend: numpy's matmul (OpenBLAS or whatever BLAS numpy links).

It doubles as the readable specification of what every kernel computes, with the same signature
and conventions as the Numba kernels (see ``fastlinear.backends.naive``).
"""

from __future__ import annotations

import numpy as np

from .._threads import adapt
from ..activations import apply_numpy, grad_numpy


def forward(y, x, w, b, act):
    """y = act(x @ w.T + b), with ``b`` an array or None and ``act`` an activation code."""
    adapt()  # the default thread count follows other processes' load here too (see _threads)
    np.matmul(x, w.T, out=y)
    if b is not None:
        y += b
    apply_numpy(y, act)


def grad_weight(dw, db, dy, x, scale, accumulate):
    """dw = scale * dy.T @ x, or dw += scale * dy.T @ x when ``accumulate``; also the bias
    gradient into ``db`` (see `grad_bias`) unless it is None."""
    adapt()
    if accumulate:
        dw += scale * (dy.T @ x)
    else:
        np.matmul(dy.T, x, out=dw)
        if scale != 1:
            dw *= scale
    if db is not None:
        grad_bias(db, dy, scale, accumulate)


def grad_bias(db, dy, scale, accumulate):
    """db = scale * dy.sum(axis=0), or db += scale * dy.sum(axis=0) when ``accumulate``."""
    if accumulate:
        db += scale * dy.sum(axis=0)
    else:
        np.sum(dy, axis=0, out=db)
        if scale != 1:
            db *= scale


def grad_input(dx, dy, w):
    """dx = dy @ w."""
    adapt()
    np.matmul(dy, w, out=dx)


def activation_grad(g, db, dy, y, act, scale, accumulate):
    """g = dy * act'(y) from the forward output ``y`` (torch's NaN/Inf semantics, see
    `fastlinear.activations`); db (+)= scale * g.sum(axis=0) unless None. Written into ``g``."""
    grad_numpy(g, dy, y, act)
    if db is not None:
        grad_bias(db, g, scale, accumulate)
