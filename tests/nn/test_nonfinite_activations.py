"""NaN, +-Inf, +-0 and huge values through every activation and both losses give torch's values and
torch's NaN pattern, forward and backward: as modules, fused into `Linear` on every backend, in
each backend's kernels at sizes that reach their parallel (and packed) variants, and in
`CrossEntropyLoss` / `MSELoss`.

Each table pairs every special pre-activation with every special upstream gradient, so the cases
where the two interact (relu's backward where y <= 0 and dy is Inf or NaN; sigmoid/tanh saturated
at exactly 0 or +-1 with an Inf dy) are all covered."""

from __future__ import annotations

import numpy as np
import pytest

import fastlinear as fl
from fastlinear import nn
from fastlinear.activations import code
from fastlinear.backends import get_backend

torch = pytest.importorskip("torch")

ACTS = ["relu", "sigmoid", "tanh"]
DTYPES = [np.float32, np.float64]
BACKENDS = ["loops", "naive", "blas", "auto"]


def _inputs(dtype) -> np.ndarray:
    """Pre-activations: NaN, +-Inf, +-0, +-the largest finite order of magnitude, values where
    sigmoid's exp overflows in float32 (-100) and in float64 (-710), and ordinary ones."""
    huge = 3e38 if dtype == np.float32 else 1e308
    return np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, huge, -huge, 100.0, -100.0, -710.0,
                     20.0, -20.0, 1.0, -0.5], dtype=dtype)


def _grads(dtype) -> np.ndarray:
    huge = 3e38 if dtype == np.float32 else 1e308
    return np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, huge, -huge, 1.0, -2.5], dtype=dtype)


def _grid(dtype) -> tuple[np.ndarray, np.ndarray]:
    """Every (pre-activation, dy) pair, as two flat arrays of equal length."""
    v, d = _inputs(dtype), _grads(dtype)
    return np.repeat(v, d.size), np.tile(d, v.size)


def _tol(dtype) -> dict:
    # a few ulps (numpy's / Numba's exp and tanh against torch's vectorized ones), and the
    # smallest normal number: below it sigmoid's tail may be subnormal in one and 0 in the other
    return dict(rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny, equal_nan=True)


def _loss_tol(dtype) -> dict:
    # the loss is a log of a sum of exps: a few more ulps than one element-wise function
    return dict(_tol(dtype), rtol=16 * np.finfo(dtype).eps)


def _torch_act(name, pre, dy):
    """torch's forward output and input gradient for pre-activations ``pre`` and gradient ``dy``."""
    t = torch.tensor(pre, requires_grad=True)
    y = getattr(torch, name)(t)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), t.grad.numpy()


def _assert_same(ours, theirs, dtype, what, tol=_tol):
    assert ours.dtype == dtype, what
    # assert_allclose with equal_nan also requires NaN and +-Inf at the same places
    np.testing.assert_allclose(ours, theirs, err_msg=what, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTS)
