"""Parity with torch.nn.Linear (micrograd-style): the same weights, input and upstream gradient give
the same output and the same gradients, and gradients accumulate over backward calls as in torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastlinear as fl
import reference as ref
from helpers import BACKENDS, DTYPE_IDS, DTYPES, TOL_FACTOR, randn

torch = pytest.importorskip("torch")

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def assert_matches_torch(got, expected_t, mag, k, dtype, what):
    """Both ours and torch's carry rounding error, so allow twice the one-sided tolerance."""
    expected = expected_t.detach().numpy()
    assert got.dtype == np.dtype(dtype) and expected.dtype == np.dtype(dtype)
    assert got.shape == expected.shape, what
    tol = 2 * TOL_FACTOR * float(np.finfo(dtype).eps) * math.sqrt(max(k, 1)) * mag
    err = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    assert (err <= tol).all(), f"{what}: max err {err.max():.3g}, worst tol {tol.min():.3g}"


def _torch_linear(layer):
    t = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                        dtype=TORCH_DTYPE[layer.dtype.type])
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(layer.weight))
        if layer.bias is not None:
            t.bias.copy_(torch.from_numpy(layer.bias))
    return t


LEAD = [(7,), (2, 3), ()]


@pytest.mark.parametrize("lead", LEAD, ids=["2d", "3d", "1d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_as_torch_linear(backend, dtype, bias, lead, rng):
    k, m = 19, 6
    layer = fl.Linear(k, m, bias=bias, dtype=dtype, backend=backend, init="torch", seed=0)
    t = _torch_linear(layer)
    x, dy = randn(rng, lead + (k,), dtype), randn(rng, lead + (m,), dtype)
    rows = math.prod(lead)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = t(xt)
    yt.backward(torch.from_numpy(dy))

    y = layer(x)
    dx = layer.backward(dy)
    assert_matches_torch(y, yt, ref.magnitude_forward(x, layer.weight, layer.bias), k, dtype, "y")
    assert_matches_torch(dx, xt.grad, ref.magnitude_grad_input(dy, layer.weight), m, dtype, "dx")
    assert_matches_torch(layer.grad_weight, t.weight.grad, ref.magnitude_grad_weight(dy, x), rows, dtype, "dw")
    if bias:
        assert_matches_torch(layer.grad_bias, t.bias.grad, ref.magnitude_grad_bias(dy), rows, dtype, "db")
    else:
        assert layer.grad_bias is None and t.bias is None


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_grads_accumulate_like_torch(backend, dtype, rng):
    k, m = 11, 4
    layer = fl.Linear(k, m, dtype=dtype, backend=backend, init="torch", seed=1)
    t = _torch_linear(layer)
    batches = [(randn(rng, (5, k), dtype), randn(rng, (5, m), dtype)),
               (randn(rng, (3, 2, k), dtype), randn(rng, (3, 2, m), dtype))]
    for x, dy in batches:
        t(torch.from_numpy(x)).backward(torch.from_numpy(dy))
        layer(x)
        layer.backward(dy)
    mag_w = sum(ref.magnitude_grad_weight(dy, x) for x, dy in batches)
    mag_b = sum(ref.magnitude_grad_bias(dy) for _, dy in batches)
    assert_matches_torch(layer.grad_weight, t.weight.grad, mag_w, 11, dtype, "dw")
    assert_matches_torch(layer.grad_bias, t.bias.grad, mag_b, 11, dtype, "db")
    # and zero_grad matches torch's zero_grad followed by one more batch
    x, dy = batches[0]
    t.zero_grad()
    layer.zero_grad()
    t(torch.from_numpy(x)).backward(torch.from_numpy(dy))
    layer(x)
    layer.backward(dy)
    assert_matches_torch(layer.grad_weight, t.weight.grad, ref.magnitude_grad_weight(dy, x), 5, dtype, "dw")


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_reduction_is_torch_grad_over_rows(backend, rng):
    layer = fl.Linear(8, 3, dtype=np.float64, backend=backend, reduction="mean", init="torch", seed=2)
    t = _torch_linear(layer)
    x, dy = randn(rng, (2, 5, 8), np.float64), randn(rng, (2, 5, 3), np.float64)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    t(xt).backward(torch.from_numpy(dy))
    layer(x)
    dx = layer.backward(dy)
    np.testing.assert_allclose(layer.grad_weight, t.weight.grad.numpy() / 10, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.grad_bias, t.bias.grad.numpy() / 10, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)  # dx is not scaled


def test_step_matches_torch_sgd(rng):
    layer = fl.Linear(6, 3, dtype=np.float64, init="torch", seed=3)
    t = _torch_linear(layer)
    opt = torch.optim.SGD(t.parameters(), lr=0.1)
    for _ in range(3):
        x, dy = randn(rng, (4, 6), np.float64), randn(rng, (4, 3), np.float64)
        opt.zero_grad()
        t(torch.from_numpy(x)).backward(torch.from_numpy(dy))
        opt.step()
        layer.zero_grad()
        layer(x)
        layer.backward(dy)
        layer.step(0.1)
    np.testing.assert_allclose(layer.weight, t.weight.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.bias, t.bias.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_torch_init_uses_torchs_bounds():
    """init="torch" draws weight and bias from the same distributions as torch.nn.Linear:
    U(-1/sqrt(in), 1/sqrt(in)) for both. Compare bounds and quantiles of large samples."""
    k, m = 256, 1024
    torch.manual_seed(0)
    t = torch.nn.Linear(k, m, dtype=torch.float64)
    ours = fl.Linear(k, m, dtype=np.float64, init="torch", seed=0)
    bound = 1 / math.sqrt(k)
    for name, theirs, mine in (("weight", t.weight.detach().numpy(), ours.weight),
                               ("bias", t.bias.detach().numpy(), ours.bias)):
        assert np.abs(theirs).max() <= bound and np.abs(mine).max() <= bound, name
        assert np.abs(theirs).max() > 0.99 * bound and np.abs(mine).max() > 0.99 * bound, name
        # A sample quantile of U(-a, a) has standard deviation at most a / sqrt(n); allow 5 sigma
        # of the difference of two samples.
        q = np.linspace(0.05, 0.95, 19)
        atol = 5 * math.sqrt(2) * bound / math.sqrt(mine.size)
        np.testing.assert_allclose(np.quantile(mine, q), np.quantile(theirs, q), atol=atol, err_msg=name)
