"""``fastlinear compare``: every backend (and PyTorch's CPU ops) over a grid of shapes, ops, dtypes
and thread counts; validated against float64 first, then timed interleaved (see
`fastlinear.cli.harness`). Prints a table (rich when stdout is a terminal and rich is installed,
plain text otherwise) and can write JSON (``--json``), Markdown tables (``--markdown``) and a plot
of the speed relative to blas (``--plot``, needs matplotlib), also from an earlier run's JSON
(``--from-json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Callable

from . import harness
from ._common import HelpFormatter
from .problems import SHAPE_CLASSES

DEFAULT_SHAPES = "tiny,small,skinny_in,medium,skinny_out"
QUICK_SHAPES = "tiny,3x5x7"


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"32x128x128"`` (or a shape class name; a hyphen may stand for its underscore, as in
    ``skinny-in``) -> (batch, in_features, out_features)."""
    name = text.strip().lower().replace("-", "_")
    if name in SHAPE_CLASSES:
        return SHAPE_CLASSES[name]
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


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``fastlinear compare``."""
    p = sub.add_parser(
        "compare", formatter_class=HelpFormatter,
        help="validate, then time every backend (and torch) side by side",
        description="Check every backend (and PyTorch's CPU ops, if installed) against a float64 "
                    "reference, then time those that passed, interleaved, and print a table of "
                    "median times, GFLOP/s and speed ratios to blas and torch. Exit status 1 if "
                    "any result was wrong.")
    p.add_argument("--shapes", type=parse_shapes, default=None, metavar="SHAPES",
                   help=f"comma-separated BATCHxINxOUT or shape classes "
                        f"({', '.join(f'{k}={n}x{i}x{o}' for k, (n, i, o) in SHAPE_CLASSES.items())}) "
                        f"(default: {DEFAULT_SHAPES}; with --quick {QUICK_SHAPES})")
    p.add_argument("--ops", type=_choices(harness.OPS, "op"), default=",".join(harness.OPS),
                   metavar="OPS", help=f"comma-separated, from {', '.join(harness.OPS)}")
    p.add_argument("--dtype", type=_choices(("float32", "float64", "both"), "dtype"),
                   default="float32", help="float32, float64 or both")
    p.add_argument("--backends", default=None,
                   help="comma-separated, from the registered backends and 'torch' "
                        "(default: all of them, torch if installed)")
    p.add_argument("--threads", type=_threads, default=None,
                   help="thread counts for Numba, BLAS and torch alike, e.g. 1,2 "
                        "(default: Numba's current count)")
    p.add_argument("--repeats", type=int, default=5, help="timing samples per backend")
    p.add_argument("--inputs", choices=harness.INPUTS, default="lines",
                   help="where the arrays start: on 64-byte lines, as Linear and fastlinear.nn "
                        "keep theirs (default), or in numpy's own buffers, as a numpy user's "
                        "arrays are")
    p.add_argument("--json", metavar="PATH", help="write every result and the environment as JSON")
    p.add_argument("--markdown", metavar="PATH",
                   help="write the results as Markdown tables (one per dtype and thread count)")
    p.add_argument("--plot", metavar="PATH",
                   help="draw speed relative to blas, per op and shape (.png, .svg or .pdf; "
                        "needs matplotlib)")
    p.add_argument("--from-json", metavar="PATH",
                   help="measure nothing: read the results of an earlier --json run and print or "
                        "write them (--markdown, --plot); the measuring options are then ignored")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny shapes unless --shapes is given, one sample, no pauses")
    p.add_argument("--plain", action="store_true", help="plain-text table even on a terminal")
    return p


def _resolve(args: argparse.Namespace) -> tuple[list, list, list, list]:
    shapes = args.shapes or parse_shapes(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    ops = args.ops
    dtypes = ["float32", "float64"] if "both" in args.dtype else list(dict.fromkeys(args.dtype))
    backends = (list(harness.available_contenders()) if args.backends is None
                else [b.strip() for b in args.backends.split(",") if b.strip()])
    if not backends:
        raise ValueError("--backends needs at least one backend")
    for name in backends:
        harness.check_contender(name)
    return shapes, ops, dtypes, backends


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _check_memory(shapes, dtypes, backends) -> None:
    """Refuse, before anything runs, a shape whose arrays would not fit in this machine's memory."""
    total = _physical_memory()
    if total is None:
        return
    for shape in shapes:
        for dtype in dtypes:
            need = harness.memory_needed(shape, dtype, len(backends))
            if need > total:
                raise ValueError(
                    f"shape {'x'.join(map(str, shape))} in {dtype} needs about {need / 2**30:,.1f} "
                    f"GiB for its inputs, outputs and float64 reference; this machine has "
                    f"{total / 2**30:,.1f} GiB")


