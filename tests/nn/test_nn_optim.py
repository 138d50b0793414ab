"""Optimizers: one step against hand-computed updates, many steps against torch.optim, state
round trips, no allocation per step, and argument errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fastlinear import nn


def _pair(rng, shape=(4, 3), dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)


def test_sgd_plain_and_momentum_by_hand(rng):
    p, g = _pair(rng)
    p0 = p.copy()
    opt = nn.SGD([(p, g)], lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step()
    d = g + 0.01 * p0
    np.testing.assert_allclose(p, p0 - 0.1 * d, rtol=1e-14)  # first step: buffer = d
    p1 = p.copy()
    opt.step()
    buf = 0.9 * d + (g + 0.01 * p1)
    np.testing.assert_allclose(p, p1 - 0.1 * buf, rtol=1e-14)


def test_adam_first_step_by_hand(rng):
    p, g = _pair(rng)
    p0 = p.copy()
    nn.Adam([(p, g)], lr=0.01).step()
    m, v = 0.1 * g, 0.001 * g * g
    expected = p0 - 0.01 / 0.1 * m / (np.sqrt(v) / np.sqrt(0.001) + 1e-8)
    np.testing.assert_allclose(p, expected, rtol=1e-12)


CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_optimizers_track_torch(rng, name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    p, _ = _pair(rng, (5, 7), dtype)
    g = np.zeros_like(p)
    tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
    ours = getattr(nn, name)([(p, g)], **kwargs)
    theirs = getattr(torch.optim, name)([tp], **kwargs)
    for _ in range(20):
        grad = rng.standard_normal(p.shape).astype(dtype)
        g[...] = grad
        tp.grad = torch.from_numpy(grad.copy())
        ours.step()
        theirs.step()
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=tol, atol=tol)


def test_float32_parameters_stay_float32(rng):
    p, g = _pair(rng, dtype=np.float32)
    opt = nn.Adam([(p, g)])
    opt.step()
    assert p.dtype == np.float32 and all(a.dtype == np.float32 for a in opt.state["exp_avg"])


def test_state_dict_round_trip_continues_identically(rng):
    p, g = _pair(rng)
    q, h = p.copy(), g.copy()
    a = nn.Adam([(p, g)], lr=0.01)
    a.step()
    b = nn.Adam([(q, h)], lr=0.01)
    q[...] = p
    b.load_state_dict(a.state_dict())
    a.step()
    b.step()
    np.testing.assert_array_equal(p, q)
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({"steps": np.array(1)})


def test_step_allocates_nothing_large(rng):
    p, g = _pair(rng, (512, 512), np.float32)
    for opt in (nn.Adam([(p, g)]), nn.SGD([(p, g)], lr=0.1, momentum=0.9, nesterov=True)):
        opt.step()  # compile / warm up
        tracemalloc.start()
        for _ in range(3):
            opt.step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < p.nbytes // 16, f"{type(opt).__name__}.step allocated {peak} bytes"


def test_zero_grad_and_module_parameters(rng):
    model = nn.mlp([3, 4, 2], seed=0)
    for _, g in model.parameters():
        g.fill(1)
    opt = nn.SGD(model, lr=0.1)
    assert len(opt.params) == 4
    opt.zero_grad()
    assert all((g == 0).all() for _, g in model.parameters())


@pytest.mark.parametrize(
    "make, exc, fragment",
    [
        (lambda p: nn.SGD(p, lr=-1.0), ValueError, "lr"),
        (lambda p: nn.SGD(p, lr="0.1"), TypeError, "lr"),
        (lambda p: nn.SGD(p, lr=0.1, nesterov=True), ValueError, "Nesterov"),
        (lambda p: nn.Adam(p, betas=(1.0, 0.9)), ValueError, "betas[0]"),
        (lambda p: nn.Adam(p, betas=0.9), TypeError, "betas"),
        (lambda p: nn.Adam([]), ValueError, "no parameters"),
        (lambda p: nn.Adam([(p[0][0], p[0][1][:2])]), ValueError, "gradient 0"),
        (lambda p: nn.Adam([(p[0][0].T, p[0][1].T)]), ValueError, "C-contiguous"),
        (lambda p: nn.Adam([(p[0][0].astype(np.int32), p[0][1])]), TypeError, "float32 or float64"),
    ],
)
def test_optimizer_argument_errors(rng, make, exc, fragment):
    pairs = [_pair(rng)]
    with pytest.raises(exc) as info:
        make(pairs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name, kwargs", [CONFIGS[3], CONFIGS[5], CONFIGS[6]])
def test_serial_and_parallel_updates_give_identical_bits(rng, name, kwargs):
    from fastlinear.nn import _optim_kernels

    n = _optim_kernels.SERIAL_MAX + 5  # large enough for the parallel kernel
    small = [rng.standard_normal(n // 4) for _ in range(4)]  # four serial-sized pieces
    big = np.concatenate(small)
    grads = [rng.standard_normal(big.shape) for _ in range(3)]
    opt_big = getattr(nn, name)([(big, np.zeros_like(big))], **kwargs)
    opt_small = getattr(nn, name)([(s, np.zeros_like(s)) for s in small], **kwargs)
    for grad in grads:
        opt_big.params[0][1][...] = grad
        for (_, g), part in zip(opt_small.params, np.split(grad[: 4 * (n // 4)], 4)):
            g[...] = part
        opt_big.step()
        opt_small.step()
    np.testing.assert_array_equal(big[: 4 * (n // 4)], np.concatenate(small))
