"""The loop kernels' time relative to numpy's for the same work, measured in the same process: the
numbers the regression gate checks (``../gate.sh``).

Why a ratio: on a shared virtual machine whole processes run 1.3-1.7x faster or slower than others,
for every library at once (ten fresh processes of one float32 256x512x512 grad_input at 2 threads:
loops 723-1322 us, numpy's matmul 732-1058 us, the slow processes slow for both). The absolute
``time_`` benchmarks of ``kernels.py`` carry that spread; a ratio of two times measured
alternately in one process cancels it.

Why one sample per process: asv's test of a change (Mann-Whitney U, p < 0.002) takes every sample
as independent, but the calls of one process share that process's speed, so a ``time_`` benchmark
with 4 processes of 10-50 calls each flagged an unchanged commit as 1.45x slower. Here each process
contributes one number, the median of its rounds' ratios, and the regular profile runs
`common.RELATIVE_ROUNDS` processes per revision (8).

Each round times a block of calls of the loops kernel, then a block of the numpy reference (blocks
of at least `BLOCK_S` of process CPU time, one thread for Numba and BLAS), and records their ratio;
the benchmark returns the median over `PAIRS` rounds. The references use numpy alone, so they do
not change between fastlinear revisions:

- forward: ``np.matmul(x, w.T, out=y)`` then ``np.add(y, b, out=y)``;
- grad_weight: ``np.matmul(dy.T, x, out=dw)``; grad_input: ``np.matmul(dy, w, out=dx)``;
- grad_bias: ``np.sum(dy, axis=0, out=db)``;
- step (``fl.linear`` then ``fl.linear_backward``): all four.
"""

from __future__ import annotations

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
#: rounds of (loops block, numpy block) per process
PAIRS = 31
#: the shortest block of calls, seconds of process CPU time
BLOCK_S = 2e-3


def numpy_call(op: str, shape: str):
    """``(fn, args)``: numpy's own computation of ``op`` on the float32 case of ``shape``."""
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


class LoopsOverNumpy(Benchmark):
    """Time of the loops backend over numpy's time for the same op, float32, one thread."""

    param_names = ["op", "shape"]
    params = [OPS, GATED_SHAPES]
    rounds = RELATIVE_ROUND_COUNT
    timeout = 600

    def setup(self, op, shape):
        use_threads(1)
        self.loops, self.loops_args, _ = checked_op("loops", op, "float32", shape, 1)
        self.ref, self.ref_args = numpy_call(op, shape)

    def track_loops_over_numpy(self, op, shape):
        for _ in range(3):  # warm both: caches, branch predictors, the pool's first use
            self.loops(*self.loops_args)
            self.ref(*self.ref_args)
        n_loops = _count(self.loops, self.loops_args)
        n_ref = _count(self.ref, self.ref_args)
        ratios = [_block(self.loops, self.loops_args, n_loops) / _block(self.ref, self.ref_args, n_ref)
                  for _ in range(PAIRS)]
        return statistics.median(ratios)

    track_loops_over_numpy.unit = "ratio"
