"""``fastlinear compare --plot``: how fast each backend is relative to blas, at a glance.

One panel per op (rows) and per dtype and thread count (columns). In each panel the shapes are
categories along the x axis and the backends stand side by side as bars: bar height is blas's time
divided by the backend's (above the line at 1: faster than blas), on a log axis so that 2x faster
and 2x slower are the same distance from the line, with the ratio written on each bar. A wrong
result is marked "wrong" and a skipped one "skip" where the bar would be. Needs matplotlib; drawn
with the non-interactive Agg backend and written through `fastlinear._io.atomic_write`.
"""

from __future__ import annotations

import math
import os

from ._common import require
from .harness import Result

REFERENCE = "blas"


FORMATS = ("png", "svg", "pdf")


def check_path(path: str) -> None:
    """Before any measuring: matplotlib is installed and the file name ends in a known format.
    Raises MissingDependency or ValueError."""
    require("matplotlib", "--plot", "compare")
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"--plot {path!r}: the name must end in {', '.join('.' + f for f in FORMATS)}")


def _ratio_label(t: float, _pos=None) -> str:
    """Powers of two as 4x, 1x, 1/4x."""
    return f"{t:g}x" if t >= 1 else f"1/{1 / t:g}x"


def speedups(results: list[Result]) -> dict:
    """{(op, dtype, threads): {backend: {shape: ratio or "wrong" or "skip"}}}: blas's median time
    divided by each other backend's, for every result whose blas counterpart was timed."""
    ref = {(r.op, r.dtype, r.threads, r.shape): r.median_s
           for r in results if r.backend == REFERENCE and r.ok}
    out: dict = {}
    for r in results:
        if r.backend == REFERENCE:
            continue
        key = (r.op, r.dtype, r.threads)
        cell = out.setdefault(key, {}).setdefault(r.backend, {})
        base = ref.get((r.op, r.dtype, r.threads, r.shape))
        if r.status == "wrong":
            cell[r.shape] = "wrong"
        elif r.status == "skipped" or base is None:
            cell[r.shape] = "skip"
        else:
            cell[r.shape] = base / r.median_s
    return out


def plot(results: list[Result], path: str, title: str = "") -> None:
    """Write the figure to ``path`` (format from its extension: .png, .svg, .pdf).

    Raises ValueError when blas was not among the compared backends (nothing to be relative to)."""
    check_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    from .._io import atomic_write

    if not any(r.backend == REFERENCE and r.ok for r in results):
        raise ValueError("--plot shows speed relative to blas, but blas has no timed result")
    data = speedups(results)
    ops = list(dict.fromkeys(r.op for r in results))
    columns = list(dict.fromkeys((r.dtype, r.threads) for r in results))
    shapes = list(dict.fromkeys(r.shape for r in results))
    backends = list(dict.fromkeys(r.backend for r in results if r.backend != REFERENCE))
    colors = {b: f"C{i}" for i, b in enumerate(backends)}
    ratios = [v for per_b in data.values() for per_s in per_b.values() for v in per_s.values()
              if isinstance(v, float)]
    # A log axis in powers of two, wide enough for every bar and never narrower than 1/2..2.
    lo_exp = math.floor(math.log2(min([0.5, *ratios])))
    hi_exp = math.ceil(math.log2(max([2.0, *ratios])))
    step = max(1, math.ceil((hi_exp - lo_exp) / 6))  # at most about 7 labelled ticks
    ticks = [2.0**e for e in range(lo_exp, hi_exp + 1) if (e % step) == 0 or e == 0]

    width_per_panel = max(6.5 / len(columns), 0.45 * len(shapes) * max(1, len(backends)) + 1.5)
    fig, axes = plt.subplots(len(ops), len(columns), squeeze=False, sharey=True, layout="constrained",
                             figsize=(width_per_panel * len(columns), 2.8 * len(ops) + 1.0))
    bar_w = 0.8 / max(1, len(backends))
    label_size = "x-small" if len(backends) * len(shapes) <= 24 else 5
    for row, op in enumerate(ops):
        for col, (dtype, threads) in enumerate(columns):
            ax = axes[row][col]
            per_backend = data.get((op, dtype, threads), {})
            for i, backend in enumerate(backends):
                values = per_backend.get(backend, {})
                for j, shape in enumerate(shapes):
                    x = j + (i - (len(backends) - 1) / 2) * bar_w
                    v = values.get(shape)
                    if isinstance(v, float):
                        # Bars grow from the blas line: up when faster, down when slower.
                        ax.bar(x, v - 1.0, bar_w * 0.92, bottom=1.0, color=colors[backend])
                        ax.text(x, v * (1.06 if v >= 1 else 1 / 1.06), f"{v:.2g}", ha="center",
                                va="bottom" if v >= 1 else "top", fontsize=label_size,
                                rotation=90 if len(backends) > 2 else 0)
                    elif v is not None:
                        ax.text(x, 1.06, v, ha="center", va="bottom", fontsize=label_size,
                                rotation=90, color="firebrick" if v == "wrong" else "gray")
            ax.axhline(1.0, color="black", linewidth=1)
            ax.set_yscale("log", base=2)
            ax.set_ylim(2.0 ** (lo_exp - 1.3), 2.0 ** (hi_exp + 1.0))  # room for the bar labels
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_formatter(FuncFormatter(_ratio_label))
            ax.set_xticks(range(len(shapes)))
            ax.set_xticklabels(["x".join(map(str, s)) for s in shapes], fontsize="small")
            ax.set_xlim(-0.6, len(shapes) - 0.4)
            ax.grid(True, axis="y", alpha=0.3)
            ax.set_title(f"{op}, {dtype}, {threads} thread{'s' if threads != 1 else ''}",
                         fontsize="medium")
            if col == 0:
                ax.set_ylabel("speed vs blas")
    for ax in axes[-1]:
        ax.set_xlabel("shape (batch x in x out)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[b]) for b in backends]
    handles.append(plt.Line2D([0], [0], color="black", linewidth=1))
    fig.legend(handles, [*backends, "blas (= 1x)"], loc="outside lower center", ncol=len(handles),
               frameon=False)
    heading = "speed relative to blas (blas's time / backend's time)\nabove 1x: faster than blas"
    fig.suptitle(f"{title}\n{heading}" if title else heading, fontsize="medium")
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=fmt, dpi=110)
    finally:
        plt.close(fig)
