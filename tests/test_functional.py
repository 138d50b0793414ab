"""Every backend x dtype x shape against the float64 reference: the functional API (forward and
the three gradients, with and without bias, both reductions, leading dimensions, every memory
layout), the raw kernels' accumulate/overwrite contract, and ``linear(..., out=)``."""

from __future__ import annotations

import numpy as np
import pytest

import fastlinear as fl
import reference as ref
from helpers import (BACKENDS, DTYPE_IDS, DTYPES, LAYOUTS, REDUCTIONS, assert_close, randn, shape_id,
                     with_layout)

# Shape grid. Every n with a few (in, out) pairs, and every (in, out) pair with n in {1, 7, 257}:
# each value of each axis is seen with every backend and dtype. 64 and 257 rows, 129 and 300
# features cross the loop kernels' tile edges (16 rows, 64 / 256 columns).
NS = (0, 1, 2, 7, 64, 257)
FEATURES = (1, 3, 16, 129, 300)
SHAPES = sorted(
    {(n, k, m) for n in NS for (k, m) in ((1, 1), (3, 16), (129, 300))}
    | {(n, k, m) for n in (1, 7, 257) for k in FEATURES for m in FEATURES}
)
SHAPE_IDS = [shape_id(*s) for s in SHAPES]

# A case wider than the 512-column tiles of grad_weight and grad_input (and 2 x 256 of grad_bias).
WIDE = [(33, 1030, 65), (17, 9, 513)]


def _data(rng, n, k, m, dtype, bias=True):
    x = randn(rng, (n, k) if not isinstance(n, tuple) else n + (k,), dtype)
    w = randn(rng, (m, k), dtype)
    b = randn(rng, m, dtype) if bias else None
    dy = randn(rng, x.shape[:-1] + (m,), dtype)
    return x, w, b, dy


def _check_forward(y, x, w, b, dtype):
    assert_close(y, ref.forward(x, w, b), ref.magnitude_forward(x, w, b), w.shape[1], dtype, "y")


