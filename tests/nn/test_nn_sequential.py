"""Sequential: forward against a numpy reference, fusion of Linear + activation, modes, buffer
reuse (no large allocation per training step), state dicts and construction errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from nn_helpers import small_mlp

import fastlinear as fl
from fastlinear import nn
from fastlinear.nn.dense import Dense

ACT = {"relu": lambda t: np.maximum(t, 0), "tanh": np.tanh, "sigmoid": lambda t: 1 / (1 + np.exp(-t))}


@pytest.mark.parametrize("activation", list(ACT))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_numpy_reference(rng, activation, dtype):
    model = small_mlp((6, 9, 5, 3), activation, dtype=dtype)
    x = rng.standard_normal((11, 6)).astype(dtype)
    h = x.astype(np.float64)
    for i, layer in enumerate(model.linears):
        h = h @ layer.weight.T.astype(np.float64) + layer.bias
        if i < 2:
            h = ACT[activation](h)
    y = model(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, h, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-13)


def test_linear_then_activation_runs_fused_and_matches_separate_modules(rng):
    a = small_mlp((4, 5, 3), "tanh")
    assert [type(s).__name__ for s, _ in a._stages] == ["Dense", "Dense"]
    assert a._stages[0][0].activation == "tanh"
    # the same layers with the activation first (nothing to fuse with) use the module itself
    act = nn.Tanh()
    b = nn.Sequential(act, a[0])
    assert b._stages[0][0] is act
    x = rng.standard_normal((3, 4))
    y = b(x).copy()
    np.testing.assert_allclose(y, np.tanh(x) @ a[0].weight.T + a[0].bias, rtol=1e-12)
    dx = b.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, (np.ones_like(y) @ a[0].weight) * (1 - np.tanh(x) ** 2), rtol=1e-12)


@pytest.mark.parametrize("backend", ["loops", "blas"])
def test_linear_with_its_own_activation_equals_linear_then_module(rng, backend):
    a = nn.Sequential(fl.Linear(4, 5, dtype=np.float64, activation="tanh", backend=backend, seed=0),
                      fl.Linear(5, 3, dtype=np.float64, backend=backend, seed=1))
    b = nn.Sequential(fl.Linear(4, 5, dtype=np.float64, backend=backend, seed=0), nn.Tanh(),
                      fl.Linear(5, 3, dtype=np.float64, backend=backend, seed=1))
    assert [s.activation for s, _ in a._stages] == [s.activation for s, _ in b._stages] == ["tanh", None]
    x, dy = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    np.testing.assert_array_equal(a(x), b(x))
    for m in (a, b):
        m.zero_grad()
    np.testing.assert_array_equal(a.backward(dy), b.backward(dy))
    for (_, ga), (_, gb) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(ga, gb)
    # a layer that has its own activation is not fused with a following module
    c = nn.Sequential(fl.Linear(4, 5, activation="relu", seed=0), nn.Sigmoid())
    assert len(c._stages) == 2 and c._stages[0][0].activation == "relu"
    y = c(x.astype(np.float32))
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-np.maximum(x @ c[0].weight.T.astype(np.float64), 0))), rtol=1e-5)


def _train_step(model, opt, loss_fn, xb, yb):
    model.zero_grad()
    loss, d = loss_fn(model(xb), yb)
    model.backward(d, need_input_grad=False)
    opt.step()
    return loss


@pytest.mark.parametrize("backend", ["loops", "blas"])
def test_training_steps_reuse_buffers_and_allocate_nothing_large(rng, backend):
    model = nn.mlp([64, 512, 512, 10], dtype=np.float32, backend=backend, seed=0)
    opt, loss_fn = nn.Adam(model), nn.CrossEntropyLoss()
    xb = rng.standard_normal((128, 64)).astype(np.float32)
    yb = rng.integers(0, 10, 128)
    for _ in range(2):
        _train_step(model, opt, loss_fn, xb, yb)

    def addresses():
        denses = [s for s, _ in model._stages if isinstance(s, Dense)]
        return [b.array.ctypes.data for d in denses for b in (d._y, d._g, d._dx)] + [
            loss_fn._grad.array.ctypes.data]

    before = addresses()
    tracemalloc.start()
    for _ in range(3):
        _train_step(model, opt, loss_fn, xb, yb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert addresses() == before
    # A hidden activation is 128 x 512 x 4 = 256 KiB; a step must allocate nothing of that size.
    # What remains is small: (N,) index arrays in the loss, and the loop kernels' per-tile
    # accumulators (up to ~64 KiB, allocated inside the kernels and counted by tracemalloc).
    assert peak < 128 * 512 * 4 // 2, f"a training step allocated up to {peak} bytes"
    # a smaller last batch reuses the same memory
    _train_step(model, opt, loss_fn, xb[:37], yb[:37])
    assert addresses() == before


def test_eval_mode_keeps_no_cache_and_backward_then_fails(rng):
    model = small_mlp()
    x = rng.standard_normal((3, 5))
    model(x)
    model.eval()
    assert not model.training and not model[0].training
    assert all(s._x is None for s, _ in model._stages)
    model(x)
    assert all(s._x is None for s, _ in model._stages)
    with pytest.raises(RuntimeError, match="training mode"):
        model.backward(np.ones((3, 4)))
    model.train()
    model(x)
    model.backward(np.ones((3, 4)))


def test_gradients_accumulate_until_zero_grad(rng):
    model = small_mlp()
    x = rng.standard_normal((3, 5))
    model.zero_grad()
    model(x)
    model.backward(np.ones((3, 4)))
    once = [g.copy() for _, g in model.parameters()]
    model(x)
    model.backward(np.ones((3, 4)))
    for g1, (_, g2) in zip(once, model.parameters()):
        np.testing.assert_allclose(g2, 2 * g1, rtol=1e-12)


def test_state_dict_names_like_torch_and_round_trips(rng):
    a, b = small_mlp(seed=0), small_mlp(seed=1)
    state = a.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    b.load_state_dict(state)
    x = rng.standard_normal((2, 5))
    np.testing.assert_array_equal(a(x), b(x))
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict({**state, "0.weight": np.zeros((2, 2))})
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({"0.weight": state["0.weight"]})


def test_predict_returns_labels_and_restores_mode(rng):
    model = small_mlp()
    x = rng.standard_normal((2500, 5))
    labels = model.predict(x, batch_size=1000)
    np.testing.assert_array_equal(labels, np.argmax(model(x), axis=1))
    assert model.training


@pytest.mark.parametrize(
    "make, exc, fragment",
    [
        (lambda: nn.Sequential(), ValueError, "at least one"),
        (lambda: nn.Sequential(nn.ReLU()), ValueError, "Linear"),
        (lambda: nn.Sequential(fl.Linear(3, 4), fl.Linear(5, 2)), ValueError, "in_features=5"),
        (lambda: nn.Sequential(fl.Linear(3, 4), fl.Linear(4, 2, dtype=np.float64)), TypeError, "dtype"),
        (lambda: nn.Sequential(fl.Linear(3, 4), "relu"), TypeError, "module 1"),
        (lambda: nn.mlp([3]), ValueError, "at least"),
        (lambda: nn.mlp([3, 4], "gelu"), ValueError, "valid activations"),
    ],
)
def test_construction_errors(make, exc, fragment):
    with pytest.raises(exc) as info:
        make()
    assert fragment in str(info.value)


def test_shared_layer_is_refused():
    layer = fl.Linear(3, 3)
    with pytest.raises(ValueError, match="twice"):
        nn.Sequential(layer, nn.ReLU(), layer)


def test_input_errors_name_shape_and_dtype():
    model = small_mlp()
    with pytest.raises(ValueError, match=r"x of shape \(3, 4\) does not fit .* in_features 5"):
        model(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="float32"):
        model(np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="ndarray"):
        model([[0.0] * 5])
