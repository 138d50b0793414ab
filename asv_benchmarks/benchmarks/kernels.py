"""The four raw kernels of every backend, called into preallocated outputs, and one whole layer
step (fl.linear then fl.linear_backward) through the public API.

One class per op, each over backend x dtype x shape class x threads. setup() sets the thread
count, skips combinations that take too long (naive at the large and wide shapes), then (once
per process) checks the op against the blas backend in float64, which is also the warm-up that
compiles or loads the kernels; only the call itself is timed. Per op:

- time_<op>: wall-clock time of one call;
- peakmem_<op>: peak resident memory of the benchmark process (imports and inputs included);
- track_gflops_<op>: rate of the fastest of repeated calls, GFLOP/s (higher is better: asv's
  compare treats every number as lower-is-better, so leave these out of a regression gate);
- track_error_<op>: the check's largest error relative to the largest reference element, the
  correctness number riding along with the timing (lower is better; it fails the benchmark
  outright when over the tolerance, so a fast but wrong kernel never shows as a win).

Compare a branch with main (from asv_benchmarks/; both must be committed):

    FASTLINEAR_BENCH_PROFILE=regular asv continuous --split --factor 1.1 \\
        -b '^kernels\\..*\\.time_' main my-branch
"""

from .common import (
    BACKENDS,
    DTYPES,
    PROFILE,
    SHAPES,
    THREADS,
    Benchmark,
    best_time,
    checked_op,
    op_flops,
    skip_if_too_slow,
    use_threads,
)


class _Op(Benchmark):
    op = ""  # set by each subclass
    param_names = ["backend", "dtype", "shape", "threads"]
    params = [BACKENDS, DTYPES, list(SHAPES), THREADS]

    def setup(self, backend, dtype, shape, threads):
        skip_if_too_slow(backend, shape)
        use_threads(threads)
        self.fn, self.args, self.error = checked_op(backend, self.op, dtype, shape, threads)
        self.flops = op_flops(self.op, shape)

    def _call(self):
        self.fn(*self.args)

    def _gflops(self):
        return self.flops / best_time(self.fn, self.args, PROFILE["rate_time"]) / 1e9


def _with_benchmarks(cls):
    """Give an _Op subclass its time_, peakmem_, track_gflops_ and track_error_ methods, named
    after its op so that asv's names say what they measure."""

    def time_op(self, *params):
        self._call()

    def peakmem_op(self, *params):
        self._call()

    def track_gflops_op(self, *params):
        return self._gflops()

    def track_error_op(self, *params):
        return self.error

    track_gflops_op.unit = "GFLOP/s"
    track_error_op.unit = "relative error"
    for prefix, fn in (("time_", time_op), ("peakmem_", peakmem_op),
                       ("track_gflops_", track_gflops_op), ("track_error_", track_error_op)):
        fn.__name__ = prefix + cls.op
        fn.__qualname__ = f"{cls.__name__}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)
    return cls


@_with_benchmarks
class Forward(_Op):
    """y = x @ w.T + b"""

    op = "forward"


@_with_benchmarks
class GradWeight(_Op):
    """dw = dy.T @ x"""

    op = "grad_weight"


@_with_benchmarks
class GradBias(_Op):
    """db = dy.sum(axis=0)"""

    op = "grad_bias"


@_with_benchmarks
class GradInput(_Op):
    """dx = dy @ w"""

    op = "grad_input"


@_with_benchmarks
class Step(_Op):
    """fl.linear(x, w, b, out=y), then dx, dw, db = fl.linear_backward(dy, x, w): the public API
    with its argument checks and gradient allocation."""

    op = "step"
