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
            out.append(head + (f"WRONG (error {r.error:.1e}x tolerance)", "not timed", "-", "-"))
            continue
        if r.status == "skipped":
            out.append(head + ("skipped", "too slow", "-", "-"))
            continue
        ratios = []
        for ref in ("blas", "torch"):
            t = times.get((r.threads, r.dtype, r.shape, r.op, ref))
            ratios.append(f"{t / r.median_s:.2f}x" if t else "-")
        out.append(head + (_time(r.median_s), _gflops(r.gflops), *ratios))
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


def _gflops(value: float) -> str:
    """One decimal from 10 up, two significant digits below (0.016, not 0.0)."""
    return f"{value:.1f}" if value >= 10 else f"{value:.2g}"


def _groups(results: list[Result]) -> dict:
    """Results by (threads, dtype), in the order they first appear."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r.threads, r.dtype), []).append(r)
    return groups


def markdown(results: list[Result], env: dict) -> str:
    """The results as Markdown: one table per (dtype, thread count) with a row per (shape, op),
    GFLOP/s per backend, then each other fastlinear backend's speed ratio to blas and to torch
    (their time divided by its time: > 1 means it is faster). Wrong results read "WRONG", naive
    skipped as too slow "-". Headed by the environment the numbers were measured in."""
    lines = [f"Measured on {header(env).replace(chr(10), '; ')}.", ""] if env else []
    refs = ("blas", "torch")
    for (threads, dtype), rs in _groups(results).items():
        backends = list(dict.fromkeys(r.backend for r in rs))
        present = [b for b in refs if b in backends]
        others = [b for b in backends if b not in refs]
        by = {(r.shape, r.op, r.backend): r for r in rs}
        ratios = [(b, ref) for b in others for ref in present]
        cols = ["batch x in x out", "op", *backends, *(f"{b} vs {ref}" for b, ref in ratios)]
        lines += [f"{dtype}, {threads} thread{'s' if threads != 1 else ''}: GFLOP/s per backend"
                  + ("; 'X vs Y' is Y's time divided by X's (> 1: X is faster)" if ratios else ""),
                  "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * 2 + "---:|" * (len(cols) - 2)]
        for shape, op in dict.fromkeys((r.shape, r.op) for r in rs):
            cells = ["x".join(map(str, shape)), op]
            for b in backends:
                r = by.get((shape, op, b))
                cells.append("-" if r is None or r.status == "skipped"
                             else "WRONG" if r.status == "wrong" else _gflops(r.gflops))
            for b, ref in ratios:
                mine, theirs = by.get((shape, op, b)), by.get((shape, op, ref))
                ok = mine is not None and theirs is not None and mine.ok and theirs.ok
                cells.append(f"{theirs.median_s / mine.median_s:.2f}x" if ok else "-")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def header(env: dict) -> str:
    """Two lines describing what the numbers were measured with."""
    blas = "; ".join(env.get("blas", [])) or "none found"
    torch = f", torch {env['torch']}" if env.get("torch") else ""
    inputs = {"lines": "; arrays on 64-byte lines",
              "numpy": "; arrays in numpy's own buffers"}.get(env.get("inputs"), "")
    return (f"{env.get('cpu', 'unknown CPU')} ({env.get('cpus', '?')} CPUs); numpy "
            f"{env.get('numpy', '?')}, numba {env.get('numba', '?')}{torch}; threading layer "
            f"{env.get('threading_layer', '?')}\nBLAS: {blas}{inputs}")


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
