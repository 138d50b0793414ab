"""``fastlinear compare``: every backend (and PyTorch's CPU ops) over a grid of shapes, ops, dtypes
and thread counts; validated against float64 first, then timed interleaved (see
`fastlinear.cli.harness`). Prints a table (rich when stdout is a terminal and rich is installed,
plain text otherwise) and can write JSON (``--json``) and a GFLOP/s plot (``--plot``, needs
matplotlib).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Callable

from . import harness

#: Shape classes, batch x in_features x out_features. ``large`` (1024x1024x1024) and ``wide``
#: (64x4096x4096) take long with every backend and are left out of the default grid.
SHAPE_CLASSES = {
    "tiny": (1, 16, 16),
    "small": (32, 128, 128),
    "medium": (256, 512, 512),
    "large": (1024, 1024, 1024),
    "skinny-in": (8, 784, 128),
    "skinny-out": (4096, 256, 10),
    "wide": (64, 4096, 4096),
}
DEFAULT_SHAPES = "1x16x16,32x128x128,8x784x128,256x512x512,4096x256x10"
QUICK_SHAPES = "1x16x16,3x5x7"


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"32x128x128"`` (or a shape class name) -> (batch, in_features, out_features)."""
    if text in SHAPE_CLASSES:
        return SHAPE_CLASSES[text]
    try:
        n, k, m = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape {text!r} is not BATCHxINxOUT (three integers joined by 'x', e.g. 32x128x128) "
            f"or a shape class ({', '.join(SHAPE_CLASSES)})"
        ) from None
    if n < 1 or k < 1 or m < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r}: batch and features must be >= 1")
    return n, k, m


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    shapes = [parse_shape(s.strip()) for s in text.split(",") if s.strip()]
    if not shapes:
        raise argparse.ArgumentTypeError("--shapes needs at least one shape")
    return shapes


def _choices(valid: tuple[str, ...], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"invalid {what} {', '.join(map(repr, bad)) or repr(text)}; "
                f"choose from {', '.join(valid)} (comma-separated)"
            )
        return items

    return parse


def _threads(text: str) -> list[int]:
    try:
        counts = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads {text!r}: comma-separated integers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--threads {text!r}: counts must be >= 1")
    return counts


def add_arguments(p: argparse.ArgumentParser, *, shapes: str, backends: str | None,
                  ops: str) -> None:
    """The options shared by ``compare`` and ``demo`` (which differ only in defaults)."""
    p.set_defaults(default_shapes=shapes, default_backends=backends, default_ops=ops)
    p.add_argument("--shapes", type=parse_shapes, default=None,
                   help=f"comma-separated BATCHxINxOUT or class names "
                        f"({', '.join(SHAPE_CLASSES)}); default {shapes}")
    p.add_argument("--ops", type=_choices(harness.OPS, "op"), default=None,
                   help=f"comma-separated, from {', '.join(harness.OPS)} (default {ops})")
    p.add_argument("--dtype", type=_choices(("float32", "float64", "both"), "dtype"),
                   default=["float32"], help="float32, float64 or both (default float32)")
    p.add_argument("--backends", default=None,
                   help="comma-separated, from the registered backends and 'torch' "
                        "(default: all of them, torch if importable)")
    p.add_argument("--threads", type=_threads, default=None,
                   help="thread counts for Numba, BLAS and torch alike, e.g. 1,2 "
                        "(default: Numba's current count)")
    p.add_argument("--repeats", type=int, default=5, help="timing samples per backend (default 5)")
    p.add_argument("--json", metavar="PATH", help="write every result and the environment as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="GFLOP/s per backend, one panel per op")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny shapes unless --shapes is given, one sample, no pauses")
    p.add_argument("--plain", action="store_true", help="plain-text table even on a terminal")


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``fastlinear compare``."""
    p = sub.add_parser(
        "compare", help="validate, then time every backend (and torch) side by side",
        description="Check every backend (and PyTorch's CPU ops, if installed) against a float64 "
                    "reference, then time those that passed, interleaved, and print a table of "
                    "median times, GFLOP/s and speed ratios to blas and torch.")
    add_arguments(p, shapes=DEFAULT_SHAPES, backends=None, ops=",".join(harness.OPS))
    p.set_defaults(run=run)
    return p


def _resolve(args: argparse.Namespace) -> tuple[list, list, list, list]:
    shapes = args.shapes or parse_shapes(QUICK_SHAPES if args.quick else args.default_shapes)
    ops = args.ops or args.default_ops.split(",")
    dtypes = ["float32", "float64"] if "both" in args.dtype else list(dict.fromkeys(args.dtype))
    names = args.backends or args.default_backends
    backends = (list(harness.available_contenders()) if names is None
                else [b.strip() for b in names.split(",") if b.strip()])
    if not backends:
        raise ValueError("--backends needs at least one backend")
    for name in backends:
        harness.check_contender(name)
    return shapes, ops, dtypes, backends


def run(args: argparse.Namespace) -> int:
    """Run the comparison; 0 when every result validated, 1 if any was wrong, 2 on bad usage."""
    from . import info
    from .._threads import get_num_threads, set_num_threads

    shapes, ops, dtypes, backends = _resolve(args)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.plot:
        from . import plot

        plot.require_matplotlib()
    thread_counts = args.threads or [get_num_threads()]
    for t in thread_counts:
        set_num_threads(t)  # raises ValueError naming the valid range
    repeats = 1 if args.quick else args.repeats
    results: list[harness.Result] = []
    total = len(thread_counts) * len(dtypes) * len(shapes) * len(ops)
    with _Progress(total, enabled=sys.stderr.isatty()) as bar:
        for t in thread_counts:
            set_num_threads(t)
            results += harness.run(shapes, dtypes, backends, tuple(ops), repeats=repeats,
                                   min_sample_s=1e-4 if args.quick else 0.002,
                                   settle=not args.quick, progress=bar.step)
    env = info.summary()
    from . import table

    table.print_table(results, env, rich_ok=sys.stdout.isatty() and not args.plain)
    if args.json:
        _write_json(args.json, results, env, ops)
        print(f"wrote {args.json}")
    if args.plot:
        from . import plot

        plot.plot(results, args.plot, title=f"{env['cpu']}, numpy/BLAS vs fastlinear vs torch")
        print(f"wrote {args.plot}")
    return 1 if any(r.status == "wrong" for r in results) else 0


def _write_json(path: str, results: list[harness.Result], env: dict, ops: list[str]) -> None:
    rows = []
    for r in results:
        row = {k: v for k, v in vars(r).items()}
        row["shape"] = list(r.shape)
        rows.append(row)
    doc = {"command": "fastlinear compare", "python": platform.python_version(), "ops": ops,
           "environment": env, "results": rows}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, default=float)


class _Progress:
    """A rich progress bar on stderr when it is a terminal and rich is installed; else silent."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.started, self.bar = total, 0, None
        if enabled:
            try:
                from rich.progress import Progress
            except ImportError:
                return
            self.bar = Progress(transient=True)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
            self.task = self.bar.add_task("comparing", total=self.total)
        return self

    def step(self, text: str) -> None:
        """Called as each item starts: the ones before it are done."""
        if self.bar is not None:
            self.bar.update(self.task, completed=self.started, description=text)
        self.started += 1

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
