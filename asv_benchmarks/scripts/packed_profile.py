"""Where the packed GEMM's time goes on this machine: its micro-kernel alone, then the whole
products at several reduction blocks (KC), beside numpy's BLAS and torch at the same thread count.

1. The micro-kernel (``fastlinear.kernels.packed._micro``), called from a compiled loop over
   packed panels already in cache: one A and one B panel of 256 steps (40 KiB float32, 48 KiB
   float64: about an L1 data cache), and 8 row panels by 2 column panels at the built-in KC (the
   driver's tile at float32 1024 x 1024 outputs; 512 KiB float32, 384 KiB float64: in L2).
   GFLOP/s, best of 5.
2. ``packed_forward``, ``packed_grad_weight`` (with db) and ``packed_grad_input`` at each KC of a
   ladder, the ladder's values interleaved in 7 rounds in one process (medians), with the built-in
   KC's time divided by each one's in brackets (above 1: faster than the built-in block). KC is a
   module constant of ``fastlinear.kernels.packed._workspace``; this script sets it directly. Only
   the first KC at or above the op's reduction length (k for the forward, the batch for
   grad_weight, out for grad_input) is timed: larger ones run the same single k-block.
3. With ``--phases``: the forward product through variants of the driver ``_driver.gemm`` with one
   phase removed (packing, the micro-kernel, the store of its block into C, the prefetch of C),
   compiled here from its source with that one call taken out, interleaved in 9 rounds (medians);
   each phase's share is 1 - (time without it) / (whole driver's time). The variants compute wrong
   results; they only time.
4. With ``--in-place``, instead of all the above: the forward driver with w packed against w read
   in place (the figures behind ``_api.W_IN_PLACE_ROWS``), interleaved in 9 rounds (medians of
   the best of 3 calls), at each shape.
5. With ``--in-tile``, likewise: the forward and input-gradient driver with all of w packed per
   k-block against w packed in the tiles that use it (the figures behind
   ``_api.W_IN_TILE_ROWS``).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/packed_profile.py \\
        --threads 1 --shapes 1024x1024x1024,256x512x512
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import time

import numpy as np

import fastlinear as fl
from fastlinear.kernels.packed import _api, _driver, _workspace
from fastlinear.kernels.packed._micro import MICRO

LADDER = {np.dtype(np.float32): (256, 384, 512, 768, 1024),
          np.dtype(np.float64): (128, 192, 256, 384, 512)}
ROUNDS = 7


def micro_gflops(dt: np.dtype) -> dict[str, float]:
    """The micro-kernel's GFLOP/s at two working sets (see the module docstring)."""
    from numba import njit

    from fastlinear.kernels.packed._micro import micro

    u = np.uintp

    @njit
    def run(reps, kc, a, b, t, apanels, bpanels, mr, nr):
        for _ in range(reps):
            for p in range(apanels):
                for q in range(bpanels):
                    micro(kc, a, u(p) * mr * kc, u(1), mr, b, u(q) * nr * kc, nr, t)

    mr, nr = MICRO[dt]
    out = {}
    kc_in = _workspace.KC[dt]
    for kc, ap, bp in ((256, 1, 1), (kc_in, 8, 2)):
        label = (f"{ap} x {bp} panels of {kc} steps "
                 f"({(ap * mr + bp * nr) * kc * dt.itemsize / 1024:.0f} KiB)")
        a = np.random.default_rng(0).random(ap * mr * kc).astype(dt)
        b = np.random.default_rng(1).random(bp * nr * kc).astype(dt)
        t = np.empty(mr * nr, dt)
        run(1, u(kc), a, b, t, ap, bp, u(mr), u(nr))  # compile
        flops = 2 * mr * nr * kc * ap * bp
        reps = max(1, int(2e8 // flops))
        best = min(_timed(lambda: run(reps, u(kc), a, b, t, ap, bp, u(mr), u(nr))) for _ in range(5))
        out[label] = flops * reps / best / 1e9
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ladder(dt: np.dtype, length: int) -> list[int]:
    """The KC values worth timing for a reduction of ``length`` steps: those below it and the first
    at or above it (any larger KC runs the same single k-block)."""
    below = [kc for kc in LADDER[dt] if kc < length]
    above = [kc for kc in LADDER[dt] if kc >= length]
    return below + above[:1]


def products(dt: np.dtype, n: int, k: int, m: int) -> dict[str, dict[int, float]]:
    """Median seconds per call of each packed product at each KC of its `ladder`."""
    rng = np.random.default_rng(0)
    x, w, dy = (rng.random(s).astype(dt) for s in ((n, k), (m, k), (n, m)))
    y, dw, db, dx = np.empty((n, m), dt), np.empty((m, k), dt), np.empty(m, dt), np.empty((n, k), dt)
    calls = {"forward": lambda: _api.packed_forward(y, x, w, None),
             "grad_weight": lambda: _api.packed_grad_weight(dw, db, dy, x, dt.type(1), False),
             "grad_input": lambda: _api.packed_grad_input(dx, dy, w)}
    lengths = {"forward": k, "grad_weight": n, "grad_input": m}
    built_in = _workspace.KC[dt]
    samples = {op: {kc: [] for kc in ladder(dt, lengths[op])} for op in calls}
    try:
        for _ in range(ROUNDS):
            for kc in LADDER[dt]:
                _workspace.KC[dt] = kc
                _workspace._local.spaces = {}  # new buffers sized for this KC
                for op, call in calls.items():
                    if kc in samples[op]:
                        call()
                        samples[op][kc].append(min(_timed(call) for _ in range(3)))
    finally:
        _workspace.KC[dt] = built_in
        _workspace._local.spaces = {}
    return {op: {kc: statistics.median(v) for kc, v in by_kc.items()}
            for op, by_kc in samples.items()}


def others(dt: np.dtype, n: int, k: int, m: int, threads: int) -> dict[str, float]:
    """Median seconds of numpy's and (if importable) torch's forward product at ``threads``."""
    rng = np.random.default_rng(0)
    x, w = rng.random((n, k)).astype(dt), rng.random((m, k)).astype(dt)
    y = np.empty((n, m), dt)
    out = {"numpy": lambda: np.matmul(x, w.T, out=y)}
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.set_num_threads(threads)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        out["torch"] = lambda: torch.mm(xt, wt.t())
    res = {}
    for name, call in out.items():
        time.sleep(0.3)  # another pool's threads go idle first
        for _ in range(3):
            call()
        res[name] = statistics.median(_timed(call) for _ in range(ROUNDS))
    return res


#: driver variants for --phases: the call each one leaves out
PHASES = {
    "packing": "_pack_task(_U(ti), chunks,",
    "micro-kernel": "micro(kc, apack, (ip - afull) * mr * kc, one, mr, bpack,",
    "store into C": "_store(c, i0, rows, jj, cols, t, nr, add, last, bias, with_bias, act)",
    "prefetch of C": "_prefetch_tile(c, i0, rows, jj, cols)",
}


def phases(dt: np.dtype, n: int, k: int, m: int) -> dict[str, float]:
    """Median seconds of the forward product through the whole driver and through each variant
    without one phase (see the module docstring)."""
    from numba import njit

    @njit
    def _skip(*args):
        pass

    source = inspect.getsource(_driver.gemm)
    if source.count("@njit(**PARALLEL)") != 1:
        raise SystemExit("--phases: the driver's decorator changed; update phases()")
    source = source.replace("@njit(**PARALLEL)", "@njit(**dict(PARALLEL, cache=False))")
    drivers = {"whole driver": None}
    for name, call in PHASES.items():
        if source.count(call) != 1:
            raise SystemExit(f"--phases: the driver no longer calls {call!r} once; update PHASES")
        callee = call.split("(")[0]
        drivers[name] = source.replace(call, call.replace(callee, "_skip", 1))
    rng = np.random.default_rng(0)
    x, w = rng.random((n, k)).astype(dt), rng.random((m, k)).astype(dt)
    y = np.empty((n, m), dt)
    ws = _workspace.workspace(dt)
    empty, leaves = np.empty(0, dt), np.empty((0, 0), dt)
    apack, bpack = ws.packed_a(n), _api._packed_b(ws, dt, m)
    fns = {}
    for name, src in drivers.items():
        if src is None:
            fns[name] = _driver.gemm
        else:
            namespace = dict(vars(_driver), _skip=_skip)
            exec(compile(src, f"<gemm {name}>", "exec"), namespace)  # noqa: S102 - our own source
            fns[name] = namespace["gemm"]

    def call(f) -> None:
        f(y, False, x, True, False, w, True, False, k, dt.type(1), empty, leaves, False, empty,
          False, 0, False, ws.mr, ws.nr, ws.kc, apack, bpack, ws.tiles)

    notice = os.environ.get("FASTLINEAR_COMPILE_NOTICE")
    os.environ["FASTLINEAR_COMPILE_NOTICE"] = "0"  # the variants are not kernels to be cached
    try:
        for f in fns.values():
            call(f)  # compile
    finally:
        if notice is None:
            del os.environ["FASTLINEAR_COMPILE_NOTICE"]
        else:
            os.environ["FASTLINEAR_COMPILE_NOTICE"] = notice
    samples = {name: [] for name in fns}
    for _ in range(9):
        for name, f in fns.items():
            call(f)
            samples[name].append(min(_timed(lambda: call(f)) for _ in range(3)))
    return {name: statistics.median(v) for name, v in samples.items()}


def in_place(dt: np.dtype, n: int, k: int, m: int) -> tuple[float, float]:
    """Median seconds of the forward driver with w packed and with w read in place (y.T = w @
    x.T, as ``packed_forward`` runs it up to ``_api.W_IN_PLACE_ROWS`` batch rows), interleaved in
    9 rounds; both give the same bits (checked here)."""
    rng = np.random.default_rng(0)
    x, w = rng.random((n, k)).astype(dt), rng.random((m, k)).astype(dt)
    y, y2 = np.empty((n, m), dt), np.empty((n, m), dt)
    ws = _workspace.workspace(dt)
    empty, leaves = np.empty(0, dt), np.empty((0, 0), dt)

    def packed_w() -> None:
        _driver.gemm(y, False, x, True, False, w, True, False, k, dt.type(1), empty, leaves, False,
                     empty, False, 0, False, ws.mr, ws.nr, ws.kc, ws.packed_a(n),
                     _api._packed_b(ws, dt, m), ws.tiles)

    def w_in_place() -> None:
        _driver.gemm(y2, True, w, True, True, x, True, False, k, dt.type(1), empty, leaves, False,
                     empty, False, 0, False, ws.mr, ws.nr, ws.kc, ws.packed_a(ws.mr),
                     _api._packed_b(ws, dt, n), ws.tiles)

    return _same_bits_then_timed(packed_w, w_in_place, y, y2,
                                 f"--in-place: {dt} {n}x{k}x{m}: the two forwards differ")


def _same_bits_then_timed(first, second, out1: np.ndarray, out2: np.ndarray,
                          differ: str) -> tuple[float, float]:
    """Run ``first`` and ``second`` once, exit with ``differ`` unless ``out1`` and ``out2`` (their
    outputs) are bitwise equal, then their median seconds over 9 interleaved rounds (each the
    best of 3 calls after one warm-up call)."""
    first()
    second()
    if not np.array_equal(out1, out2):
        raise SystemExit(differ)
    samples: list[list[float]] = [[], []]
    for _ in range(9):
        for i, f in enumerate((first, second)):
            f()
            samples[i].append(min(_timed(f) for _ in range(3)))
    return statistics.median(samples[0]), statistics.median(samples[1])


def in_tile(dt: np.dtype, n: int, k: int, m: int) -> dict[str, tuple[float, float]]:
    """For the forward and the input gradient: median seconds of the driver with all of w packed
    per k-block and with w's panels packed in the tiles that use them (as ``packed_forward`` and
    ``packed_grad_input`` run it up to ``_api.W_IN_TILE_ROWS`` batch rows), interleaved in 9
    rounds; both give the same bits (checked here)."""
    rng = np.random.default_rng(0)
    x, w, dy = (rng.random(s).astype(dt) for s in ((n, k), (m, k), (n, m)))
    ws = _workspace.workspace(dt)
    empty, leaves = np.empty(0, dt), np.empty((0, 0), dt)
    out = {}
    # (op, output, A source, A by rows, B source, B by rows, reduction length, B columns)
    for op, c, asrc, bsrc, b_by_rows, red, cols in (("forward", (n, m), x, w, True, k, m),
                                                    ("grad_input", (n, k), dy, w, False, m, k)):
        whole_c, tiled_c = np.empty(c, dt), np.empty(c, dt)

        def call(c_, in_tile, asrc=asrc, bsrc=bsrc, b_by_rows=b_by_rows, red=red, cols=cols):
            bpack = (_api.in_tile_b(ws, dt, fl.get_num_threads(), cols) if in_tile
                     else _api._packed_b(ws, dt, cols))
            _driver.gemm(c_, False, asrc, True, False, bsrc, b_by_rows, in_tile, red, dt.type(1),
                         empty, leaves, False, empty, False, 0, False, ws.mr, ws.nr, ws.kc,
                         ws.packed_a(n), bpack, ws.tiles)

        out[op] = _same_bits_then_timed(
            lambda: call(whole_c, False), lambda: call(tiled_c, True), whole_c, tiled_c,
            f"--in-tile: {dt} {n}x{k}x{m} {op}: w packed whole and in the tiles differ")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shapes", default="1024x1024x1024,256x512x512",
                   help="comma-separated BATCHxINxOUT")
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--phases", action="store_true",
                   help="also time the forward driver with each phase left out (compiles 4 "
                        "variants of the driver, about 10 s each)")
    p.add_argument("--in-place", action="store_true",
                   help="only time the forward with w packed against w read in place at each "
                        "shape (the figures behind _api.W_IN_PLACE_ROWS)")
    p.add_argument("--in-tile", action="store_true",
                   help="only time the forward and the input gradient with all of w packed per "
                        "k-block against w packed in the tiles at each shape (the figures "
                        "behind _api.W_IN_TILE_ROWS)")
    args = p.parse_args()
    fl.set_num_threads(args.threads)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    print(f"{args.threads} thread(s); built-in KC: "
          + ", ".join(f"{d} {kc}" for d, kc in _workspace.KC.items()))
    if args.in_place:
        for name in args.dtype.split(","):
            dt = np.dtype(name)
            for n, k, m in shapes:
                packed_s, in_place_s = in_place(dt, n, k, m)
                print(f"{dt} {n}x{k}x{m} forward: w packed {packed_s * 1e3:.3f} ms, w in place "
                      f"{in_place_s * 1e3:.3f} ms, packed / in place {packed_s / in_place_s:.2f}",
                      flush=True)
        return
    if args.in_tile:
        for name in args.dtype.split(","):
            dt = np.dtype(name)
            for n, k, m in shapes:
                for op, (whole_s, tiled_s) in in_tile(dt, n, k, m).items():
                    print(f"{dt} {n}x{k}x{m} {op}: w packed whole {whole_s * 1e3:.3f} ms, in "
                          f"the tiles {tiled_s * 1e3:.3f} ms, whole / in tiles "
                          f"{whole_s / tiled_s:.2f}", flush=True)
        return
    for name in args.dtype.split(","):
        dt = np.dtype(name)
        for label, g in micro_gflops(dt).items():
            print(f"{dt} micro-kernel {MICRO[dt][0]}x{MICRO[dt][1]}, {label}: {g:.1f} GFLOP/s")
        for n, k, m in shapes:
            flops = 2 * n * k * m
            ref = others(dt, n, k, m, args.threads)
            print(f"{dt} {n}x{k}x{m} forward: "
                  + ", ".join(f"{lib} {flops / s / 1e9:.1f}" for lib, s in ref.items())
                  + " GFLOP/s")
            if args.phases:
                times = phases(dt, n, k, m)
                whole = times.pop("whole driver")
                print(f"{dt} {n}x{k}x{m} forward, whole driver {whole * 1e3:.2f} ms; share of "
                      "each phase (1 - time without it / whole): " + ", ".join(
                          f"{name} {1 - t / whole:.0%} ({t * 1e3:.2f} ms without)"
                          for name, t in times.items()))
            for op, by_kc in products(dt, n, k, m).items():
                # the built-in KC (the ladder's last), or, where the ladder stopped below it at
                # the reduction length, the last KC timed: the same single k-block
                base = by_kc.get(_workspace.KC[dt], by_kc[max(by_kc)])
                print(f"{dt} {n}x{k}x{m} {op}: " + "  ".join(
                    f"KC {kc} {flops / s / 1e9:.1f} ({base / s:.2f})"
                    for kc, s in by_kc.items()), flush=True)


if __name__ == "__main__":
    main()
