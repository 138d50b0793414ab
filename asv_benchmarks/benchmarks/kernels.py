"""The four raw kernels of every backend, called into preallocated outputs.

One class per kernel, each over backend x dtype x shape class x threads. setup() sets the thread
count, then (once per process) checks the kernel against the blas backend in float64, which is
also the warm-up that compiles it; only the kernel call itself is timed. track_gflops reports the
rate of the fastest of repeated calls.

Compare a branch with main (from asv_benchmarks/; both must be committed):

    FASTLINEAR_BENCH_PROFILE=regular asv continuous -b '^kernels' main my-branch
"""

from .common import (
    BACKENDS,
    DTYPES,
    PROFILE,
    SHAPES,
    THREADS,
    Benchmark,
    best_time,
    checked_kernel,
    kernel_flops,
    use_threads,
)


class _Kernel(Benchmark):
    kernel = ""  # set by each subclass
    param_names = ["backend", "dtype", "shape", "threads"]
    params = [BACKENDS, DTYPES, list(SHAPES), THREADS]

    def setup(self, backend, dtype, shape, threads):
        use_threads(threads)
        self.fn, self.args = checked_kernel(backend, self.kernel, dtype, shape, threads)
        self.flops = kernel_flops(self.kernel, shape)

    def track_gflops(self, *params):
        return self.flops / best_time(self.fn, self.args, PROFILE["rate_time"]) / 1e9

    track_gflops.unit = "GFLOP/s"


class Forward(_Kernel):
    """y = x @ w.T + b"""

    kernel = "forward"

    def time_forward(self, *params):
        self.fn(*self.args)


class GradWeight(_Kernel):
    """dw = dy.T @ x"""

    kernel = "grad_weight"

    def time_grad_weight(self, *params):
        self.fn(*self.args)


class GradBias(_Kernel):
    """db = dy.sum(axis=0)"""

    kernel = "grad_bias"

    def time_grad_bias(self, *params):
        self.fn(*self.args)


class GradInput(_Kernel):
    """dx = dy @ w"""

    kernel = "grad_input"

    def time_grad_input(self, *params):
        self.fn(*self.args)
