"""The reference and the tolerance helper are themselves tested: the reference on values worked
out by hand, the tolerance by showing it rejects a sum that drops one term."""

from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from helpers import assert_close, randn

X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])  # (2 rows, 3 in)
W = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])  # (2 out, 3 in)
B = np.array([10.0, -10.0])
DY = np.array([[1.0, -2.0], [3.0, 4.0]])  # (2 rows, 2 out)


def test_reference_by_hand():
    # y[0] = [1 - 3, 2 + 2] + b; y[1] = [-1 - 0, -2 + 0.5] + b
    np.testing.assert_array_equal(ref.forward(X, W, B), [[8.0, -6.0], [9.0, -11.5]])
    np.testing.assert_array_equal(ref.forward(X, W), [[-2.0, 4.0], [-1.0, -1.5]])
    # dw[j, p] = sum_r dy[r, j] * x[r, p]
    np.testing.assert_array_equal(ref.grad_weight(DY, X), [[-2.0, 3.5, 3.0], [-6.0, -2.0, -6.0]])
    np.testing.assert_array_equal(ref.grad_weight(DY, X, "mean"), [[-1.0, 1.75, 1.5], [-3.0, -1.0, -3.0]])
    np.testing.assert_array_equal(ref.grad_bias(DY), [4.0, 2.0])
    np.testing.assert_array_equal(ref.grad_bias(DY, "mean"), [2.0, 1.0])
    # dx[r, p] = sum_j dy[r, j] * w[j, p]
    np.testing.assert_array_equal(ref.grad_input(DY, W), [[-3.0, -2.0, -1.0], [11.0, 4.0, -3.0]])


def test_reference_leading_dims_and_empty():
    x = np.arange(24.0).reshape(2, 3, 4)
    w = np.arange(8.0).reshape(2, 4)
    assert ref.forward(x, w).shape == (2, 3, 2)
    np.testing.assert_array_equal(ref.forward(x, w)[1, 2], x[1, 2] @ w.T)
    assert ref.grad_weight(np.ones((0, 2)), np.ones((0, 4)), "mean").tolist() == [[0.0] * 4] * 2
    assert ref.grad_input(np.ones((2, 3, 2)), w).shape == (2, 3, 4)


@pytest.mark.parametrize("dropped", ["first", "last"])
def test_float32_tolerance_rejects_a_dropped_term(dropped):
    """An off-by-one that drops one term of a 300-term float32 sum must fail the comparison."""
    rng = np.random.default_rng(0)
    x, w = randn(rng, (7, 300), np.float32), randn(rng, (16, 300), np.float32)
    keep = slice(1, None) if dropped == "first" else slice(None, -1)
    wrong = (x[:, keep] @ w[:, keep].T).astype(np.float32)
    with pytest.raises(AssertionError, match="elements off"):
        assert_close(wrong, ref.forward(x, w), ref.magnitude_forward(x, w), 300, np.float32)


def test_float32_tolerance_rejects_a_dropped_row_in_a_batch_sum():
    """Dropping one of 257 rows from a float32 weight-gradient sum must fail."""
    rng = np.random.default_rng(1)
    dy, x = randn(rng, (257, 3), np.float32), randn(rng, (257, 129), np.float32)
    wrong = (dy[:-1].T @ x[:-1]).astype(np.float32)
    with pytest.raises(AssertionError):
        assert_close(wrong, ref.grad_weight(dy, x), ref.magnitude_grad_weight(dy, x), 257, np.float32)


def test_float32_tolerance_accepts_float32_rounding():
    rng = np.random.default_rng(2)
    x, w = randn(rng, (64, 300), np.float32), randn(rng, (129, 300), np.float32)
    assert_close(x @ w.T, ref.forward(x, w), ref.magnitude_forward(x, w), 300, np.float32)


def test_tolerance_rejects_wrong_dtype_and_shape():
    y = np.zeros((2, 2), dtype=np.float64)
    with pytest.raises(AssertionError, match="dtype"):
        assert_close(y, y, y, 1, np.float32)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(y[:1], y, y, 1, np.float64)
    with pytest.raises(AssertionError):
        assert_close(np.full((2, 2), np.nan), y, np.ones((2, 2)), 1, np.float64)
