"""The Linear layer's API: parameters and gradients, accumulation, zero_grad, step, initialisation,
seeding, state dicts, caching, repr, backend choice, empty batches, NaN/Inf, and the stateless
forward/backward pair."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import fastlinear as fl
import reference as ref
from fastlinear.backends import Backend
from helpers import BACKENDS, DTYPE_IDS, DTYPES, assert_close, is_cached, randn


def _grads_ok(layer, batches, dtype):
    """Check layer.grad_weight / grad_bias equal the reference summed over (x, dy) batches."""
    gw = sum(ref.grad_weight(dy, x, layer.reduction) for x, dy in batches)
    mw = sum(ref.magnitude_grad_weight(dy, x, layer.reduction) for x, dy in batches)
    rows = sum(math.prod(x.shape[:-1]) for x, _ in batches)
    assert_close(layer.grad_weight, gw, mw, rows, dtype, "grad_weight")
    if layer.bias is not None:
        gb = sum(ref.grad_bias(dy, layer.reduction) for _, dy in batches)
        mb = sum(ref.magnitude_grad_bias(dy, layer.reduction) for _, dy in batches)
        assert_close(layer.grad_bias, gb, mb, rows, dtype, "grad_bias")


# --- shapes, dtypes, gradients ------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_parameter_shapes_and_dtypes(dtype, bias):
    layer = fl.Linear(5, 3, bias=bias, dtype=dtype)
    assert (layer.in_features, layer.out_features) == (5, 3)
    assert layer.dtype == np.dtype(dtype)
    assert layer.weight.shape == layer.grad_weight.shape == (3, 5)
    assert layer.weight.dtype == layer.grad_weight.dtype == np.dtype(dtype)
    if bias:
        assert layer.bias.shape == layer.grad_bias.shape == (3,)
        assert layer.bias.dtype == layer.grad_bias.dtype == np.dtype(dtype)
        assert [p.shape for p, _ in layer.parameters()] == [(3, 5), (3,)]
    else:
        assert layer.bias is None and layer.grad_bias is None
        assert len(layer.parameters()) == 1
    assert not layer.grad_weight.any()
    assert bias is False or not layer.grad_bias.any()
    assert layer.weight.any()  # he_normal by default: not all zero


def test_default_dtype_is_float32():
    assert fl.Linear(2, 2).weight.dtype == np.float32


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_backward_and_grads_accumulate(backend, dtype, reduction, rng):
    layer = fl.Linear(13, 6, dtype=dtype, backend=backend, reduction=reduction, seed=1)
    x1, dy1 = randn(rng, (9, 13), dtype), randn(rng, (9, 6), dtype)
    x2, dy2 = randn(rng, (2, 4, 13), dtype), randn(rng, (2, 4, 6), dtype)

    y1 = layer(x1)
    assert_close(y1, ref.forward(x1, layer.weight, layer.bias),
                 ref.magnitude_forward(x1, layer.weight, layer.bias), 13, dtype, "y1")
    dx1 = layer.backward(dy1)
    assert_close(dx1, ref.grad_input(dy1, layer.weight), ref.magnitude_grad_input(dy1, layer.weight),
                 6, dtype, "dx1")
    _grads_ok(layer, [(x1, dy1)], dtype)

    layer.forward(x2)
    dx2 = layer.backward(dy2)
    assert dx2.shape == x2.shape
    _grads_ok(layer, [(x1, dy1), (x2, dy2)], dtype)  # added to, not replaced

    layer.backward(dy2)  # the same cached input again adds again
    _grads_ok(layer, [(x1, dy1), (x2, dy2), (x2, dy2)], dtype)


def test_backward_need_input_grad_false_still_accumulates(rng):
    layer = fl.Linear(4, 3, seed=0)
    x, dy = randn(rng, (5, 4), np.float32), randn(rng, (5, 3), np.float32)
    layer(x)
    assert layer.backward(dy, need_input_grad=False) is None
    _grads_ok(layer, [(x, dy)], np.float32)


def test_zero_grad_in_place(rng):
    layer = fl.Linear(4, 3, seed=0)
    gw, gb = layer.grad_weight, layer.grad_bias
    layer(randn(rng, (5, 4), np.float32))
    layer.backward(randn(rng, (5, 3), np.float32))
    assert gw.any() and gb.any()
    layer.zero_grad()
    assert layer.grad_weight is gw and layer.grad_bias is gb
    assert not gw.any() and not gb.any()
    w = layer.weight.copy()
    layer.zero_grad()
    np.testing.assert_array_equal(layer.weight, w)  # parameters untouched


def test_zero_grad_without_bias(rng):
    layer = fl.Linear(4, 3, bias=False, seed=0)
    layer(randn(rng, (5, 4), np.float32))
    layer.backward(randn(rng, (5, 3), np.float32))
    layer.zero_grad()
    assert not layer.grad_weight.any() and layer.grad_bias is None


# --- step ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("lr", [0.1, 0.0, -0.5, 3, np.float32(0.25)], ids=["0.1", "0", "-0.5", "int3", "f32"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_step_is_sgd(dtype, lr, rng):
    layer = fl.Linear(6, 4, dtype=dtype, seed=0)
    layer(randn(rng, (3, 6), dtype))
    layer.backward(randn(rng, (3, 4), dtype))
    w0, b0 = layer.weight.copy(), layer.bias.copy()
    gw, gb = layer.grad_weight.copy(), layer.grad_bias.copy()
    w_obj = layer.weight
    layer.step(lr)
    assert layer.weight is w_obj  # in place
    lr = float(lr)
    for got, p, g, what in ((layer.weight, w0, gw, "weight"), (layer.bias, b0, gb, "bias")):
        p64, g64 = p.astype(np.float64), g.astype(np.float64)
        assert_close(got, p64 - lr * g64, np.abs(p64) + abs(lr) * np.abs(g64), 1, dtype, what)
    if lr == 0:
        np.testing.assert_array_equal(layer.weight, w0)
    np.testing.assert_array_equal(layer.grad_weight, gw)  # step does not clear gradients


def test_step_without_bias(rng):
    layer = fl.Linear(3, 2, bias=False, dtype=np.float64, seed=0)
    layer(randn(rng, (4, 3), np.float64))
    layer.backward(np.ones((4, 2)))
    w0 = layer.weight.copy()
    layer.step(0.5)
    np.testing.assert_allclose(layer.weight, w0 - 0.5 * layer.grad_weight, rtol=1e-15)


# --- initialisation -----------------------------------------------------------------------------

IN, OUT = 400, 100  # fan_in != fan_out, so swapping them or using xavier for he would show
# scheme -> (distribution, std or half-width)
INITS = {
    "he_normal": ("normal", math.sqrt(2 / IN)),
    "he_uniform": ("uniform", math.sqrt(6 / IN)),
    "lecun_normal": ("normal", math.sqrt(1 / IN)),
    "xavier_uniform": ("uniform", math.sqrt(6 / (IN + OUT))),
    "xavier_normal": ("normal", math.sqrt(2 / (IN + OUT))),
    "small_normal": ("normal", 0.01),
    "torch": ("uniform", 1 / math.sqrt(IN)),
}


@pytest.mark.parametrize("init", sorted(INITS))
def test_init_statistics(init):
    kind, s = INITS[init]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only "zeros" warns
        layer = fl.Linear(IN, OUT, dtype=np.float64, init=init, seed=123)
    w = layer.weight
    n = w.size
    std = s if kind == "normal" else s / math.sqrt(3)
    assert abs(w.mean()) < 5 * std / math.sqrt(n)
    assert abs(w.std() / std - 1) < 0.02, (w.std(), std)  # sampling error of the std ~0.2-0.3%
    if kind == "uniform":
        assert np.abs(w).max() <= s and np.abs(w).max() > 0.999 * s
    else:
        assert abs(np.mean(w**4) / std**4 - 3) < 0.1  # normal kurtosis, not uniform's 1.8
    if init == "torch":
        b = layer.bias
        assert np.abs(b).max() <= s and b.any()
        assert np.abs(b).max() > 0.9 * s  # spread over the bound, not a tiny constant
        assert len(np.unique(b)) == OUT
    else:
        assert layer.bias.shape == (OUT,) and not layer.bias.any()


def test_zeros_init_warns():
    with pytest.warns(UserWarning, match="symmetry"):
        layer = fl.Linear(4, 3, init="zeros")
    assert not layer.weight.any() and not layer.bias.any()
    layer2 = fl.Linear(4, 3, seed=0)
    with pytest.warns(UserWarning):
        layer2.reset_parameters(init="zeros")
    assert not layer2.weight.any() and layer2.init == "zeros"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_seed_reproducible(dtype):
    a = fl.Linear(7, 5, dtype=dtype, init="torch", seed=42)
    b = fl.Linear(7, 5, dtype=dtype, init="torch", seed=42)
    c = fl.Linear(7, 5, dtype=dtype, init="torch", seed=43)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weight, c.weight)
    d = fl.Linear(7, 5, dtype=dtype, init="torch", seed=np.random.default_rng(42))
    np.testing.assert_array_equal(a.weight, d.weight)


def test_no_seed_differs():
    a, b = fl.Linear(7, 5), fl.Linear(7, 5)
    assert not np.array_equal(a.weight, b.weight)


@pytest.mark.parametrize("init", ["he_normal", "torch", "xavier_uniform"])
def test_float32_weights_are_rounded_float64_weights(init):
    w32 = fl.Linear(9, 4, dtype=np.float32, init=init, seed=7)
    w64 = fl.Linear(9, 4, dtype=np.float64, init=init, seed=7)
    np.testing.assert_array_equal(w32.weight, w64.weight.astype(np.float32))
    np.testing.assert_array_equal(w32.bias, w64.bias.astype(np.float32))
    assert not np.array_equal(w64.weight, w32.weight.astype(np.float64))  # really float64 draws


def test_reset_parameters(rng):
    layer = fl.Linear(6, 4, seed=5)
    first = layer.weight.copy()
    w_obj = layer.weight
    layer.reset_parameters()  # continues the stream: new values
    assert layer.weight is w_obj
    assert not np.array_equal(layer.weight, first)
    layer.reset_parameters(seed=5)  # reseeded: the construction-time values again
    np.testing.assert_array_equal(layer.weight, first)
    layer.reset_parameters(init="lecun_normal", seed=5)
    assert layer.init == "lecun_normal"
    np.testing.assert_array_equal(layer.weight, fl.Linear(6, 4, init="lecun_normal", seed=5).weight)
    again = layer.weight.copy()
    layer.reset_parameters()  # uses the updated scheme, continuing the reseeded stream
    assert not np.array_equal(layer.weight, again)


# --- state dict ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_state_dict_round_trip_and_copies(bias):
    src = fl.Linear(5, 3, bias=bias, init="torch", seed=1)
    dst = fl.Linear(5, 3, bias=bias, init="torch", seed=2)
    state = src.state_dict()
    assert set(state) == ({"weight", "bias"} if bias else {"weight"})
    assert state["weight"] is not src.weight and not np.shares_memory(state["weight"], src.weight)
    w_obj = dst.weight
    dst.load_state_dict(state)
    assert dst.weight is w_obj  # copied in, not rebound
    np.testing.assert_array_equal(dst.weight, src.weight)
    if bias:
        np.testing.assert_array_equal(dst.bias, src.bias)
    saved = src.weight.copy()
    state["weight"][:] = 99  # the dict is a copy of src, and dst copied from it
    np.testing.assert_array_equal(src.weight, saved)
    np.testing.assert_array_equal(dst.weight, saved)


# --- caching, train/eval ------------------------------------------------------------------------

def test_eval_keeps_no_input_and_backward_raises(rng):
    layer = fl.Linear(4, 3, seed=0)
    x = randn(rng, (2, 4), np.float32)
    layer(x)
    assert is_cached(layer, x)
    assert layer.eval() is layer and layer.training is False
    assert layer._x is None  # eval drops the cache
    y = layer(x)
    assert layer._x is None
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones_like(y))
    assert not layer.grad_weight.any()
    assert layer.train() is layer and layer.training is True
    layer(x)
    assert is_cached(layer, x)


def test_cache_false_keeps_no_input(rng):
    layer = fl.Linear(4, 3, seed=0)
    x = randn(rng, (2, 4), np.float32)
    y = layer.forward(x, cache=False)
    assert layer._x is None
    with pytest.raises(RuntimeError):
        layer.backward(np.ones_like(y))
    layer.eval()
    layer.forward(x, cache=True)  # explicit cache=True overrides eval mode
    assert is_cached(layer, x)


def test_backward_before_any_forward_raises():
    with pytest.raises(RuntimeError, match="forward"):
        fl.Linear(3, 2).backward(np.ones((1, 2), np.float32))


def test_second_forward_replaces_cache(rng):
    layer = fl.Linear(4, 3, dtype=np.float64, seed=0)
    x1, x2 = randn(rng, (5, 4), np.float64), randn(rng, (2, 4), np.float64)
    layer(x1)
    layer(x2)
    assert is_cached(layer, x2)
    dy = randn(rng, (2, 3), np.float64)
    layer.backward(dy)
    _grads_ok(layer, [(x2, dy)], np.float64)
    with pytest.raises(ValueError):  # dy for x1's batch no longer fits
        layer.backward(np.ones((5, 3)))


# --- repr, backend ------------------------------------------------------------------------------

def test_repr():
    assert repr(fl.Linear(784, 128, seed=0)) == (
        "Linear(in_features=784, out_features=128, bias=True, dtype=float32, backend='auto')"
    )
    assert repr(fl.Linear(3, 2, bias=False, dtype=np.float64, backend="naive")) == (
        "Linear(in_features=3, out_features=2, bias=False, dtype=float64, backend='naive')"
    )


def test_backend_property():
    layer = fl.Linear(3, 2)
    assert layer.backend == "auto"
    for name in BACKENDS:
        layer.backend = name
        assert layer.backend == name
    assert fl.Linear(3, 2, backend="blas").backend == "blas"


def test_available_backends_and_get_backend():
    names = fl.available_backends()
    assert {"loops", "naive", "blas", "auto"} <= set(names)
    for name in names:
        be = fl.get_backend(name)
        assert isinstance(be, Backend) and be.name == name


@pytest.fixture
def spy_backends(monkeypatch):
    """Register two recording backends ("spy_a", "spy_b") that delegate to "blas"."""
    calls = []
    blas = fl.get_backend("blas")

    def make(name):
        def wrap(kernel, kname):
            def f(*args):
                calls.append((name, kname))
                return kernel(*args)
            return f
        return Backend(name, *(wrap(getattr(blas, k), k) for k in ("forward", "grad_weight", "grad_bias", "grad_input", "activation_grad")))

    import fastlinear.backends as backends_module
    for name in ("spy_a", "spy_b"):
        monkeypatch.setitem(backends_module._BACKENDS, name, make(name))
    return calls


def test_backend_chosen_per_layer_and_per_call(spy_backends, rng):
    calls = spy_backends
    x = randn(rng, (3, 4), np.float64)
    a = fl.Linear(4, 2, dtype=np.float64, backend="spy_a", seed=0)
    b = fl.Linear(4, 2, dtype=np.float64, backend="spy_b", seed=0)
    ya = a(x)
    yb = b(x)
    assert calls == [("spy_a", "forward"), ("spy_b", "forward")]
    assert_close(ya, ref.forward(x, a.weight, a.bias), ref.magnitude_forward(x, a.weight, a.bias), 4, np.float64)
    np.testing.assert_array_equal(ya, yb)
    calls.clear()
    a.backward(np.ones_like(ya))
    assert {c[0] for c in calls} == {"spy_a"} and {c[1] for c in calls} == {"grad_weight", "grad_input"}
    calls.clear()
    a.backend = "spy_b"  # switching a layer's backend takes effect at the next call
    a(x)
    assert calls == [("spy_b", "forward")]
    calls.clear()
    fl.linear(x, a.weight, backend="spy_a")
    fl.linear_backward(np.ones((3, 2)), x, a.weight, backend="spy_b")
    assert calls[0] == ("spy_a", "forward") and {c[0] for c in calls[1:]} == {"spy_b"}
    calls.clear()
    fl.linear(x, a.weight, backend="naive")  # a built-in backend: no spy involved
    assert calls == []


# --- empty batch, NaN / Inf ---------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("lead", [(0,), (2, 0)], ids=["0", "2x0"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend, lead, reduction):
    layer = fl.Linear(4, 3, backend=backend, reduction=reduction, seed=0)
    x = np.zeros(lead + (4,), np.float32)
    y = layer(x)
    assert y.shape == lead + (3,) and y.dtype == np.float32
    dx = layer.backward(np.zeros(lead + (3,), np.float32))
    assert dx.shape == x.shape
    assert np.array_equal(layer.grad_weight, np.zeros((3, 4))) and np.array_equal(layer.grad_bias, np.zeros(3))


def _special_data(dtype):
    x = np.array([[1.0, 2.0, -1.0], [np.nan, 1.0, 0.5], [np.inf, 0.0, 1.0], [1.0, -np.inf, 2.0],
                  [0.0, 0.0, 0.0]], dtype=dtype)
    w = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, np.inf], [0.25, 0.0, 0.0], [-1.0, 0.5, 1.0]], dtype=dtype)
    b = np.array([0.0, 1.0, -1.0, np.nan], dtype=dtype)
    dy = np.array([[1.0, 0.0, 2.0, -1.0], [0.0, 1.0, 1.0, 0.0], [1.0, np.inf, 0.0, 1.0],
                   [np.nan, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=dtype)
    return x, w, b, dy


def _same_specials(got, expected, k, what):
    """NaN where numpy has NaN, +Inf / -Inf where it has them; the finite elements match the
    float64 reference of numpy's expression (``expected`` is a (value, ref64, mag64) triple)."""
    value, ref64, mag64 = expected
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(value), err_msg=f"{what}: {test.__name__}")
    fin = np.isfinite(value)
    assert_close(got[fin], ref64[fin], mag64[fin], k, got.dtype, what)


