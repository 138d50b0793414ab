"""fastlinear.torch.Linear and replace_linear against torch.nn.Linear: the same outputs and
gradients (float32 and float64, leading dimensions, non-contiguous inputs, each fused activation),
the same parameters, init, state_dict and repr, fresh output and gradient tensors, and training
parity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import TOL_FACTOR

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlinear.torch")

import fastlinear as fl  # noqa: E402

DTYPES = (torch.float32, torch.float64)
DTYPE_IDS = ("float32", "float64")
ACTIVATIONS = (None, "relu", "sigmoid", "tanh")
TORCH_ACT = {None: lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
EPS = {torch.float32: float(np.finfo(np.float32).eps),
       torch.float64: float(np.finfo(np.float64).eps)}


def assert_close(got, expected, mag, k: int, what: str) -> None:
    """Both sides carry rounding error: allow twice the one-sided bound of helpers.tolerance."""
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: {tuple(got.shape)} != {tuple(expected.shape)}"
    tol = 2 * TOL_FACTOR * EPS[got.dtype] * math.sqrt(max(k, 1)) * mag.double()
    err = (got.double() - expected.double()).abs()
    assert bool((err <= tol).all()), (
        f"{what}: max err {err.max().item():.3g}, min tol {tol.min().item():.3g}")


def pair(in_features, out_features, *, bias=True, dtype=torch.float32, activation=None, seed=0):
    """A fastlinear layer and an nn.Linear with the same parameters."""
    torch.manual_seed(seed)
    ours = flt.Linear(in_features, out_features, bias=bias, dtype=dtype, activation=activation)
    ref = torch.nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def layouts(x):
    """The same values as ``x`` in C order, transposed-back (non-contiguous) and strided memory."""
    yield "contiguous", x
    yield "transposed", x.transpose(-1, -2).contiguous().transpose(-1, -2) if x.dim() >= 2 else x
    big = torch.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    big[..., ::2] = x
    yield "strided", big[..., ::2]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("lead", [(7,), (2, 3), (), (0,)], ids=["2d", "3d", "1d", "empty"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_same_as_nn_linear_with_activation(dtype, lead, bias, activation):
    k, m = 19, 6
    ours, ref = pair(k, m, bias=bias, dtype=dtype, activation=activation)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(lead + (k,), dtype=dtype, generator=gen)
    dy = torch.randn(lead + (m,), dtype=dtype, generator=gen)
    rows = math.prod(lead)
    for layout, x in layouts(x0):
        xr = x0.clone().requires_grad_(True)
        yr = TORCH_ACT[activation](ref(xr))
        yr.backward(dy)

        xo = x.detach().clone() if layout == "contiguous" else x.detach()
        xo.requires_grad_(True)
        ours.zero_grad()
        y = ours(xo)
        y.backward(dy)

        mag = x0.abs() @ ref.weight.detach().abs().T + (ref.bias.detach().abs() if bias else 0)
        assert_close(y.detach(), yr.detach(), mag, k, f"y ({layout})")
        # the activation's derivative is at most 1, so the pre-activation bounds carry over
        assert_close(xo.grad, xr.grad, dy.abs() @ ref.weight.detach().abs(), m, f"dx ({layout})")
        assert_close(ours.weight.grad, ref.weight.grad, dy.abs().reshape(-1, m).T
                     @ x0.abs().reshape(-1, k), rows, f"dw ({layout})")
        if bias:
            assert_close(ours.bias.grad, ref.bias.grad, dy.abs().reshape(-1, m).sum(0), rows,
                         f"db ({layout})")
        ref.zero_grad()


@pytest.mark.parametrize("backend", fl.available_backends())
def test_every_backend_is_selectable_and_matches(backend):
    ours, ref = pair(33, 17, dtype=torch.float64, activation="tanh")
    ours.backend = backend
    x = torch.randn(9, 33, dtype=torch.float64)
    torch.testing.assert_close(ours(x), torch.tanh(ref(x)), rtol=1e-12, atol=1e-12)
    assert flt.Linear(3, 2, backend=backend).backend == backend


def test_unknown_backend_or_activation_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'fast'.*'loops'"):
        flt.Linear(3, 2, backend="fast")
    with pytest.raises(ValueError, match="unknown activation 'gelu'.*'relu'"):
        flt.Linear(3, 2, activation="gelu")
    layer = flt.Linear(3, 2)
    with pytest.raises(ValueError, match="unknown backend"):
        layer.backend = "fast"
    assert layer.backend == "auto"


def test_same_parameters_init_state_dict_and_repr_as_nn_linear():
    torch.manual_seed(3)
    ours = flt.Linear(20, 30)
    torch.manual_seed(3)
    ref = torch.nn.Linear(20, 30)
    assert isinstance(ours, torch.nn.Linear)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)
    assert repr(ours) == repr(ref) == "Linear(in_features=20, out_features=30, bias=True)"
    assert repr(flt.Linear(2, 3, bias=False, activation="relu", backend="loops")) == (
        "Linear(in_features=2, out_features=3, bias=False, activation='relu', backend='loops')")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_state_dict_round_trip_to_and_from_nn_linear(bias):
    ours = flt.Linear(5, 4, bias=bias, dtype=torch.float64)
    ref = torch.nn.Linear(5, 4, bias=bias, dtype=torch.float64)
    ref.load_state_dict(ours.state_dict())
    assert ref.state_dict().keys() == ours.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(ref.state_dict()[key], value)
    other = torch.nn.Linear(5, 4, bias=bias, dtype=torch.float64)
    ours.load_state_dict(other.state_dict())
    for key, value in other.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value)


def test_two_backwards_accumulate_like_nn_linear():
    ours, ref = pair(8, 5, dtype=torch.float64, activation="sigmoid")
    x = torch.randn(6, 8, dtype=torch.float64)
    dy = torch.randn(6, 5, dtype=torch.float64)
    for _ in range(2):
        ours(x).backward(dy)
        torch.sigmoid(ref(x)).backward(dy)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-12, atol=1e-12)
    once = flt.Linear(8, 5, dtype=torch.float64, activation="sigmoid")
    once.load_state_dict(ours.state_dict())
    once(x).backward(dy)
    torch.testing.assert_close(ours.weight.grad, 2 * once.weight.grad, rtol=1e-12, atol=0)


def test_outputs_and_gradients_are_fresh_tensors():
    """A second forward must not overwrite the first output, and each backward hands autograd new
    gradient tensors (autograd then owns them as .grad)."""
    layer = flt.Linear(16, 16, activation="relu")
    x1, x2 = torch.randn(4, 16), torch.randn(4, 16)
    y1 = layer(x1)
    kept = y1.detach().clone()
    y2 = layer(x2)
    assert torch.equal(y1.detach(), kept)
    assert y1.data_ptr() != y2.data_ptr()
    for t in (x1, x2, layer.weight, layer.bias):
        assert y2.data_ptr() != t.data_ptr()

    grads = []
    layer.weight.register_hook(lambda g: grads.append(g))
    y1.sum().backward()
    y2.sum().backward()
    assert grads[0].data_ptr() != grads[1].data_ptr()
    assert not torch.equal(grads[0], grads[1])


def test_input_gradient_skipped_when_not_needed(monkeypatch):
    """The first layer of a network gets no dx: grad_input must not run for it."""
    calls = []
    real = fl.get_backend("loops")

    def grad_input(dx, dy, w):
        calls.append(dx.shape)
        real.grad_input(dx, dy, w)

    spy = fl.Backend("loops", real.forward, real.grad_weight, real.grad_bias, grad_input,
                     real.activation_grad)
    monkeypatch.setattr(flt, "get_backend", lambda name: spy)
    layer = flt.Linear(7, 3, activation="tanh")
    x = torch.randn(5, 7)
    layer(x).sum().backward()
    assert calls == [] and layer.weight.grad is not None and x.grad is None
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert calls == [(5, 7)] and x.grad.shape == (5, 7)


def test_frozen_weight_still_gives_bias_and_input_gradients():
    ours, ref = pair(6, 4, dtype=torch.float64)
    for layer in (ours, ref):
        layer.weight.requires_grad_(False)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    ours(x).square().sum().backward()
    ref(xr).square().sum().backward()
    assert ours.weight.grad is None
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-12)


def test_inference_under_no_grad_and_inference_mode():
    ours, ref = pair(10, 3, activation="relu")
    x = torch.randn(4, 10)
    with torch.no_grad():
        y = ours(x)
    assert not y.requires_grad
    with torch.inference_mode():
        yi = ours(x)
    torch.testing.assert_close(y, torch.relu(ref(x)).detach())
    torch.testing.assert_close(yi, y, rtol=0, atol=0)


def test_changing_the_output_in_place_before_backward_is_caught():
    """With an activation the backward reads the layer's output: autograd notices a change."""
    layer = flt.Linear(4, 3, activation="sigmoid")
    y = layer(torch.randn(2, 4))
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def mlp(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 32, dtype=dtype), torch.nn.ReLU(),
        torch.nn.Linear(32, 16, dtype=dtype), torch.nn.Tanh(),
        torch.nn.Linear(16, 4, dtype=dtype),
    )


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_mlp_trained_50_steps_matches_nn_linear(fuse):
    """A 3-layer MLP, SGD with momentum, cross-entropy: float64 parameters within 1e-10."""
    ref, ours = mlp(torch.float64), mlp(torch.float64)
    assert flt.replace_linear(ours, fuse_activations=fuse) is ours
    kinds = [type(m).__name__ for m in ours]
    assert kinds == (["Linear", "Identity", "Linear", "Identity", "Linear"] if fuse
                     else ["Linear", "ReLU", "Linear", "Tanh", "Linear"])
    assert all(isinstance(m, flt.Linear) for m in ours[::2])
    gen = torch.Generator().manual_seed(5)
    xs = torch.randn(50, 24, 12, dtype=torch.float64, generator=gen)
    ts = torch.randint(0, 4, (50, 24), generator=gen)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (ref, ours)]
    for x, t in zip(xs, ts):
        for model, opt in zip((ref, ours), opts):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), t).backward()
            opt.step()
    changed = 0
    for (name, p_ref), (_, p) in zip(ref.named_parameters(), ours.named_parameters()):
        err = (p - p_ref).abs().max().item()
        assert err <= 1e-10, f"{name}: max difference {err:.3g}"
        changed += int(not torch.equal(p, mlp(torch.float64).state_dict()[name]))
    assert changed == 6


