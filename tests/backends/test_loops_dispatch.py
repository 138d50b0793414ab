"""The "loops" and "auto" kernels with the kernel interface (activation codes, fused db), against
the float64 reference: every variant the dispatchers can choose, on both sides of each threshold,
both dtypes, bias on/off, every activation, accumulate, db or None, and bitwise-equal results with
1 and 2 threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastlinear as fl

import reference as ref
from fastlinear.backends import auto, loops
from fastlinear.kernels import _generate
from helpers import DTYPE_IDS, DTYPES, randn, tolerance

L = loops

# (n, in, out) on both sides of every threshold, plus sizes 1, odd sizes and sizes that are not
# multiples of the register blocks (8 x 32 / 8 x 16 gradients, 4 x 4 forward).
THRESHOLD_SHAPES = {
    "forward": [(4, 64, 64), (5, 64, 64)],                     # 2**14
    "grad_input_f32": [(31, 128, 128), (32, 128, 128)],        # 2**19
    "grad_input_f64": [(15, 128, 128), (16, 128, 128)],        # 2**18
    "grad_weight": [(4, 128, 128), (5, 128, 128)],             # 2**16
    "grad_bias": [(512, 3, 128), (513, 3, 128)],               # 2**16 elements of dy
}
ODD_SHAPES = [(1, 1, 1), (1, 16, 16), (2, 3, 5), (7, 33, 17), (9, 37, 10), (13, 70, 3), (17, 5, 33),
              (33, 100, 19), (8, 784, 128), (4096 // 16, 256, 10), (3, 0, 4), (0, 5, 3),
              (600, 41, 17)]  # batch > DW_ROWS with narrow column edges (8-row and 1-row)
SHAPES = sorted({s for v in THRESHOLD_SHAPES.values() for s in v} | set(ODD_SHAPES))
ACTS = {0: lambda z: z, 1: lambda z: np.maximum(z, 0), 2: lambda z: 1 / (1 + np.exp(-z)), 3: np.tanh}
ACT_IDS = ["none", "relu", "sigmoid", "tanh"]


def _check(got, want, mag, k, dtype, what, extra=0.0):
    """Elementwise |got - want| <= tolerance (+ extra * eps for an activation's own rounding)."""
    assert got.dtype == np.dtype(dtype), what
    tol = tolerance(dtype, k, mag) + extra * float(np.finfo(dtype).eps)
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= tol), f"{what}: max error {err.max():.3g}, tolerance {tol.max():.3g}"


def _data(rng, shape, dtype):
    n, k, m = shape
    return (randn(rng, (n, k), dtype), randn(rng, (m, k), dtype), randn(rng, m, dtype),
            randn(rng, (n, m), dtype))


@pytest.mark.parametrize("act", range(4), ids=ACT_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kernels", [loops, auto], ids=["loops", "auto"])
def test_forward(kernels, dtype, shape, bias, act, rng):
    x, w, b, _ = _data(rng, shape, dtype)
    b = b if bias else None
    y = np.full((shape[0], shape[2]), np.nan, dtype)
    kernels.forward(y, x, w, b, act)
    z = ref.forward(x, w, b)
    _check(y, ACTS[act](z), ref.magnitude_forward(x, w, b), shape[1], dtype, "y", extra=4)


@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "add"])
@pytest.mark.parametrize("with_db", [True, False], ids=["db", "nodb"])
@pytest.mark.parametrize("factor", [1.0, 0.5], ids=["sum", "scaled"])  # 1 takes a path of its own
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kernels", [loops, auto], ids=["loops", "auto"])
def test_gradients(kernels, dtype, shape, factor, with_db, accumulate, rng):
    x, w, _, dy = _data(rng, shape, dtype)
    n, k, m = shape
    scale = dtype(factor)
    dw0, db0 = randn(rng, (m, k), dtype), randn(rng, m, dtype)
    dw = dw0.copy() if accumulate else np.full((m, k), np.nan, dtype)
    db = (db0.copy() if accumulate else np.full(m, np.nan, dtype)) if with_db else None
    kernels.grad_weight(dw, db, dy, x, scale, accumulate)
    base_w = dw0.astype(np.float64) if accumulate else 0.0
    _check(dw, base_w + factor * ref.grad_weight(dy, x), np.abs(base_w) + factor * ref.magnitude_grad_weight(dy, x),
           n + 1, dtype, "dw")
    base_b = db0.astype(np.float64) if accumulate else 0.0
    want_b = base_b + factor * ref.grad_bias(dy)
    mag_b = np.abs(base_b) + factor * ref.magnitude_grad_bias(dy)
    if with_db:
        _check(db, want_b, mag_b, n + 1, dtype, "db fused")
    db2 = db0.copy() if accumulate else np.full(m, np.nan, dtype)
    kernels.grad_bias(db2, dy, scale, accumulate)
    _check(db2, want_b, mag_b, n + 1, dtype, "db")
    dx = np.full((n, k), np.nan, dtype)
    kernels.grad_input(dx, dy, w)
    _check(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), m, dtype, "dx")


