"""What the fastlinear benchmarks share: the timing profile and timer, the shape classes, seeded
page-aligned inputs, the thread setting, the skip rules, and the check that an op is right before
it is timed.

Compare a branch with main (from asv_benchmarks/; both must be committed):

    FASTLINEAR_BENCH_PROFILE=regular asv continuous --split main my-branch
    ./gate.sh main my-branch    # the regression gate (see README.md)
"""

from __future__ import annotations

import inspect
import os
import time
from typing import Callable, NamedTuple

import numba
import numpy as np
import threadpoolctl

import fastlinear as fl

PROFILE_VAR = "FASTLINEAR_BENCH_PROFILE"

# "fast" (the default) takes one sample of each benchmark: enough to see that everything runs.
# "regular" takes many samples in several processes per benchmark, for `asv continuous`/`asv
# compare`: `asv continuous` alternates the two revisions round by round, so more, shorter rounds
# spread a change in the machine's load over both revisions alike (see README.md, "The regression
# gate", for how these numbers were tuned). number stays 1: when a benchmark has a setup(), asv
# re-runs it before every timed call, so a larger number would not batch calls. raw_repeat is for
# the timeraw_ benchmarks (one fresh interpreter per sample); rate_time is how long track_gflops_
# keeps calling a kernel.
PROFILES = {
    "fast": dict(
        warmup_time=0.0, repeat=1, number=1, min_run_count=1, rounds=1,
        raw_repeat=1, rate_time=0.01,
    ),
    "regular": dict(
        warmup_time=0.2, repeat=(10, 50, 1.0), number=1, min_run_count=10, rounds=4,
        raw_repeat=(3, 5, 60.0), rate_time=0.25,
    ),
}
#: Processes per revision for the relative benchmarks (`relative.py`): more than the 4 of the
#: others, since their medians move less from one set of processes to the next.
RELATIVE_ROUNDS = {"fast": 1, "regular": 12}


def _read_profile() -> dict:
    name = os.environ.get(PROFILE_VAR, "fast")
    try:
        return PROFILES[name]
    except KeyError:
        valid = ", ".join(repr(p) for p in PROFILES)
        raise ValueError(f"{PROFILE_VAR}={name!r}; valid profiles are {valid}") from None


PROFILE = _read_profile()
RELATIVE_ROUND_COUNT = RELATIVE_ROUNDS[os.environ.get(PROFILE_VAR, "fast")]


def cpu_or_wall_time() -> float:
    """The timer of every time_ benchmark: the process's CPU time when the benchmark runs on one
    thread, wall-clock time otherwise.

    On one thread the two agree on an idle machine, but when other processes compete for the
    cores a call's wall-clock time includes the time it waited for one, which moved single-thread
    results by 10-30% between the rounds of one `asv continuous` run on a loaded 2-core machine;
    CPU time counts only the work. On several threads CPU time would add the threads up (and
    count their spinning), so those use wall-clock time and are noisier."""
    return time.process_time() if _threads == 1 else time.perf_counter()


class Benchmark:
    """Base of every benchmark class: the profile's timing settings and the timer."""

    timer = staticmethod(cpu_or_wall_time)
    timeout = 300
    warmup_time = PROFILE["warmup_time"]
    repeat = PROFILE["repeat"]
    number = PROFILE["number"]
    min_run_count = PROFILE["min_run_count"]
    rounds = PROFILE["rounds"]

    def setup_cache(self):
        # asv runs this once per commit and environment, in its own process, before any
        # benchmark: every benchmark process then loads compiled kernels from Numba's on-disk
        # cache, so none of them compiles (which would add to its time and its peak memory),
        # whatever the order the benchmarks run in.
        compile_all_kernels()


# --- Problem definitions -------------------------------------------------------------------------
# A copy of fastlinear/cli/problems.py (shape classes, FLOP counts, reduction lengths, the naive
# cut-off and the tolerance): asv runs this file against old commits that lack that module.
# tests/cli/test_problems.py checks that the two agree; change both together.

