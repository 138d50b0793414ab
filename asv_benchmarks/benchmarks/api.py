"""The public functional API, fl.linear and fl.linear_backward: argument checks, output allocation
and the kernels together, in float32. Set beside kernels.py, it shows what the wrappers add (most
visible at the tiny shape). peakmem_ is asv's peak resident memory of the whole benchmark process,
imports included, so it moves only when a call allocates a lot more.

Compare a branch with main (from asv_benchmarks/; both must be committed):

    FASTLINEAR_BENCH_PROFILE=regular asv continuous -b '^api' main my-branch
"""

import fastlinear as fl

from .common import SHAPES, THREADS, Benchmark, cached_case, use_threads


class Functional(Benchmark):
    param_names = ["backend", "shape", "threads"]
    params = [["auto", "blas"], list(SHAPES), THREADS]

    def setup(self, backend, shape, threads):
        use_threads(threads)
        self.c = cached_case(shape, "float32")
        # Warm-up, outside the timed region: the first calls compile the kernels.
        self.time_linear(backend)
        self.time_linear_backward(backend)

    def time_linear(self, backend, *params):
        fl.linear(self.c.x, self.c.w, self.c.b, backend=backend)

    def time_linear_backward(self, backend, *params):
        fl.linear_backward(self.c.dy, self.c.x, self.c.w, backend=backend)

    def peakmem_linear_backward(self, backend, *params):
        fl.linear_backward(self.c.dy, self.c.x, self.c.w, backend=backend)