def _run_all(kernels, dtype, shape, seed):
    rng = np.random.default_rng(seed)
    x, w, b, dy = _data(rng, shape, dtype)
    n, k, m = shape
    y, dx = np.empty((n, m), dtype), np.empty((n, k), dtype)
    dw, db, db2 = np.empty((m, k), dtype), np.empty(m, dtype), np.empty(m, dtype)
    kernels.forward(y, x, w, b, 3)
    kernels.grad_weight(dw, db, dy, x, dtype(0.25 if seed % 2 else 1), False)
    kernels.grad_bias(db2, dy, dtype(0.25 if seed % 2 else 1), False)
    kernels.grad_input(dx, dy, w)
    return y, dx, dw, db, db2


class _Spy:
    """Wraps a kernel variant and records that it ran."""

    def __init__(self, fn, log, name):
        self.fn, self.log, self.name = fn, log, name

    def __call__(self, *args):
        self.log.add(self.name)
        return self.fn(*args)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_every_dispatch_branch_runs(dtype, monkeypatch):
    """Shapes on both sides of each threshold reach the serial and the parallel variant."""
    size = np.dtype(dtype).itemsize
    log: set[str] = set()
    monkeypatch.setattr(loops.forward_kernels, "forward_serial", _Spy(loops.forward_kernels.forward_serial, log, "fs"))
    monkeypatch.setattr(loops.forward_kernels, "forward_parallel", _Spy(loops.forward_kernels.forward_parallel, log, "fp"))
    monkeypatch.setattr(loops.grad_bias_kernels, "grad_bias_serial", _Spy(loops.grad_bias_kernels.grad_bias_serial, log, "bs"))
    monkeypatch.setattr(loops.grad_bias_kernels, "grad_bias_parallel", _Spy(loops.grad_bias_kernels.grad_bias_parallel, log, "bp"))
    s, p = loops._GRAD_INPUT[size]
    monkeypatch.setitem(loops._GRAD_INPUT, size, (_Spy(s, log, "xs"), _Spy(p, log, "xp")))
    s, p = loops._GRAD_WEIGHT[size]
    monkeypatch.setitem(loops._GRAD_WEIGHT, size, (_Spy(s, log, "ws"), _Spy(p, log, "wp")))
    sfx = "f32" if size == 4 else "f64"
    cases = {"forward": ("fs", "fp"), f"grad_input_{sfx}": ("xs", "xp"), "grad_weight": ("ws", "wp"),
             "grad_bias": ("bs", "bp")}
    for key, names in cases.items():
        for shape, name in zip(THRESHOLD_SHAPES[key], names):
            log.clear()
            with fl.threads(min(2, numba.config.NUMBA_NUM_THREADS)):
                _run_all(loops, dtype, shape, 0)
            if numba.config.NUMBA_NUM_THREADS == 1 and key in ("grad_bias", "grad_weight"):
                name = names[0]  # on one thread these always run serially (same bits)
            assert name in log and names[1 - names.index(name)] not in log, (key, shape, log)