#: Shape classes: name -> (batch, in_features, out_features).
SHAPES = {
    "tiny": (1, 16, 16),  # one sample through a tiny layer: call overhead is most of the time
    "small": (32, 128, 128),  # a minibatch through a small layer
    "medium": (256, 512, 512),  # weight is 1 MiB in float32, 2 MiB in float64
    "large": (1024, 1024, 1024),  # 2.1 GFLOP per product: compute bound
    "skinny_in": (8, 784, 128),  # a few MNIST images into a hidden layer
    "skinny_out": (4096, 256, 10),  # a big batch into a 10-class output layer
    "wide": (64, 4096, 4096),  # weight is 64 MiB in float32: memory bound
}
DTYPES = ["float32", "float64"]
THREADS = [1, 2]
BACKENDS = list(fl.available_backends())
KERNELS = ["forward", "grad_weight", "grad_bias", "grad_input"]
#: The four kernels, then one whole layer step through the public API (fl.linear, then
#: fl.linear_backward for dx, dw and db).
OPS = KERNELS + ["step"]

# The naive kernels do about 2 GFLOP/s at larger shapes; past this many floating-point operations
# per product (about 0.1 s a call; the large and wide classes) their benchmarks are skipped.
NAIVE_MAX_FLOPS = 2 * 10**8

# Rounding-error allowance, in units of eps(dtype) * sqrt(reduction length) * magnitude, where the
# magnitude of an output element is the sum of the absolute values of its terms (see
# fastlinear/cli/problems.py for why 8).
TOL_FACTOR = 8.0


def reduction_lengths(op: str, shape: str) -> tuple:
    """The length of the sum behind each output of ``op`` (step: y, dw, db, dx)."""
    n, k, m = SHAPES[shape]
    per_output = {"forward": k, "grad_weight": n, "grad_bias": n, "grad_input": m}
    if op == "step":
        return tuple(per_output[o] for o in KERNELS)
    return (per_output[op],)


def tolerance(dtype, k: int, mag) -> np.ndarray:
    """Elementwise allowed error for a sum of length ``k`` in ``dtype`` whose terms have absolute
    sum ``mag``."""
    eps = float(np.finfo(dtype).eps)
    return TOL_FACTOR * eps * max(k, 1) ** 0.5 * np.asarray(mag, dtype=np.float64)


class Case(NamedTuple):
    """Inputs and preallocated C-contiguous outputs for one shape class and dtype."""

    x: np.ndarray  # (batch, in_features)
    w: np.ndarray  # (out_features, in_features)
    b: np.ndarray  # (out_features,)
    dy: np.ndarray  # (batch, out_features)
    y: np.ndarray  # (batch, out_features)
    dw: np.ndarray  # (out_features, in_features)
    db: np.ndarray  # (out_features,)
    dx: np.ndarray  # (batch, in_features)
    scale: np.generic  # 1, as for reduction="sum" (linear_backward's default)


# Every input and output starts on a page boundary. numpy's own buffers start wherever malloc puts
# them, which differs from process to process; on the 2-core dev machine the float32 small
# forward (loops, one thread) took about 21 us with those and 16.5 us page-aligned, so each asv
# process drew its own offset and an A/A comparison moved by up to 15%.
_ALIGN = 4096


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a page boundary."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    buf = np.empty(nbytes + _ALIGN, np.uint8)
    start = -buf.ctypes.data % _ALIGN
    return buf[start:start + nbytes].view(dt).reshape(shape)


def make_case(shape: str, dtype: str, seed: int = 0) -> Case:
    """Standard-normal inputs from a seeded generator, and empty outputs, all page-aligned."""
    n, k, m = SHAPES[shape]
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        a = aligned_empty(shape, dt)
        a[...] = rng.standard_normal(shape, dtype=dt)
        return a

    return Case(
        x=normal(n, k),
        w=normal(m, k),
        b=normal(m),
        dy=normal(n, m),
        y=aligned_empty((n, m), dt),
        dw=aligned_empty((m, k), dt),
        db=aligned_empty((m,), dt),
        dx=aligned_empty((n, k), dt),
        scale=dt.type(1),
    )