def test_replace_linear_keeps_parameters_hooks_and_optimizer():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.Linear(4, 2)))
    model.eval()
    params = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    model[1][0].register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    keys = model.state_dict().keys()
    flt.replace_linear(model, backend="loops")
    assert isinstance(model[0], flt.Linear) and isinstance(model[1][0], flt.Linear)
    assert model[1][0].backend == "loops" and not model[0].training
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert model.state_dict().keys() == keys
    before = model[0].weight.detach().clone()
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    assert seen == [(3, 2)]
    assert not torch.equal(model[0].weight, before)


def test_replace_linear_leaves_subclasses_and_hooked_activations_alone():
    mha = torch.nn.MultiheadAttention(8, 2)
    relu = torch.nn.ReLU()
    relu.register_forward_hook(lambda *args: None)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), relu, mha)
    flt.replace_linear(model, fuse_activations=True)
    assert isinstance(model[0], flt.Linear) and model[0].activation is None
    assert model[1] is relu
    assert type(mha.out_proj) is not flt.Linear
    root = flt.replace_linear(torch.nn.Linear(3, 2))
    assert type(root) is flt.Linear


def test_replace_linear_refuses_a_model_in_bfloat16():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4)).to(torch.bfloat16)
    flt.replace_linear(model)
    with pytest.raises(TypeError, match="torch.bfloat16"):
        model(torch.randn(2, 4, dtype=torch.bfloat16))


def test_readme_pytorch_example_runs():
    """The example under "Use from PyTorch" in README.md (a ```py block, which the torch-free
    README test skips) runs as written and swaps and fuses what it says."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Use from PyTorch"):]
    block = re.search(r"```py\n(.*?)```", section, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    model = namespace["model"]
    assert [type(m).__name__ for m in model] == ["Linear", "Identity", "Linear", "Identity",
                                                 "Linear"]
    assert [m.activation for m in model[::2]] == ["relu", "relu", None]
    assert all(isinstance(m, flt.Linear) and m.weight.grad is not None for m in model[::2])