def test_grad_bias_runs_serially_on_one_thread(monkeypatch):
    """Above the serial threshold, one thread runs the serial kernel (the same additions, one pass
    over dy) and more threads the parallel one."""
    log: set[str] = set()
    monkeypatch.setattr(loops.grad_bias_kernels, "grad_bias_serial", _Spy(loops.grad_bias_kernels.grad_bias_serial, log, "bs"))
    monkeypatch.setattr(loops.grad_bias_kernels, "grad_bias_parallel", _Spy(loops.grad_bias_kernels.grad_bias_parallel, log, "bp"))
    dy = np.ones((1024, 128), np.float32)
    with fl.threads(1):
        loops.grad_bias(np.empty(128, np.float32), dy, np.float32(1), False)
    assert log == {"bs"}
    if numba.config.NUMBA_NUM_THREADS >= 2:
        log.clear()
        with fl.threads(2):
            loops.grad_bias(np.empty(128, np.float32), dy, np.float32(1), False)
        assert log == {"bp"}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_grad_weight_runs_serially_on_one_thread_with_the_same_bits(dtype, monkeypatch, rng):
    """Above the serial threshold (below the packed crossover), one thread runs the serial direct
    kernel, more threads the parallel one; the bits are the same, with and without db."""
    size = np.dtype(dtype).itemsize
    log: set[str] = set()
    s, p = loops._GRAD_WEIGHT[size]
    monkeypatch.setitem(loops._GRAD_WEIGHT, size, (_Spy(s, log, "ws"), _Spy(p, log, "wp")))
    for n, k, m in [(64, 33, 40), (300, 129, 17), (4096, 256, 10)]:
        assert n * k * m > loops.GRAD_WEIGHT_SERIAL[size]
        assert not loops.runs_packed("grad_weight", size, n, k, m)
        dy, x = rng.standard_normal((n, m)).astype(dtype), rng.standard_normal((n, k)).astype(dtype)
        for with_db in (True, False):
            for accumulate in (True, False):
                out = {}
                for threads in (1, 2):
                    log.clear()
                    dw, db = np.full((m, k), 0.5, dtype), np.full(m, 0.25, dtype)
                    with fl.threads(min(threads, numba.config.NUMBA_NUM_THREADS)):
                        loops.grad_weight(dw, db if with_db else None, dy, x, dtype(0.5),
                                          accumulate)
                    if threads <= numba.config.NUMBA_NUM_THREADS:
                        assert log == ({"ws"} if threads == 1 else {"wp"})
                    out[threads] = (dw, db)
                # the serial kernel here against the parallel one (directly where Numba's pool
                # has a single thread: the same comparison, made on that thread)
                if numba.config.NUMBA_NUM_THREADS == 1:
                    dw, db = np.full((m, k), 0.5, dtype), np.full(m, 0.25, dtype)
                    p(dw, db if with_db else loops.ABSENT[size], dy, x, dtype(0.5), accumulate)
                    out[2] = (dw, db)
                assert np.array_equal(out[1][0], out[2][0])
                assert np.array_equal(out[1][1], out[2][1])


def test_generated_kernels_are_up_to_date():
    for path, text in _generate.generate().items():
        assert path.read_text() == text, f"rerun python -m fastlinear.kernels._generate ({path.name})"