def _n_params(fn) -> int:
    return len(inspect.signature(getattr(fn, "py_func", fn)).parameters)


def op_call(backend: str, op: str, c: Case) -> tuple[Callable, tuple, tuple]:
    """``(fn, args, outputs)``: ``fn(*args)`` runs ``op`` with ``backend`` and writes ``outputs``.

    Kernels get no activation and no fused bias gradient; kernels with those arguments (an
    ``act`` code after forward's bias, a ``db`` after grad_weight's ``dw``) are recognised by
    their parameter count, so the suite runs on commits before and after that change. The
    gradients overwrite (no accumulate) with a scale of 1."""
    be = fl.get_backend(backend)
    if op == "forward":
        extra = (0,) if _n_params(be.forward) == 5 else ()
        return be.forward, (c.y, c.x, c.w, c.b) + extra, (c.y,)
    if op == "grad_weight":
        if _n_params(be.grad_weight) == 6:
            return be.grad_weight, (c.dw, None, c.dy, c.x, c.scale, False), (c.dw,)
        return be.grad_weight, (c.dw, c.dy, c.x, c.scale, False), (c.dw,)
    if op == "grad_bias":
        return be.grad_bias, (c.db, c.dy, c.scale, False), (c.db,)
    if op == "grad_input":
        return be.grad_input, (c.dx, c.dy, c.w), (c.dx,)
    if op == "step":
        grads = [None, None, None]

        def step(x, w, b, dy, y):
            fl.linear(x, w, b, backend=backend, out=y)
            grads[:] = fl.linear_backward(dy, x, w, backend=backend)

        return step, (c.x, c.w, c.b, c.dy, c.y), _LazyOutputs(c.y, grads)
    raise ValueError(f"unknown op {op!r}; valid ops are {', '.join(OPS)}")


class _LazyOutputs:
    """The outputs of a step: y, then dw, db, dx as the last call returned them."""

    def __init__(self, y: np.ndarray, grads: list) -> None:
        self.y, self.grads = y, grads

    def arrays(self) -> tuple:
        dx, dw, db = self.grads
        return (self.y, dw, db, dx)


def outputs_of(outputs) -> tuple:
    return outputs.arrays() if isinstance(outputs, _LazyOutputs) else outputs


def op_flops(op: str, shape: str) -> int:
    """Floating-point operations in one call, counting a multiply-add as two."""
    n, k, m = SHAPES[shape]
    product, rows = 2 * n * k * m, n * m
    return {
        "forward": product + rows,  # the product, then the bias
        "grad_weight": product,
        "grad_bias": rows,
        "grad_input": product,
        "step": 3 * product + 2 * rows,  # forward, dw, db, dx
    }[op]


def skip_if_too_slow(backend: str, shape: str) -> None:
    """Raise NotImplementedError (asv's "skipped") for combinations that take too long."""
    n, k, m = SHAPES[shape]
    if backend == "naive" and 2 * n * k * m > NAIVE_MAX_FLOPS:
        raise NotImplementedError(f"naive at {shape} ({n}x{k}x{m}) takes a second or more per call")


def compile_all_kernels() -> None:
    """Call every op of every backend once in each dtype (compiling its kernels, or loading them
    from Numba's cache), with the argument types every benchmark uses."""
    for dtype in DTYPES:
        case = make_case("tiny", dtype)
        for backend in BACKENDS:
            for op in OPS:
                fn, args, _ = op_call(backend, op, case)
                fn(*args)


_threads: int | None = None  # the count last set in this process


def use_threads(n: int) -> None:
    """Run Numba kernels and BLAS on ``n`` threads; skip the benchmark if Numba's pool is smaller.

    asv re-runs setup() before every timed call; the count is set only when it changes, so that
    re-running setup stays cheap and leaves the caches as the previous call left them."""
    global _threads
    if n > numba.config.NUMBA_NUM_THREADS:
        raise NotImplementedError(
            f"{n} threads requested, but Numba's pool has {numba.config.NUMBA_NUM_THREADS}"
        )
    if n != _threads:
        fl.set_num_threads(n)
        _threads = n


