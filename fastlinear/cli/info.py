"""``fastlinear info``: what the kernels run on. Versions, Numba's threading layer and thread count,
the BLAS library and its threads, the CPU and its SIMD flags, whether fastlinear's 512-bit vector
setting is active, Numba's cache directory with whether it already holds compiled kernels, and
the tuning table the auto backend follows (`fastlinear.tuning`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform

from ..tuning import cpu_model  # noqa: F401 - part of this module's API
from ._common import HelpFormatter

# The SIMD flags worth reporting, in LLVM's spelling (llvmlite.binding.get_host_cpu_features).
SIMD_FLAGS = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
              "avx512vnni", "avx512bf16", "avx512fp16", "amx-tile", "neon", "sve")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def simd_flags() -> list[str]:
    """The SIMD features of the host CPU that LLVM (hence Numba) can use."""
    import llvmlite.binding as llvm

    have = {f[1:] for f in llvm.get_host_cpu_features().flatten().split(",") if f.startswith("+")}
    return [f for f in SIMD_FLAGS if f in have]


def threading_layer() -> str:
    """The threading layer Numba's parallel kernels run on (chosen when its thread pool starts),
    or the configured choice if the pool has not started yet."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return f"not chosen yet (configured: {numba.config.THREADING_LAYER})"


def blas_pools() -> list[str]:
    """One description per BLAS library loaded in the process (threadpoolctl)."""
    import threadpoolctl

    from .. import _blas_pool

    on_pool = set(_blas_pool.installed())
    return [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
        f"{i.get('num_threads')} threads"
        + (", run on Numba's pool" if i.get("filepath") in on_pool else "")
        + f", {os.path.basename(i.get('filepath', ''))})"
        for i in threadpoolctl.threadpool_info()
        if i.get("user_api") == "blas"
    ]


def torch_threads() -> int | None:
    """torch's intra-op thread count (imports torch when it is installed), or None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def kernel_cache() -> dict:
    """Where Numba caches fastlinear's kernels and which of them already have machine code there
    for this CPU and source (a warm cache: no compilation on first call). Counts every cached
    Numba function of the package (`fastlinear._compile.kernel_functions`, after importing the
    modules that define kernels; a first compile's progress lines count those of the modules
    imported at that moment), by name without the leading ``fastlinear.``."""
    from .. import _cache, _compile

    kernels = _compile.kernel_functions(load=True)
    dirs, warm = set(), []
    for name, fn in kernels.items():
        dirs.update(f._cache_path for f in _compile.cache_files(fn))
        if _compile.is_cached(fn):
            warm.append(name.removeprefix("fastlinear."))
    location = _cache.describe()
    return {"dirs": sorted(dirs), "warm": warm, "kernels": len(kernels),
            "names": [name.removeprefix("fastlinear.") for name in kernels],
            "fell_back": any(d["fell_back"] for d in location["dirs"].values()),
            "writable": all(d["write"] for d in location["dirs"].values()),
            "writes_failed": location["writes_failed"]}


def _start_numba_threads() -> None:
    """Start Numba's thread pool, which is when Numba picks its threading layer; no kernel
    compiles or runs (``numba.get_num_threads`` starts the pool)."""
    import numba

    numba.get_num_threads()


def summary(start_threads: bool = False) -> dict:
    """Everything ``fastlinear info`` reports, as a JSON-ready dict. The cache is inspected first;
    with ``start_threads``, Numba's thread pool then starts so that the threading layer is
    known (nothing compiles)."""
    import numba

    from .. import _cpu, tuning
    from .._threads import available_cores, get_num_threads

    cache = kernel_cache()
    if start_threads:
        _start_numba_threads()
    return {
        "python": platform.python_version(),
        "fastlinear": _version("fastlinear"),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "llvmlite": _version("llvmlite"),
        "torch": _version("torch"),
        "threading_layer": threading_layer(),
        "numba_threads": get_num_threads(),
        "numba_pool": numba.config.NUMBA_NUM_THREADS,
        "cores_available": available_cores(),
        "torch_threads": torch_threads(),
        "blas": blas_pools(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "simd": simd_flags(),
        "vector_width_512": _cpu.vectors_512(),
        "vector_target": _cpu.live_target(),
        "numba_cpu_name": _cpu.live_target()["cpu_name"],
        "cache": cache,
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")},
        "tuning": tuning.describe(),
    }


def _vector_line(s: dict) -> str:
    """What the live code generator does about vector width, for fastlinear's kernels."""
    t = s["vector_target"]
    where = f"code generator CPU: {t['cpu_name']}"
    if s["vector_width_512"]:
        return f"on for fastlinear's kernels only ({where}; a per-function preference)"
    if not t["avx512f"]:
        return f"off (the code generator's CPU has no AVX-512F; {where})"
    return f"LLVM's default for this CPU (fastlinear's preference is off; {where})"