def _numpy_results(x, w, b, dy):
    """numpy's y, dw, db, dx in the data's dtype, each with its float64 value and magnitude."""
    out = []
    with np.errstate(invalid="ignore"):
        for a in ((x, w, b, dy), tuple(np.asarray(v, dtype=np.float64) for v in (x, w, b, dy)),
                  tuple(np.abs(np.asarray(v, dtype=np.float64)) for v in (x, w, b, dy))):
            xx, ww, bb, dd = a
            out.append((xx @ ww.T + bb, dd.T @ xx, dd.sum(axis=0), dd @ ww))
    return [tuple(o[i] for o in out) for i in range(4)]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_inf_propagate_like_numpy(backend, dtype):
    x, w, b, dy = _special_data(dtype)
    y_np, dw_np, db_np, dx_np = _numpy_results(x, w, b, dy)
    assert np.isnan(y_np[0]).any() and np.isinf(y_np[0]).any() and np.isfinite(y_np[0]).any()
    _same_specials(fl.linear(x, w, b, backend=backend), y_np, 3, "y")
    dx, dw, db = fl.linear_backward(dy, x, w, backend=backend)
    _same_specials(dw, dw_np, 5, "dw")
    _same_specials(db, db_np, 5, "db")
    _same_specials(dx, dx_np, 4, "dx")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_inf_propagate_like_numpy_vectorized_sizes(backend, dtype, rng):
    """Long rows (the loops kernels' vectorized, reassociated inner loops) with a few NaN / Inf."""
    n, k, m = 23, 70, 37
    x, w, b, dy = (randn(rng, (n, k), dtype), randn(rng, (m, k), dtype), randn(rng, m, dtype),
                   randn(rng, (n, m), dtype))
    x[3, 5] = np.nan
    x[7, 69] = np.inf
    x[11, 0] = -np.inf
    w[4, 30] = np.inf
    w[9, 31] = -np.inf
    dy[2, 36] = np.nan
    dy[5, 0] = np.inf
    y_np, dw_np, db_np, dx_np = _numpy_results(x, w, b, dy)
    assert np.isnan(y_np[0]).any() and np.isposinf(y_np[0]).any() and np.isneginf(y_np[0]).any()
    _same_specials(fl.linear(x, w, b, backend=backend), y_np, k, "y")
    dx, dw, db = fl.linear_backward(dy, x, w, backend=backend)
    _same_specials(dw, dw_np, n, "dw")
    _same_specials(db, db_np, n, "db")
    _same_specials(dx, dx_np, m, "dx")


