"""What one library's thread pool costs the next: each call timed right after a call of another
library, against the same call after a call of its own library.

For every shape and dtype it times, as medians over many samples:

- the loops forward right after numpy's BLAS matmul of the same shape, and right after torch's
  ``F.linear`` (when torch is installed), against the loops forward right after another one;
- numpy's matmul and torch's ``F.linear`` right after a loops forward, against each right after
  itself;

the two samples of each ratio taken in turn, so that drift of a noisy machine affects both.

A ratio of 1.0 means the previous call's pool costs nothing; the spinning described in the README's
"Threads" section shows as ratios far above 1. With ``--alone`` it also times numpy's matmul alone
on OpenBLAS's own threads and on Numba's pool (the callback of ``fastlinear._blas_pool`` taken out
and put back in the same process, in interleaved rounds), to show what running BLAS on Numba's
pool costs a program that never calls fastlinear's kernels. Run from the repository root with the
thread count pinned for every pool:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/mixed_pools.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastlinear as fl

SHAPES = [(32, 128, 128), (8, 784, 128), (4096, 256, 10), (256, 512, 512), (1024, 1024, 1024)]


def _median_after(before, timed, samples: int) -> float:
    """Median seconds of ``timed()`` called right after ``before()``."""
    times = []
    for _ in range(samples):
        before()
        t0 = time.perf_counter()
        timed()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _operands(dtypes: list[str]):
    """(label, x, w) for each dtype and shape: the forward's input (n, in) and weight (out, in)."""
    for dtype_name in dtypes:
        for n, k, m in SHAPES:
            rng = np.random.default_rng(0)
            yield (f"{dtype_name} {n}x{k}x{m}", rng.standard_normal((n, k)).astype(dtype_name),
                   rng.standard_normal((m, k)).astype(dtype_name))


def _ratio_after(other, timed, samples: int) -> float:
    """Median of ``timed()`` right after ``other()`` over its median right after itself, the two
    kinds of sample interleaved so that both see the same state of a noisy machine."""
    after_other, after_self = [], []
    for _ in range(samples):
        for before, times in ((other, after_other), (timed, after_self)):
            before()
            t0 = time.perf_counter()
            timed()
            times.append(time.perf_counter() - t0)
    return statistics.median(after_other) / statistics.median(after_self)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for every pool (default 2)")
    parser.add_argument("--samples", type=int, default=40, help="samples per median (default 40)")
    parser.add_argument("--alone", action="store_true",
                        help="also time numpy's matmul alone on OpenBLAS's threads vs Numba's pool")
    parser.add_argument("--dtype", choices=["float32", "float64"], nargs="+",
                        default=["float32", "float64"], help="dtypes (default both)")
    args = parser.parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    fl.set_num_threads(args.threads)
    from fastlinear._threads import pools

    rows = []
    be = fl.get_backend("loops")
    for label, x, w in _operands(args.dtype):
        y = np.empty((x.shape[0], w.shape[0]), x.dtype)

        def loops():
            be.forward(y, x, w, None, 0)

        def blas():
            np.matmul(x, w.T)

        calls = {"loops": loops, "blas": blas}
        if torch is not None:
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)
            calls["torch"] = lambda: F.linear(xt, wt)
        for fn in calls.values():  # compile, load, and start every pool
            for _ in range(3):
                fn()
        s = args.samples
        row = [label]
        for other in [c for c in calls if c != "loops"]:
            row.append(_ratio_after(calls[other], loops, s))
            row.append(_ratio_after(loops, calls[other], s))
        rows.append(row)
    info = pools()
    print(f"threads {args.threads}; Numba layer {info['numba']['layer']}; BLAS {info['blas']}; "
          f"medians of {args.samples} samples")
    header = ["shape", "loops after blas", "blas after loops"]
    if torch is not None:
        header += ["loops after torch", "torch after loops"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join([row[0]] + [f"{r:.2f}x" for r in row[1:]]) + " |")
    if args.alone:
        _alone_table(args)


def _alone_table(args) -> None:
    """numpy's matmul alone, on OpenBLAS's own threads vs on Numba's pool, same process."""
    from fastlinear import _blas_pool

    if not _blas_pool.installed():
        print("\nBLAS does not run on Numba's pool here (FASTLINEAR_BLAS_POOL=0, or no OpenBLAS "
              "with the threads callback): nothing to compare")
        return
    print("\n| shape | matmul alone, OpenBLAS threads (us) | on Numba's pool (us) | ratio |")
    print("|---|---|---|---|")
    for label, x, w in _operands(args.dtype):

        def blas():
            np.matmul(x, w.T)

        rounds: dict[bool, list[float]] = {False: [], True: []}
        try:
            for _ in range(3):
                for on_pool in (False, True):
                    (_blas_pool.install if on_pool else _blas_pool.uninstall)()
                    for _ in range(3):
                        blas()
                    time.sleep(0.2)
                    rounds[on_pool].append(_median_after(blas, blas, args.samples))
        finally:
            _blas_pool.install()
        own, pool = (statistics.median(rounds[v]) * 1e6 for v in (False, True))
        print(f"| {label} | {own:.1f} | {pool:.1f} | {pool / own:.2f}x |")


if __name__ == "__main__":
    main()
