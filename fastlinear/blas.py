"""The "blas" backend: numpy's matmul (OpenBLAS or whatever BLAS numpy links).

It doubles as the readable specification of what every kernel computes, with the same signature
and conventions as the Numba kernels (see ``fastlinear.kernels.naive``).
"""

from __future__ import annotations

import numpy as np


def forward(y, x, w, b):
    """y = x @ w.T + b, with ``b`` an array or None."""
    np.matmul(x, w.T, out=y)
    if b is not None:
        y += b


def grad_weight(dw, dy, x, scale, accumulate):
    """dw = scale * dy.T @ x, or dw += scale * dy.T @ x when ``accumulate``."""
    if accumulate:
        dw += scale * (dy.T @ x)
    else:
        np.matmul(dy.T, x, out=dw)
        if scale != 1:
            dw *= scale


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
    np.matmul(dy, w, out=dx)
