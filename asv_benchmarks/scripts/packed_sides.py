"""Which kernel the loops backend should run where a side of the problem is narrow: the parallel
direct kernel against the packed GEMM, for the forward, the weight gradient (with db) and the
input gradient, at shapes with one narrow side and work above every op's built-in crossover. Prints, for
each shape and dtype, the direct kernel's time divided by the packed one's (above 1: packed is
faster), the figures behind ``fastlinear.backends.loops.PACKED_MIN_SIDES``.

With ``--reread``: the two gradients at shapes below the work crossover where the operand their
direct kernel reads once per 8 rows of its output (the input gradient's w, the weight gradient's
x) is 128 KiB to 16 MiB, around the L2 cache's size, the figures behind ``loops.REREAD_ROWS``.

With ``--bias``: the bias gradient's serial kernel against its parallel one, around
``GRAD_BIAS_SERIAL`` (microseconds), the figures behind that limit.

Each pair of kernels is timed in one process, interleaved in rounds (medians of 7, each sample
at least 2 ms of calls of that kernel), after warm-up calls.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/packed_sides.py \\
        --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

import fastlinear as fl
from fastlinear.backends import loops
from fastlinear.kernels import grad_bias as bias_kernels
from fastlinear.kernels._sums import leaf_buffer
from fastlinear.tuning import cpu_model

#: (batch, in_features, out_features), each with one narrow side and more work than every op's
#: built-in crossover (2**26)
SHAPES = ((8192, 8, 2048), (4096, 32, 1024), (4096, 48, 512),                 # narrow in_features
          (8192, 2048, 8), (8192, 1024, 10), (8192, 1024, 32),                # narrow out_features
          (8, 4096, 4096), (16, 4096, 4096), (32, 4096, 4096), (48, 2048, 2048))  # narrow batch
#: (batch, in_features, out_features) for --reread, by op: w (input gradient) or x (weight
#: gradient) of 256 KiB to 16 MiB in float64 (half in float32), work 2**22 to 2**26
REREAD_SHAPES = {
    "grad_input": ((16, 512, 512), (32, 512, 512), (64, 512, 512), (128, 512, 512),
                   (256, 512, 512), (256, 512, 256), (256, 256, 512), (256, 384, 512),
                   (128, 768, 256), (128, 1024, 256), (16, 1024, 1024), (32, 1024, 1024),
                   (64, 1024, 512)),
    "grad_weight": ((256, 512, 512), (128, 512, 512), (256, 256, 512), (256, 512, 256),
                    (64, 512, 512), (256, 1024, 256), (512, 512, 256), (2048, 256, 32),
                    (1024, 512, 64), (2048, 512, 16), (1024, 1024, 32), (4096, 128, 64),
                    (8192, 256, 10), (1024, 512, 128), (2048, 256, 128), (512, 512, 128)),
}
#: (batch, out_features) of dy for --bias, 2**12 to 2**20 elements
BIAS_SHAPES = ((32, 128), (64, 256), (64, 512), (128, 512), (256, 512), (256, 1024), (1024, 1024))


def medians(fns: dict[str, Callable[[], None]], rounds: int = 7,
            min_sample_s: float = 2e-3) -> dict[str, float]:
    """Median seconds per call of each function, interleaved in ``rounds`` rounds."""
    calls = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        fn()
        calls[name] = max(1, int(min_sample_s / max(time.perf_counter() - t0, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / calls[name])
    return {name: statistics.median(v) for name, v in samples.items()}


def sides(dtypes: list[np.dtype]) -> None:
    for dt in dtypes:
        for n, k, m in SHAPES:
            rng = np.random.default_rng(0)
            x, w, dy = (rng.standard_normal(s).astype(dt) for s in ((n, k), (m, k), (n, m)))
            b = rng.standard_normal(m).astype(dt)
            y, dw, dx = np.empty((n, m), dt), np.empty((m, k), dt), np.empty((n, k), dt)
            db = np.empty(m, dt)
            ratios = []
            for op, args in (("forward", (y, x, w, b, 0)),
                             ("grad_weight", (dw, db, dy, x, dt.type(1), False)),
                             ("grad_input", (dx, dy, w))):
                direct, packed = loops.direct_and_packed(op)
                t = medians({"direct": lambda: direct(*args), "packed": lambda: packed(*args)})
                runs = "packed" if loops.runs_packed(op, dt.itemsize, n, k, m) else "direct"
                ratios.append(f"{op} {t['direct'] / t['packed']:.2f} ({runs})")
            print(f"{dt} {n}x{k}x{m} (2**{np.log2(n * k * m):.1f}), direct / packed time: "
                  + ", ".join(ratios) + "   (in brackets: what loops runs)", flush=True)


def reread(dtypes: list[np.dtype]) -> None:
    print(f"L2 cache: {loops.L2_BYTES >> 10} KiB")
    for op, shapes in REREAD_SHAPES.items():
        direct, packed = loops.direct_and_packed(op)
        for dt in dtypes:
            for n, k, m in shapes:
                rng = np.random.default_rng(0)
                x, w, dy = (fl.aligned_copy(rng.standard_normal(s), dt)
                            for s in ((n, k), (m, k), (n, m)))
                if op == "grad_input":
                    args, name, size = (fl.empty_aligned((n, k), dt), dy, w), "w", m * k
                else:
                    args = (fl.empty_aligned((m, k), dt), fl.empty_aligned(m, dt), dy, x,
                            dt.type(1), False)
                    name, size = "x", n * k
                t = medians({"direct": lambda: direct(*args), "packed": lambda: packed(*args)})
                runs = "packed" if loops.runs_packed(op, dt.itemsize, n, k, m) else "direct"
                print(f"{op} {dt} {n}x{k}x{m} (2**{np.log2(n * k * m):.1f}, {name} "
                      f"{size * dt.itemsize >> 10} KiB): direct / packed time "
                      f"{t['direct'] / t['packed']:.2f} (loops runs {runs})", flush=True)


def bias(dtypes: list[np.dtype], threads: int) -> None:
    for dt in dtypes:
        for n, m in BIAS_SHAPES:
            dy = np.random.default_rng(0).standard_normal((n, m)).astype(dt)
            db, one, leaves = np.empty(m, dt), dt.type(1), leaf_buffer(dt, n, m)
            t = medians({
                "serial": lambda: bias_kernels.grad_bias_serial(db, dy, one, False, leaves),
                "parallel": lambda: bias_kernels.grad_bias_parallel(db, dy, one, False, leaves,
                                                                    threads)})
            print(f"{dt} grad_bias {n}x{m} (2**{np.log2(n * m):.0f} elements): serial "
                  f"{t['serial'] * 1e6:.1f} us, parallel {t['parallel'] * 1e6:.1f} us", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for Numba and BLAS")
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    p.add_argument("--bias", action="store_true", help="time the bias gradient's kernels instead")
    p.add_argument("--reread", action="store_true",
                   help="time the gradients' kernels where the operand their direct kernel reads "
                        "again and again is about the L2 cache's size")
    args = p.parse_args()
    fl.set_num_threads(args.threads)
    names = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    dtypes = [np.dtype(d) for d in names]
    print(f"{cpu_model()}, {args.threads} thread(s)")
    if args.bias:
        bias(dtypes, args.threads)
    elif args.reread:
        reread(dtypes)
    else:
        sides(dtypes)


if __name__ == "__main__":
    main()
