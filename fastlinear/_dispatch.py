"""The one path from a call to a kernel: check, allocate, hand C-contiguous arrays to a backend.

`fastlinear.functional`, `fastlinear.Linear` and the `fastlinear.nn` layers all go through the two
functions here, `forward` and `backward`, so a given mistake raises the same error from each of
them. The checks themselves are in `fastlinear._validate`; the backends' raw kernels
(`fastlinear.backends.Backend`) do no checking at all.

Arrays reach a kernel 2-D and C-contiguous: inputs with other layouts (transposed, Fortran-ordered,
strided, several leading dimensions that cannot be merged by a view) are copied to C order first,
which changes no value. Read-only inputs are passed as writeable aliases of the same memory (see
`kernel_input`), because Numba types a read-only array differently and would otherwise compile
every kernel a second time.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from . import _validate as check
from .backends import Backend


def kernel_input(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous array Numba types as writeable, without copying when possible.

    A read-only array (``np.load(..., mmap_mode="r")``, ``setflags(write=False)``,
    ``np.frombuffer``) is a distinct Numba type, so passing one would compile a second
    specialisation of every kernel (about 30 s on first contact, and `fastlinear.warmup` cannot
    prevent it). Kernels never write their inputs, so a writeable alias of the same memory is
    safe; it is built with ctypes, and the caller keeps ``a`` alive for the duration of the call.
    """
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)  # a fresh copy, writeable
    if a.flags.writeable:
        return a
    if a.size == 0:
        return np.empty(a.shape, dtype=a.dtype)
    raw = (ctypes.c_char * a.nbytes).from_address(a.ctypes.data)
    return np.frombuffer(raw, dtype=a.dtype).reshape(a.shape)


def as_rows(a: np.ndarray) -> np.ndarray:
    """View (..., f) as C-contiguous (rows, f) that a kernel can take (see `kernel_input`)."""
    if a.ndim == 2 and a.flags.carray:  # C-contiguous, aligned, writeable
        return a
    if a.ndim != 2:
        a = a.reshape(math.prod(a.shape[:-1]), a.shape[-1])
    return kernel_input(a)


def reduction_scale(reduction: str, rows: int, dtype: np.dtype) -> np.generic:
    """The factor applied to dw and db: 1 for "sum", 1/rows for "mean" (1 for an empty batch).

    Returned as a scalar of the data's dtype so float32 kernels stay in float32."""
    if reduction == "sum":  # the default, checked first: this runs on every backward
        return dtype.type(1)
    if check.reduction(reduction) == "mean" and rows > 0:
        return dtype.type(1.0 / rows)
    return dtype.type(1)


def forward(
    be: Backend,
    x: object,
    w: np.ndarray,
    b: np.ndarray | None,
    act: int,
    out: object = None,
    protect: dict | None = None,
) -> np.ndarray:
    """``y = act(x @ w.T + b)`` for a checked, kernel-ready weight ``w`` and bias ``b`` (see
    `kernel_input`).

    Checks x (an array of w's dtype, shape (..., in_features)) and ``out`` (shape
    (..., out_features), w's dtype, C-contiguous, writeable, sharing no memory with x, w, b or
    any array in ``protect``), allocates y when ``out`` is None, and runs ``be.forward``.

    Raises:
        TypeError: x or out is not an ndarray, or has the wrong dtype.
        ValueError: a shape does not fit, or out is unusable.
    """
    if (
        out is None and type(x) is np.ndarray and x.ndim == 2 and x.dtype == w.dtype
        and x.shape[1] == w.shape[1] and x.flags.carray
    ):
        # The common case, checked at a fraction of the general path's cost: a plain writeable,
        # aligned, C-contiguous (rows, in_features) batch of the weight's dtype.
        y = np.empty((x.shape[0], w.shape[0]), dtype=w.dtype)
        be.forward(y, x, w, b, act)
        return y
    x = check.require_array("x", x)
    check.same_dtype("x", x, "w", w)
    check.input_matches_weight("x", x, w)
    shape = x.shape[:-1] + (w.shape[0],)
    if out is None:
        y = np.empty(shape, dtype=w.dtype)
    else:
        y = check.output_array(out, shape, w.dtype, {"x": x, "w": w, "b": b, **(protect or {})})
    run_forward(be, y, x, w, b, act)
    return y


def run_forward(be: Backend, y: np.ndarray, x: np.ndarray, w: np.ndarray, b, act: int) -> None:
    """Run ``be.forward`` on checked arrays; ``y`` is C-contiguous (..., out_features), ``w`` and
    ``b`` are kernel-ready."""
    be.forward(y.reshape(math.prod(y.shape[:-1]), w.shape[0]), as_rows(x), w, b, act)


def backward(
    be: Backend,
    dy: object,
    x: np.ndarray,
    w: np.ndarray,
    dw: np.ndarray,
    db: np.ndarray | None,
    *,
    reduction: str,
    accumulate: bool,
    need_input_grad: bool,
    y: np.ndarray | None = None,
    act: int = 0,
    g: np.ndarray | None = None,
    out: object = None,
    protect: dict | None = None,
) -> np.ndarray | None:
    """Gradients of ``y = act(x @ w.T + b)`` for ``dy``: writes (or, with ``accumulate``, adds)
    dw and db, and returns dx (None unless ``need_input_grad``).

    Args:
        be: the backend.
        dy: gradient with respect to y; checked here: an ndarray of w's dtype shaped like y.
        x: the forward's input (already checked when the forward ran).
        w: weight (out_features, in_features), kernel-ready.
        dw, db: C-contiguous outputs; db None for a layer without bias.
        reduction: "sum" or "mean" (dw and db divided by the number of rows).
        accumulate: add to dw and db instead of overwriting them.
        need_input_grad: compute and return dx.
        y: the forward's output, needed with an activation.
        act: activation code (`fastlinear.activations`).
        g: optional C-contiguous (rows, out_features) buffer for ``dy * act'(y)``.
        out: optional array for dx, checked like `forward`'s ``out``.
        protect: more arrays ``out`` must not overlap (a layer's gradients, say).

    Raises:
        TypeError: dy or out is not an ndarray or has the wrong dtype.
        ValueError: dy's shape differs from the forward output's, or out is unusable.
    """
    dy = check.grad_output(dy, x.shape[:-1], w)
    dx = None
    if need_input_grad:
        if out is None:
            dx = np.empty(x.shape, dtype=w.dtype)
        else:
            dx = check.output_array(out, x.shape, w.dtype,
                                    {"dy": dy, "x": x, "w": w, **(protect or {})})
    run_backward(be, dy, x, w, dx, dw, db, reduction, accumulate, y, act, g)
    return dx


def run_backward(
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
        be.grad_input(dx.reshape(dy2.shape[0], w.shape[1]), dy2, w)
