"""Where each array starts, and how much that moves a loops kernel's time, in two experiments.

``offsets``: in one process, each op's arrays are placed at chosen byte offsets from a page
boundary and the op is timed under every placement, interleaved over rounds: all arrays at the
start of a page (on a 64-byte line, and at the same offset within their pages, as 4K aliasing
would have it), then one array at a time 16, 32 and 48 bytes further (where numpy's own small
buffers may start: malloc promises 16 bytes), then every array 16 bytes past a page, then all
on lines at different offsets within their pages (0, 1, 2, 3 KiB: no 4K aliasing between them).
It prints each placement's median time over the first placement's.

``processes``: starts fresh Python processes one after another; each allocates the op's arrays
with numpy as a user would (``rng.standard_normal(...)``, ``np.empty``), prints where each starts
(address mod 64) and the op's median time, then the same op with every array copied into
`fastlinear.empty_aligned` (a 64-byte line) in the same process, interleaved; last, the slowest
process's median over the fastest's for each. Shows whether the process-to-process spread follows
the addresses.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/alignment.py offsets
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/alignment.py \\
        processes --processes 6

Both run the loops backend's raw kernels (``fl.get_backend("loops")``) at 1 thread unless
``--threads`` says otherwise; ``--shape`` is batch x in_features x out_features.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

OPS = ("forward", "grad_weight", "grad_input", "grad_bias")
#: The arrays each op reads or writes, in the order the kernel takes them.
ARRAYS = {
    "forward": ("y", "x", "w", "b"),
    "grad_weight": ("dw", "db", "dy", "x"),
    "grad_input": ("dx", "dy", "w"),
    "grad_bias": ("db", "dy"),
}
PAGE = 4096
LINE = 64


def shapes_of(n: int, k: int, m: int) -> dict:
    return {"x": (n, k), "w": (m, k), "b": (m,), "y": (n, m), "dy": (n, m), "dx": (n, k),
            "dw": (m, k), "db": (m,)}


def placed(shape: tuple, dtype: np.dtype, offset: int) -> np.ndarray:
    """An uninitialised C-contiguous array starting ``offset`` bytes past a page boundary."""
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + 2 * PAGE, np.uint8)  # kept alive as the view's base
    start = -raw.ctypes.data % PAGE + offset
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def call(op: str, a: dict):
    """``fn, args``: ``fn(*args)`` runs ``op`` on the arrays in ``a`` with the loops backend."""
    import fastlinear as fl

    be = fl.get_backend("loops")
    one = a["x"].dtype.type(1) if "x" in a else a["dy"].dtype.type(1)
    if op == "forward":
        return be.forward, (a["y"], a["x"], a["w"], a["b"], 0)
    if op == "grad_weight":
        return be.grad_weight, (a["dw"], a["db"], a["dy"], a["x"], one, False)
    if op == "grad_input":
        return be.grad_input, (a["dx"], a["dy"], a["w"])
    return be.grad_bias, (a["db"], a["dy"], one, False)


def sample(fn, args: tuple, calls: int) -> float:
    """Seconds per call over ``calls`` back-to-back calls."""
    t = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - t) / calls


def calls_for(fn, args: tuple, seconds: float = 2e-3) -> int:
    for _ in range(3):
        fn(*args)
    return max(1, int(seconds / sample(fn, args, 20)))


def fill(arrays: dict, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for a in arrays.values():
        a[...] = rng.standard_normal(a.shape).astype(a.dtype)


def placements(op: str) -> dict:
    """name -> {array: byte offset past a page boundary}."""
    names = ARRAYS[op]
    out = {"all on a line": dict.fromkeys(names, 0)}
    for name in names:
        for off in (16, 32, 48):
            out[f"{name} +{off}"] = {**dict.fromkeys(names, 0), name: off}
    out["all +16"] = dict.fromkeys(names, 16)
    out["on lines, 1 KiB apart"] = {name: (i * 1024) % PAGE for i, name in enumerate(names)}
    return out


def offsets(op: str, n: int, k: int, m: int, dtype: str, rounds: int) -> None:
    dt = np.dtype(dtype)
    sh = shapes_of(n, k, m)
    runs = {}
    for label, where in placements(op).items():
        arrays = {name: placed(sh[name], dt, off) for name, off in where.items()}
        fill(arrays)
        fn, args = call(op, arrays)
        runs[label] = (fn, args, calls_for(fn, args), [])
    for _ in range(rounds):
        for fn, args, calls, times in runs.values():
            fn(*args)
            times.append(sample(fn, args, calls))
    base = statistics.median(runs["all on a line"][3])
    print(f"{op} {dtype} {n}x{k}x{m}: all on a line {base * 1e6:.2f} us (median of {rounds})")
    for label, (*_, times) in runs.items():
        med = statistics.median(times)
        print(f"  {label:<24} {med * 1e6:9.2f} us  {med / base:5.2f}")


def child(op: str, n: int, k: int, m: int, dtype: str, rounds: int) -> None:
    """One fresh process: numpy's own buffers against the same data on 64-byte lines."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(0)
    sh = shapes_of(n, k, m)
    natural = {}
    for name in ARRAYS[op]:
        if name in ("y", "dx", "dw", "db"):
            natural[name] = np.empty(sh[name], dt)  # what fl.linear and friends allocate
        else:
            natural[name] = rng.standard_normal(sh[name]).astype(dt)
    import fastlinear as fl

    lined = {}
    for name, a in natural.items():
        lined[name] = fl.empty_aligned(a.shape, dt)
        lined[name][...] = a
    fns = [call(op, natural), call(op, lined)]
    calls = [calls_for(fn, args) for fn, args in fns]
    times: list = [[], []]
    for _ in range(rounds):
        for i, (fn, args) in enumerate(fns):
            fn(*args)
            times[i].append(sample(fn, args, calls[i]))
    where = " ".join(f"{name}%64={natural[name].ctypes.data % LINE}" for name in ARRAYS[op])
    med = [statistics.median(t) for t in times]
    print(f"{med[0] * 1e6:.2f} {med[1] * 1e6:.2f} {where}")