def test_nan_and_inf_propagate():
    x = np.ones((9, 40), np.float32)
    w = np.ones((33, 40), np.float32)
    x[2, 5] = np.nan
    x[3, 7] = np.inf
    for act in range(4):
        y = np.empty((9, 33), np.float32)
        loops.forward(y, x, w, None, act)
        assert np.isnan(y[2]).all()
        assert (y[3] == ACTS[act](np.float64(np.inf))).all()
    dy = np.ones((9, 33), np.float32)
    dw, dx = np.empty((33, 40), np.float32), np.empty((9, 40), np.float32)
    loops.grad_weight(dw, None, dy, x, np.float32(1), False)
    assert np.isnan(dw[:, 5]).all() and np.isinf(dw[:, 7]).all()
    w[4, 6] = np.nan
    loops.grad_input(dx, dy, w)
    assert np.isnan(dx[:, 6]).all() and not np.isnan(dx[:, 5]).any()


@pytest.mark.skipif(loops.packed_forward is None, reason="no packed kernels in this build")
def test_packed_kernels_take_over_above_their_thresholds(monkeypatch, rng):
    log: set[str] = set()
    for name in ("packed_forward", "packed_grad_weight", "packed_grad_input"):
        monkeypatch.setattr(loops, name, _Spy(getattr(loops, name), log, name))
    _run_all(loops, np.float32, (64, 512, 512), 0)  # forward 2**24: still direct
    _run_all(loops, np.float32, (255, 256, 1024), 0)  # gradients just below 2**26: still direct
    assert log == {"packed_forward"}
    log.clear()
    shape = (513, 512, 256)  # just above 2**26 for every kernel
    x, w, b, dy = _data(rng, shape, np.float32)
    y, dx, dw, db, db2 = _run_all(loops, np.float32, shape, 1)
    assert log == {"packed_forward", "packed_grad_weight", "packed_grad_input"}
    x, w, b, dy = _data(np.random.default_rng(1), shape, np.float32)
    _check(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), shape[2], np.float32, "dx")
    _check(dw, 0.25 * ref.grad_weight(dy, x), 0.25 * ref.magnitude_grad_weight(dy, x), shape[0],
           np.float32, "dw")
    _check(db, 0.25 * ref.grad_bias(dy), 0.25 * ref.magnitude_grad_bias(dy), shape[0], np.float32, "db")
    _check(y, np.tanh(ref.forward(x, w, b)), ref.magnitude_forward(x, w, b), shape[1], np.float32, "y",
           extra=4)


@pytest.mark.skipif(loops.packed_forward is None, reason="no packed kernels in this build")
@pytest.mark.parametrize("shape, packed", [
    # a wide batch into 10 outputs: only the weight gradient (dw 10 x 1024) packs
    ((8192, 1024, 10), {"packed_grad_weight"}),
    # 32 inputs: the forward and the weight gradient pack, not the input gradient (dx 32 wide)
    ((4096, 32, 520), {"packed_forward", "packed_grad_weight"}),
    # a batch of 17: the forward (reading w in place) and the input gradient pack
    ((17, 2048, 2048), {"packed_forward", "packed_grad_input"}),
    # a batch of 15: only the input gradient (from a batch of 8, where it packs w in its tiles)
    ((15, 4096, 2048), {"packed_grad_input"}),
    # a batch of 7: nothing packs
    ((7, 4096, 4096), set()),
])
def test_narrow_sides_choose_the_kernel_per_op(monkeypatch, shape, packed):
    """Above the packed threshold with one side narrower than PACKED_MIN_DIM, each op runs the
    kernel that `loops.PACKED_MIN_SIDES` names for it, and gives the reference's result."""
    log: set[str] = set()
    for name in ("packed_forward", "packed_grad_weight", "packed_grad_input"):
        monkeypatch.setattr(loops, name, _Spy(getattr(loops, name), log, name))
    monkeypatch.setattr(loops, "_packed_above", dict(loops.DEFAULT_PACKED_ABOVE))
    assert shape[0] * shape[1] * shape[2] > loops.PACKED and min(shape) < loops.PACKED_MIN_DIM
    y, dx, dw, db, db2 = _run_all(loops, np.float32, shape, 0)
    assert log == packed
    x, w, b, dy = _data(np.random.default_rng(0), shape, np.float32)
    _check(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), shape[2], np.float32, "dx")
    _check(dw, ref.grad_weight(dy, x), ref.magnitude_grad_weight(dy, x), shape[0], np.float32, "dw")
    _check(y, np.tanh(ref.forward(x, w, b)), ref.magnitude_forward(x, w, b), shape[1], np.float32, "y",
           extra=4)


