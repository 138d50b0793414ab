"""Every size-0 dimension (batch, in_features, out_features) works as in torch.nn.Linear: through
`Linear`, the functional API, `nn.Sequential`, save/load and the optimizers."""

from __future__ import annotations

import numpy as np
import pytest

import fastlinear as fl
from fastlinear import nn
from helpers import BACKENDS, DTYPE_IDS, DTYPES

torch = pytest.importorskip("torch")

# (batch, in_features, out_features) with at least one zero
SHAPES = [(0, 4, 3), (5, 0, 3), (5, 4, 0), (0, 0, 3), (0, 4, 0), (5, 0, 0), (0, 0, 0)]


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_zero_size_dimension_matches_torch(shape, dtype, backend):
    n, k, m = shape
    layer = fl.Linear(k, m, dtype=dtype, backend=backend, init="torch", seed=0)
    ref = torch.nn.Linear(k, m, dtype=torch.float32 if dtype == np.float32 else torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.weight))
        ref.bias.copy_(torch.from_numpy(layer.bias))
    x = np.arange(n * k, dtype=dtype).reshape(n, k) / 7
    dy = np.ones((n, m), dtype)
    y = layer(x)
    dx = layer.backward(dy)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(dy))
    assert y.shape == tuple(yt.shape) and y.dtype == dtype
    assert np.allclose(y, yt.detach().numpy())
    assert np.allclose(dx, xt.grad.numpy())
    assert np.allclose(layer.grad_weight, ref.weight.grad.numpy())
    assert np.allclose(layer.grad_bias, ref.bias.grad.numpy())
    # The functional API agrees with the layer.
    yf = fl.linear(x, layer.weight, layer.bias, backend=backend)
    dxf, dwf, dbf = fl.linear_backward(dy, x, layer.weight, backend=backend)
    assert np.array_equal(yf, y) and np.array_equal(dxf, dx)
    assert np.array_equal(dwf, layer.grad_weight) and np.array_equal(dbf, layer.grad_bias)


def test_layer_without_inputs_returns_its_bias_for_every_row():
    layer = fl.Linear(0, 3, init="torch", seed=0)
    layer.bias[...] = [1.0, -2.0, 0.5]
    y = layer(np.empty((4, 0), np.float32))
    assert np.array_equal(y, np.tile(layer.bias, (4, 1)))
    layer.backward(np.ones((4, 3), np.float32))
    assert np.array_equal(layer.grad_bias, [4.0, 4.0, 4.0])


@pytest.mark.parametrize("sizes", [[4, 0, 3], [0, 5, 3], [4, 5, 0]], ids=str)
def test_zero_width_network_trains_saves_and_loads(sizes, tmp_path):
    model = nn.mlp(sizes, "relu", seed=0)
    opt = nn.Adam(model, lr=1e-2)
    sgd = nn.SGD(model, lr=1e-2, momentum=0.9)
    x = np.ones((6, sizes[0]), np.float32)
    for step in range(3):
        model.zero_grad()
        out = model(x)
        assert out.shape == (6, sizes[-1])
        model.backward(np.ones_like(out))
        (opt if step % 2 else sgd).step()
    assert all(np.isfinite(p).all() for p, _ in model.parameters())
    nn.save(model, tmp_path / "m.npz")
    loaded = nn.load(tmp_path / "m.npz")
    for (a, _), (b, _) in zip(model.parameters(), loaded.parameters()):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_negative_feature_counts_are_refused():
    with pytest.raises(ValueError, match="in_features must be at least 0, got -1"):
        fl.Linear(-1, 3)
