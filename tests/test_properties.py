"""Hypothesis property tests: for any shape, memory layout (steps, negative strides, Fortran order)
and dtype, every backend agrees with the float64 reference, leaves its inputs untouched, and keeps
the documented relations between sum and mean reductions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlinear as fl
import reference as ref
from helpers import BACKENDS, DTYPES, assert_close, randn, with_steps

dims = st.integers(0, 70)
features = st.integers(1, 70)


@st.composite
def laid_out(draw, a: np.ndarray) -> np.ndarray:
    """``a`` re-laid out: a step in {1, 2, -1, -3} per axis, C or Fortran order underneath."""
    steps = [draw(st.sampled_from([1, 2, -1, -3])) for _ in range(a.ndim)]
    return with_steps(a, steps, fortran=draw(st.booleans()))


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from(DTYPES))
    lead = tuple(draw(st.lists(st.integers(0, 9), min_size=0, max_size=3)))
    if draw(st.booleans()):
        lead = lead[:-1] + (draw(dims),) if lead else (draw(dims),)
    k, m = draw(features), draw(features)
    bias = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = randn(rng, lead + (k,), dtype)
    w = randn(rng, (m, k), dtype)
    b = randn(rng, m, dtype) if bias else None
    dy = randn(rng, lead + (m,), dtype)
    views = dict(x=draw(laid_out(x)), w=draw(laid_out(w)), dy=draw(laid_out(dy)),
                 b=None if b is None else draw(laid_out(b)))
    return dtype, x, w, b, dy, views


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30)
@given(problem=problems(), reduction=st.sampled_from(["sum", "mean"]), need_input_grad=st.booleans())
def test_matches_reference(backend, problem, reduction, need_input_grad):
    dtype, x, w, b, dy, v = problem
    rows = math.prod(x.shape[:-1])
    y = fl.linear(v["x"], v["w"], v["b"], backend=backend)
    assert_close(y, ref.forward(x, w, b), ref.magnitude_forward(x, w, b), w.shape[1], dtype, "y")
    dx, dw, db = fl.linear_backward(v["dy"], v["x"], v["w"], bias=b is not None, reduction=reduction,
                                    need_input_grad=need_input_grad, backend=backend)
    assert_close(dw, ref.grad_weight(dy, x, reduction), ref.magnitude_grad_weight(dy, x, reduction),
                 rows, dtype, "dw")
    if b is None:
        assert db is None
    else:
        assert_close(db, ref.grad_bias(dy, reduction), ref.magnitude_grad_bias(dy, reduction), rows, dtype, "db")
    if need_input_grad:
        assert_close(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), w.shape[0], dtype, "dx")
    else:
        assert dx is None
    # inputs were only read
    for name, a in (("x", x), ("w", w), ("b", b), ("dy", dy)):
        if a is not None:
            np.testing.assert_array_equal(v[name], a, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15)
@given(problem=problems())
def test_layer_matches_reference_and_accumulates(backend, problem):
    """A Linear layer fed the same (laid-out) arrays twice holds twice the reference gradient."""
    dtype, x, w, b, dy, v = problem
    layer = fl.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=dtype, backend=backend, seed=0)
    layer.load_state_dict({"weight": v["w"]} if b is None else {"weight": v["w"], "bias": v["b"]})
    rows = math.prod(x.shape[:-1])
    y = layer(v["x"])
    assert_close(y, ref.forward(x, w, b), ref.magnitude_forward(x, w, b), w.shape[1], dtype, "y")
    layer.backward(v["dy"], need_input_grad=False)
    layer.backward(v["dy"])
    assert_close(layer.grad_weight, 2 * ref.grad_weight(dy, x), 2 * ref.magnitude_grad_weight(dy, x),
                 rows, dtype, "grad_weight")
    if b is not None:
        assert_close(layer.grad_bias, 2 * ref.grad_bias(dy), 2 * ref.magnitude_grad_bias(dy), rows, dtype,
                     "grad_bias")


@settings(max_examples=20)
@given(problem=problems(), backend=st.sampled_from(BACKENDS))
def test_mean_is_sum_over_rows(problem, backend):
    """dw_mean == dw_sum / rows (up to rounding of 1/rows), and dx does not depend on the reduction."""
    dtype, x, w, b, dy, v = problem
    rows = math.prod(x.shape[:-1])
    dx_s, dw_s, _ = fl.linear_backward(v["dy"], v["x"], v["w"], reduction="sum", backend=backend)
    dx_m, dw_m, _ = fl.linear_backward(v["dy"], v["x"], v["w"], reduction="mean", backend=backend)
    np.testing.assert_array_equal(dx_s, dx_m)
    if rows == 0:
        assert not dw_m.any() and not np.isnan(dw_m).any()
    else:
        # Rounding of 1/rows and of the scale applied to each run of rows the kernels sum (runs of
        # 512 rows, see fastlinear.kernels._sums): a few eps of the result, plus a few eps of the
        # sum of magnitudes where terms cancel.
        eps = float(np.finfo(dtype).eps)
        rows_dy = np.abs(v["dy"]).reshape(rows, -1).astype(np.float64)
        rows_x = np.abs(v["x"]).reshape(rows, -1).astype(np.float64)
        mag = rows_dy.T @ rows_x / rows
        expected = dw_s.astype(np.float64) / rows
        assert np.all(np.abs(dw_m - expected) <= 4 * eps * np.abs(expected) + 4 * eps * mag)
