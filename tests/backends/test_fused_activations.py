"""Fused activations: ``y = act(x @ w.T + b)`` in the forward's store, and ``dy * act'(y)`` with
the bias gradient in the backward's first pass, for every backend, dtype and activation, checked
against the float64 reference. Every activation is 1-Lipschitz, so the forward keeps the plain
layer's error bound; the backward is checked given the y the kernel produced."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastlinear as fl
import reference as ref
from helpers import BACKENDS, DTYPE_IDS, DTYPES, assert_close, randn, shape_id, with_layout

ACTIVATIONS = ("relu", "sigmoid", "tanh")
# (leading shape, in_features, out_features): 1, odd sizes, leading dims, and sizes past the
# kernels' blocks.
CASES = [((1,), 1, 1), ((5,), 3, 4), ((2, 3), 7, 4), ((33,), 70, 129), ((300,), 257, 520),
         ((0,), 4, 3)]


def _data(rng, lead, k, m, dtype):
    x = randn(rng, lead + (k,), dtype)
    w = randn(rng, (m, k), dtype)
    b = randn(rng, m, dtype)
    dy = randn(rng, lead + (m,), dtype)
    return x, w, b, dy


def _check_forward(y, x, w, b, activation, dtype):
    pre = ref.forward(x, w, b)
    assert_close(y, ref.activate(pre, activation), ref.magnitude_forward(x, w, b), w.shape[1],
                 dtype, f"{activation} y")


def _check_backward(grads, dy, x, w, y, activation, bias, reduction, dtype):
    dx, dw, db = grads
    g = np.asarray(dy, np.float64) * ref.activation_derivative(y, activation)
    gmag = np.abs(np.asarray(dy, np.float64)) * ref.magnitude_activation_derivative(y, activation)
    rows = math.prod(x.shape[:-1])
    assert_close(dw, ref.grad_weight(g, x, reduction), ref.magnitude_grad_weight(gmag, x, reduction),
                 rows, dtype, "dw")
    if bias:
        assert_close(db, ref.grad_bias(g, reduction), ref.magnitude_grad_bias(gmag, reduction),
                     rows, dtype, "db")
    else:
        assert db is None
    assert_close(dx, ref.grad_input(g, w), ref.magnitude_grad_input(gmag, w), w.shape[0], dtype, "dx")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("case", CASES, ids=[shape_id(*c) for c in CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_functional_fused(backend, dtype, case, activation, bias, rng):
    lead, k, m = case
    x, w, b, dy = _data(rng, lead, k, m, dtype)
    b = b if bias else None
    y, cache = fl.forward(x, w, b, activation=activation, backend=backend)
    _check_forward(y, x, w, b, activation, dtype)
    for reduction in ("sum", "mean"):
        grads = fl.backward(dy, cache, reduction=reduction, backend=backend)
        _check_backward(grads, dy, x, w, y, activation, bias, reduction, dtype)


@pytest.mark.parametrize("layout", ["F", "strided", "reversed"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_layouts(backend, activation, layout, rng):
    dtype = np.float32
    x, w, b, dy = _data(rng, (9,), 13, 6, dtype)
    xl, wl, dyl = (with_layout(a, layout) for a in (x, w, dy))
    y = fl.linear(xl, wl, b, activation=activation, backend=backend)
    _check_forward(y, x, w, b, activation, dtype)
    grads = fl.linear_backward(dyl, xl, wl, activation=activation, y=with_layout(y, layout),
                               backend=backend)
    _check_backward(grads, dy, x, w, y, activation, True, "sum", dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_fused_matches_functional(backend, dtype, activation, rng):
    layer = fl.Linear(11, 5, dtype=dtype, backend=backend, activation=activation, seed=1)
    x = randn(rng, (2, 4, 11), dtype)
    dy = randn(rng, (2, 4, 5), dtype)
    y = layer(x)
    _check_forward(y, x, layer.weight, layer.bias, activation, dtype)
    dx = layer.backward(dy)
    dx2 = layer.backward(dy)  # accumulates; the g buffer is reused
    _check_backward((dx, layer.grad_weight / 2, layer.grad_bias / 2), dy, x, layer.weight, y,
                    activation, True, "sum", dtype)
    np.testing.assert_array_equal(dx, dx2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_activation_edge_values(backend):
    """NaN propagates through every activation; sigmoid saturates without overflow; relu of a
    negative is exactly zero."""
    w = np.ones((1, 1), np.float32)
    x = np.array([[np.nan], [-1e30], [1e30], [-2.0], [0.0]], np.float32)
    relu = fl.linear(x, w, activation="relu", backend=backend)[:, 0]
    sig = fl.linear(x, w, activation="sigmoid", backend=backend)[:, 0]
    tanh = fl.linear(x, w, activation="tanh", backend=backend)[:, 0]
    assert np.isnan(relu[0]) and np.isnan(sig[0]) and np.isnan(tanh[0])
    np.testing.assert_array_equal(relu[1:], np.array([0, 1e30, 0, 0], np.float32))
    np.testing.assert_array_equal(sig[1:3], [0, 1])
    np.testing.assert_array_equal(tanh[1:3], [-1, 1])


def test_activation_errors(rng):
    x, w, b, dy = _data(rng, (3,), 4, 2, np.float64)
    with pytest.raises(ValueError, match="unknown activation 'gelu'; valid activations are None, 'relu'"):
        fl.linear(x, w, b, activation="gelu")
    with pytest.raises(ValueError, match="unknown activation"):
        fl.Linear(4, 2, activation="softmax")
    with pytest.raises(ValueError, match="needs y, the forward's output"):
        fl.linear_backward(dy, x, w, activation="relu")
    with pytest.raises(ValueError, match=r"y has shape \(2, 2\) but dy has shape \(3, 2\)"):
        fl.linear_backward(dy, x, w, activation="relu", y=dy[:2])
    with pytest.raises(TypeError, match="y has dtype float32 but w has dtype float64"):
        fl.linear_backward(dy, x, w, activation="relu", y=dy.astype(np.float32))
    layer = fl.Linear(4, 2, activation="tanh")
    with pytest.raises(AttributeError):
        layer.activation = "relu"
    assert layer.activation == "tanh" and "activation='tanh'" in repr(layer)
