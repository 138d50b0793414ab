"""Arrays on 64-byte lines: `fl.empty_aligned` / `fl.zeros_aligned`, and every long-lived array
that fastlinear allocates for its kernels (weights, gradients, reused buffers, optimizer state,
the CLI's batch) starting on one, without compiling a kernel a second time."""

from __future__ import annotations

import numpy as np
import pytest

import fastlinear as fl
from fastlinear import nn
from fastlinear._compile import compile_count
from fastlinear.cli.train import _NumpySteps
from fastlinear.nn.buffers import RowBuffer
from helpers import DTYPE_IDS, DTYPES, randn

SHAPES = [0, 1, 7, (0, 5), (1, 1), (3, 5), (33, 17), (257, 129), (1024, 1024), (2, 3, 5)]


def on_a_line(a: np.ndarray) -> bool:
    """Starts on a 64-byte line (an empty array has no data to place: always true)."""
    return a.size == 0 or a.ctypes.data % 64 == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_empty_and_zeros_aligned_start_on_a_line_with_the_shape_and_dtype_asked(shape, dtype):
    # numpy's own buffers of these sizes start 16 or 48 bytes past a line (malloc's alignment
    # is 16), so a run of them would not all pass by chance
    for make in (fl.empty_aligned, fl.zeros_aligned):
        arrays = [make(shape, dtype) for _ in range(8)]
        want = (shape,) if isinstance(shape, int) else shape
        for a in arrays:
            assert on_a_line(a)
            assert a.shape == want and a.dtype == np.dtype(dtype)
            assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
        if make is fl.zeros_aligned:
            assert not any(a.any() for a in arrays)
    # the arrays do not overlap: each write stays in its own array
    a, b = fl.zeros_aligned(shape, dtype), fl.zeros_aligned(shape, dtype)
    a.fill(1)
    assert not b.any()


def test_default_dtype_is_float32_and_numpy_ints_are_dimensions():
    assert fl.empty_aligned((2, 3)).dtype == np.float32
    assert fl.zeros_aligned(np.int64(4), np.float64).shape == (4,)
    assert fl.empty_aligned((np.int32(2), 3)).shape == (2, 3)


@pytest.mark.parametrize("shape", [-1, (3, -1), (2.5, 3), (True, 2), ("3",)], ids=str)
def test_a_bad_dimension_is_a_value_error_naming_the_shape(shape):
    for make in (fl.empty_aligned, fl.zeros_aligned):
        with pytest.raises(ValueError, match="shape .*non-negative int"):
            make(shape)


def test_a_bad_dtype_is_a_type_error():
    with pytest.raises(TypeError):
        fl.empty_aligned((2, 2), "no such dtype")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_a_layers_parameters_and_gradients_start_on_lines(dtype, bias):
    for in_f, out_f in [(1, 1), (3, 5), (33, 17), (784, 130)]:
        layer = fl.Linear(in_f, out_f, bias=bias, dtype=dtype, seed=0)
        arrays = [layer.weight, layer.grad_weight] + ([layer.bias, layer.grad_bias] if bias else [])
        assert all(on_a_line(a) for a in arrays)
        w = layer.weight
        layer.reset_parameters()  # written in place: the same aligned array
        assert layer.weight is w and on_a_line(layer.weight)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_training_buffers_and_optimizer_state_start_on_lines(dtype):
    rng = np.random.default_rng(0)
    model = nn.mlp([37, 19, 7], "relu", dtype=dtype, seed=1)
    opt = nn.Adam(model, lr=1e-3)
    steps = _NumpySteps(model, opt, batch_size=13, n_features=37, dtype=dtype)
    X, y = randn(rng, (40, 37), dtype), rng.integers(0, 7, 40)
    for idx in (np.arange(13), np.arange(13, 26), np.arange(26, 31)):  # a short last batch too
        steps.step(X, y, idx)
    assert on_a_line(steps.xb)
    for name in ("exp_avg", "exp_avg_sq"):
        assert all(on_a_line(a) for a in opt.state[name])
    for layer in model.linears:
        assert on_a_line(layer.weight) and on_a_line(layer.grad_weight)
    buf = RowBuffer(37, dtype)
    for n in (0, 1, 5, 300, 3):
        rows = buf.rows(n)
        assert rows.shape == (n, 37) and on_a_line(buf.array) and on_a_line(rows)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_aligned_arrays_compile_nothing_more_and_give_the_same_bits(dtype, rng):
    n, k, m = 9, 70, 33
    x, dy = randn(rng, (n, k), dtype), randn(rng, (n, m), dtype)
    w, b = randn(rng, (m, k), dtype), randn(rng, (m,), dtype)
    y = fl.linear(x, w, b, activation="tanh", backend="loops")
    grads = fl.linear_backward(dy, x, w, activation="tanh", y=y, backend="loops")
    before = compile_count()

    def lined(a):
        out = fl.empty_aligned(a.shape, a.dtype)
        out[...] = a
        return out

    xa, dya, wa, ba = (lined(a) for a in (x, dy, w, b))
    ya = fl.linear(xa, wa, ba, activation="tanh", backend="loops")
    grads_a = fl.linear_backward(dya, xa, wa, activation="tanh", y=lined(y), backend="loops")
    assert compile_count() == before, "an aligned array compiled a second specialisation"
    assert np.array_equal(ya, y)
    for got, ref in zip(grads_a, grads):
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compare_and_tune_time_kernels_on_arrays_on_lines(dtype):
    from fastlinear import tuning
    from fastlinear.cli import harness

    prob = harness.Problem(33, 17, 9, np.dtype(dtype))
    assert all(on_a_line(a) for a in (prob.x, prob.w, prob.b, prob.dy))
    # the same values as the unaligned arrays made from the same draws
    rng = np.random.default_rng(0)
    assert np.array_equal(prob.x, rng.standard_normal((33, 17)).astype(dtype))
    for op in ("forward", "grad_weight", "grad_bias", "grad_input"):
        outs = harness.fastlinear_call("loops", prob, op)()
        assert all(on_a_line(a) for a in outs)
    for op in ("forward", "grad_weight", "grad_input"):
        args, operands = tuning._op_args(op, np.dtype(dtype).name, 33, 17, 9,
                                         np.random.default_rng(1))
        arrays = [a for a in args + operands if isinstance(a, np.ndarray)]
        assert len(arrays) >= 7 and all(on_a_line(a) for a in arrays)
