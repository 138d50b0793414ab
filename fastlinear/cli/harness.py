"""Validate-then-time harness behind ``fastlinear compare``: every backend's kernels (and PyTorch's
CPU equivalents when torch is importable), side by side, on the same inputs and thread count.

Order of work for each (dtype, shape, op): build seeded inputs, run every contender once (this
compiles a Numba kernel or loads it from Numba's cache; that first-call time is kept on its own),
check each result against a float64 numpy reference, and only then time the contenders that
passed, interleaved (one sample of each in turn, repeated), reporting the median. A wrong result
is reported and never timed, so it cannot look like a win.

Ops: the four kernels one at a time (``forward``, ``grad_weight``, ``grad_bias``, ``grad_input``,
raw kernels writing into preallocated outputs) and ``step``, one whole layer step through the
public API: ``fl.linear`` then ``fl.linear_backward`` (dx, dw and db), output allocation and
argument checks included.

PyTorch ("torch"): ``forward`` is ``torch.nn.functional.linear`` (it allocates its output); the
three gradients are the explicit operations autograd runs for it (``mm(dy.t(), x)``,
``dy.sum(0)``, ``mm(dy, w)``) writing into preallocated tensors; ``step`` is ``F.linear`` followed
by autograd's ``backward``, fresh gradients each time.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._memory import aligned_copy, empty_aligned
from .._threads import get_num_threads
from ..activations import NONE as ACT_NONE
from ..backends import available_backends, get_backend
from . import problems
from .problems import KERNEL_OPS, OPS

TORCH = "torch"
#: Where `Problem` puts its arrays: on 64-byte lines, or in numpy's own buffers.
INPUTS = ("lines", "numpy")
_SETTLE_CALLS = 3
_SETTLE_S = 0.2

Call = Callable[[], tuple]


def torch_available() -> bool:
    """Whether PyTorch can be imported (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def available_contenders() -> tuple[str, ...]:
    """Every registered fastlinear backend, then "torch" when torch is importable."""
    return available_backends() + ((TORCH,) if torch_available() else ())


def check_contender(name: str) -> None:
    """Raise ValueError naming the valid choices when ``name`` cannot be compared."""
    if name == TORCH:
        if not torch_available():
            raise ValueError("backend 'torch' needs PyTorch, which is not installed")
        return
    try:
        get_backend(name)
    except ValueError:
        valid = ", ".join(repr(n) for n in available_contenders())
        raise ValueError(f"unknown backend {name!r}; valid backends are {valid}") from None


@dataclass
class Problem:
    """Seeded inputs for one shape (batch n, in_features k, out_features m) and dtype; on 64-byte
    lines unless ``inputs`` is ``"numpy"`` (numpy's own buffers, wherever malloc puts them)."""

    n: int
    k: int
    m: int
    dtype: np.dtype
    inputs: str = "lines"

    def __post_init__(self) -> None:
        rng = np.random.default_rng(0)
        dt = np.dtype(self.dtype)
        # on 64-byte lines, as Linear and fastlinear.nn keep theirs: with numpy's own buffers the
        # loop kernels' time depends on where malloc put them (`fastlinear._memory`), and so,
        # at some shapes, does OpenBLAS's (README, "Alignment")
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {self.inputs!r}")
        make = aligned_copy if self.inputs == "lines" else (lambda values, dt: values.astype(dt))
        self.x, self.w, self.b, self.dy = (
            make(rng.standard_normal(shape), dt)
            for shape in ((self.n, self.k), (self.m, self.k), (self.m,), (self.n, self.m)))
        self.one = dt.type(1)
        self._refs: dict[str, tuple] = {}

    def outputs(self, shape: tuple) -> np.ndarray:
        """A NaN-filled output array of ``shape``, placed as the inputs are."""
        a = (empty_aligned if self.inputs == "lines" else np.empty)(shape, self.x.dtype)
        a.fill(np.nan)
        return a

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n, self.k, self.m)

    def flops(self, op: str) -> int:
        """Floating-point operations of one call (`problems.flops`)."""
        return problems.flops(op, self.n, self.k, self.m)

    def check(self, op: str, got: tuple) -> float:
        """The worst error of ``got`` (the outputs of ``op``, in order) as a multiple of the
        tolerance (`problems.error_ratio`): correct when at most 1."""
        # Every contender is checked against the same float64 reference; only the latest op's is
        # kept (at 64x4096x4096 the references of all five ops would hold about 1 GB).
        if op not in self._refs:
            self._refs = {op: problems.reference(op, self.x, self.w, self.b, self.dy)}
        refs = self._refs[op]
        lengths = problems.reduction_lengths(op, self.n, self.k, self.m)
        return max(problems.error_ratio(_as_numpy(g), ref, mag, k, self.dtype)
                   for g, (ref, mag), k in zip(got, refs, lengths))


