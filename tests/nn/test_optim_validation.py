"""Every optimizer setting is checked when it is set (construction or assignment) and again at
each step, and a step that fails changes nothing: parameters, state and the step count are as they
were before it."""

from __future__ import annotations

import numpy as np
import pytest

from fastlinear import nn

NAN, INF = float("nan"), float("inf")

# (optimizer, setting, bad value, exception, message fragment)
BAD_SETTINGS = [
    *[(name, "lr", v, ValueError, "lr must be") for name in ("SGD", "Adam", "AdamW")
      for v in (NAN, INF, -INF, -0.1, np.float32("nan"))],
    *[(name, "lr", v, TypeError, "lr must be a real number") for name in ("SGD", "Adam")
      for v in ("0.1", None, True, 1j, np.array([0.1]))],
    *[("SGD", key, v, ValueError, f"{key} must be") for key in ("momentum", "dampening", "weight_decay")
      for v in (NAN, INF, -1.0)],
    ("SGD", "momentum", 1.5, ValueError, "momentum must be in [0, 1]"),
    ("SGD", "dampening", 2.0, ValueError, "dampening must be in [0, 1]"),
    ("SGD", "nesterov", "yes", TypeError, "nesterov must be True or False"),
    *[(name, "weight_decay", v, ValueError, "weight_decay must be") for name in ("Adam", "AdamW")
      for v in (NAN, INF, -1e-3)],
    *[(name, "eps", v, ValueError, "eps must be") for name in ("Adam", "AdamW") for v in (NAN, INF, -1e-8)],
    *[(name, "betas", v, ValueError, "betas[") for name in ("Adam", "AdamW")
      for v in ((NAN, 0.9), (0.9, INF), (1.0, 0.9), (0.9, 1.0), (-0.1, 0.9))],
    ("Adam", "betas", 0.9, TypeError, "betas must be a pair"),
    ("Adam", "betas", (0.9, 0.99, 0.999), TypeError, "betas must be a pair"),
]


def _make(name, pairs, **kwargs):
    kwargs = {"lr": 0.1, **kwargs} if name == "SGD" else kwargs
    return getattr(nn, name)(pairs, **kwargs)


@pytest.mark.parametrize("name, key, value, exc, fragment", BAD_SETTINGS,
                         ids=[f"{n}-{k}-{v!r}" for n, k, v, _, _ in BAD_SETTINGS])
def test_invalid_setting_is_refused_at_construction_and_on_assignment(rng, name, key, value, exc, fragment):
    pairs = [(rng.standard_normal(3), rng.standard_normal(3))]
    with pytest.raises(exc) as info:
        _make(name, pairs, **{key: value})
    assert fragment in str(info.value)
    opt = _make(name, pairs)
    before = getattr(opt, key)
    with pytest.raises(exc) as info:
        setattr(opt, key, value)
    assert fragment in str(info.value)
    assert getattr(opt, key) == before  # the old value stays


def _snapshot(opt):
    return ([p.copy() for p, _ in opt.params], {k: v.copy() for k, v in opt.state_dict().items()})


def _assert_unchanged(opt, snap):
    params, state = snap
    for (p, _), p0 in zip(opt.params, params):
        np.testing.assert_array_equal(p, p0)
    now = opt.state_dict()
    assert set(now) == set(state)
    for k in state:
        np.testing.assert_array_equal(now[k], state[k])


OPTIMIZERS = [("SGD", dict(momentum=0.9)), ("Adam", {}), ("AdamW", {})]


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[n for n, _ in OPTIMIZERS])
def test_failed_step_changes_nothing_read_only_parameter(rng, name, kwargs):
    model = nn.mlp([4, 5, 3], seed=0, dtype=np.float64)
    for _, g in model.parameters():
        g[...] = rng.standard_normal(g.shape)
    opt = _make(name, model, **kwargs)
    opt.step()
    snap = _snapshot(opt)
    last = model.parameters()[-1][0]
    last.flags.writeable = False  # the last parameter: every other one would be updated first
    with pytest.raises(ValueError, match="parameter 3 is read-only"):
        opt.step()
    _assert_unchanged(opt, snap)
    assert opt.steps == 1
    last.flags.writeable = True
    opt.step()
    assert opt.steps == 2


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[n for n, _ in OPTIMIZERS])
def test_failed_step_changes_nothing_setting_bypassing_the_check(rng, name, kwargs):
    """A value written past the attribute's check (into the instance dict) is still caught at
    the step, before any update."""
    pairs = [(rng.standard_normal(6), rng.standard_normal(6)) for _ in range(3)]
    opt = _make(name, pairs, **kwargs)
    opt.step()
    snap = _snapshot(opt)
    opt.__dict__["lr"] = NAN
    with pytest.raises(ValueError, match="lr must be finite"):
        opt.step()
    _assert_unchanged(opt, snap)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_failed_step_changes_nothing_setting_overflows_float32(rng, name):
    """1e39 is finite as a Python float but Inf in float32: refused for float32 parameters."""
    pairs = [(rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32))]
    opt = _make(name, pairs)
    opt.step()
    snap = _snapshot(opt)
    opt.lr = 1e39
    with pytest.raises(ValueError, match="overflows the parameters' dtype float32"):
        opt.step()
    _assert_unchanged(opt, snap)


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[n for n, _ in OPTIMIZERS])
def test_failed_step_changes_nothing_parameter_reshaped(rng, name, kwargs):
    p = rng.standard_normal((2, 3))
    q = rng.standard_normal(4)
    opt = _make(name, [(q, rng.standard_normal(4)), (p, rng.standard_normal((2, 3)))], **kwargs)
    opt.step()
    snap = _snapshot(opt)
    p.shape = (3, 2)  # in place: the optimizer's reference sees the new shape
    with pytest.raises(ValueError, match=r"gradient 1 is \(2, 3\) float64 but its parameter is \(3, 2\)"):
        opt.step()
    np.testing.assert_array_equal(q, snap[0][0])
    np.testing.assert_array_equal(p.reshape(-1), snap[0][1].reshape(-1))
    assert opt.steps == 1


def test_same_parameter_twice_is_refused(rng):
    p, g = rng.standard_normal(3), rng.standard_normal(3)
    with pytest.raises(ValueError, match="appears twice"):
        nn.SGD([(p, g), (p, g)], lr=0.1)


def test_zero_eps_and_zero_gradient_give_torchs_nan_not_an_exception():
    """0 / 0 in Adam's update is NaN in torch; the step completes for every parameter."""
    torch = pytest.importorskip("torch")
    p = np.array([1.0, 2.0])
    g = np.array([0.0, 1.0])
    opt = nn.Adam([(p, g)], lr=0.1, eps=0.0)
    tp = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    tp.grad = torch.tensor([0.0, 1.0], dtype=torch.float64)
    theirs = torch.optim.Adam([tp], lr=0.1, eps=0.0)
    opt.step()
    theirs.step()
    np.testing.assert_array_equal(p, tp.detach().numpy())  # [nan, 1.9]
    assert np.isnan(p[0]) and opt.steps == 1


@pytest.mark.parametrize("value", [-1.0, INF])
def test_an_unbounded_setting_states_one_range_for_every_bad_value(value):
    """lr has no upper bound: a negative and an infinite rate get the same description of what is
    allowed (a message once said "[0, inf]" for -1 and "must be finite" for inf)."""
    p, g = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match="lr must be finite and at least 0, got"):
        nn.SGD([(p, g)], lr=value)
