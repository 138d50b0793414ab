"""The loop kernels' time in units of numpy's time for the same work, measured in the same process:
the numbers the regression gate checks (``../gate.sh``).

Why a ratio: on a shared virtual machine whole processes run 1.3-1.7x faster or slower than others,
for every library at once (ten fresh processes of one float32 256x512x512 grad_input at 2 threads:
loops 723-1322 us, numpy's matmul 732-1058 us, the slow processes slow for both). The absolute
``time_`` benchmarks of ``kernels.py`` carry that spread: with 4 processes per revision an
unchanged commit compared 1.1x-1.45x slower than itself in four of the twenty gated benchmarks. A
time measured in units of numpy's time in the same process cancels the process's speed.

How: asv runs setup right before every sample; setup times numpy's computation of the op (as many
calls as numpy makes in `SAMPLE_S`, process CPU time, one thread for Numba and BLAS), and the
benchmark's timer is process CPU time divided by that. So asv records, for each sample (the same
number of calls of the loops kernel), the loops kernel's time over numpy's just before it; asv
shows it as seconds: read "1.30s" as 1.30 times numpy's time. The references use numpy alone, so
they do not change between fastlinear revisions:

- forward: ``np.matmul(x, w.T, out=y)`` then ``np.add(y, b, out=y)``;
- grad_weight: ``np.matmul(dy.T, x, out=dw)``; grad_input: ``np.matmul(dy, w, out=dx)``;
- grad_bias: ``np.sum(dy, axis=0, out=db)``;
- step (``fl.linear`` then ``fl.linear_backward``): all four.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from .common import (
    OPS,
    RELATIVE_ROUND_COUNT,
    Benchmark,
    cached_case,
    checked_op,
    use_threads,
)

#: The shape classes the gate covers: tiny is call overhead, large and wide take long.
GATED_SHAPES = ["small", "medium", "skinny_in", "skinny_out"]
#: blocks of numpy calls behind `reference_time`
BLOCKS = 31
#: the shortest block of calls, seconds of process CPU time
BLOCK_S = 2e-3
#: the shortest timed sample (calls of the loops kernel per sample: this over numpy's time)
SAMPLE_S = 2e-4


_numpy_calls: dict[tuple[str, str], tuple] = {}


def numpy_call(op: str, shape: str):
    """``(fn, args)``: numpy's own computation of ``op`` on the float32 case of ``shape`` (built
    once per process)."""
    if (op, shape) not in _numpy_calls:
        _numpy_calls[op, shape] = _numpy_call(op, shape)
    return _numpy_calls[op, shape]


def _numpy_call(op: str, shape: str):
    c = cached_case(shape, "float32")

    def forward(x, w, b, y):
        np.matmul(x, w.T, out=y)
        np.add(y, b, out=y)

    def grad_weight(dy, x, dw):
        np.matmul(dy.T, x, out=dw)

    def grad_bias(dy, db):
        np.sum(dy, axis=0, out=db)

    def grad_input(dy, w, dx):
        np.matmul(dy, w, out=dx)

    def step(x, w, b, y, dy, dw, db, dx):
        forward(x, w, b, y)
        grad_weight(dy, x, dw)
        grad_bias(dy, db)
        grad_input(dy, w, dx)

    ops = {"forward": (forward, (c.x, c.w, c.b, c.y)),
           "grad_weight": (grad_weight, (c.dy, c.x, c.dw)),
           "grad_bias": (grad_bias, (c.dy, c.db)),
           "grad_input": (grad_input, (c.dy, c.w, c.dx)),
           "step": (step, (c.x, c.w, c.b, c.y, c.dy, c.dw.copy(), c.db.copy(), c.dx.copy()))}
    return ops[op]


def _block(fn, args, count: int) -> float:
    t0 = time.process_time()
    for _ in range(count):
        fn(*args)
    return (time.process_time() - t0) / count


def _count(fn, args) -> int:
    """Calls per block: enough for `BLOCK_S` (process_time ticks are coarse on some systems)."""
    fastest = min(_block(fn, args, 1) for _ in range(5))
    return max(1, int(BLOCK_S / max(fastest, 1e-7)) + 1)


#: numpy's time per call for the benchmark being run in this process (seconds), set by setup
_unit_s = 1.0
_reference_s: dict[tuple[str, str], float] = {}


def reference_time(op: str, shape: str) -> float:
    """numpy's time for one call of ``op`` at ``shape`` (seconds of process CPU time), measured
    once per process: the median of `BLOCKS` blocks after three warm-up calls."""
    key = (op, shape)
    if key not in _reference_s:
        fn, args = numpy_call(op, shape)
        for _ in range(3):
            fn(*args)
        count = _count(fn, args)
        _reference_s[key] = statistics.median(_block(fn, args, count) for _ in range(BLOCKS))
    return _reference_s[key]


def in_numpy_units() -> float:
    """The benchmark's timer: process CPU time in units of numpy's time for the same call."""
    return time.process_time() / _unit_s


class LoopsOverNumpy(Benchmark):
    """Time of the loops backend in units of numpy's time for the same op, float32, one thread."""

    param_names = ["op", "shape"]
    params = [OPS, GATED_SHAPES]
    timer = staticmethod(in_numpy_units)
    rounds = RELATIVE_ROUND_COUNT
    timeout = 600

    def setup(self, op, shape):
        global _unit_s
        use_threads(1)
        self.loops, self.args, _ = checked_op("loops", op, "float32", shape, 1)
        # a sample of at least SAMPLE_S: single calls of a few microseconds moved by 1.27x
        # between two sets of processes of the same code
        self.calls = max(1, math.ceil(SAMPLE_S / reference_time(op, shape)))
        # asv runs setup right before each sample: numpy's time measured here, next to the
        # sample, is its unit. With one reference per process, measured at its start, the
        # memory-bound skinny_out kernels compared 1.22x slower than themselves (A/A).
        fn, args = numpy_call(op, shape)
        _unit_s = _block(fn, args, self.calls) * self.calls

    def time_loops_in_numpy_units(self, op, shape):
        fn, args = self.loops, self.args
        for _ in range(self.calls):
            fn(*args)
