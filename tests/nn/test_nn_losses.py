"""Losses: values and gradients against hand-written float64 references and torch, stability,
reductions, and errors."""

from __future__ import annotations

import numpy as np
import pytest
from nn_helpers import numeric_grad

import fastlinear as fl
from fastlinear import nn


def _softmax_ce_reference(z: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(z)), labels]).mean()
    p[np.arange(len(z)), labels] -= 1
    return float(loss), p / len(z)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, c", [(1, 2), (7, 3), (64, 10)])
def test_cross_entropy_matches_reference(rng, dtype, n, c):
    z = rng.standard_normal((n, c)).astype(dtype) * 3
    labels = rng.integers(0, c, n)
    loss, dz = nn.CrossEntropyLoss()(z, labels)
    ref_loss, ref_dz = _softmax_ce_reference(z, labels)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert dz.dtype == dtype and dz.shape == (n, c)
    assert loss == pytest.approx(ref_loss, rel=tol)
    np.testing.assert_allclose(dz, ref_dz, rtol=tol, atol=tol / n)


def test_cross_entropy_gradient_is_the_derivative_of_the_loss(rng):
    z = rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, 5)
    loss_fn = nn.CrossEntropyLoss()
    dz = loss_fn(z, labels)[1].copy()
    np.testing.assert_allclose(dz, numeric_grad(lambda: loss_fn(z, labels)[0], z), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    z = np.array([[1e4, 0, -1e4], [-1e4, -1e4, -1e4 + 1]], dtype=dtype)
    loss, dz = nn.CrossEntropyLoss()(z, np.array([0, 1]))
    assert np.isfinite(loss) and np.isfinite(dz).all()
    # row 0: the right class dominates -> ~0; row 1: log(1 + e + 1) - 0 ... computed exactly
    expected = (0.0 + np.log(2 + np.e)) / 2
    assert loss == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_matches_torch(rng):
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((16, 10))
    labels = rng.integers(0, 10, 16)
    for reduction in ("mean", "sum"):
        tz = torch.tensor(z, requires_grad=True)
        tl = torch.nn.functional.cross_entropy(tz, torch.tensor(labels), reduction=reduction)
        tl.backward()
        loss, dz = nn.CrossEntropyLoss(reduction)(z, labels)
        assert loss == pytest.approx(tl.item(), rel=1e-12)
        np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_mse_matches_torch_and_reference(rng):
    y, t = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    loss, dy = nn.MSELoss()(y, t)
    assert loss == pytest.approx(((y - t) ** 2).mean(), rel=1e-12)
    np.testing.assert_allclose(dy, 2 * (y - t) / y.size, rtol=1e-12)
    loss_sum, dy_sum = nn.MSELoss("sum")(y, t)
    assert loss_sum == pytest.approx(((y - t) ** 2).sum(), rel=1e-12)
    np.testing.assert_allclose(dy_sum, 2 * (y - t), rtol=1e-12)
    torch = pytest.importorskip("torch")
    ty = torch.tensor(y, requires_grad=True)
    torch.nn.functional.mse_loss(ty, torch.tensor(t)).backward()
    np.testing.assert_allclose(nn.MSELoss()(y, t)[1], ty.grad.numpy(), rtol=1e-12)


def test_loss_sum_with_layer_mean_gives_the_same_weight_gradient_as_loss_mean_with_layer_sum(rng):
    x = rng.standard_normal((12, 5))
    labels = rng.integers(0, 3, 12)
    grads = []
    for loss_red, layer_red in (("mean", "sum"), ("sum", "mean")):
        layer = fl.Linear(5, 3, dtype=np.float64, reduction=layer_red, seed=0)
        model = nn.Sequential(layer)
        model.zero_grad()
        model.backward(nn.CrossEntropyLoss(loss_red)(model(x), labels)[1])
        grads.append((layer.grad_weight.copy(), layer.grad_bias.copy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-12)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-12)


@pytest.mark.parametrize(
    "z, labels, exc, fragment",
    [
        (np.zeros((3, 4)), np.array([0, 1, 4]), ValueError, "0..3"),
        (np.zeros((3, 4)), np.array([0, -1, 2]), ValueError, "0..3"),
        (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), TypeError, "integer dtype"),
        (np.zeros((3, 4)), np.array([0, 1]), ValueError, "expected (3,)"),
        (np.zeros((0, 4)), np.zeros(0, np.int64), ValueError, "N >= 1"),
        (np.zeros((3, 4), np.int64), np.array([0, 1, 2]), TypeError, "int64"),
        (np.zeros(4), np.array([0]), ValueError, "2-D"),
    ],
)
def test_cross_entropy_errors(z, labels, exc, fragment):
    with pytest.raises(exc, match=None) as info:
        nn.CrossEntropyLoss()(z, labels)
    assert fragment in str(info.value)


def test_mse_and_reduction_errors():
    with pytest.raises(ValueError, match="target has shape"):
        nn.MSELoss()(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="float32"):
        nn.MSELoss()(np.zeros((2, 3)), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="valid reductions"):
        nn.CrossEntropyLoss("none")
