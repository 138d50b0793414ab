"""A whole MLP trained side by side with PyTorch: same initial weights, same batches, 100 steps of
SGD with momentum or Adam in float64; the loss curves agree to 1e-6 relative."""

from __future__ import annotations

import numpy as np
import pytest

from fastlinear import nn
from fastlinear.datasets import load_digits, split_and_scale
from fastlinear.nn.torch_bridge import to_torch, torch_optimizer

torch = pytest.importorskip("torch")


@pytest.fixture
def one_thread(restore_threads):
    """One thread for Numba, BLAS and torch: the test is about values, and on a busy machine two
    spinning thread pools make it many times slower."""
    import fastlinear as fl

    before = torch.get_num_threads()
    fl.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "backend, activation",
    [("loops", "relu"), ("loops", "tanh"), ("loops", "sigmoid"), ("blas", "relu"), ("blas", "tanh")],
)
@pytest.mark.parametrize(
    "make_opt",
    [
        lambda m: nn.SGD(m, lr=0.05, momentum=0.9, weight_decay=1e-4),
        lambda m: nn.SGD(m, lr=0.05, momentum=0.9, nesterov=True),
        lambda m: nn.Adam(m, lr=1e-3),
        lambda m: nn.AdamW(m, lr=1e-3, weight_decay=0.01),
    ],
    ids=["sgd-momentum", "sgd-nesterov", "adam", "adamw"],
)
def test_mlp_loss_tracks_torch_for_100_steps(backend, activation, make_opt, one_thread):
    s = split_and_scale(*load_digits(), dtype=np.float64, seed=0)
    model = nn.mlp([64, 48, 32, 10], activation, dtype=np.float64, backend=backend, seed=3)
    opt = make_opt(model)
    tmodel = to_torch(model)
    topt = torch_optimizer(opt, tmodel)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for _ in range(100):
        idx = rng.choice(len(s.X_train), 32, replace=False)
        xb, yb = s.X_train[idx], s.y_train[idx]
        model.zero_grad()
        loss, dlogits = loss_fn(model(xb), yb)
        model.backward(dlogits, need_input_grad=False)
        opt.step()
        ours.append(loss)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(xb)), torch.from_numpy(yb))
        tloss.backward()
        topt.step()
        theirs.append(tloss.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert np.mean(ours[-10:]) < 0.9 * np.mean(ours[:10])  # it trained
    for (name, p, _), tp in zip(model.named_parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-6, atol=1e-9, err_msg=name)