def processes(op: str, n: int, k: int, m: int, dtype: str, rounds: int, count: int,
              threads: int) -> None:
    print(f"{op} {dtype} {n}x{k}x{m}, {threads} thread(s), {count} fresh processes")
    print(f"{'numpy buffers us':>17} {'on lines us':>12} {'ratio':>6}  where numpy's buffers start")
    medians: list = [[], []]
    for _ in range(count):
        out = subprocess.run(
            [sys.executable, __file__, "_child", "--op", op, "--shape", f"{n}x{k}x{m}",
             "--dtype", dtype, "--rounds", str(rounds), "--threads", str(threads)],
            check=True, capture_output=True, text=True).stdout.split()
        a, b = float(out[0]), float(out[1])
        medians[0].append(a)
        medians[1].append(b)
        print(f"{a:17.2f} {b:12.2f} {a / b:6.2f}  {' '.join(out[2:])}")
    spread = [max(t) / min(t) for t in medians]
    print(f"slowest / fastest process: numpy's buffers {spread[0]:.3f}, "
          f"on lines {spread[1]:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("offsets", "processes", "_child"))
    p.add_argument("--op", choices=OPS, action="append",
                   help="op to time (repeatable; default: every op)")
    p.add_argument("--shape", default="32x128x128", help="batch x in_features x out_features")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--processes", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    n, k, m = (int(v) for v in args.shape.lower().split("x"))
    import fastlinear as fl

    fl.set_num_threads(args.threads)
    for op in args.op or OPS:
        if args.mode == "offsets":
            offsets(op, n, k, m, args.dtype, args.rounds)
        elif args.mode == "processes":
            processes(op, n, k, m, args.dtype, args.rounds, args.processes, args.threads)
        else:
            child(op, n, k, m, args.dtype, args.rounds)


if __name__ == "__main__":
    main()
