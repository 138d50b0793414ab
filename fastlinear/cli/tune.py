"""``fastlinear tune``: measure, on this machine, where BLAS beats the loop kernels, and write the
tuning table that the ``auto`` backend reads (`fastlinear.tuning`). Progress goes to stderr (a rich
progress bar on a terminal when rich is installed, plain lines otherwise); the table of choices and
the path written go to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import HelpFormatter
from .compare import _choices, _threads
from .problems import SHAPE_CLASSES
from ..tuning import TUNED_OPS, rounds_needed


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``fastlinear tune``."""
    p = sub.add_parser(
        "tune", formatter_class=HelpFormatter,
        help="measure loops against blas here and write the table the auto backend follows",
        description="For each op, dtype, shape class and thread count, check the loop kernels and "
                    "numpy's BLAS against a float64 reference, time both (each in its own settled "
                    "block, medians of interleaved rounds) and record which is faster; first, "
                    "find up to which batch the loop kernels' packed forward and input gradient "
                    "gain from packing the weights in their tiles rather than whole, up to which "
                    "batch their packed forward gains from reading the weights in place, and from "
                    "which size (batch x in x out) their packed GEMM beats their direct kernels, "
                    "which the loops backend then follows. The auto "
                    "backend then runs the faster one (loops unless blas is more than 3% faster in "
                    "the medians and in at least three quarters of the paired rounds). "
                    "The table is written atomically to the user's cache directory (or --output, "
                    "or the file FASTLINEAR_TUNING names) and is keyed by the CPU model, core "
                    "count and the versions of fastlinear, numpy, its BLAS and numba. Exit status "
                    "1 if a backend gave a wrong result (it is then never chosen), if the loop "
                    "kernels' direct or packed kernel did, or if their two ways of packing the "
                    "weights (or reading them in place) differed.")
    p.add_argument("--quick", action="store_true",
                   help="a rough table in a fraction of the time: short samples, 3 rounds")
    p.add_argument("--classes", type=_choices(tuple(SHAPE_CLASSES), "shape class"),
                   default=",".join(SHAPE_CLASSES), metavar="CLASSES",
                   help="comma-separated shape classes to measure "
                        f"({', '.join(f'{k}={n}x{i}x{o}' for k, (n, i, o) in SHAPE_CLASSES.items())}); "
                        "calls nearest a class left out run the loop kernels")
    p.add_argument("--dtype", type=_choices(("float32", "float64", "both"), "dtype"),
                   default="both", help="float32, float64 or both")
    p.add_argument("--ops", type=_choices(TUNED_OPS, "op"), default=",".join(TUNED_OPS),
                   metavar="OPS", help=f"comma-separated, from {', '.join(TUNED_OPS)} "
                                       "(grad_bias always runs the loop kernel)")
    p.add_argument("--threads", type=_threads, default=None,
                   help="thread counts to measure at, for Numba, BLAS and torch alike, e.g. 1,2 "
                        "(default: 1 and the current count)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timing rounds per backend (default: 7, or 3 with --quick)")
    p.add_argument("--output", metavar="PATH",
                   help="write the table here instead of where auto reads it (then point "
                        "FASTLINEAR_TUNING at it to use it)")
    p.add_argument("--no-crossovers", action="store_true",
                   help="skip timing the loop kernels' direct kernels against their packed GEMM, "
                        "w packed whole against in the tiles, and the packed forward with w "
                        "packed against w read in place (the loops backend then keeps its "
                        "built-in crossovers and limits)")
    p.add_argument("--plain", action="store_true",
                   help="plain progress lines even on a terminal")
    return p


def _target(output: str | None) -> tuple[Path, str]:
    """The file to write and a note on whether auto will read it; checked writable (the cache
    directory is created) before anything is measured."""
    from .. import tuning
    from .._io import check_writable

    in_use = tuning.table_path()
    if output is not None:
        path = Path(output)
        note = "" if in_use is not None and path.resolve() == in_use.resolve() else (
            f"auto does not read this file; set {tuning.ENV}={path} to use it")
    else:
        path = in_use or tuning.default_path()
        note = "" if in_use is not None else (
            f"{tuning.ENV}=off: auto uses the built-in defaults until it is unset")
        if path.parent == tuning.cache_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
    check_writable(path)
    return path, note


class _Progress:
    """A rich progress bar on stderr when it is a terminal and rich is installed, else one plain
    line per measurement on stderr."""

    def __init__(self, rich_ok: bool) -> None:
        self.bar = self.task = None
        if rich_ok:
            try:
                from rich.progress import Progress
            except ImportError:
                return
            self.bar = Progress(transient=True)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.bar is None:
            if done < total:
                print(f"[{done + 1}/{total}] {what}", file=sys.stderr, flush=True)
            return
        if self.task is None:
            self.task = self.bar.add_task("tuning", total=total)
        self.bar.update(self.task, completed=done, description=what)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _cell(e: dict, prefer_within: float) -> str:
    if e["faster"] is None:
        wrong = [b for b in ("loops", "blas") if e[f"{b}_status"] != "ok"]
        return f"{e['choice']} ({' and '.join(wrong)} wrong)"
    cell = f"{e['choice']} {e['loops_s'] / e['blas_s']:.2f}"
    if e["choice"] == "loops" and e["loops_s"] > prefer_within * e["blas_s"]:
        # faster in the medians, but not in enough of the paired rounds
        cell += f" (blas won {e['blas_rounds_won']}/{e['rounds']})"
    return cell


