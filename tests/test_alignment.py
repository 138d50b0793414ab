"""Arrays on 64-byte lines: `fl.empty_aligned` / `fl.zeros_aligned`, and every long-lived array
that fastlinear allocates for its kernels (weights, gradients, reused buffers, optimizer state,
the CLI's batch) starting on one, without compiling a kernel a second time."""

from __future__ import annotations

import numba
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
def test_aligned_arrays_are_the_kernels_type_compile_nothing_more_and_give_the_same_bits(dtype, rng):
    for shape in [(0,), (5,), (0, 3), (3, 5), (33, 17)]:
        assert numba.typeof(fl.empty_aligned(shape, dtype)) == numba.typeof(np.empty(shape, dtype))
        assert numba.typeof(fl.zeros_aligned(shape, dtype)) == numba.typeof(np.empty(shape, dtype))
    n, k, m = 9, 70, 33
    x, dy = randn(rng, (n, k), dtype), randn(rng, (n, m), dtype)
    w, b = randn(rng, (m, k), dtype), randn(rng, (m,), dtype)
    loops = fl.get_backend("loops")
    one = np.dtype(dtype).type(1)

    def run(x, dy, w, b, out):
        y, dw, db, dx = (out(s, dtype) for s in ((n, m), (m, k), (m,), (n, k)))
        loops.forward(y, x, w, b, 3)  # the raw kernels: nothing copied or wrapped on the way
        loops.grad_weight(dw, db, dy, x, one, False)
        loops.grad_input(dx, dy, w)
        return y, dw, db, dx

    ref = run(x, dy, w, b, np.empty)
    before = compile_count()
    got = run(*(fl.aligned_copy(a) for a in (x, dy, w, b)), fl.empty_aligned)
    assert compile_count() == before, "an aligned array compiled a second specialisation"
    for g, r in zip(got, ref):
        assert on_a_line(g) and np.array_equal(g, r)


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


@pytest.mark.parametrize("shape", [2.5, None, "ab", [1, [2]], (2.0, 3), (np.bool_(True), 2)],
                         ids=str)
def test_a_shape_that_is_no_shape_is_a_value_error_naming_it(shape):
    with pytest.raises(ValueError, match=r"shape .*: every dimension must be a non-negative int"):
        fl.empty_aligned(shape)


def test_numpy_int_dimensions_do_not_overflow():
    # 40000 * 40000 overflows int32: the dimensions become Python ints before they are multiplied
    a = fl.empty_aligned((np.int32(40000), np.int32(40000)), np.uint8)
    assert a.shape == (40000, 40000) and on_a_line(a)
    assert fl.empty_aligned(np.array(3)).shape == (3,)


@pytest.mark.parametrize("dtype", [object, "S0", "V0", [("a", object)]], ids=str)
def test_a_dtype_without_numeric_storage_is_a_type_error_naming_it(dtype):
    with pytest.raises(TypeError, match="has no fixed-size numeric storage"):
        fl.zeros_aligned(3, dtype)


def test_none_dtype_is_float32_as_for_a_layer():
    assert fl.empty_aligned((2, 2), None).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_aligned_copy_keeps_values_and_rounds_once(dtype):
    values = np.random.default_rng(3).standard_normal((7, 9))
    a = fl.aligned_copy(values, dtype)
    assert on_a_line(a) and a.flags.c_contiguous and a.dtype == dtype
    assert np.array_equal(a, values.astype(dtype))
    b = fl.aligned_copy(a)  # its own dtype
    assert b.dtype == dtype and np.array_equal(a, b) and not np.shares_memory(a, b)
    t = fl.aligned_copy(values.T)  # any layout in, C order out
    assert t.flags.c_contiguous and np.array_equal(t, values.T)


def test_per_call_outputs_are_placed_from_the_size_where_it_pays():
    from fastlinear._memory import PLACE_MIN_BYTES, empty_output

    dt = np.dtype(np.float32)
    big = empty_output((PLACE_MIN_BYTES // 4 // 8, 8), dt)
    assert on_a_line(big) and big.nbytes == PLACE_MIN_BYTES and big.base is not None
    small = empty_output((3, 5), dt)
    assert small.base is None and small.shape == (3, 5) and small.dtype == dt  # numpy's own
    assert empty_output((0, 5), dt).shape == (0, 5)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_outputs_that_the_next_layer_reads_start_on_lines(dtype):
    from fastlinear._memory import PLACE_MIN_BYTES

    width = 256
    rows = PLACE_MIN_BYTES // (width * np.dtype(dtype).itemsize) + 1
    model = nn.mlp([width, width, 10], "relu", dtype=dtype, seed=0, backend="loops")
    seen = []
    real = fl.get_backend("loops").forward

    class Spy:
        def __getattr__(self, name):
            return getattr(fl.get_backend("loops"), name)

        def forward(self, y, x, w, b, act):
            seen.append((x.ctypes.data % 64, y.nbytes, y.ctypes.data % 64))
            real(y, x, w, b, act)

    x = fl.aligned_copy(np.random.default_rng(0).standard_normal((rows, width)), dtype)
    from fastlinear.nn import sequential

    get = sequential.get_backend
    sequential.get_backend = lambda name: Spy()
    try:
        model.predict(x)
    finally:
        sequential.get_backend = get
    assert len(seen) == 2
    assert seen[0][1] >= PLACE_MIN_BYTES and seen[0][2] == 0  # layer 1's y ...
    assert seen[1][0] == 0  # ... is layer 2's x, on a line


def test_a_layers_activation_gradient_buffer_starts_on_a_line(rng):
    layer = fl.Linear(37, 19, activation="tanh", seed=0)
    x = randn(rng, (13, 37), np.float32)
    y = layer(x)
    layer.backward(np.ones_like(y))
    assert layer._g is not None and on_a_line(layer._g)


@pytest.mark.parametrize("opt_class", [nn.Adam, nn.SGD])
def test_optimizer_state_stays_on_lines_after_a_state_load(opt_class):
    model = nn.mlp([37, 19, 7], "relu", seed=1)
    kwargs = {"momentum": 0.9} if opt_class is nn.SGD else {}
    opt = opt_class(model, lr=1e-3, **kwargs)
    x = np.random.default_rng(0).standard_normal((5, 37)).astype(np.float32)
    loss, dlogits = nn.CrossEntropyLoss()(model(x), np.arange(5) % 7)
    model.backward(dlogits, need_input_grad=False)
    opt.step()
    state = opt.state_dict()
    other = opt_class(model, lr=1e-3, **kwargs)
    other.load_state_dict(state)
    arrays = [a for name in other.state for a in other.state[name] if a is not None]
    assert arrays and all(on_a_line(a) for a in arrays)
    for name in other.state:
        for a, b in zip(other.state[name], opt.state[name]):
            assert (a is None and b is None) or (np.array_equal(a, b) and not np.shares_memory(a, b))


def test_the_distributed_batch_buffer_starts_on_a_line():
    from fastlinear.distributed import cli as dcli
    from fastlinear.distributed.comm import SingleProcess

    model = nn.mlp([37, 19, 7], "relu", seed=1)
    opt = nn.SGD(model, lr=1e-2)
    X = np.random.default_rng(0).standard_normal((40, 37)).astype(np.float32)
    trainer = dcli.DistributedSteps(SingleProcess(), model, opt, 13, X, np.arange(40) % 7)
    assert on_a_line(trainer.xb)
