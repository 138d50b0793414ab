"""How steady the timings behind ``fastlinear tune`` and ``fastlinear compare`` are, and how far
auto is from the faster of loops and blas, in two experiments.

``pauses``: in one process, the compare harness (`fastlinear.cli.harness.run`) times loops, blas
and auto at five shape classes, forward, grad_weight and grad_input, float32 and float64, in
rounds that alternate between pausing before every sample (what the harness did before it paused
only between thread pools) and pausing only where the previous sample ran on another pool. For
each setting it prints the median over cells of each backend's spread (interquartile range of its
samples over their median) and in how many (dtype, shape, op) cells auto's median time was within
0.97x of the faster of loops and blas, counted over all rounds so far.

``processes``: starts fresh Python processes one after another; each times loops, blas and auto on
one op, dtype and shape, interleaved, without pauses (all three run on Numba's pool), 21 rounds of
calls lasting about 2 ms, and prints the medians. Shows whether the faster of loops and blas is
the same in every process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/auto_spread.py pauses
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/auto_spread.py \\
        processes --op grad_weight --dtype float64 --shape 8x784x128 --processes 4

Both use the tuning table auto reads (``FASTLINEAR_TUNING`` picks another) and 2 threads unless
``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

CLASSES = ("tiny", "small", "medium", "skinny_out", "skinny_in")
OPS = ("forward", "grad_weight", "grad_input")


def pauses(threads: int, rounds: int) -> None:
    import fastlinear as fl
    from fastlinear.cli import harness, problems

    fl.set_num_threads(threads)
    shapes = [problems.SHAPE_CLASSES[c] for c in CLASSES]
    hits = {True: [0, 0], False: [0, 0]}
    for r in range(rounds):
        for every_sample in (True, False):
            if every_sample:  # the old rule: every backend on a pool of its own
                pool, harness.thread_pool = harness.thread_pool, lambda name: object()
            try:
                res = harness.run(shapes, ["float32", "float64"], ["loops", "blas", "auto"], OPS,
                                  repeats=7)
            finally:
                if every_sample:
                    harness.thread_pool = pool
            spread = [np.subtract(*np.percentile(x.samples_s, [75, 25])) / x.median_s
                      for x in res]
            cells: dict = {}
            for x in res:
                cells.setdefault((x.dtype, x.shape, x.op), {})[x.backend] = x.median_s
            for c in cells.values():
                hits[every_sample][0] += min(c["loops"], c["blas"]) / c["auto"] >= 0.97
                hits[every_sample][1] += 1
            ok, total = hits[every_sample]
            print(f"round {r + 1}, pause before {'every sample' if every_sample else 'a new pool'}"
                  f": spread {statistics.median(spread):.3f}; auto within 0.97x in {ok} of "
                  f"{total} cells so far", flush=True)


def one_process(op: str, dtype: str, shape: str, threads: int) -> None:
    import fastlinear as fl
    from fastlinear.backends import auto, blas, loops

    fl.set_num_threads(threads)
    dt = np.dtype(dtype)
    n, k, m = (int(v) for v in shape.split("x"))
    rng = np.random.default_rng(0)
    x, w, dy = (rng.random(s).astype(dt) for s in ((n, k), (m, k), (n, m)))
    b, one = rng.random(m).astype(dt), dt.type(1)
    out = {"forward": (n, m), "grad_weight": (m, k), "grad_input": (n, k)}[op]
    out = np.empty(out, dt)

    def call(be):
        if op == "forward":
            return lambda: be.forward(out, x, w, b, 0)
        if op == "grad_weight":
            return lambda: be.grad_weight(out, None, dy, x, one, False)
        return lambda: be.grad_input(out, dy, w)

    fns = {"loops": call(loops), "blas": call(blas), "auto": call(auto)}
    for f in fns.values():
        for _ in range(200):
            f()
    count = max(1, int(2e-3 / (2 * n * k * m / 20e9)))
    samples: dict = {name: [] for name in fns}
    for _ in range(21):
        for name, f in fns.items():
            for _ in range(3):
                f()
            t0 = time.perf_counter()
            for _ in range(count):
                f()
            samples[name].append((time.perf_counter() - t0) / count)
    med = {name: statistics.median(v) for name, v in samples.items()}
    print(f"auto runs {auto.choice(op, dtype, n, k, m)}; median us: " + ", ".join(
        f"{name} {t * 1e6:.1f}" for name, t in med.items())
          + f"; loops / blas {med['loops'] / med['blas']:.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("pauses")
    a.add_argument("--rounds", type=int, default=3)
    b = sub.add_parser("processes")
    b.add_argument("--op", choices=OPS, required=True)
    b.add_argument("--dtype", choices=("float32", "float64"), required=True)
    b.add_argument("--shape", required=True, help="BATCHxINxOUT")
    b.add_argument("--processes", type=int, default=4)
    b.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for q in (a, b):
        q.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.what == "pauses":
        pauses(args.threads, args.rounds)
    elif args.child:
        one_process(args.op, args.dtype, args.shape, args.threads)
    else:
        for i in range(args.processes):
            print(f"process {i + 1}: ", end="", flush=True)
            subprocess.run([sys.executable, __file__, "processes", "--child", "--op", args.op,
                            "--dtype", args.dtype, "--shape", args.shape,
                            "--threads", str(args.threads)], check=True)


if __name__ == "__main__":
    main()
