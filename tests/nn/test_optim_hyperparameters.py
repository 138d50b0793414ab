"""Hyper-parameters changed between steps behave as torch.optim's ``param_groups`` entries: the
new value is used from the next step on, state is created the first time a step needs it, and no
state array is ever a parameter. Schedules over many steps are compared with torch.optim, through a
raw parameter list and through a model."""

from __future__ import annotations

import numpy as np
import pytest

from fastlinear import nn

torch = pytest.importorskip("torch")


def _sgd_schedule(t: int) -> dict:
    """Momentum off, warmed up, off again and back; lr decays; dampening, weight decay and Nesterov
    switched on and off (Nesterov only while dampening is 0, so torch's construction check, which
    is the only one it has, would also accept it)."""
    momentum = [0.0, 0.0, 0.5, 0.9, 0.9, 0.0, 0.0, 0.7, 0.95, 0.3][t % 10]
    dampening = 0.2 if 10 <= t < 20 else 0.0
    return {
        "lr": 0.1 * 0.93**t,
        "momentum": momentum,
        "dampening": dampening,
        "weight_decay": [0.0, 0.01, 0.0, 0.1][t % 4],
        "nesterov": momentum > 0 and dampening == 0 and t % 3 == 0,
    }


def _adam_schedule(t: int) -> dict:
    return {
        "lr": [1e-3, 1e-2, 5e-3, 0.0][t % 4] * (1 + t / 10),
        "betas": [(0.9, 0.999), (0.5, 0.9), (0.0, 0.99), (0.99, 0.0)][(t // 3) % 4],
        "eps": [1e-8, 1e-3, 1e-6][t % 3],
        "weight_decay": [0.0, 0.05, 0.2][(t // 2) % 3],
    }


SCHEDULES = {"SGD": _sgd_schedule, "Adam": _adam_schedule, "AdamW": _adam_schedule}
START = {"SGD": dict(lr=0.1), "Adam": dict(lr=1e-3), "AdamW": dict(lr=1e-3, weight_decay=0.0)}
TOL = {np.float32: 3e-5, np.float64: 1e-11}


def _run_schedule(name, ours, torch_params, grads_of_step, steps, dtype):
    """Step ``ours`` and a torch optimizer over ``torch_params`` with the same schedule and
    gradients; return the torch optimizer."""
    theirs = getattr(torch.optim, name)(torch_params, **START[name])
    for t in range(steps):
        settings = SCHEDULES[name](t)
        for key, value in settings.items():
            setattr(ours, key, value)
            theirs.param_groups[0][key] = value
        for (_, g), tp, grad in zip(ours.params, torch_params, grads_of_step(t)):
            g[...] = grad
            tp.grad = torch.from_numpy(grad.copy())
        ours.step()
        theirs.step()
    return theirs


def _assert_no_state_aliases_a_parameter(opt):
    arrays = [a for p, g in opt.params for a in (p, g)]
    for name, states in opt.state.items():
        for i, s in enumerate(states):
            if s is not None:
                assert not any(np.shares_memory(s, a) for a in arrays), f"{name}.{i} aliases a parameter"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_hyperparameter_schedule_tracks_torch_param_groups_raw_params(rng, name, dtype):
    shapes = [(5, 7), (7,), (1,), (3, 2)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    pairs = [(p, np.zeros_like(p)) for p in params]
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(40)]
    ours = getattr(nn, name)(pairs, **START[name])
    theirs = _run_schedule(name, ours, tparams, lambda t: grads[t], 40, dtype)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    # State exists exactly where torch created it.
    for key, states in ours.state.items():
        for s, tp in zip(states, tparams):
            theirs_state = theirs.state[tp].get(key)
            assert (s is None) == (theirs_state is None), key
            if s is not None:
                np.testing.assert_allclose(s, theirs_state.numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    _assert_no_state_aliases_a_parameter(ours)


@pytest.mark.parametrize("backend", ["loops", "blas"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_hyperparameter_schedule_tracks_torch_param_groups_through_a_model(rng, name, backend):
    """The optimizer built from a model, trained by the model's own forward/backward; torch runs
    the same network on the same batches."""
    from fastlinear.nn.torch_bridge import to_torch

    model = nn.mlp([6, 9, 4], "tanh", dtype=np.float64, backend=backend, seed=3)
    tmodel = to_torch(model)
    ours = getattr(nn, name)(model, **START[name])
    theirs = getattr(torch.optim, name)(tmodel.parameters(), **START[name])
    loss_fn = nn.CrossEntropyLoss()
    for t in range(30):
        for key, value in SCHEDULES[name](t).items():
            setattr(ours, key, value)
            theirs.param_groups[0][key] = value
        x = rng.standard_normal((8, 6))
        labels = rng.integers(0, 4, 8)
        model.zero_grad()
        _, dlogits = loss_fn(model(x), labels)
        model.backward(dlogits, need_input_grad=False)
        ours.step()
        theirs.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(labels)).backward()
        theirs.step()
    for (_, p, _), tp in zip(model.named_parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-9, atol=1e-11)
    _assert_no_state_aliases_a_parameter(ours)


def test_momentum_switched_on_later_starts_its_buffer_from_the_gradient():
    """Momentum 0 at construction creates no buffer; setting it later creates one at that step,
    equal to the gradient (torch's rule), and leaves the parameter correct."""
    p = np.array([1.0, 2.0, 3.0])
    g = np.full(3, 0.1)
    opt = nn.SGD([(p, g)], lr=0.1)
    opt.step()
    assert opt.state["momentum_buffer"] == [None]
    opt.momentum = 0.9
    opt.step()
    np.testing.assert_allclose(p, [0.98, 1.98, 2.98], rtol=1e-15)
    np.testing.assert_array_equal(opt.state["momentum_buffer"][0], g)
    opt.step()  # buffer = 0.9 * 0.1 + 0.1
    np.testing.assert_allclose(p, [0.98 - 0.019, 1.98 - 0.019, 2.98 - 0.019], rtol=1e-14)


def test_lazily_created_state_round_trips_through_state_dict(rng):
    p = rng.standard_normal(4)
    g = rng.standard_normal(4)
    a = nn.SGD([(p, g)], lr=0.1)
    a.step()
    assert set(a.state_dict()) == {"steps"}
    a.momentum = 0.5
    a.step()
    q = p.copy()
    b = nn.SGD([(q, g)], lr=0.1, momentum=0.5)
    b.load_state_dict(a.state_dict())
    a.step()
    b.step()
    np.testing.assert_array_equal(p, q)
    fresh = nn.Adam([(rng.standard_normal(4), g)])
    with pytest.raises(KeyError, match="missing"):
        fresh.load_state_dict({"steps": np.array(3)})  # Adam after 3 steps must have its moments


@pytest.mark.parametrize("name, setting", [("SGD", "learning_rate"), ("Adam", "amsgrad"),
                                           ("AdamW", "momentum"), ("SGD", "betas")])
def test_unsupported_hyperparameter_is_refused_not_ignored(rng, name, setting):
    """A setting fastlinear does not have is an error, not an attribute no step would read."""
    pairs = [(rng.standard_normal(3), rng.standard_normal(3))]
    opt = getattr(nn, name)(pairs, lr=0.1)
    with pytest.raises(AttributeError, match=f"no setting '{setting}'; its settings are lr"):
        setattr(opt, setting, 0.5)
