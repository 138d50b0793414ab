"""Validate-then-time harness behind ``fastlinear demo``: the four kernels of every backend, side
by side, on the same inputs, with the same thread count.

Order of work for each shape: build seeded inputs, run every backend's kernels once (this compiles
them or loads them from Numba's cache; that first-call time is reported on its own), check each
result against a float64 numpy reference, and only then time the backends that passed, interleaved
(one sample of each backend in turn, repeated), reporting the median.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .backends import Backend, get_backend
from .threads import get_num_threads

OPS = ("forward", "grad_weight", "grad_bias", "grad_input")
_SETTLE_CALLS = 3
_SETTLE_S = 0.2


@dataclass
class Problem:
    """Seeded inputs and preallocated outputs for one shape (batch, in_features, out_features)."""

    n: int
    k: int
    m: int
    dtype: np.dtype

    def __post_init__(self) -> None:
        rng = np.random.default_rng(0)
        dt = np.dtype(self.dtype)
        self.x = rng.standard_normal((self.n, self.k)).astype(dt)
        self.w = rng.standard_normal((self.m, self.k)).astype(dt)
        self.b = rng.standard_normal(self.m).astype(dt)
        self.dy = rng.standard_normal((self.n, self.m)).astype(dt)
        self.one = dt.type(1)

    def flops(self, op: str) -> int:
        """Floating-point operations of one call (a multiply-add counts as two)."""
        return self.n * self.m if op == "grad_bias" else 2 * self.n * self.k * self.m

    def runner(self, be: Backend, op: str) -> tuple[Callable[[], None], np.ndarray]:
        """A zero-argument call of ``be``'s kernel for ``op`` and the array it writes."""
        x, w, b, dy, one = self.x, self.w, self.b, self.dy, self.one
        if op == "forward":
            y = np.empty((self.n, self.m), self.x.dtype)
            return (lambda: be.forward(y, x, w, b, 0)), y
        if op == "grad_weight":
            dw = np.empty_like(w)
            return (lambda: be.grad_weight(dw, None, dy, x, one, False)), dw
        if op == "grad_bias":
            db = np.empty_like(b)
            return (lambda: be.grad_bias(db, dy, one, False)), db
        if op == "grad_input":
            dx = np.empty_like(x)
            return (lambda: be.grad_input(dx, dy, w)), dx
        raise ValueError(f"unknown op {op!r}; valid ops are {', '.join(OPS)}")

    def reference(self, op: str) -> np.ndarray:
        """The float64 result the kernel for ``op`` must reproduce."""
        x, w, dy = (a.astype(np.float64) for a in (self.x, self.w, self.dy))
        return {
            "forward": lambda: x @ w.T + self.b,
            "grad_weight": lambda: dy.T @ x,
            "grad_bias": lambda: dy.sum(axis=0),
            "grad_input": lambda: dy @ w,
        }[op]()


def max_rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute error relative to the largest reference magnitude."""
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-300)
    return float(np.abs(got.astype(np.float64) - ref).max(initial=0.0)) / scale


def tolerance(dtype: np.dtype, length: int) -> float:
    """Acceptable max relative error for a sum of ``length`` products in ``dtype``."""
    return 16 * float(np.finfo(dtype).eps) * max(length, 1) ** 0.5


@dataclass
class Result:
    """One (shape, op, backend) row."""

    shape: tuple[int, int, int]
    dtype: str
    op: str
    backend: str
    first_call_s: float
    error: float
    ok: bool
    median_s: float | None = None
    gflops: float | None = None


def run(
    shapes: list[tuple[int, int, int]],
    dtypes: list[str],
    backends: list[str],
    ops: tuple[str, ...] = OPS,
    repeats: int = 5,
    min_sample_s: float = 0.002,
) -> list[Result]:
    """Validate then time every (shape, dtype, op, backend); see the module docstring."""
    settle_s = _SETTLE_S if get_num_threads() > 1 else 0.0
    results = []
    for dtype in dtypes:
        for n, k, m in shapes:
            prob = Problem(n, k, m, np.dtype(dtype))
            for op in ops:
                ref = prob.reference(op)
                length = {"forward": k, "grad_weight": n, "grad_bias": n, "grad_input": m}[op]
                rows, calls = [], []
                for name in backends:
                    fn, out = prob.runner(get_backend(name), op)
                    t0 = time.perf_counter()
                    fn()
                    first = time.perf_counter() - t0
                    err = max_rel_error(out, ref)
                    row = Result((n, k, m), dtype, op, name, first, err, err <= tolerance(dtype, length))
                    rows.append(row)
                    if row.ok:
                        calls.append((row, fn, _calls_per_sample(fn, min_sample_s)))
                samples: dict[str, list[float]] = {row.backend: [] for row, _, _ in calls}
                for _ in range(repeats):
                    for row, fn, number in calls:
                        # After another backend ran, its idle threads keep spinning for a while
                        # (OpenBLAS's for ~0.1 s) and steal cores from this one: on 2 cores a
                        # 0.5 ms Numba kernel took 8 ms in that window. Wait it out, then make a
                        # few untimed calls to wake this backend's own threads.
                        time.sleep(settle_s)
                        for _ in range(_SETTLE_CALLS):
                            fn()
                        t0 = time.perf_counter()
                        for _ in range(number):
                            fn()
                        samples[row.backend].append((time.perf_counter() - t0) / number)
                for row, _, _ in calls:
                    row.median_s = statistics.median(samples[row.backend])
                    row.gflops = prob.flops(op) / row.median_s / 1e9
                results.extend(rows)
    return results


def _calls_per_sample(fn: Callable[[], None], min_sample_s: float) -> int:
    """How many calls make one timing sample last at least ``min_sample_s`` (calibrated on the
    fastest of a few calls, after the settling calls)."""
    for _ in range(_SETTLE_CALLS):
        fn()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return max(1, int(min_sample_s / max(min(times), 1e-7)) + 1)
