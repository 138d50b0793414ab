"""The result table of ``fastlinear compare``: rich on a terminal when rich is installed, plain text
otherwise (same columns, same numbers)."""

from __future__ import annotations

from .harness import Result

COLUMNS = ("threads", "dtype", "BxINxOUT", "op", "backend", "median", "GFLOP/s", "vs blas",
           "vs torch")
NOTE = ("median of interleaved samples after validation against float64; 'vs X' is X's time "
        "divided by this one (> 1: faster than X)")


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def rows(results: list[Result]) -> list[tuple[str, ...]]:
    """One tuple of display strings per result, in COLUMNS order."""
    times = {(r.threads, r.dtype, r.shape, r.op, r.backend): r.median_s for r in results if r.ok}
    out = []
    for r in results:
        shape = "x".join(map(str, r.shape))
        head = (str(r.threads), r.dtype, shape, r.op, r.backend)
        if r.status == "wrong":
            out.append(head + (f"WRONG (error {r.error:.1e})", "not timed", "-", "-"))
            continue
        if r.status == "skipped":
            out.append(head + ("skipped", "too slow", "-", "-"))
            continue
        ratios = []
        for ref in ("blas", "torch"):
            t = times.get((r.threads, r.dtype, r.shape, r.op, ref))
            ratios.append(f"{t / r.median_s:.2f}x" if t else "-")
        out.append(head + (_time(r.median_s), f"{r.gflops:.1f}", *ratios))
    return out


def plain(results: list[Result]) -> str:
    """The table as aligned plain text."""
    body = rows(results)
    widths = [max(len(c), *(len(row[i]) for row in body)) if body else len(c)
              for i, c in enumerate(COLUMNS)]
    right = {0, 5, 6, 7, 8}

    def fmt(cells) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([fmt(COLUMNS), fmt("-" * w for w in widths)] + [fmt(r) for r in body])


def header(env: dict) -> str:
    """Two lines describing what the numbers were measured with."""
    blas = "; ".join(env.get("blas", [])) or "none found"
    torch = f", torch {env['torch']}" if env.get("torch") else ""
    return (f"{env['cpu']} ({env['cpus']} CPUs); numpy {env['numpy']}, numba {env['numba']}"
            f"{torch}; threading layer {env['threading_layer']}\nBLAS: {blas}")


def print_table(results: list[Result], env: dict, rich_ok: bool) -> None:
    """Print the header, the table and the note, with rich if ``rich_ok`` and rich imports."""
    if rich_ok:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            rich_ok = False
    if not rich_ok:
        print(header(env))
        print()
        print(plain(results))
        print()
        print(NOTE)
        return
    table = Table(caption=NOTE)
    for i, c in enumerate(COLUMNS):
        table.add_column(c, justify="right" if i in {0, 5, 6, 7, 8} else "left")
    for row in rows(results):
        style = "bold red" if row[5].startswith("WRONG") else None
        table.add_row(*row, style=style)
    console = Console()
    console.print(header(env))
    console.print(table)