# --- stateless forward / backward ---------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_stateless_forward_backward(backend, dtype, bias, rng):
    x, w = randn(rng, (3, 2, 10), dtype), randn(rng, (7, 10), dtype)
    b = randn(rng, 7, dtype) if bias else None
    dy = randn(rng, (3, 2, 7), dtype)
    y, cache = fl.forward(x, w, b, backend=backend)
    assert isinstance(cache, fl.Cache)
    assert cache.x is x and cache.w is w and cache.b is b  # references, not copies
    assert_close(y, ref.forward(x, w, b), ref.magnitude_forward(x, w, b), 10, dtype, "y")
    for reduction in ("sum", "mean"):
        dx, dw, db = fl.backward(dy, cache, reduction=reduction, backend=backend)
        assert_close(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), 7, dtype, "dx")
        assert_close(dw, ref.grad_weight(dy, x, reduction), ref.magnitude_grad_weight(dy, x, reduction),
                     6, dtype, "dw")
        if bias:
            assert_close(db, ref.grad_bias(dy, reduction), ref.magnitude_grad_bias(dy, reduction), 6, dtype, "db")
        else:
            assert db is None
    dx, _, _ = fl.backward(dy, cache, need_input_grad=False, backend=backend)
    assert dx is None


def test_layer_matches_stateless_api(rng):
    layer = fl.Linear(5, 3, dtype=np.float64, backend="loops", seed=0)
    x, dy = randn(rng, (4, 5), np.float64), randn(rng, (4, 3), np.float64)
    y = layer(x)
    dx = layer.backward(dy)
    y2, cache = fl.forward(x, layer.weight, layer.bias, backend="naive")
    dx2, dw2, db2 = fl.backward(dy, cache, backend="naive")
    np.testing.assert_allclose(y, y2, rtol=1e-13)
    np.testing.assert_allclose(dx, dx2, rtol=1e-13)
    np.testing.assert_allclose(layer.grad_weight, dw2, rtol=1e-13)
    np.testing.assert_allclose(layer.grad_bias, db2, rtol=1e-13)
    _grads_ok(layer, [(x, dy)], np.float64)


def test_uncached_forward_drops_an_older_cache(rng):
    # forward(x2, cache=False) must not leave x1 behind for a backward that belongs to x2.
    layer = fl.Linear(4, 3, seed=0)
    x1, x2 = randn(rng, (5, 4), np.float32), randn(rng, (5, 4), np.float32)
    layer(x1)
    y2 = layer.forward(x2, cache=False)
    assert layer._x is None
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones_like(y2))
    assert not layer.grad_weight.any()


def test_dtype_none_means_the_default_float32():
    assert fl.Linear(3, 2, dtype=None).weight.dtype == np.float32