def memory_needed(shape: tuple[int, int, int], dtype: str, contenders: int) -> int:
    """Bytes one problem holds at its peak: inputs and one set of outputs per contender in
    ``dtype``, and the float64 reference with its magnitudes and absolute copies of the inputs."""
    n, k, m = shape
    elements = n * k + m * k + m + n * m  # x, w, b, dy; the outputs dx, dw, db, y have the same
    return elements * (np.dtype(dtype).itemsize * (1 + contenders) + 8 * 5)


def fastlinear_call(name: str, prob: Problem, op: str) -> Call:
    """A zero-argument call of backend ``name`` for ``op``; it returns the arrays it wrote.

    Kernel outputs are allocated once, here, and filled with NaN so that an element a kernel never
    writes fails validation. The forward runs with no activation, grad_weight without its fused
    bias gradient (grad_bias is timed on its own)."""
    import fastlinear as fl

    be = get_backend(name)
    x, w, b, dy, one, dt = prob.x, prob.w, prob.b, prob.dy, prob.one, prob.x.dtype
    if op == "step":
        y = prob.outputs((prob.n, prob.m))

        def step() -> tuple:
            fl.linear(x, w, b, backend=name, out=y)
            dx, dw, db = fl.linear_backward(dy, x, w, backend=name)
            return y, dw, db, dx

        return step
    if op == "forward":
        y = prob.outputs((prob.n, prob.m))
        return lambda: (be.forward(y, x, w, b, ACT_NONE), y)[1:]
    if op == "grad_weight":
        dw = prob.outputs(w.shape)
        return lambda: (be.grad_weight(dw, None, dy, x, one, False), dw)[1:]
    if op == "grad_bias":
        db = prob.outputs(b.shape)
        return lambda: (be.grad_bias(db, dy, one, False), db)[1:]
    if op == "grad_input":
        dx = prob.outputs(x.shape)
        return lambda: (be.grad_input(dx, dy, w), dx)[1:]
    raise ValueError(f"unknown op {op!r}; valid ops are {', '.join(OPS)}")


def torch_call(prob: Problem, op: str) -> Call:
    """PyTorch's CPU equivalent of ``op`` (see the module docstring); returns numpy-shareable
    tensors."""
    import torch
    import torch.nn.functional as F

    x, w, b, dy = (torch.from_numpy(a) for a in (prob.x, prob.w, prob.b, prob.dy))
    if op == "forward":
        return lambda: (F.linear(x, w, b),)
    if op == "grad_weight":
        dw = torch.empty_like(w)
        return lambda: (torch.mm(dy.t(), x, out=dw),)
    if op == "grad_bias":
        db = torch.empty_like(b)
        return lambda: (torch.sum(dy, 0, out=db),)
    if op == "grad_input":
        dx = torch.empty_like(x)
        return lambda: (torch.mm(dy, w, out=dx),)
    if op == "step":
        xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))

        def step() -> tuple:
            xg.grad = wg.grad = bg.grad = None
            y = F.linear(xg, wg, bg)
            y.backward(dy)
            return y, wg.grad, bg.grad, xg.grad

        return step
    raise ValueError(f"unknown op {op!r}; valid ops are {', '.join(OPS)}")


def make_call(name: str, prob: Problem, op: str) -> Call:
    """The call of contender ``name`` (a fastlinear backend or "torch") for ``op``."""
    return torch_call(prob, op) if name == TORCH else fastlinear_call(name, prob, op)


def _as_numpy(a) -> np.ndarray:
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


