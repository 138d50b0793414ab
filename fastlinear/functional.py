"""Stateless linear layer: `linear`, `linear_backward`, and a `forward`/`backward` pair that passes
a cache between them.

Inputs may have any number of leading dimensions: x is (..., in_features) and is treated as a
2-D (rows, in_features) matrix. Arrays that are not C-contiguous (transposed, Fortran-ordered,
strided) are copied to C order before a kernel sees them; the copy changes no value. Checking and
dispatch are `fastlinear._dispatch`'s, shared with `Linear` and the `nn` layers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _dispatch
from . import _validate as check
from ._dispatch import kernel_input
from .activations import code as activation_code
from .backends import get_backend


def linear(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    activation: str | None = None,
    backend: str = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Compute ``y = activation(x @ w.T + b)``.

    Args:
        x: input of shape (..., in_features), float32 or float64.
        w: weight of shape (out_features, in_features), same dtype as x.
        b: optional bias of shape (out_features,), same dtype.
        activation: None, "relu", "sigmoid" or "tanh", applied as each output element is stored.
        backend: a name from `fastlinear.available_backends()`.
        out: optional C-contiguous array of shape (..., out_features) to write y into; it must not
            overlap x, w or b.

    Returns:
        y of shape (..., out_features), the same dtype as x (``out`` itself when given).

    Raises:
        TypeError: an argument is not a numpy array, or the dtypes are unsupported or differ.
        ValueError: shapes do not fit, ``out`` is unusable, or the backend is unknown.
    """
    be = get_backend(backend)
    act = activation_code(activation)
    w, b = check.weight_and_bias(w, b)
    return _dispatch.forward(be, x, kernel_input(w), None if b is None else kernel_input(b), act, out)


def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    *,
    bias: bool = True,
    activation: str | None = None,
    y: np.ndarray | None = None,
    reduction: str = "sum",
    need_input_grad: bool = True,
    backend: str = "auto",
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of ``y = activation(x @ w.T + b)`` given ``dy = dL/dy``, all in one call.

    With an activation, ``dy * activation'`` is formed in the same pass that computes db, and dw
    and dx are computed from it; without one, db is computed in the same pass as dw.

    Args:
        dy: gradient of the loss with respect to y, shape (..., out_features).
        x: the forward input, shape (..., in_features) with the same leading shape as dy.
        w: weight of shape (out_features, in_features).
        bias: whether the layer has a bias (if not, db is None).
        activation: the forward's activation (None, "relu", "sigmoid" or "tanh").
        y: the forward's output, required with an activation (the derivative is computed from
            it), ignored without one.
        reduction: "sum" gives dw and db summed over all rows of the batch (torch's convention);
            "mean" divides both by the number of rows, for losses that are sums over the batch
            but parameter updates that should be averages. dx is never scaled.
        need_input_grad: if False, dx is not computed and None is returned in its place.
        backend: a name from `fastlinear.available_backends()`.

    Returns:
        ``(dx, dw, db)``: dx (..., in_features) or None, dw (out_features, in_features),
        db (out_features,) or None.

    Raises:
        TypeError: an argument is not a numpy array, a dtype is unsupported or differs from w's,
            or ``bias``/``need_input_grad`` is not a bool.
        ValueError: shapes do not fit, y is missing with an activation, or an unknown
            reduction, activation or backend is named.
    """
    be = get_backend(backend)
    act = activation_code(activation)
    check.reduction(reduction)
    bias = check.flag("bias", bias)
    need_input_grad = check.flag("need_input_grad", need_input_grad)
    w, _ = check.weight_and_bias(w, None)
    x = check.require_array("x", x)
    check.same_dtype("x", x, "w", w)
    check.input_matches_weight("x", x, w)
    dy = check.grad_output(dy, x.shape[:-1], w)
    if act:
        if y is None:
            raise ValueError(f"activation {activation!r} needs y, the forward's output")
        y = check.require_array("y", y)
        check.same_dtype("y", y, "w", w)
        if y.shape != dy.shape:
            raise ValueError(f"y has shape {y.shape} but dy has shape {dy.shape}; they must match")
    dw = np.empty(w.shape, dtype=w.dtype)
    db = np.empty(w.shape[0], dtype=w.dtype) if bias else None
    dx = _dispatch.backward(be, dy, x, kernel_input(w), dw, db, reduction=reduction, accumulate=False,
                            need_input_grad=need_input_grad, y=y, act=act)
    return dx, dw, db


class Cache(NamedTuple):
    """What `backward` needs from `forward`: the input, the parameters, the activation and (with
    an activation) the output."""

    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    activation: str | None = None
    y: np.ndarray | None = None


def forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    activation: str | None = None,
    backend: str = "auto",
) -> tuple[np.ndarray, Cache]:
    """``y = linear(x, w, b, activation=activation)``, returned with the cache `backward` takes.

    The cache holds references to x, w, b and y, not copies: changing them in place before
    `backward` changes the gradients."""
    y = linear(x, w, b, activation=activation, backend=backend)
    return y, Cache(x, w, b, activation, y if activation is not None else None)


def backward(
    dy: np.ndarray,
    cache: Cache,
    *,
    reduction: str = "sum",
    need_input_grad: bool = True,
    backend: str = "auto",
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """``(dx, dw, db)`` for the forward call that produced ``cache``; see `linear_backward`."""
    return linear_backward(
        dy,
        cache.x,
        cache.w,
        bias=cache.b is not None,
        activation=cache.activation,
        y=cache.y,
        reduction=reduction,
        need_input_grad=need_input_grad,
        backend=backend,
    )
