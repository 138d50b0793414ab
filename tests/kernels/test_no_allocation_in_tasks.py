"""No loop kernel allocates heap memory inside its parallel tasks: scratch space comes from the
caller (`fastlinear.kernels._scratch`), so a call with thousands of tasks makes as many of Numba's
allocations as a call with a handful (none, once the scratch buffers have grown to size).

Counted with Numba's runtime statistics, which must be switched on when the process starts
(NUMBA_NRT_STATS=1), so the check runs in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from numba.core.runtime import rtsys
    from fastlinear.backends import loops
    from fastlinear.kernels.activation import activation_grad

    def calls(dtype, n, k, m):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, k)).astype(dtype)
        w = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal(m).astype(dtype)
        dy = rng.standard_normal((n, m)).astype(dtype)
        y, dx = np.empty((n, m), dtype), np.empty((n, k), dtype)
        dw, db, g = np.empty((m, k), dtype), np.empty(m, dtype), np.empty((n, m), dtype)
        one = dtype(1)
        return {
            "forward": lambda: loops.forward(y, x, w, b, 2),
            "grad_weight": lambda: loops.grad_weight(dw, db, dy, x, one, False),
            "grad_bias": lambda: loops.grad_bias(db, dy, one, True),
            "grad_input": lambda: loops.grad_input(dx, dy, w),
            "activation_grad": lambda: activation_grad(g, db, dy, y, 2, one, False),
        }

    def allocations(fn):
        before = rtsys.get_allocation_stats().alloc
        fn()
        return rtsys.get_allocation_stats().alloc - before

    bad = []
    # (n, in, out) pairs that reach the same variant with the same number of parallel regions
    # (Numba allocates a little per region, outside the tasks), few tasks then many: serial;
    # direct, with an edge block narrower than NR; skinny; packed, with the same k-block count
    for small, large in [((2, 8, 8), (3, 9, 9)), ((40, 70, 50), (200, 110, 300)),
                         ((300, 40, 10), (8192, 40, 10)), ((300, 520, 530), (500, 1000, 1000))]:
        for dtype in (np.float32, np.float64):
            few, many = calls(dtype, *small), calls(dtype, *large)
            for name in few:
                for fn in (few[name], many[name], few[name], many[name]):  # grow scratch, compile
                    fn()
                a, b = allocations(few[name]), allocations(many[name])
                if b > a:
                    bad.append(f"{name} {np.dtype(dtype).name} {large}: {b} allocations, {a} at {small}")
    print("\\n".join(bad) or "none")
    """
)


@pytest.mark.slow
def test_allocations_do_not_grow_with_the_number_of_tasks():
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, NUMBA_NRT_STATS="1", FASTLINEAR_COMPILE_NOTICE="0",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "none", done.stdout
