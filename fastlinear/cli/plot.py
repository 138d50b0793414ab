"""``fastlinear compare --plot``: how fast each backend is relative to blas, at a glance.

One panel per op (rows) and per dtype and thread count (columns). In each panel the shapes are
categories along the x axis and the backends stand side by side as bars: bar height is blas's time
divided by the backend's (above the line at 1: faster than blas), on a log axis so that 2x faster
and 2x slower are the same distance from the line, with the ratio written on each bar. A wrong
result is marked "wrong" and a skipped one "skip" where the bar would be. Needs matplotlib; drawn
with the non-interactive Agg backend and written through `fastlinear._io.atomic_write`.
"""

from __future__ import annotations

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
    from matplotlib.ticker import FixedLocator, NullLocator

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
    lo = min([0.5, *ratios]) / 1.6
    hi = max([2.0, *ratios]) * 1.6

    width_per_panel = max(4.5, 0.55 * len(shapes) * max(1, len(backends)) + 1.5)
    fig, axes = plt.subplots(len(ops), len(columns), squeeze=False, sharey=True,
                             figsize=(width_per_panel * len(columns), 3.2 * len(ops) + 1.2))
    bar_w = 0.8 / max(1, len(backends))
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
                        # Bars grow from the blas line, up when faster, down when slower.
                        ax.bar(x, v - 1.0, bar_w * 0.92, bottom=1.0, color=colors[backend])
                        ax.text(x, v * (1.04 if v >= 1 else 1 / 1.04), f"{v:.2f}",
                                ha="center", va="bottom" if v >= 1 else "top",
                                fontsize="x-small", rotation=90 if len(backends) > 3 else 0)
                    elif v is not None:
                        ax.text(x, 1.0, v, ha="center", va="bottom", fontsize="x-small",
                                rotation=90, color="firebrick" if v == "wrong" else "gray")
            ax.axhline(1.0, color="black", linewidth=1)
            ax.set_yscale("log")
            ax.set_ylim(lo, hi)
            ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16) if lo <= t <= hi]
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_yticklabels([f"{t:g}x" for t in ticks])
            ax.set_xticks(range(len(shapes)))
            ax.set_xticklabels(["x".join(map(str, s)) for s in shapes], fontsize="small",
                               rotation=20 if len(shapes) > 4 else 0, ha="right" if len(shapes) > 4
                               else "center")
            ax.set_xlim(-0.6, len(shapes) - 0.4)
            ax.grid(True, axis="y", alpha=0.3)
            ax.set_title(f"{op}, {dtype}, {threads} thread{'s' if threads != 1 else ''}",
                         fontsize="medium")
            if col == 0:
                ax.set_ylabel("speed vs blas\n(blas time / time)")
    if len(ops) and len(columns):
        axes[-1][0].set_xlabel("shape (batch x in x out)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[b]) for b in backends]
    handles.append(plt.Line2D([0], [0], color="black", linewidth=1))
    fig.legend(handles, [*backends, "blas (= 1)"], loc="upper center", ncol=len(handles),
               frameon=False, bbox_to_anchor=(0.5, 1.0))
    heading = "above 1: faster than blas; below: slower"
    fig.suptitle(f"{title}\n{heading}" if title else heading, y=1.0 - 0.35 / fig.get_figheight(),
                 fontsize="medium")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / fig.get_figheight()))
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=fmt, dpi=110)
    finally:
        plt.close(fig)
