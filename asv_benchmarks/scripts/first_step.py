"""Start-up of a fresh process: `import fastlinear`, then the first and second layer step
(784 -> 128, batch 64, forward + backward + step), and how many kernels it compiled:

    python asv_benchmarks/scripts/first_step.py

Run it twice: the first run on a machine (or with an empty NUMBA_CACHE_DIR) compiles, later runs
load the kernels from Numba's disk cache.
"""

import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402

import fastlinear as fl  # noqa: E402
from fastlinear._compile import compile_count  # noqa: E402

t1 = time.perf_counter()
layer = fl.Linear(784, 128, seed=0)
x = np.ones((64, 784), np.float32)
for _ in range(2):
    y = layer(x)
    layer.backward(np.ones_like(y))
    layer.step(0.01)
    if _ == 0:
        t2 = time.perf_counter()
t3 = time.perf_counter()
print(f"import {t1 - t0:.3f} s, first step {t2 - t1:.3f} s, second {1e3 * (t3 - t2):.2f} ms, "
      f"kernels compiled {compile_count()}")
