"""Central finite differences against the Linear layer's analytic gradients, in float64.

loss(theta) = sum(layer(x) * r), for a plain layer and for each fused activation, for a fixed random r, so dL/dy = r. Each parameter and each input
element is nudged by +-h and the loss difference compared with ``grad_weight``, ``grad_bias`` and
the returned dx. With reduction="mean" the parameter gradients are dL/dtheta divided by the number
of rows; dx is never scaled.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastlinear as fl
from helpers import BACKENDS, numeric_grad

H = 1e-4
# (leading shape, in_features, out_features): sizes 1 and odd sizes, with leading dims.
CASES = [((1,), 1, 1), ((3,), 5, 2), ((2, 3), 7, 4), ((4,), 1, 9), ((1, 5), 17, 1)]
CASE_IDS = ["n1-in1-out1", "n3-in5-out2", "n2x3-in7-out4", "n4-in1-out9", "n1x5-in17-out1"]


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend, case, reduction, bias, activation):
    lead, k, m = case
    rng = np.random.default_rng(k * 100 + m)
    layer = fl.Linear(k, m, bias=bias, dtype=np.float64, backend=backend, init="torch",
                      activation=activation, reduction=reduction, seed=3)
    x = rng.standard_normal(lead + (k,))
    r = rng.standard_normal(lead + (m,))

    def loss() -> float:
        return float(np.sum(layer.forward(x, cache=False) * r))

    fd_w = numeric_grad(loss, layer.weight, H)
    fd_b = numeric_grad(loss, layer.bias, H) if bias else None
    fd_x = numeric_grad(loss, x, H)

    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y) * r)
    rows = math.prod(lead)
    scale = 1.0 / rows if reduction == "mean" else 1.0

    kw = dict(rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(layer.grad_weight, scale * fd_w, **kw)
    if bias:
        np.testing.assert_allclose(layer.grad_bias, scale * fd_b, **kw)
    else:
        assert layer.grad_bias is None
    np.testing.assert_allclose(dx, fd_x, **kw)
