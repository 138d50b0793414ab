"""A serial kernel may be the first thing a process runs: it must not touch Numba's thread pool.

``numba.get_thread_id()`` outside a parallel region reads the threading layer, which a process
starts only on its first parallel region (or when compiling code that uses it, which a kernel
loaded from the disk cache never does): called first, it crashed the process. The check starts a
fresh process per variant, after making sure the kernels are compiled and cached, and makes that
variant's call its first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CALL = """
import numpy as np
from fastlinear.backends import loops
from fastlinear.kernels.activation import activation_grad
dt = np.{dtype}
n, k, m = {shape}
x, w, dy = np.ones((n, k), dt), np.ones((m, k), dt), np.ones((n, m), dt)
out = {{"forward": lambda: loops.forward(np.empty((n, m), dt), x, w, None, 0),
       "grad_weight": lambda: loops.grad_weight(np.empty((m, k), dt), np.empty(m, dt), dy, x, dt(1), False),
       "grad_bias": lambda: loops.grad_bias(np.empty(m, dt), dy, dt(1), False),
       "grad_input": lambda: loops.grad_input(np.empty((n, k), dt), dy, w),
       "activation_grad": lambda: activation_grad(np.empty((n, m), dt), np.empty(m, dt), dy, dy, 1, dt(1), False)}}
out["{kernel}"]()
print("ran")
"""

KERNELS = ["forward", "grad_weight", "grad_bias", "grad_input", "activation_grad"]


def _run(kernel: str, dtype: str, shape=(2, 40, 9)) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, FASTLINEAR_COMPILE_NOTICE="0",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    code = CALL.format(dtype=dtype, shape=shape, kernel=kernel)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_serial_variant_as_first_call_of_a_process(dtype):
    # (2, 40, 9): serial everywhere; 40 input features leave an edge block narrower than NR
    for kernel in KERNELS:
        _run(kernel, dtype)  # compile and cache (a compiling process may start the thread pool)
        done = _run(kernel, dtype)
        assert done.returncode == 0 and done.stdout.strip() == "ran", (kernel, done.returncode, done.stderr[-2000:])
