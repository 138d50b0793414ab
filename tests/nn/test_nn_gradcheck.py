"""Finite-difference check of a whole 3-layer network in float64: every parameter and the input,
for each activation and both losses, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from nn_helpers import numeric_grad, small_mlp

from fastlinear import nn


@pytest.mark.parametrize("backend", ["loops", "blas"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_three_layer_network_gradients_match_finite_differences(backend, activation, loss, rng):
    model = small_mlp((5, 7, 6, 4), activation, backend=backend)
    for layer in model.linears:  # nonzero biases: no pre-activation sits exactly on ReLU's kink
        layer.bias[...] = rng.uniform(0.1, 0.5, layer.bias.shape) * rng.choice([-1, 1], layer.bias.shape)
    x = rng.standard_normal((9, 5))
    if loss == "cross_entropy":
        loss_fn, target = nn.CrossEntropyLoss(), rng.integers(0, 4, 9)
    else:
        loss_fn, target = nn.MSELoss(), rng.standard_normal((9, 4))

    def f() -> float:
        return loss_fn(model(x), target)[0]

    model.zero_grad()
    _, dout = loss_fn(model(x), target)
    dx = model.backward(dout).copy()
    analytic = {name: g.copy() for name, _, g in model.named_parameters()}
    assert len(analytic) == 6
    for name, p, _ in model.named_parameters():
        num = numeric_grad(f, p)
        np.testing.assert_allclose(analytic[name], num, rtol=1e-6, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=1e-8, err_msg="dx")


def test_two_layer_sigmoid_network_is_expressible_and_learns_xor():
    import fastlinear as fl

    model = nn.Sequential(fl.Linear(2, 8, dtype=np.float64, init="xavier_normal", seed=1), nn.Sigmoid(),
                          fl.Linear(8, 1, dtype=np.float64, init="xavier_normal", seed=2), nn.Sigmoid())
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    t = np.array([[0], [1], [1], [0]], dtype=np.float64)
    opt, loss_fn = nn.Adam(model, lr=0.05), nn.MSELoss()
    for _ in range(1500):
        model.zero_grad()
        loss, dy = loss_fn(model(x), t)
        model.backward(dy, need_input_grad=False)
        opt.step()
    assert loss < 0.01
    np.testing.assert_array_equal(model(x) > 0.5, t > 0.5)