@pytest.mark.parametrize("op, size, shapes", [
    ("forward", 4, THRESHOLD_SHAPES["forward"]),
    ("forward", 8, THRESHOLD_SHAPES["forward"]),
    ("grad_input", 4, THRESHOLD_SHAPES["grad_input_f32"]),
    ("grad_input", 8, THRESHOLD_SHAPES["grad_input_f64"]),
    ("grad_weight", 4, THRESHOLD_SHAPES["grad_weight"]),
    ("grad_weight", 8, THRESHOLD_SHAPES["grad_weight"]),
])
def test_serial_kernel_names_the_serial_side_of_each_threshold(op, size, shapes):
    below, above = shapes
    serial = L.serial_kernel(op, size, *below)
    assert serial is {"forward": L.forward_kernels.forward_serial, "grad_input": L._GRAD_INPUT[size][0],
                      "grad_weight": L._GRAD_WEIGHT[size][0]}[op]
    assert L.serial_kernel(op, size, *above) is None


@pytest.mark.skipif(loops.packed_forward is None, reason="no packed kernels in this build")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_runs_packed_says_what_the_dispatch_runs(monkeypatch, dtype):
    """`loops.runs_packed` (which `fastlinear.warmup` uses to group kernels) against the spies on
    the packed kernels, with small crossovers so that small shapes cross them."""
    size = np.dtype(dtype).itemsize
    monkeypatch.setattr(loops, "_packed_above", {(op, s): 2**17 for op in (
        "forward", "grad_weight", "grad_input") for s in (4, 8)})
    log: set[str] = set()
    for name in ("packed_forward", "packed_grad_weight", "packed_grad_input"):
        monkeypatch.setattr(loops, name, _Spy(getattr(loops, name), log, name))
    shapes = [(1, 16, 16), (64, 64, 32), (64, 64, 33), (63, 64, 64), (64, 64, 64), (65, 64, 64),
              (128, 64, 64), (40, 128, 128), (64, 128, 128), (100, 90, 70), (300, 64, 8),
              (128, 8, 256), (256, 63, 64), (15, 128, 128), (16, 128, 128), (64, 1, 4096)]
    for n, k, m in shapes:
        for op in ("forward", "grad_weight", "grad_input"):
            log.clear()
            x, w, dy = (np.ones(s, dtype) for s in ((n, k), (m, k), (n, m)))
            if op == "forward":
                loops.forward(np.empty((n, m), dtype), x, w, None, 0)
            elif op == "grad_weight":
                loops.grad_weight(np.empty((m, k), dtype), None, dy, x, dtype(1), False)
            else:
                loops.grad_input(np.empty((n, k), dtype), dy, w)
            assert (f"packed_{op}" in log) == loops.runs_packed(op, size, n, k, m), (op, n, k, m)