def _tuning_line(t: dict) -> str:
    """Which table the auto backend follows (`fastlinear.tuning.describe`)."""
    if t["source"] == "table":
        counts: dict[tuple, list[int]] = {}
        for op, d, c, n in t["blas"]:
            counts.setdefault((d, op, c), []).append(n)
        blas = "; ".join(f"{d} {op} {c} at {', '.join(map(str, n))} thread{'s' * (n != [1])}"
                         for (d, op, c), n in sorted(counts.items()))
        return (f"{t['path']} ({'quick, ' if t.get('quick') else ''}measured {t.get('created')}; "
                f"auto runs blas for {blas or 'nothing'}; loops for the rest){_packed_line(t)}")
    return f"built-in defaults, loops everywhere ({t['reason']}){_packed_line(t)}"


def _packed_line(t: dict) -> str:
    """Where the loop kernels switch to their packed GEMM, and whose figures those are."""
    from .tune import crossover_sizes, limit_sizes

    packed = t.get("packed")
    if not packed:
        return ""

    def sizes(table: dict) -> str:
        return "; ".join(f"{op} {text}" for op, text in crossover_sizes(table))

    w_limits = ""
    for field, what in (("w_in_place", "its forward reads w in place"),
                        ("w_in_tile", "its forward and input gradient pack w in the tiles")):
        rows = packed.get(f"{field}_rows") or {}
        measured_rows = packed.get(f"{field}_measured") or {}
        if rows:
            if not measured_rows:
                whose = "built-in"
            elif len(measured_rows) == len(rows):
                whose = "measured"
            else:
                whose = f"measured for {', '.join(measured_rows)}"
            w_limits += f"; {what}: {limit_sizes(rows)} ({whose})"
    if packed.get("l2_bytes"):
        from ..backends.loops import REREAD_ROWS

        w_limits += (f"; below the built-in ones, the input gradient packs from a batch of "
                     f"{REREAD_ROWS['grad_input']} where w has at least "
                     f"{packed['l2_bytes'] >> 10} KiB (this machine's L2 cache), the weight "
                     f"gradient from {REREAD_ROWS['grad_weight']} out_features where x has")
    if not packed["measured"]:
        return (f"; loops' packed GEMM above batch x in x out = {sizes(packed['above'])} "
                f"(built-in){w_limits}")
    rest = sum(map(len, packed["above"].values())) - sum(map(len, packed["measured"].values()))
    return (f"; loops' packed GEMM above batch x in x out = {sizes(packed['measured'])} (measured"
            f"{'; built-in crossovers for the rest' if rest else ''}){w_limits}")


def format_summary(s: dict) -> str:
    """``summary()`` as lines of ``name: value``."""
    cache = s["cache"]
    lines = [
        f"python: {s['python']}",
        f"fastlinear: {s['fastlinear']}",
        f"numpy: {s['numpy']}",
        f"numba: {s['numba']} (llvmlite {s['llvmlite']})",
        f"torch: {s['torch'] or 'not installed'}",
        f"Numba threading layer: {s['threading_layer']}",
        f"Numba threads: {s['numba_threads']} of a pool of {s['numba_pool']} "
        f"({s['cores_available']} cores available to this process)",
        "torch threads: " + ("torch not installed" if s["torch_threads"] is None
                             else str(s["torch_threads"])),
        f"BLAS: {'; '.join(s['blas']) or 'none found'}",
        f"CPU: {s['cpu']} ({s['cpus']} logical CPUs)",
        f"SIMD: {' '.join(s['simd']) or 'none detected'}",
        f"512-bit vectors: {_vector_line(s)}",
        f"Numba cache: {', '.join(cache['dirs']) or 'unknown'}"
        + (" (not writable: kernels compile in every process)" if not cache["writable"]
           else " (a fallback: set NUMBA_CACHE_DIR to choose)" if cache["fell_back"] else ""),
        f"cache warm: {len(cache['warm'])} of {cache['kernels']} Numba kernel functions have cached "
        "code"
        + ("" if len(cache["warm"]) == cache["kernels"] else " (the rest compile on first call)"),
    ]
    lines.append(f"tuning table: {_tuning_line(s['tuning'])}")
    if s["openblas_env"]:
        lines.append(f"note: {s['openblas_env']} set in the environment; they change OpenBLAS's speed")
    return "\n".join(lines)


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``fastlinear info``."""
    p = sub.add_parser("info", formatter_class=HelpFormatter, help="versions, threads, BLAS, CPU features and Numba's cache",
                       description="Print what fastlinear's kernels run on: versions, threads, "
                                   "BLAS, CPU and SIMD flags, vector width, Numba's cache.")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``fastlinear info``: print `summary` (Numba's thread pool starts first; nothing compiles);
    returns 0."""
    s = summary(start_threads=True)
    print(json.dumps(s, indent=1) if args.json else format_summary(s))
    return 0