def format_table(table: dict) -> str:
    """The choices as plain text: one row per (threads, dtype, op), one column per shape class,
    each cell auto's choice and the loops time / blas time ratio."""
    entries = table["entries"]
    classes = list(dict.fromkeys(e["class"] for e in entries))
    rows = {}
    for e in entries:
        rows.setdefault((e["threads"], e["dtype"], e["op"]), {})[e["class"]] = _cell(
            e, table["prefer_loops_within"])
    head = ["threads", "dtype", "op"] + classes
    body = [[str(t), d, o] + [cells.get(c, "-") for c in classes] for (t, d, o), cells in rows.items()]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head] + body]
    text = ["auto's choice per shape class, with loops time / blas time (blas is chosen above "
            f"{table['prefer_loops_within']:g}, and only when blas also won by that margin in at "
            f"least {rounds_needed(table['repeats'])} of the "
            f"{table['repeats']} paired rounds):"] + lines
    packed = table.get("packed")
    if packed:
        text.append(f"loops runs its packed GEMM above these sizes (batch x in x out, measured at "
                    f"{packed['threads']} thread{'s' * (packed['threads'] > 1)}):")
        text += [f"  {op}: {sizes}" for op, sizes in crossover_sizes(packed["above"])]
        if packed.get("w_in_place_rows"):
            text.append("its forward reads w in place, not packing it: "
                        + limit_sizes(packed["w_in_place_rows"]))
        if packed.get("w_in_tile_rows"):
            text.append("its forward (where it does not read w in place) and input gradient pack w "
                        "in the tiles, not whole (where the tiles keep the threads busy): "
                        + limit_sizes(packed["w_in_tile_rows"]))
    return "\n".join(text)


def limit_sizes(rows: dict) -> str:
    """"float32 up to a batch of 128, float64 never" for a {dtype: batch rows} table of the
    in-place or in-tile limit (0: w is always packed whole)."""
    return ", ".join(f"{d} {f'up to a batch of {r}' if r else 'never'}" for d, r in rows.items())


def crossover_sizes(above: dict) -> list[tuple[str, str]]:
    """(op, "float32 2**22, float64 2**23") for each op of a crossover table {op: {dtype: work}},
    each work as a power of two where it is one."""
    def work(v: int) -> str:
        return f"2**{v.bit_length() - 1}" if v > 0 and v & (v - 1) == 0 else f"{v:,}"

    return [(op, ", ".join(f"{d} {work(v)}" for d, v in by_dtype.items()))
            for op, by_dtype in above.items()]


def run(args: argparse.Namespace) -> int:
    """``fastlinear tune``: 0 when every result validated, 1 if a backend gave a wrong result or
    the loop kernels' direct or packed kernel did while the crossovers were measured (see
    `fastlinear.cli` for the other statuses)."""
    from .. import tuning

    if args.repeats is not None and args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    path, note = _target(args.output)
    dtypes = ["float32", "float64"] if "both" in args.dtype else list(dict.fromkeys(args.dtype))
    with _Progress(rich_ok=sys.stderr.isatty() and not args.plain) as progress:
        table = tuning.tune(classes=args.classes, dtypes=dtypes, ops=args.ops,
                            threads=args.threads, quick=args.quick, repeats=args.repeats,
                            output=path, progress=progress, crossovers=not args.no_crossovers)
    print(format_table(table))
    print(f"wrote {table['path']}")
    if note:
        print(f"note: {note}")
    wrong = [e for e in table["entries"] if "wrong" in (e["loops_status"], e["blas_status"])]
    for e in wrong:
        print(f"fastlinear tune: {e['dtype']} {e['op']} ({e['class']}, {e['threads']} threads): "
              f"loops {e['loops_status']}, blas {e['blas_status']}", file=sys.stderr)
    bad_rungs = [(op, dtype, r["shape"])
                for op, by_dtype in table.get("packed", {}).get("rungs", {}).items()
                for dtype, rungs in by_dtype.items() for r in rungs if r["status"] != "ok"]
    for op, dtype, shape in bad_rungs:
        print(f"fastlinear tune: {dtype} {op} at {'x'.join(map(str, shape))}: the loop kernels' "
              "direct or packed result is wrong (the packed one is not chosen there or below)",
              file=sys.stderr)
    # per limit: the two ways compared, and what is then not done there or above
    limits = {"in_place": ("with w read in place and with w packed", "w is not read in place"),
              "in_tile": ("with w packed in the tiles and whole", "w is not packed in the tiles")}
    names = {"forward": "forward", "grad_input": "input gradient"}
    bad_limits = [(kind, r.get("op", "forward"), dtype, r["shape"]) for kind in limits
                  for dtype, rungs in table.get("packed", {}).get(
                      f"{tuning.W_LIMITS[kind][0]}_rungs", {}).items()
                  for r in rungs if r["status"] != "ok"]
    for kind, op, dtype, shape in bad_limits:
        print(f"fastlinear tune: {dtype} {op} at {'x'.join(map(str, shape))}: the packed "
              f"{names[op]} {limits[kind][0]} gave different results (they must be bitwise "
              f"equal; {limits[kind][1]} there or above)", file=sys.stderr)
    return 1 if wrong or bad_rungs or bad_limits else 0