@pytest.mark.skipif(loops.packed_forward is None, reason="no packed kernels in this build")
def test_a_low_crossover_moves_narrow_gradients_only_above_the_built_in_one(monkeypatch):
    """A tuned crossover (here 2**17 for everything) holds for wide shapes and for the forward's
    narrow in_features; a gradient with a narrow side packs only above its built-in crossover."""
    monkeypatch.setattr(loops, "_packed_above", {(op, s): 2**17 for op in (
        "forward", "grad_weight", "grad_input") for s in (4, 8)})
    monkeypatch.setattr(loops, "L2_BYTES", 2 << 20)
    for size in (4, 8):
        assert loops.runs_packed("grad_weight", size, 256, 256, 256)
        assert loops.runs_packed("forward", size, 256, 16, 256)
        assert not loops.runs_packed("forward", size, 4096, 256, 10)  # out_features below 64
        assert not loops.runs_packed("grad_weight", size, 4096, 256, 10)  # 2**23.3
        assert loops.runs_packed("grad_weight", size, 8192, 1024, 10)  # 2**26.3
        assert not loops.runs_packed("grad_weight", size, 1 << 21, 64, 4)  # dw 4 rows: below 8
        assert not loops.runs_packed("grad_weight", size, 1 << 20, 4, 256)  # dw 4 columns
        assert not loops.runs_packed("grad_input", size, 32, 256, 256)  # 2**21, w below the L2
        assert loops.runs_packed("grad_input", size, 32, 1024, 1024)  # 2**25, w 4 MiB or more
        assert loops.runs_packed("grad_input", size, 32, 2048, 2048)  # 2**27
        assert loops.runs_packed("grad_input", size, 8, 4096, 4096)  # 2**27
        assert not loops.runs_packed("grad_input", size, 7, 4096, 4096)  # batch below 8
        assert not loops.runs_packed("grad_input", size, 8, 2048, 2048)  # 2**25: direct
        assert loops.runs_packed("forward", size, 16, 4096, 4096)
        assert not loops.runs_packed("forward", size, 15, 4096, 4096)  # batch below 16


@pytest.mark.skipif(loops.packed_forward is None, reason="no packed kernels in this build")
def test_the_gradients_pack_an_operand_as_large_as_the_l2_cache_read_again_and_again(monkeypatch):
    """Below the built-in crossover the gradients pack where the direct kernel would read an
    operand of at least the L2's size from beyond it every 8 rows of its output, for enough rows
    (`loops.REREAD_ROWS`): w in the input gradient from a batch of 32, x in the weight gradient
    from 64 out_features."""
    monkeypatch.setattr(loops, "_packed_above", dict(loops.DEFAULT_PACKED_ABOVE))
    monkeypatch.setattr(loops, "L2_BYTES", 2 << 20)
    assert loops.runs_packed("grad_input", 8, 32, 512, 512)  # w 2 MiB
    assert loops.runs_packed("grad_input", 4, 64, 1024, 512)  # w 2 MiB
    assert not loops.runs_packed("grad_input", 8, 16, 512, 512)  # batch below 32
    assert not loops.runs_packed("grad_input", 4, 256, 512, 512)  # w 1 MiB, work 2**26
    assert not loops.runs_packed("grad_input", 8, 256, 512, 256)  # w 1 MiB
    assert not loops.runs_packed("grad_input", 8, 1 << 16, 32, 4096)  # in_features below 64
    assert loops.runs_packed("grad_weight", 8, 512, 512, 256)  # x 2 MiB
    assert loops.runs_packed("grad_weight", 4, 2048, 256, 128)  # x 2 MiB
    assert not loops.runs_packed("grad_weight", 4, 4096, 128, 64)  # out_features below 128
    assert not loops.runs_packed("grad_weight", 8, 256, 512, 512)  # x 1 MiB
    assert not loops.runs_packed("grad_weight", 4, 32768, 16, 128)  # in_features below 64
    assert not loops.runs_packed("grad_weight", 8, 8192, 256, 10)
    assert not loops.runs_packed("grad_weight", 8, 32, 8192, 256)  # batch below 64
    assert not loops.runs_packed("forward", 8, 32, 512, 512)  # the rule is the gradients'
    monkeypatch.setattr(loops, "L2_BYTES", 1 << 20)
    assert loops.runs_packed("grad_input", 4, 256, 512, 512)
    # a crossover measured for the op and dtype (fastlinear tune) turns the rule off for them
    monkeypatch.setattr(loops, "_packed_measured", {("grad_input", 4)})
    assert not loops.runs_packed("grad_input", 4, 256, 512, 512)
    assert loops.runs_packed("grad_input", 8, 32, 512, 512)
    monkeypatch.setattr(loops, "_packed_measured", set())
    # the dispatch follows runs_packed: the packed kernel gives the right values
    rng = np.random.default_rng(0)
    dy, w = randn(rng, (32, 512), np.float64), randn(rng, (512, 512), np.float64)
    dx = np.full((32, 512), np.nan)
    loops.grad_input(dx, dy, w)
    _check(dx, dy.astype(np.float64) @ w, np.abs(dy) @ np.abs(w), 512, np.float64, "dx")
    x = randn(rng, (512, 512), np.float64)
    dy = randn(rng, (512, 256), np.float64)
    dw, db = np.full((256, 512), np.nan), np.full(256, np.nan)
    loops.grad_weight(dw, db, dy, x, 1.0, False)
    _check(dw, dy.T @ x, np.abs(dy).T @ np.abs(x), 512, np.float64, "dw")
    _check(db, dy.sum(0), np.abs(dy).sum(0), 512, np.float64, "db")


