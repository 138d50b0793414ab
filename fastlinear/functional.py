"""Stateless linear layer: `linear`, `linear_backward`, and a `forward`/`backward` pair that passes
a cache between them.

Inputs may have any number of leading dimensions: x is (..., in_features) and is treated as a
2-D (rows, in_features) matrix. Arrays that are not C-contiguous (transposed, Fortran-ordered,
strided) are copied to C order before a kernel sees them; the copy changes no value.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _validate as check
from .activations import code as activation_code
from .backends import Backend, get_backend


def as_rows(a: np.ndarray) -> np.ndarray:
    """View (..., f) as C-contiguous (rows, f), copying only if the layout requires it."""
    if a.ndim == 2 and a.flags.c_contiguous:
        return a
    rows = math.prod(a.shape[:-1])
    return np.ascontiguousarray(a.reshape(rows, a.shape[-1]))


def reduction_scale(reduction: str, rows: int, dtype: np.dtype) -> np.generic:
    """The factor applied to dw and db: 1 for "sum", 1/rows for "mean" (1 for an empty batch).

    Returned as a scalar of the data's dtype so float32 kernels stay in float32."""
    if reduction == "sum":
        return dtype.type(1)
    if check.reduction(reduction) == "mean" and rows > 0:
        return dtype.type(1.0 / rows)
    return dtype.type(1)


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
    x = check.require_array("x", x)
    check.same_dtype("x", x, "w", w)
    check.input_matches_weight("x", x, w)
    out_shape = x.shape[:-1] + (w.shape[0],)
    if out is None:
        y = np.empty(out_shape, dtype=w.dtype)
    else:
        y = check.output_array(out, out_shape, w.dtype, {"x": x, "w": w, "b": b})
    _forward_into(be, y, x, w, b, act)
    return y


def _forward_into(be: Backend, y: np.ndarray, x: np.ndarray, w: np.ndarray, b, act: int) -> None:
    """Run the forward kernel on checked arrays; ``y`` is C-contiguous (..., out_features)."""
    wc = np.ascontiguousarray(w)
    bc = None if b is None else np.ascontiguousarray(b)
    be.forward(y.reshape(math.prod(y.shape[:-1]), w.shape[0]), as_rows(x), wc, bc, act)


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
    """
    be = get_backend(backend)
    act = activation_code(activation)
    check.reduction(reduction)
    w, _ = check.weight_and_bias(w, None)
    x = check.require_array("x", x)
    dy = check.require_array("dy", dy)
    check.same_dtype("x", x, "w", w)
    check.same_dtype("dy", dy, "w", w)
    check.input_matches_weight("x", x, w)
    check_grad_output(dy, x.shape[:-1], w.shape[0])
    if act:
        if y is None:
            raise ValueError(f"activation {activation!r} needs y, the forward's output")
        y = check.require_array("y", y)
        check.same_dtype("y", y, "w", w)
        if y.shape != dy.shape:
            raise ValueError(f"y has shape {y.shape} but dy has shape {dy.shape}; they must match")
    dw = np.empty_like(w, order="C")
    db = np.empty(w.shape[0], dtype=w.dtype) if bias else None
    dx = np.empty(x.shape, dtype=w.dtype) if need_input_grad else None
    _backward_into(be, dy, x, w, dx, dw, db, reduction, False, y, act)
    return dx, dw, db


def check_grad_output(dy: np.ndarray, lead: tuple[int, ...], out_features: int) -> None:
    """Check that dy is (*lead, out_features), the shape of the forward output."""
    expected = lead + (out_features,)
    if dy.shape != expected:
        raise ValueError(
            f"dy has shape {dy.shape} but the forward output has shape {expected}; dy must match it"
        )


def _backward_into(
    be: Backend, dy, x, w, dx, dw, db, reduction: str, accumulate: bool,
    y=None, act: int = 0, g: np.ndarray | None = None,
) -> None:
    """Run the gradient kernels on checked arrays. dx (if any) is overwritten; dw and db (if any)
    are overwritten or, with ``accumulate``, added to. With an activation, ``y`` is the forward
    output and ``g`` an optional C-contiguous (rows, out_features) buffer for ``dy * act'(y)``."""
    dy2 = as_rows(dy)
    x2 = as_rows(x)
    scale = reduction_scale(reduction, dy2.shape[0], w.dtype)
    if act:
        if g is None:
            g = np.empty(dy2.shape, dtype=w.dtype)
        be.activation_grad(g, db, dy2, as_rows(y), act, scale, accumulate)
        dy2, db = g, None
    be.grad_weight(dw, db, dy2, x2, scale, accumulate)
    if dx is not None:
        be.grad_input(dx.reshape(dy2.shape[0], w.shape[1]), dy2, np.ascontiguousarray(w))


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
