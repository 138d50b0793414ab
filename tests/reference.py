"""Slow, obviously-right float64 reference for the linear layer (the tests' ``naive.py``).

Everything is computed in float64 with numpy's matmul on (rows, features) matrices, whatever the
dtype and layout of the arguments, so the only rounding is float64's. ``magnitude_*`` gives the same
quantity computed on absolute values: the scale that rounding errors of a reduction are bounded by,
used to set honest elementwise tolerances (see ``helpers.assert_close``).
"""

from __future__ import annotations

import math

import numpy as np


def _rows(a: np.ndarray) -> np.ndarray:
    """(..., f) as a float64 (rows, f) matrix."""
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _scale(reduction: str, rows: int) -> float:
    """1 for "sum"; 1/rows for "mean" (1 for an empty batch, where the gradient is zero anyway)."""
    assert reduction in ("sum", "mean"), reduction
    return 1.0 / rows if reduction == "mean" and rows > 0 else 1.0


def forward(x, w, b=None) -> np.ndarray:
    """y = x @ w.T + b, shape (..., out_features)."""
    x = np.asarray(x)
    w = np.asarray(w, dtype=np.float64)
    y = _rows(x) @ w.T
    if b is not None:
        y = y + np.asarray(b, dtype=np.float64)
    return y.reshape(x.shape[:-1] + (w.shape[0],))


def grad_weight(dy, x, reduction: str = "sum") -> np.ndarray:
    """dw = scale * sum over rows of dy[r, :, None] * x[r, None, :], shape (out, in)."""
    dy2, x2 = _rows(dy), _rows(x)
    return _scale(reduction, dy2.shape[0]) * (dy2.T @ x2)


def grad_bias(dy, reduction: str = "sum") -> np.ndarray:
    """db = scale * dy summed over rows, shape (out,)."""
    dy2 = _rows(dy)
    return _scale(reduction, dy2.shape[0]) * dy2.sum(axis=0)


def grad_input(dy, w) -> np.ndarray:
    """dx = dy @ w, shape (..., in_features); never scaled by the reduction."""
    dy = np.asarray(dy)
    w = np.asarray(w, dtype=np.float64)
    return (_rows(dy) @ w).reshape(dy.shape[:-1] + (w.shape[1],))


def magnitude_forward(x, w, b=None) -> np.ndarray:
    """|x| @ |w|.T + |b|: bounds every partial sum of ``forward``."""
    return forward(np.abs(x), np.abs(w), None if b is None else np.abs(b))


def magnitude_grad_weight(dy, x, reduction: str = "sum") -> np.ndarray:
    return grad_weight(np.abs(dy), np.abs(x), reduction)


def magnitude_grad_bias(dy, reduction: str = "sum") -> np.ndarray:
    return grad_bias(np.abs(dy), reduction)


def magnitude_grad_input(dy, w) -> np.ndarray:
    return grad_input(np.abs(dy), np.abs(w))


def activate(pre, activation: str | None) -> np.ndarray:
    """activation(pre) in float64."""
    pre = np.asarray(pre, dtype=np.float64)
    if activation is None:
        return pre
    return {
        "relu": lambda: np.maximum(pre, 0.0),
        "sigmoid": lambda: 1.0 / (1.0 + np.exp(-pre)),
        "tanh": lambda: np.tanh(pre),
    }[activation]()


def activation_derivative(y, activation: str | None) -> np.ndarray:
    """activation'(pre) written through the activation's output y = activation(pre), in float64."""
    y = np.asarray(y, dtype=np.float64)
    if activation is None:
        return np.ones_like(y)
    return {
        "relu": lambda: (y > 0).astype(np.float64),
        "sigmoid": lambda: y * (1.0 - y),
        "tanh": lambda: 1.0 - y * y,
    }[activation]()


def magnitude_activation_derivative(y, activation: str | None) -> np.ndarray:
    """The derivative formula evaluated on absolute values (1 + y*y for tanh): the scale of its
    rounding error, which near saturation is far larger than the derivative itself."""
    y = np.abs(np.asarray(y, dtype=np.float64))
    if activation == "sigmoid":
        return y * (1.0 + y)
    if activation == "tanh":
        return 1.0 + y * y
    return activation_derivative(y, activation)