def test_the_l2_size_is_read_from_the_machine_or_one_mib(tmp_path):
    assert loops._l2_bytes() >= 64 << 10

    def cache(*indices):
        base = tmp_path / str(len(list(tmp_path.iterdir())))
        for name, files in indices:
            (base / name).mkdir(parents=True)
            for file, text in files.items():
                (base / name / file).write_text(text + "\n")
        return str(base)

    l1 = ("index0", {"level": "1", "size": "48K"})
    assert loops._l2_bytes(cache(l1, ("index2", {"level": "2", "size": "2048K"}))) == 2 << 20
    assert loops._l2_bytes(cache(l1, ("index2", {"level": "2", "size": "2M"}))) == 2 << 20
    assert loops._l2_bytes(cache(("index2", {"level": "2", "size": "512k"}))) == 512 << 10
    # an index without its files, or with a size that is not one, is passed over
    assert loops._l2_bytes(cache(("index1", {}), ("index2", {"level": "2", "size": "1M"}))) == 1 << 20
    assert loops._l2_bytes(cache(("index1", {"level": "2"}),
                                 ("index2", {"level": "2", "size": "1280K"}))) == 1280 << 10
    for size in ("0K", "", "big"):  # no positive size: 1 MiB
        assert loops._l2_bytes(cache(("index2", {"level": "2", "size": size}))) == 1 << 20
    assert loops._l2_bytes(cache(l1)) == 1 << 20  # no L2
    assert loops._l2_bytes(str(tmp_path / "missing")) == 1 << 20


@pytest.mark.skipif(loops.packed_forward is None, reason="no packed kernels in this build")
def test_a_narrow_batch_packs_only_where_w_is_not_packed_whole_whatever_the_thread_count(
        monkeypatch, restore_threads):
    """A forward batch of 16-63 packs only up to the in-place limit, an input-gradient batch of
    8-15 only up to the in-tile limit (with w packed whole they were no faster than direct). The
    thread count, which only chooses between w in the tiles and whole (the same bits), never
    moves an op between its direct and packed kernels (different bits)."""
    monkeypatch.setattr(loops, "_packed_above", dict(loops.DEFAULT_PACKED_ABOVE))
    monkeypatch.setattr(loops, "_w_rows", {**loops._w_rows, ("w_in_tile_rows", 4): 0,
                                           ("w_in_place_rows", 4): 0})
    for threads in {1, fl.get_num_threads()}:
        fl.set_num_threads(threads)
        assert not loops.runs_packed("grad_input", 4, 8, 4096, 4096)
        assert loops.runs_packed("grad_input", 4, 16, 4096, 4096)
        assert loops.runs_packed("grad_input", 8, 8, 4096, 4096)
        assert not loops.runs_packed("forward", 4, 16, 4096, 4096)
        assert loops.runs_packed("forward", 8, 16, 4096, 4096)
