"""Each direct loop kernel's serial and parallel variants on one thread, beside numpy's BLAS: what
a parallel region costs where there is no second thread to share the work.

The loops backend runs the serial variants only below a size (``loops.FORWARD_SERIAL``,
``GRAD_WEIGHT_SERIAL``, ``GRAD_INPUT_SERIAL``) and, above it, the parallel ones (up to the packed
GEMM's crossover: the default shapes are all below it), except the weight gradient, which takes
its serial kernel whenever Numba's thread count is 1 (the two give the same bits). This prints, per dtype and shape, the median time (us) of each variant and of BLAS over
interleaved rounds, every array on a 64-byte line.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/serial_parallel.py
    ... serial_parallel.py --shapes 32x128x128,4096x256x10 --rounds 21
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

SHAPES = "32x128x128,8x784x128,4096x256x10,64x256x256"


def calls(dtype, n: int, k: int, m: int) -> dict:
    """name -> zero-argument call, on seeded arrays on 64-byte lines."""
    import fastlinear as fl
    from fastlinear.backends import loops
    from fastlinear.kernels import forward as fk

    rng = np.random.default_rng(0)
    x, dy, w = (fl.aligned_copy(rng.standard_normal(s), dtype) for s in ((n, k), (n, m), (m, k)))
    b = fl.aligned_copy(rng.standard_normal(m), dtype)
    y, dw, dx = (fl.empty_aligned(s, dtype) for s in ((n, m), (m, k), (n, k)))
    size, one = np.dtype(dtype).itemsize, np.dtype(dtype).type(1)
    no_db = loops.ABSENT[size]
    gw, gi = loops._GRAD_WEIGHT[size], loops._GRAD_INPUT[size]
    return {
        "forward serial": lambda: fk.forward_serial(y, x, w, b, 0),
        "forward parallel": lambda: fk.forward_parallel(y, x, w, b, 0),
        "forward blas": lambda: np.add(np.matmul(x, w.T, out=y), b, out=y),  # with the bias
        "grad_weight serial": lambda: gw[0](dw, no_db, dy, x, one, False),
        "grad_weight parallel": lambda: gw[1](dw, no_db, dy, x, one, False),
        "grad_weight blas": lambda: np.matmul(dy.T, x, out=dw),
        "grad_input serial": lambda: gi[0](dx, dy, w),
        "grad_input parallel": lambda: gi[1](dx, dy, w),
        "grad_input blas": lambda: np.matmul(dy, w, out=dx),
    }


def medians(fns: dict, rounds: int, sample_s: float = 2e-3) -> dict:
    """name -> median seconds per call over ``rounds`` interleaved samples of about ``sample_s``."""
    reps = {}
    for name, fn in fns.items():
        for _ in range(20):  # compiled, caches warm
            fn()
        t = time.perf_counter()
        fn()
        reps[name] = max(1, int(sample_s / max(time.perf_counter() - t, 1e-7)))
    times: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            times[name].append((time.perf_counter() - t) / reps[name])
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default=SHAPES, help="comma-separated BATCHxINxOUT")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    import fastlinear as fl

    fl.set_num_threads(1)
    print("median us per call, one thread; serial / parallel / blas")
    for dtype in (np.float32, np.float64):
        for shape in args.shapes.split(","):
            n, k, m = (int(v) for v in shape.lower().split("x"))
            med = medians(calls(dtype, n, k, m), args.rounds)
            cells = []
            for op in ("forward", "grad_weight", "grad_input"):
                s, par, blas = (med[f"{op} {v}"] * 1e6 for v in ("serial", "parallel", "blas"))
                cells.append(f"{op} {s:.1f} / {par:.1f} / {blas:.1f}")
            print(f"{np.dtype(dtype).name} {n}x{k}x{m}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
