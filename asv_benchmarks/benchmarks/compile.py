"""Start-up costs, each sample in a fresh interpreter (asv's timeraw_): importing fastlinear (and
numba alone, which it imports, for comparison), and the first call of one Numba kernel, which
either compiles it ("cold": an empty Numba cache) or loads the machine code an earlier process
compiled ("warm": the kernels use cache=True). Only the call is timed; importing and making the
float32 inputs happen first, untimed. blas and auto are left out: blas compiles nothing and auto
uses the loops kernels.

Compare a branch with main (from asv_benchmarks/; both must be committed):

    FASTLINEAR_BENCH_PROFILE=regular asv continuous -b '^compile' main my-branch
"""

import shutil
import subprocess
import sys
import tempfile

from .common import KERNELS, PROFILE, SHAPES, Benchmark


class _Raw(Benchmark):
    # A fresh interpreter per sample (up to about a second with compilation): no warm-up runs.
    repeat = PROFILE["raw_repeat"]
    warmup_time = 0.0
    min_run_count = 1


class Import(_Raw):
    def timeraw_import_numba(self):
        return "import numba"

    def timeraw_import_fastlinear(self):
        return "import fastlinear"


# Run in the fresh interpreter before the timed call. NUMBA_CACHE_DIR is set before numba is
# imported; an empty cache_dir means a new directory, removed when the interpreter exits.
_SETUP = """
import atexit, os, shutil, tempfile
cache_dir = {cache_dir!r}
if not cache_dir:
    cache_dir = tempfile.mkdtemp(prefix="fastlinear-numba-cache-")
    atexit.register(shutil.rmtree, cache_dir, True)
os.environ["NUMBA_CACHE_DIR"] = cache_dir
import inspect
import numpy as np
import fastlinear as fl
be = fl.get_backend({backend!r})
def n_params(fn):
    return len(inspect.signature(getattr(fn, "py_func", fn)).parameters)
act = (0,) if n_params(be.forward) == 5 else ()  # no activation, on kernels that take one
fused_db = (None,) if n_params(be.grad_weight) == 6 else ()  # no fused bias gradient
n, k, m = {shape!r}
rng = np.random.default_rng(0)
x = rng.standard_normal((n, k), dtype=np.float32)
w = rng.standard_normal((m, k), dtype=np.float32)
b = rng.standard_normal(m, dtype=np.float32)
dy = rng.standard_normal((n, m), dtype=np.float32)
y, dw, db, dx = np.empty((n, m), np.float32), np.empty_like(w), np.empty_like(b), np.empty_like(x)
scale = np.float32(1)
"""

_CALL = {
    "forward": "be.forward(y, x, w, b, *act)",
    "grad_weight": "be.grad_weight(dw, *fused_db, dy, x, scale, False)",
    "grad_bias": "be.grad_bias(db, dy, scale, False)",
    "grad_input": "be.grad_input(dx, dy, w)",
}


class FirstCall(_Raw):
    param_names = ["backend", "kernel", "cache"]
    params = [["loops", "naive"], KERNELS, ["cold", "warm"]]

    def setup(self, backend, kernel, cache):
        # "warm" samples share a cache directory that one untimed run fills here first.
        self.cache_dir = ""
        if cache == "warm":
            self.cache_dir = tempfile.mkdtemp(prefix="fastlinear-numba-cache-")
            stmt, setup = self.timeraw_first_call(backend, kernel, cache)
            subprocess.run([sys.executable, "-c", setup + stmt], check=True)

    def teardown(self, backend, kernel, cache):
        if self.cache_dir:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def timeraw_first_call(self, backend, kernel, cache):
        setup = _SETUP.format(cache_dir=self.cache_dir, backend=backend, shape=SHAPES["tiny"])
        return _CALL[kernel] + "\n", setup