def _check_outputs(args: argparse.Namespace, backends: list[str] | None) -> None:
    """Fail on an output that cannot be written before any measuring starts."""
    from .._io import check_writable

    if args.plot:
        from . import plot

        plot.check_path(args.plot)
        if backends is not None and "blas" not in backends:
            raise ValueError("--plot shows speed relative to blas: include blas in --backends")
    for path in (args.json, args.markdown, args.plot):
        if path:
            check_writable(path)


def run(args: argparse.Namespace) -> int:
    """``fastlinear compare``: 0 when every result validated, 1 if any was wrong (see
    `fastlinear.cli` for the other statuses)."""
    if args.from_json:
        _check_outputs(args, None)
        results, env = load_json(args.from_json)
    else:
        shapes, ops, dtypes, backends = _resolve(args)
        if args.repeats < 1:
            raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
        _check_outputs(args, backends)
        _check_memory(shapes, dtypes, backends)
        results, env = measure(shapes, ops, dtypes, backends, threads=args.threads,
                               repeats=1 if args.quick else args.repeats, quick=args.quick,
                               inputs=args.inputs)
    from . import table

    table.print_table(results, env, rich_ok=sys.stdout.isatty() and not args.plain)
    if args.json:
        write_json(args.json, results, env)
        print(f"wrote {args.json}")
    if args.markdown:
        from .._io import atomic_write

        with atomic_write(args.markdown, "w") as f:
            f.write(table.markdown(results, env))
        print(f"wrote {args.markdown}")
    if args.plot:
        from . import plot

        plot.plot(results, args.plot, title=env.get("cpu", ""))
        print(f"wrote {args.plot}")
    return 1 if any(r.status == "wrong" for r in results) else 0


def measure(shapes: list[tuple[int, int, int]], ops: list[str], dtypes: list[str],
            backends: list[str], threads: list[int] | None = None, repeats: int = 5,
            quick: bool = False, inputs: str = "lines") -> tuple[list[harness.Result], dict]:
    """Validate and time every (threads, dtype, shape, op, backend), with a progress bar on a
    terminal; returns the results and the environment (`fastlinear.cli.info.summary`, with
    ``inputs``: where the arrays started, `harness.INPUTS`).

    Raises ValueError for a thread count outside Numba's pool or an unknown ``inputs`` (before
    anything runs)."""
    from .._threads import get_num_threads, set_num_threads
    from . import info

    if inputs not in harness.INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(harness.INPUTS)}, got {inputs!r}")
    thread_counts = threads or [get_num_threads()]
    before = get_num_threads()
    for t in thread_counts:
        set_num_threads(t)  # raises ValueError naming the valid range
    set_num_threads(before)
    results: list[harness.Result] = []
    total = len(thread_counts) * len(dtypes) * len(shapes) * len(ops)
    with _Progress(total, enabled=sys.stderr.isatty()) as bar:
        for t in thread_counts:
            set_num_threads(t)
            results += harness.run(shapes, dtypes, backends, tuple(ops), repeats=repeats,
                                   min_sample_s=1e-4 if quick else 0.002,
                                   settle=not quick, progress=bar.step, inputs=inputs)
    return results, {**info.summary(), "inputs": inputs}


def write_json(path: str, results: list[harness.Result], env: dict) -> None:
    """Write the results and the environment as JSON, atomically (see `fastlinear._io`)."""
    from .._io import atomic_write

    rows = []
    for r in results:
        row = dict(vars(r))
        row["shape"] = list(r.shape)
        rows.append(row)
    doc = {"command": "fastlinear compare", "format": 1, "python": platform.python_version(),
           "environment": env, "results": rows}
    with atomic_write(path, "w") as f:
        json.dump(doc, f, indent=1, default=float)


def load_json(path: str) -> tuple[list[harness.Result], dict]:
    """Read a file written by `write_json`; ValueError naming the file if it is not one."""
    import dataclasses

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"--from-json {path!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--from-json {path!r} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("command") != "fastlinear compare":
        raise ValueError(f"--from-json {path!r} is not a results file of fastlinear compare --json")
    names = {f.name for f in dataclasses.fields(harness.Result)}
    results = []
    try:
        for row in doc["results"]:
            kept = {k: v for k, v in row.items() if k in names}
            kept["shape"] = tuple(int(v) for v in kept["shape"])
            results.append(harness.Result(**kept))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"--from-json {path!r}: a result row is malformed ({exc!r})") from None
    return results, doc.get("environment") or {}


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