def test_nonfinite_activation_module_matches_torch(name, dtype):
    pre, dy = _grid(dtype)
    module = nn.ReLU() if name == "relu" else nn.Sigmoid() if name == "sigmoid" else nn.Tanh()
    y = module(pre[None, :].copy()).copy()
    dx = module.backward(dy[None, :].copy())[0]
    ty, tdx = _torch_act(name, pre, dy)
    _assert_same(y[0], ty, dtype, f"{name} forward")
    _assert_same(dx, tdx, dtype, f"{name} backward")
    # numpy keeps signed zeros exactly, so the module's do too: relu(-0.0) and tanh(-0.0) are -0.0
    zeros = (ty == 0)
    np.testing.assert_array_equal(np.signbit(y[0][zeros]), np.signbit(ty[zeros]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTS)
def test_nonfinite_activation_fused_in_linear_matches_torch(name, dtype, backend):
    """Linear(1, K) with x = [[1]] and weight column = the pre-activations: each output element is
    one (pre, dy) pair, and grad_bias and grad_weight hold the activation's input gradient itself."""
    pre, dy = _grid(dtype)
    layers = []
    for act in (name, None):
        layer = fl.Linear(1, pre.size, activation=act, dtype=dtype, backend=backend, seed=0)
        layer.weight[:, 0] = pre
        layers.append(layer)
    fused, plain = layers
    x = np.ones((1, 1), dtype=dtype)
    z = plain(x)[0].copy()  # the pre-activations as this backend's product computed them
    y = fused(x)[0].copy()
    fused.backward(dy[None, :].copy())
    ty, tg = _torch_act(name, z, dy)
    _assert_same(y, ty, dtype, f"{backend} fused {name} forward")
    _assert_same(fused.grad_bias, tg, dtype, f"{backend} fused {name} grad_bias")
    _assert_same(fused.grad_weight[:, 0], tg, dtype, f"{backend} fused {name} grad_weight")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("shape", [(64, 32, 196), (520, 64, 512)], ids=["parallel", "packed"])
def test_nonfinite_activation_in_backend_kernels_matches_torch(name, dtype, backend, shape, rng):
    """Shapes large enough for the parallel kernels (and, for loops, the packed forward): the
    special values enter through the bias, so every row of a column carries the same one."""
    n, k, m = shape
    if backend == "naive" and n * k * m > 1 << 22:
        pytest.skip("the naive loops are only a reference; the small shape covers them")
    be = get_backend(backend)
    specials = _inputs(dtype)
    x = rng.uniform(-1, 1, (n, k)).astype(dtype)
    w = rng.uniform(-1, 1, (m, k)).astype(dtype)
    b = np.resize(specials, m).astype(dtype)
    z = np.empty((n, m), dtype)
    y = np.empty((n, m), dtype)
    be.forward(z, x, w, b, code(None))
    be.forward(y, x, w, b, code(name))
    # dy without the huge values: the column sums in db then cannot overflow in an order-dependent way
    d = _grads(dtype)
    dy = np.resize(d[np.abs(d) < 1e30], (n, m)).astype(dtype)
    ty, tg = _torch_act(name, z, dy)
    _assert_same(y, ty, dtype, f"{backend} {name} forward {shape}")
    g = np.empty_like(y)
    db = np.empty(m, dtype)
    be.activation_grad(g, db, dy, ty.copy(), code(name), dtype(1), False)
    # Random inputs put y close to +-1, where 1 - y*y cancels: torch's vectorized kernel fuses it
    # into a multiply-add and rounds once, the naive kernel twice, so allow eps * |dy| besides
    # the relative tolerance; NaN and +-Inf must still sit at the same places.
    eps = np.finfo(dtype).eps
    np.testing.assert_array_equal(np.isnan(g), np.isnan(tg), err_msg=f"{backend} {name} NaN")
    np.testing.assert_array_equal(np.isposinf(g), np.isposinf(tg), err_msg=f"{backend} {name} +Inf")
    np.testing.assert_array_equal(np.isneginf(g), np.isneginf(tg), err_msg=f"{backend} {name} -Inf")
    finite = np.isfinite(tg)
    err = np.abs(g[finite].astype(np.float64) - tg[finite])
    bound = 4 * eps * (np.abs(tg[finite]) + np.abs(dy[finite].astype(np.float64)))
    assert (err <= bound).all(), f"{backend} {name} backward {shape}: {np.max(err / bound):.2f} x bound"
    ref_db = tg.astype(np.float64).sum(0)
    np.testing.assert_allclose(db, ref_db, rtol=0, atol=4 * n * eps * 2.5, equal_nan=True,
                               err_msg=f"{backend} {name} db {shape}")


def _specials_rows(dtype):
    """Logit rows holding each special value beside ordinary ones, in each position."""
    rows = []
    for v in _inputs(dtype):
        for pos in range(3):
            row = np.array([0.5, -1.0, 2.0], dtype=dtype)
            row[pos] = v
            rows.append(row)
    rows.append(np.array([-np.inf, -np.inf, -np.inf], dtype=dtype))
    rows.append(np.array([np.inf, np.inf, 0.0], dtype=dtype))
    return np.array(rows, dtype=dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_cross_entropy_matches_torch(dtype, reduction):
    logits = _specials_rows(dtype)
    for label in range(3):
        labels = np.full(len(logits), label)
        for i in range(len(logits)):  # row by row: one NaN row makes a whole mean NaN
            z = logits[i : i + 1]
            loss, dz = nn.CrossEntropyLoss(reduction)(z, labels[i : i + 1])
            t = torch.tensor(z, requires_grad=True)
            tl = torch.nn.functional.cross_entropy(t, torch.from_numpy(labels[i : i + 1]), reduction=reduction)
            tl.backward()
            what = f"row {z[0]}, label {label}"
            np.testing.assert_allclose(loss, tl.item(), err_msg=what, **_loss_tol(dtype))
            _assert_same(dz, t.grad.numpy(), dtype, what, _loss_tol)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_mse_matches_torch(dtype, reduction):
    a, b = _grid(dtype)  # every (y, target) pair of specials
    a, b = a[None, :].copy(), np.resize(_inputs(dtype), a.size)[None, :].astype(dtype)
    for y, target in ((a, b), (b, a)):
        loss, dy = nn.MSELoss(reduction)(y, target)
        t = torch.tensor(y, requires_grad=True)
        tl = torch.nn.functional.mse_loss(t, torch.tensor(target), reduction=reduction)
        tl.backward()
        np.testing.assert_allclose(loss, tl.item(), **_loss_tol(dtype))
        _assert_same(dy, t.grad.numpy(), dtype, "MSE gradient")
    # one element at a time, so a single NaN does not hide what every other pair gives
    for i in range(a.shape[1]):
        y, target = a[:, i : i + 1], b[:, i : i + 1]
        loss, dy = nn.MSELoss(reduction)(y, target)
        t = torch.tensor(y, requires_grad=True)
        tl = torch.nn.functional.mse_loss(t, torch.tensor(target), reduction=reduction)
        tl.backward()
        what = f"y {y[0, 0]}, target {target[0, 0]}"
        np.testing.assert_allclose(loss, tl.item(), err_msg=what, **_loss_tol(dtype))
        _assert_same(dy, t.grad.numpy(), dtype, what)
