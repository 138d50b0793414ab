"""The torch operators behind fastlinear.torch: torch.library.opcheck, gradcheck in float64 for each
activation, torch.compile(fullgraph=True), and the errors for inputs the kernels cannot run."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlinear.torch")

from fastlinear.activations import CODES  # noqa: E402

ACTIVATIONS = tuple(CODES)


def _inputs(lead, k, m, dtype, bias, requires_grad=False):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(lead + (k,), dtype=dtype, generator=gen)
    w = torch.randn(m, k, dtype=dtype, generator=gen)
    b = torch.randn(m, dtype=dtype, generator=gen) if bias else None
    return [t.requires_grad_(requires_grad) if t is not None else None for t in (x, w, b)]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("lead", [(5,), (2, 3), ()], ids=["2d", "3d", "1d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_opcheck_forward_op(dtype, lead, activation):
    for bias in (True, False):
        for requires_grad in (False, True):
            x, w, b = _inputs(lead, 6, 4, dtype, bias, requires_grad)
            torch.library.opcheck(torch.ops.fastlinear.linear.default,
                                  (x, w, b, CODES[activation], "auto"))


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_opcheck_backward_op(dtype, activation):
    x, w, _ = _inputs((2, 5), 6, 4, dtype, bias=False)
    y = torch.rand(2, 5, 4, dtype=dtype)  # a valid activation output (in (0, 1))
    dy = torch.randn(2, 5, 4, dtype=dtype)
    for mask in [(True, True, True), (False, True, True), (True, False, False),
                 (False, False, True)]:
        torch.library.opcheck(torch.ops.fastlinear.linear_backward.default,
                              (dy, x, w, y, CODES[activation], *mask, "auto"))


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck_float64(activation, bias):
    """Finite differences against both paths: the eager autograd.Function and the operator."""
    x, w, b = _inputs((3, 2), 5, 4, torch.float64, bias, requires_grad=True)
    args = (x, w, b) if bias else (x, w)
    assert torch.autograd.gradcheck(lambda *a: flt.linear(*a, activation=activation), args)
    op_args = (x, w, b if bias else None)
    assert torch.autograd.gradcheck(
        lambda x, w, b: torch.ops.fastlinear.linear(x, w, b, CODES[activation], "loops"), op_args)


@pytest.mark.parametrize("path", ["eager", "op"])
def test_double_backward_is_refused_clearly(path):
    """create_graph=True gives the first derivatives; a second one raises instead of being
    silently dropped (gx depends on w, so d(gx)/dw is not zero)."""
    x, w, b = _inputs((3,), 4, 2, torch.float64, True, requires_grad=True)
    if path == "eager":
        y = flt.linear(x, w, b, activation="tanh")
    else:
        y = torch.ops.fastlinear.linear(x, w, b, CODES["tanh"], "auto")
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gx_ref,) = torch.autograd.grad(torch.tanh(x @ w.T + b).sum(), x)
    torch.testing.assert_close(gx.detach(), gx_ref, rtol=1e-12, atol=1e-12)
    assert gx.requires_grad
    with pytest.raises(RuntimeError, match="fastlinear.linear_backward.*no autograd formula"):
        gx.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_torch_compile_fullgraph_matches_eager(dtype):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(flt.Linear(10, 16, activation="relu", dtype=dtype),
                                flt.Linear(16, 12, activation="sigmoid", dtype=dtype),
                                flt.Linear(12, 3, dtype=dtype))
    graphs = []

    def recording_backend(gm, example_inputs):
        graphs.append(str(gm.graph))
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    recorder = torch.compile(model, fullgraph=True, backend=recording_backend)
    x = torch.randn(2, 7, 10, dtype=dtype)
    eager = model(x)
    eager.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for fn in (compiled, recorder):
        model.zero_grad()
        out = fn(x)
        out.square().sum().backward()
        torch.testing.assert_close(out, eager, rtol=0, atol=0)
        for p, g in zip(model.parameters(), grads):
            torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
    assert graphs and all(g.count("fastlinear.linear") == 3 for g in graphs)


@pytest.mark.slow
def test_torch_compile_default_backend_matches_eager():
    """Inductor (which compiles C++ for the CPU, tens of seconds) calls the operators as
    external kernels."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(flt.Linear(10, 16, activation="tanh"), flt.Linear(16, 3))
    x = torch.randn(4, 10)
    eager = model(x)
    eager.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out = torch.compile(model, fullgraph=True)(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g)


# --- inputs the kernels cannot run: a clear error, never a silent cast -------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_unsupported_dtype_refused_with_its_name(dtype):
    layer = flt.Linear(4, 3).to(dtype)
    with pytest.raises(TypeError, match=str(dtype)):
        layer(torch.ones(2, 4, dtype=dtype))
    with pytest.raises(TypeError, match=str(dtype)):
        torch.ops.fastlinear.linear(torch.ones(2, 4, dtype=dtype), layer.weight.detach(), None,
                                    0, "auto")


def test_integer_tensors_refused():
    with pytest.raises(TypeError, match="torch.int32"):
        flt.linear(torch.ones(2, 4, dtype=torch.int32), torch.ones(3, 4, dtype=torch.int32))


def test_mixed_dtypes_refused_naming_both():
    layer = flt.Linear(4, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"x has dtype torch.float32 but weight has dtype "
                                        r"torch.float64"):
        layer(torch.ones(2, 4))
    w = torch.ones(3, 4)
    with pytest.raises(TypeError, match="bias has dtype torch.float64"):
        flt.linear(torch.ones(2, 4), w, torch.ones(3, dtype=torch.float64))


def test_non_cpu_tensor_refused_with_its_device():
    layer = flt.Linear(4, 3, device="meta")
    with pytest.raises(ValueError, match="device meta"):
        layer(torch.ones(2, 4))


def test_autocast_refused():
    layer = flt.Linear(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="autocast.*torch.bfloat16"):
            layer(torch.ones(2, 4))
    assert layer(torch.ones(2, 4)).dtype == torch.float32


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError,
                       match=r"x of shape \(2, 5\) does not fit weight of shape \(3, 4\)"):
        flt.Linear(4, 3)(torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"bias of shape \(2,\)"):
        flt.linear(torch.ones(2, 4), torch.ones(3, 4), torch.ones(2))


def test_vmap_over_the_input_matches_nn_linear():
    torch.manual_seed(0)
    ours = flt.Linear(4, 3, activation="tanh")
    ref = torch.nn.Linear(4, 3)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        got = torch.func.vmap(ours, in_dims=1)(x)
        expected = torch.tanh(ref(x.transpose(0, 1)))
    torch.testing.assert_close(got, expected)
    params = {k: v.detach().unsqueeze(0).expand(2, *v.shape) for k, v in ours.named_parameters()}
    with pytest.raises(NotImplementedError, match="vmap over the weight or bias"):
        torch.func.vmap(lambda p, x: torch.func.functional_call(ours, p, (x,)))(params, x[:2])


def test_torch_func_grad_is_refused_by_torch():
    """torch.func.grad / jacrev need a functorch-aware autograd rule, which custom operators do
    not have in torch 2.13: torch raises rather than computing anything."""
    layer = flt.Linear(4, 3)
    with pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.grad(lambda x: layer(x).sum())(torch.ones(2, 4))


def test_non_tensor_and_sparse_inputs_refused():
    w = torch.ones(3, 4)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        flt.linear([[1.0] * 4], w)
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        flt.linear(torch.ones(2, 4), [[1.0] * 4] * 3)
    with pytest.raises(TypeError, match="x has layout torch.sparse_coo"):
        flt.linear(torch.ones(2, 4).to_sparse(), w)