def _check_backward(dx, dw, db, dy, x, w, dtype, reduction, *, bias=True, need_input_grad=True):
    rows = int(np.prod(x.shape[:-1]))
    assert_close(dw, ref.grad_weight(dy, x, reduction), ref.magnitude_grad_weight(dy, x, reduction),
                 rows, dtype, "dw")
    if bias:
        assert_close(db, ref.grad_bias(dy, reduction), ref.magnitude_grad_bias(dy, reduction),
                     rows, dtype, "db")
    else:
        assert db is None
    if need_input_grad:
        assert_close(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), w.shape[0], dtype, "dx")
    else:
        assert dx is None


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward(backend, dtype, shape, bias, rng):
    x, w, b, _ = _data(rng, *shape, dtype, bias)
    y = fl.linear(x, w, b, backend=backend)
    _check_forward(y, x, w, b, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_backward(backend, dtype, shape, reduction, rng):
    x, w, _, dy = _data(rng, *shape, dtype)
    dx, dw, db = fl.linear_backward(dy, x, w, reduction=reduction, backend=backend)
    _check_backward(dx, dw, db, dy, x, w, dtype, reduction)


@pytest.mark.parametrize("shape", WIDE, ids=[shape_id(*s) for s in WIDE])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_wide_tiles(backend, dtype, shape, rng):
    x, w, b, dy = _data(rng, *shape, dtype)
    _check_forward(fl.linear(x, w, b, backend=backend), x, w, b, dtype)
    for reduction in REDUCTIONS:
        dx, dw, db = fl.linear_backward(dy, x, w, reduction=reduction, backend=backend)
        _check_backward(dx, dw, db, dy, x, w, dtype, reduction)


@pytest.mark.parametrize("need_input_grad", [True, False], ids=["dx", "no-dx"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_without_bias_or_input_grad(backend, dtype, reduction, need_input_grad, rng):
    x, w, _, dy = _data(rng, 7, 16, 3, dtype)
    dx, dw, db = fl.linear_backward(dy, x, w, bias=False, reduction=reduction,
                                    need_input_grad=need_input_grad, backend=backend)
    _check_backward(dx, dw, db, dy, x, w, dtype, reduction, bias=False, need_input_grad=need_input_grad)


LEADING = [(), (5,), (2, 3), (1, 1, 1), (2, 0, 3), (3, 1, 2, 2)]


@pytest.mark.parametrize("lead", LEADING, ids=["x".join(map(str, s)) or "1d" for s in LEADING])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_leading_dims(backend, dtype, lead, rng):
    x, w, b, dy = _data(rng, lead, 7, 5, dtype)
    y = fl.linear(x, w, b, backend=backend)
    assert y.shape == lead + (5,)
    _check_forward(y, x, w, b, dtype)
    for reduction in REDUCTIONS:
        dx, dw, db = fl.linear_backward(dy, x, w, reduction=reduction, backend=backend)
        assert dx.shape == x.shape
        _check_backward(dx, dw, db, dy, x, w, dtype, reduction)


# One argument at a time in each non-C layout, then all of them at once.
LAYOUT_CASES = [(arg, kind) for arg in ("x", "w", "b", "dy") for kind in LAYOUTS[1:] if (arg, kind) != ("b", "F")]
LAYOUT_CASES += [("all", kind) for kind in LAYOUTS[1:]]


@pytest.mark.parametrize("arg,kind", LAYOUT_CASES, ids=[f"{a}-{k}" for a, k in LAYOUT_CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts(backend, dtype, arg, kind, rng):
    x, w, b, dy = _data(rng, (4, 9), 33, 17, dtype)
    arrays = {"x": x, "w": w, "b": b, "dy": dy}
    for name in arrays:
        if arg in (name, "all"):
            arrays[name] = with_layout(arrays[name], kind)
    if arg != "all":
        assert not arrays[arg].flags.c_contiguous
    originals = {name: a.copy() for name, a in arrays.items()}
    y = fl.linear(arrays["x"], arrays["w"], arrays["b"], backend=backend)
    _check_forward(y, x, w, b, dtype)
    for reduction in REDUCTIONS:
        dx, dw, db = fl.linear_backward(arrays["dy"], arrays["x"], arrays["w"], reduction=reduction,
                                        backend=backend)
        _check_backward(dx, dw, db, dy, x, w, dtype, reduction)
    for name, a in arrays.items():  # inputs are read, never written
        np.testing.assert_array_equal(a, originals[name])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_broadcast_zero_stride_inputs(backend, dtype, rng):
    """Read-only views with zero strides (np.broadcast_to) are valid inputs."""
    x_row, w, b, dy_row = _data(rng, 1, 12, 5, dtype)
    x = np.broadcast_to(x_row, (6, 12))
    dy = np.broadcast_to(dy_row, (6, 5))
    assert x.strides[0] == 0 and not x.flags.writeable
    _check_forward(fl.linear(x, w, b, backend=backend), x, w, b, dtype)
    dx, dw, db = fl.linear_backward(dy, x, w, backend=backend)
    _check_backward(dx, dw, db, dy, x, w, dtype, "sum")


# --- the raw kernels: outputs first, accumulate adds, overwrite never reads the output ----------

def _raw(rng, dtype, n=19, k=70, m=21):
    x = randn(rng, (n, k), dtype)
    w = randn(rng, (m, k), dtype)
    dy = randn(rng, (n, m), dtype)
    return x, w, dy


@pytest.mark.parametrize("scale", [1.0, 0.375, -2.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_grad_weight_accumulate_and_overwrite(backend, dtype, scale, rng):
    be = fl.get_backend(backend)
    x, _, dy = _raw(rng, dtype)
    s = np.dtype(dtype).type(scale)
    expected = scale * ref.grad_weight(dy, x)
    mag = abs(scale) * ref.magnitude_grad_weight(dy, x)

    dw = np.full((dy.shape[1], x.shape[1]), np.nan, dtype=dtype)
    be.grad_weight(dw, None, dy, x, s, False)  # NaN prefill: proves the old contents are not read
    assert_close(dw, expected, mag, x.shape[0], dtype, "overwrite dw")

    start = randn(rng, dw.shape, dtype)
    dw = start.copy()
    be.grad_weight(dw, None, dy, x, s, accumulate=True)
    assert_close(dw, start + expected, np.abs(start) + mag, x.shape[0], dtype, "accumulated dw")
    be.grad_weight(dw, None, dy, x, s, True)
    assert_close(dw, start + 2 * expected, np.abs(start) + 2 * mag, x.shape[0], dtype, "accumulated twice")


@pytest.mark.parametrize("scale", [1.0, 0.375, -2.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_grad_bias_accumulate_and_overwrite(backend, dtype, scale, rng):
    be = fl.get_backend(backend)
    _, _, dy = _raw(rng, dtype, m=300)  # 300 > one 256-column block of the loops kernel
    s = np.dtype(dtype).type(scale)
    expected = scale * ref.grad_bias(dy)
    mag = abs(scale) * ref.magnitude_grad_bias(dy)

    db = np.full(dy.shape[1], np.nan, dtype=dtype)
    be.grad_bias(db, dy, s, False)
    assert_close(db, expected, mag, dy.shape[0], dtype, "overwrite db")

    start = randn(rng, db.shape, dtype)
    db = start.copy()
    be.grad_bias(db, dy, s, accumulate=True)
    assert_close(db, start + expected, np.abs(start) + mag, dy.shape[0], dtype, "accumulated db")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_forward_and_grad_input_write_every_element(backend, dtype, bias, rng):
    be = fl.get_backend(backend)
    x, w, dy = _raw(rng, dtype)
    b = randn(rng, w.shape[0], dtype) if bias else None
    y = np.full((x.shape[0], w.shape[0]), np.nan, dtype=dtype)
    be.forward(y, x, w, b, 0)
    _check_forward(y, x, w, b, dtype)
    dx = np.full(x.shape, np.nan, dtype=dtype)
    be.grad_input(dx, dy, w)
    assert_close(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), w.shape[0], dtype, "dx")


# --- linear(..., out=) --------------------------------------------------------------------------

@pytest.mark.parametrize("lead", [(6,), (2, 3), ()], ids=["2d", "3d", "1d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_out(backend, dtype, lead, rng):
    x, w, b, _ = _data(rng, lead, 11, 4, dtype)
    out = np.full(lead + (4,), np.nan, dtype=dtype)
    y = fl.linear(x, w, b, backend=backend, out=out)
    assert y is out
    _check_forward(out, x, w, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_out_view_of_larger_buffer(backend, dtype, rng):
    """A C-contiguous view (a block of rows of a larger array) is filled, the rest untouched."""
    x, w, b, _ = _data(rng, 5, 8, 3, dtype)
    buf = np.full((9, 3), -7.0, dtype=dtype)
    y = fl.linear(x, w, b, backend=backend, out=buf[2:7])
    assert y.base is buf
    _check_forward(buf[2:7], x, w, b, dtype)
    assert (buf[:2] == -7).all() and (buf[7:] == -7).all()