@dataclass
class Result:
    """One (dtype, shape, op, backend) row. ``status`` is "ok", "wrong" (validated and failed,
    not timed) or "skipped" (too slow to be worth timing at this size)."""

    shape: tuple[int, int, int]
    dtype: str
    op: str
    backend: str
    threads: int
    status: str
    flops: int
    first_call_s: float | None = None
    error: float | None = None  # worst error as a multiple of the tolerance (ok when <= 1)
    median_s: float | None = None
    gflops: float | None = None
    samples_s: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run(
    shapes: list[tuple[int, int, int]],
    dtypes: list[str],
    backends: list[str],
    ops: tuple[str, ...] = KERNEL_OPS,
    repeats: int = 5,
    min_sample_s: float = 0.002,
    settle: bool = True,
    progress: Callable[[str], None] | None = None,
    inputs: str = "lines",
) -> list[Result]:
    """Validate then time every (dtype, shape, op, backend); see the module docstring.

    ``progress`` is called with a short description once per (dtype, shape, op) as it starts.
    ``settle=False`` skips the pauses that let another thread pool's spinning threads go idle
    (taken only where the previous sample ran on another pool: `thread_pool`). ``inputs``: where
    the arrays start (`INPUTS`, `Problem`)."""
    threads = get_num_threads()
    if TORCH in backends:
        import torch

        torch.set_num_threads(threads)
    settle_s = _SETTLE_S if settle and threads > 1 else 0.0
    results = []
    for dtype in dtypes:
        for n, k, m in shapes:
            prob = Problem(n, k, m, np.dtype(dtype), inputs)
            for op in ops:
                if progress:
                    progress(f"{dtype} {n}x{k}x{m} {op}")
                rows = _validate(prob, op, backends, threads)
                _time([r for r in rows if r[0].ok], repeats, min_sample_s, settle_s)
                results.extend(row for row, _ in rows)
    return results


def _validate(prob: Problem, op: str, backends: list[str], threads: int) -> list:
    """First call (timed on its own) and check of each backend: ``[(Result, call or None)]``."""
    rows = []
    for name in backends:
        row = Result(prob.shape, str(np.dtype(prob.dtype)), op, name, threads, "skipped",
                     prob.flops(op))
        if name == "naive" and problems.naive_too_slow(prob.n, prob.k, prob.m):
            rows.append((row, None))
            continue
        call = make_call(name, prob, op)
        t0 = time.perf_counter()
        got = call()
        row.first_call_s = time.perf_counter() - t0
        row.error = prob.check(op, got)
        row.status = "ok" if row.error <= 1.0 else "wrong"
        rows.append((row, call))
    return rows


def thread_pool(name: str) -> str:
    """The thread pool that contender ``name`` runs its parallel work on: "numba" for the loop
    kernels, and for numpy's BLAS while its jobs run on Numba's pool (`fastlinear._blas_pool`);
    otherwise a pool of its own, named after the contender (torch's; OpenBLAS's, where blas and
    auto may use both)."""
    from .. import _blas_pool

    if name in ("loops", "naive") or (name in ("blas", "auto") and _blas_pool.installed()):
        return "numba"
    return name


def _time(rows: list, repeats: int, min_sample_s: float, settle_s: float) -> None:
    """Interleaved timing: each repeat takes one sample of every backend in turn."""
    number = {id(row): _calls_per_sample(call, min_sample_s) for row, call in rows}
    pools = {id(row): thread_pool(row.backend) for row, _ in rows}
    previous = None
    for _ in range(repeats):
        for row, call in rows:
            # After a backend on another thread pool ran, that pool's idle threads keep spinning
            # for a while (OpenBLAS's for ~0.1 s) and steal cores from this one: on 2 cores a
            # 0.5 ms Numba kernel took 8 ms in that window. Wait it out. Between backends on the
            # same pool there is nothing to wait for, and the pause itself costs accuracy: on a
            # 2-core KVM guest the spread of the samples (interquartile range over median) was
            # 0.22 and 0.41 with a pause before every sample against 0.15 and 0.08 with pauses
            # only between pools (asv_benchmarks/scripts/auto_spread.py pauses, README). Then a
            # few untimed calls wake this backend's threads.
            if pools[id(row)] != previous:
                time.sleep(settle_s)
            previous = pools[id(row)]
            for _ in range(_SETTLE_CALLS):
                call()
            count = number[id(row)]
            t0 = time.perf_counter()
            for _ in range(count):
                call()
            row.samples_s.append((time.perf_counter() - t0) / count)
    for row, _ in rows:
        row.median_s = statistics.median(row.samples_s)
        row.gflops = row.flops / row.median_s / 1e9


def _calls_per_sample(call: Call, min_sample_s: float) -> int:
    """How many calls make one timing sample last at least ``min_sample_s`` (calibrated on the
    fastest of a few calls, after the settling calls)."""
    for _ in range(_SETTLE_CALLS):
        call()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return max(1, int(min_sample_s / max(min(times), 1e-7)) + 1)
