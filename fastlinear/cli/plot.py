"""``fastlinear compare --plot``: GFLOP/s against problem size, one line per backend (and dtype),
one panel per op. Needs matplotlib; drawn with the non-interactive Agg backend."""

from __future__ import annotations

import math

from .harness import Result


class MissingDependency(Exception):
    """An optional package a requested feature needs is not installed (exit status 2)."""


def require_matplotlib() -> None:
    """Raise MissingDependency with an install hint when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "--plot needs matplotlib, which is not installed; "
            "install it with: pip install 'fastlinear[compare]'"
        ) from None


def plot(results: list[Result], path: str, title: str = "") -> None:
    """Write the figure to ``path`` (format from its extension, e.g. .png)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r.op for r in results))
    cols = min(3, len(ops))
    rows = math.ceil(len(ops) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    lines = list(dict.fromkeys((r.backend, r.dtype, r.threads) for r in results))
    styles = {"float32": "-", "float64": "--"}
    colors = {}
    for ax, op in zip(axes.flat, ops):
        for backend, dtype, threads in lines:
            pts = sorted((r.flops, r.gflops) for r in results
                         if r.ok and (r.op, r.backend, r.dtype, r.threads) == (op, backend, dtype,
                                                                               threads))
            if not pts:
                continue
            label = f"{backend} {dtype}" + (f" {threads}T" if len({t for *_, t in lines}) > 1
                                             else "")
            color = colors.setdefault(backend, f"C{len(colors)}")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], styles.get(dtype, ":"),
                    marker="o", color=color, label=label)
        # Tick each problem at its size, labelled with its shape, so points read as shapes.
        ticks = {r.flops: "x".join(map(str, r.shape)) for r in results if r.op == op}
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sorted(ticks), [ticks[f] for f in sorted(ticks)], rotation=30,
                      ha="right", fontsize="small")
        ax.minorticks_off()
        ax.set_title(op)
        ax.set_xlabel("problem (batch x in x out), by floating-point operations per call")
        ax.set_ylabel("GFLOP/s (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    for ax in list(axes.flat)[len(ops):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