def _as_float64(a):
    if isinstance(a, np.ndarray):
        return a.astype(np.float64)
    if isinstance(a, np.generic):
        return np.float64(a)
    return a  # the accumulate flag, the activation code, None


def _reference(op: str, shape: str, dtype: str, absolute: bool = False) -> tuple:
    """The blas backend's results for ``op`` on the float64 copy of the case's inputs; with
    ``absolute``, on their absolute values, which gives each output's magnitude (the sum of the
    absolute values of its terms)."""
    c64 = Case(*(_as_float64(a) for a in cached_case(shape, dtype)))
    if absolute:
        c64 = Case(*(np.abs(a) if isinstance(a, np.ndarray) else a for a in c64))
    # The reference runs on one BLAS thread: OpenBLAS workers keep spinning for a while after a
    # call and slow the next Numba call on the same cores (on the 2-core dev machine, a 17 us
    # two-thread forward took 0.2-3 ms right after a two-thread float64 matmul).
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        fn, args, outputs = op_call("blas", op, c64)
        fn(*args)
    return tuple(a.copy() for a in outputs_of(outputs))


def check_op(backend: str, op: str, shape: str, dtype: str) -> float:
    """Run ``op`` of ``backend`` once, compare every output with the blas backend in float64
    (within `tolerance`), and return the largest error relative to the largest reference element.

    Outputs are filled with NaN first, so an element the kernel never writes fails as well.
    Raises AssertionError when they disagree, so a wrong kernel fails its benchmark instead of
    looking fast. The call is also the warm-up, outside any timed region: it compiles the kernels
    or loads them from Numba's cache, and starts the thread pool."""
    refs = _reference(op, shape, dtype)
    mags = _reference(op, shape, dtype, absolute=True)
    fn, args, outputs = op_call(backend, op, cached_case(shape, dtype))
    for out in outputs_of(outputs):
        if out is not None:
            out.fill(np.nan)
    fn(*args)
    worst = 0.0
    for got, ref, mag, k in zip(outputs_of(outputs), refs, mags, reduction_lengths(op, shape)):
        err = np.abs(got.astype(np.float64) - ref)
        bad = ~(err <= tolerance(got.dtype, k, mag))  # NaN counts as bad
        if bad.any():
            raise AssertionError(
                f"backend {backend!r}, op {op!r}, {shape} {dtype}: {int(bad.sum())} of {bad.size} "
                f"elements differ from the blas reference by more than the tolerance")
        scale = max(float(np.abs(ref).max(initial=0.0)), 1e-300)
        worst = max(worst, float(np.abs(got.astype(np.float64) - ref).max(initial=0.0)) / scale)
    return worst


# asv runs setup() before every timed call; the inputs and the check are done once per process.
_cases: dict[tuple[str, str], Case] = {}
_checked: dict[tuple, float] = {}


def cached_case(shape: str, dtype: str) -> Case:
    """`make_case(shape, dtype)`, built once per process."""
    key = (shape, dtype)
    if key not in _cases:
        _cases[key] = make_case(shape, dtype)
    return _cases[key]


def checked_op(backend: str, op: str, dtype: str, shape: str, threads: int):
    """Return ``(fn, args, error)`` for ``op``: checked and warmed up on ``threads`` threads (set
    them first with `use_threads`); ``error`` is the check's relative error."""
    key = (backend, op, dtype, shape, threads)
    if key not in _checked:
        _checked[key] = check_op(backend, op, shape, dtype)
    fn, args, _ = op_call(backend, op, cached_case(shape, dtype))
    return fn, args, _checked[key]


def best_time(fn, args: tuple, budget: float) -> float:
    """The shortest of repeated calls ``fn(*args)``, calling at least once and until ``budget``
    seconds have passed. The shortest call is the one least disturbed by the rest of the machine."""
    best = float("inf")
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn(*args)
        t1 = time.perf_counter()
        best = min(best, t1 - t0)
        if t1 - start >= budget:
            return best

