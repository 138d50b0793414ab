"""Every loop kernel gives bitwise the same result with 1, 2, 8 and 16 threads.

Numba's thread count can only be lowered below the count fixed when the process starts, so the
check runs in a subprocess started with NUMBA_NUM_THREADS=16 (oversubscribed on a small machine,
which is fine: only the results are compared). The shapes reach every variant: serial, direct
parallel, skinny, and packed with odd sizes that cross every block (MR, NR, the k-block of both
dtypes, the 256-column tile start), the forward reading w in place (a batch of 100), the input
gradient packing w in the tiles (a batch of 100 at 1100 x 1030; 5 tiles: in the tiles at 1 and 2
threads, whole at 8 and 16), the forward packing w in the tiles (a batch of 200), and a batch of
several db leaves and DW_ROWS runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numba
    import numpy as np
    from fastlinear.backends import loops
    from fastlinear.kernels.activation import activation_grad

    assert numba.config.NUMBA_NUM_THREADS == 16, numba.config.NUMBA_NUM_THREADS
    SHAPES = [(1, 16, 16), (5, 3, 7), (33, 129, 65), (4096, 256, 10), (1100, 70, 9),
              (256, 512, 512), (300, 520, 530), (1030, 300, 257), (2100, 96, 80),
              (100, 1100, 530), (100, 1100, 1030), (200, 530, 1100)]

    def run(dtype, shape, seed):
        n, k, m = shape
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, k)).astype(dtype)
        w = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal(m).astype(dtype)
        dy = rng.standard_normal((n, m)).astype(dtype)
        y = np.empty((n, m), dtype); dx = np.empty((n, k), dtype)
        dw = np.empty((m, k), dtype); db = np.empty(m, dtype); db2 = np.empty(m, dtype)
        g = np.empty((n, m), dtype); db3 = np.empty(m, dtype)
        scale = dtype(0.25)
        loops.forward(y, x, w, b, 2)
        loops.grad_weight(dw, db, dy, x, scale, False)
        loops.grad_weight(dw, db, dy, x, scale, True)
        loops.grad_bias(db2, dy, scale, False)
        loops.grad_input(dx, dy, w)
        activation_grad(g, db3, dy, y, 2, scale, False)
        h = hashlib.sha256()
        for a in (y, dx, dw, db, db2, g, db3):
            h.update(a.tobytes())
        return h.hexdigest()

    cases = [(dt, s, i) for dt in (np.float32, np.float64) for i, s in enumerate(SHAPES)]
    results = {}
    for threads in (1, 2, 8, 16, 1):
        numba.set_num_threads(threads)
        results.setdefault(threads, []).append([run(*c) for c in cases])
    first = results[1][0]
    bad = []
    for threads, runs in results.items():
        for got in runs:
            for case, a, b in zip(cases, first, got):
                if a != b:
                    bad.append(f"{np.dtype(case[0]).name} {case[1]} differs at {threads} threads")
    print("\\n".join(bad) or "identical")
    sys.exit(1 if bad else 0)
    """
)


@pytest.mark.slow
def test_bitwise_identical_at_1_2_8_and_16_threads():
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, NUMBA_NUM_THREADS="16", FASTLINEAR_COMPILE_NOTICE="0",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.strip() == "identical"
