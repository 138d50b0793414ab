"""The ``fastlinear`` command.

``fastlinear demo`` validates and times the four kernels of every backend on a few shapes and
prints one table: median time per call, GFLOP/s, and the speed ratio to the blas backend.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

DEFAULT_SHAPES = "32x128x128,8x784x128,256x512x512,4096x256x10"


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    try:
        n, k, m = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape {text!r} is not BATCHxINxOUT (three integers joined by 'x', e.g. 32x128x128)"
        ) from None
    if n < 0 or k < 1 or m < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r}: batch must be >= 0, features >= 1")
    return n, k, m


def _shapes(text: str) -> list[tuple[int, int, int]]:
    return [_shape(s) for s in text.split(",") if s]


def _parser() -> argparse.ArgumentParser:
    from .backends import available_backends

    parser = argparse.ArgumentParser(prog="fastlinear", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="validate and time every backend's kernels side by side")
    demo.add_argument("--shapes", type=_shapes, default=_shapes(DEFAULT_SHAPES),
                      help=f"comma-separated BATCHxINxOUT (default {DEFAULT_SHAPES})")
    demo.add_argument("--dtype", choices=["float32", "float64", "both"], default="float32")
    demo.add_argument("--backends", default="loops,naive,blas",
                      help=f"comma-separated, from {', '.join(available_backends())}")
    demo.add_argument("--threads", type=int, default=None,
                      help="threads for Numba and BLAS alike (default: all of Numba's)")
    demo.add_argument("--repeats", type=int, default=5, help="timing samples per backend")
    from .train import add_parser as add_train_parser

    add_train_parser(sub)
    return parser


def _header(threads: int) -> str:
    import numba
    import numpy as np
    import threadpoolctl

    blas = [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
        for i in threadpoolctl.threadpool_info()
        if i.get("user_api") == "blas"
    ]
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    lines = [
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
        f"{os.cpu_count()} CPUs, {threads} threads for Numba and BLAS",
        f"BLAS: {'; '.join(blas) or 'none found'}",
    ]
    if env:
        lines.append(f"note: {env} is set; it can slow numpy's BLAS")
    return "\n".join(lines)


def _threading_layer() -> str:
    """The layer Numba's parallel kernels ran on (known only once one has run)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return "none used yet"


def demo(args: argparse.Namespace) -> int:
    from . import harness
    from .backends import get_backend
    from .threads import get_num_threads, set_num_threads

    backends = [b for b in args.backends.split(",") if b]
    for name in backends:
        get_backend(name)
    # Without --threads, keep Numba's count but still pin BLAS to the same number.
    set_num_threads(get_num_threads() if args.threads is None else args.threads)
    print(_header(get_num_threads()))
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    results = harness.run(args.shapes, dtypes, backends, repeats=args.repeats)
    blas = {(r.shape, r.dtype, r.op): r.median_s for r in results if r.backend == "blas"}
    print(f"\n{'dtype':8} {'shape (BxINxOUT)':>17} {'op':12} {'backend':8} {'median':>11} "
          f"{'GFLOP/s':>8} {'vs blas':>8} {'first call':>11}")
    failed = 0
    for r in results:
        shape = "x".join(map(str, r.shape))
        first = f"{r.first_call_s:10.3f}s"
        if not r.ok:
            failed += 1
            print(f"{r.dtype:8} {shape:>17} {r.op:12} {r.backend:8} WRONG RESULT (max rel error "
                  f"{r.error:.2e}), not timed {first:>11}")
            continue
        ref = blas.get((r.shape, r.dtype, r.op))
        ratio = f"{ref / r.median_s:7.2f}x" if ref else "      -"
        print(f"{r.dtype:8} {shape:>17} {r.op:12} {r.backend:8} {r.median_s * 1e6:9.1f}us "
              f"{r.gflops:8.1f} {ratio:>8} {first:>11}")
    print("\nmedian of interleaved samples; 'vs blas' > 1 means faster than numpy/BLAS; "
          "'first call' includes JIT compile or cache load")
    print(f"Numba threading layer: {_threading_layer()}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastlinear`` console script."""
    args = _parser().parse_args(argv)
    if hasattr(args, "handler"):
        return args.handler(args)
    try:
        return demo(args)
    except (ValueError, TypeError) as exc:
        print(f"fastlinear {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
