"""The one path from a call to a kernel (`fastlinear._dispatch`): every entry point (the functional
API, `Linear`, `nn.Sequential`) gives the same error for the same mistake, and read-only arrays
reach the kernels already compiled for writeable ones."""

from __future__ import annotations

import numpy as np
import pytest

import fastlinear as fl
from fastlinear import nn
from fastlinear._compile import compile_count
from helpers import DTYPE_IDS, DTYPES, randn


def _entry_points(dtype):
    """For each entry point, a function running forward then backward of a 5 -> 3 layer on x, dy."""
    w = randn(np.random.default_rng(0), (3, 5), dtype)
    b = np.zeros(3, dtype)

    def functional(x, dy):
        fl.linear(x, w, b)
        fl.linear_backward(dy, x, w)

    def layer(x, dy):
        lin = fl.Linear(5, 3, dtype=dtype, seed=0)
        lin(x)
        lin.backward(dy)

    def sequential(x, dy):
        model = nn.Sequential(fl.Linear(5, 3, dtype=dtype, seed=0))
        model(x)
        model.backward(dy)

    return {"functional": functional, "Linear": layer, "Sequential": sequential}


MISTAKES = {
    # name: (x, dy, expected error type, message fragment)
    "dy of another dtype": (lambda d: np.ones((4, 5), d), lambda d: np.ones((4, 3), np.float16),
                            TypeError, "dy has unsupported dtype float16"),
    "dy of the other float dtype": (lambda d: np.ones((4, 5), d),
                                    lambda d: np.ones((4, 3), np.float64 if d == np.float32 else np.float32),
                                    TypeError, "dy has dtype"),
    "dy of the wrong shape": (lambda d: np.ones((4, 5), d), lambda d: np.ones((4, 2), d),
                              ValueError, "dy has shape (4, 2) but the forward output has shape (4, 3)"),
    "dy a list": (lambda d: np.ones((4, 5), d), lambda d: [[1.0] * 3] * 4,
                  TypeError, "dy must be a numpy.ndarray"),
    "x of another dtype": (lambda d: np.ones((4, 5), np.int64), lambda d: np.ones((4, 3), d),
                           TypeError, "x has unsupported dtype int64"),
    "x a list": (lambda d: [[1.0] * 5] * 4, lambda d: np.ones((4, 3), d),
                 TypeError, "x must be a numpy.ndarray"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_same_mistake_same_error_from_every_entry_point(dtype, mistake):
    make_x, make_dy, exc, fragment = MISTAKES[mistake]
    for name, run in _entry_points(dtype).items():
        with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(")", r"\)")) as info:
            run(make_x(dtype), make_dy(dtype))
        assert info.type is exc, f"{name} raised {info.type.__name__}"


def test_x_of_the_wrong_width_is_a_value_error_everywhere():
    for name, run in _entry_points(np.float32).items():
        with pytest.raises(ValueError, match="5") as info:
            run(np.ones((4, 6), np.float32), np.ones((4, 3), np.float32))
        assert info.type is ValueError, name


def _read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(7, 33, 21), (64, 256, 128)], ids=["7x33x21", "64x256x128"])
def test_read_only_arrays_compile_nothing_and_give_the_same_bits(shape, dtype, activation, rng):
    n, k, m = shape
    x, dy = randn(rng, (n, k), dtype), randn(rng, (n, m), dtype)
    w, b = randn(rng, (m, k), dtype), randn(rng, (m,), dtype)
    # Warm up with writeable arrays, through every entry point.
    y = fl.linear(x, w, b, activation=activation, backend="loops")
    grads = fl.linear_backward(dy, x, w, activation=activation, y=y, backend="loops")
    layer = fl.Linear(k, m, dtype=dtype, backend="loops", activation=activation, seed=0)
    layer.weight[...] = w
    layer.bias[...] = b
    y_layer = layer(x).copy()
    dx_layer = layer.backward(dy)
    before = compile_count()

    xr, dyr, wr, br = (_read_only(a) for a in (x, dy, w, b))
    y_r = fl.linear(xr, wr, br, activation=activation, backend="loops")
    grads_r = fl.linear_backward(dyr, xr, wr, activation=activation, y=_read_only(y), backend="loops")
    layer.zero_grad()
    y_layer_r = layer(xr)
    dx_layer_r = layer.backward(dyr)
    layer.zero_grad()
    layer.weight.setflags(write=False)  # read-only parameters too (a memory-mapped checkpoint)
    layer.bias.setflags(write=False)
    y_layer_rw = layer(xr)
    model = nn.Sequential(layer)
    y_model = model(xr).copy()
    model.backward(dyr)

    assert compile_count() == before, "a read-only array compiled a second specialisation"
    assert np.array_equal(y_r, y)
    for got, ref in zip(grads_r, grads):
        assert np.array_equal(got, ref)
    assert np.array_equal(y_layer_r, y_layer) and np.array_equal(y_layer_rw, y_layer)
    assert np.array_equal(dx_layer_r, dx_layer)
    assert np.array_equal(y_model, y_layer)


def test_read_only_memory_map_input(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    w = np.eye(3, dtype=np.float32)[:2]
    assert np.array_equal(fl.linear(xm, w), x[:, :2])
    frozen = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(4, 3)
    assert np.array_equal(fl.linear(frozen, w), x[:, :2])
