"""Compilation: progress lines while kernels compile, and `warmup` to compile ahead of time.

Kernels compile lazily, on their first call with a given dtype, and Numba stores the machine code
on disk (``cache=True``, see `fastlinear._cache`), so only the first process on a machine pays the
compile time (about a minute for a training run on 2 cores); later processes load the cached
code in milliseconds. While fastlinear's kernels compile, standard error gets a first line, then
a progress line at most every `PROGRESS_EVERY_S` seconds of compiling, for example (wrapped)::

    fastlinear: compiling kernels for this machine (first use only; later runs load them
        from the cache)...
    fastlinear: compiled 12 kernel functions in 31 s; up to 38 more are not cached yet
        (at most about 98 s at this rate)

"up to" because a run compiles only the kernels it calls (one dtype, the shapes it meets), while
the count is of every kernel function without cached code. Plain lines rather than a redrawn
status line, so that they read the same in a log and never collide with the program's own
output. ``FASTLINEAR_COMPILE_NOTICE=0`` silences them. Loading from the cache is not a compile
and prints nothing; when nothing compiles, the cost is one event callback per Numba compile.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Iterable

import numpy as np
from numba.core import event

#: Seconds of compiling between two progress lines.
PROGRESS_EVERY_S = 5.0

_lock = threading.Lock()
_local = threading.local()
_compiles = 0
_first_at: float | None = None
_last_line_at = 0.0
_cold: set[int] | None = None  # ids of kernel functions that had no cached code
_done: set[int] = set()


def _ours(dispatcher) -> bool:
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module.startswith("fastlinear.")


#: The modules that, with what they import, define fastlinear's kernels. Not listed:
#: ``fastlinear._blas_callback`` (OpenBLAS's jobs on Numba's pool), whose import compiles it;
#: its two functions count once fastlinear has set that pool up (`fastlinear._blas_pool`).
KERNEL_MODULES = ("fastlinear.backends", "fastlinear.nn")


def kernel_functions(load: bool = False) -> dict:
    """fastlinear's module-level Numba functions that have an on-disk cache, by qualified name:
    those of the modules imported so far, or, with ``load``, after importing `KERNEL_MODULES`.
    Helpers compiled only as part of their callers (``inline="always"``, no cache of their own)
    are left out: they never compile on their own."""
    import importlib

    from numba.core.caching import FunctionCache
    from numba.core.dispatcher import Dispatcher

    if load:
        for name in KERNEL_MODULES:
            importlib.import_module(name)
    found = {}
    for name, module in sorted(sys.modules.items()):
        if module is None or not name.startswith("fastlinear."):
            continue
        for attr, value in list(vars(module).items()):
            if (isinstance(value, Dispatcher) and getattr(value, "__module__", None) == name
                    and isinstance(getattr(value, "_cache", None), FunctionCache)):
                found[f"{name}.{attr}"] = value
    return found


def cache_files(dispatcher) -> list:
    """Numba's cache-file objects that ``dispatcher`` reads, in order (`fastlinear._cache` may
    read a read-only directory before the writable one); each has ``_cache_path``."""
    cache = dispatcher._cache
    return getattr(cache, "_read_files", None) or [cache._cache_file]


def is_cached(dispatcher) -> bool:
    """Whether Numba's cache holds machine code for ``dispatcher``'s current source (for any
    signature). Numba's cache object has no public API for this: ``_load_index()`` returns {}
    when the index is missing or was written for another version of the source file."""
    return any(f._load_index() for f in cache_files(dispatcher))


def _uncached_kernels() -> set[int]:
    """ids of the `kernel_functions` whose cache holds nothing for their current source (read
    once, at the first compile of a process)."""
    cold = set()
    for value in kernel_functions().values():
        try:
            warm = is_cached(value)
        except Exception:  # noqa: BLE001  (a count for a message: never fail a compile)
            warm = False
        if not warm:
            cold.add(id(value))
    return cold


def _say(text: str) -> None:
    if os.environ.get("FASTLINEAR_COMPILE_NOTICE", "1") != "0":
        print(f"fastlinear: {text}", file=sys.stderr, flush=True)


_interrupted = False


def interrupt_handler(signum, frame) -> None:
    """SIGINT handler of the command line: raises KeyboardInterrupt, as Python's own does, and
    remembers it. An interrupt that lands while LLVM calls back into Python during a compile
    (a ctypes callback) is swallowed there: Python prints "Exception ignored" and compiling goes
    on; the next compile to start or end then raises it again (`_raise_pending`)."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _raise_pending() -> None:
    global _interrupted
    if _interrupted:
        _interrupted = False
        raise KeyboardInterrupt


def interrupt_pending() -> bool:
    """Whether an interrupt was caught by `interrupt_handler` and not yet raised again."""
    return _interrupted


class _CompileProgress(event.Listener):
    """Counts compilations of fastlinear's kernels and reports progress (see the module doc)."""

    def on_start(self, ev: event.Event) -> None:
        global _compiles, _first_at, _last_line_at, _cold
        _raise_pending()
        dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        if not _ours(dispatcher):
            return
        with _lock:
            _compiles += 1
            first = _first_at is None
            if first:
                _first_at = _last_line_at = time.perf_counter()
        if first:
            _say("compiling kernels for this machine (first use only; later runs load them from "
                 "the cache)...")
            cold = _uncached_kernels()
            with _lock:
                _cold = cold

    def on_end(self, ev: event.Event) -> None:
        global _last_line_at
        _raise_pending()
        dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        if not _ours(dispatcher):
            return
        now = time.perf_counter()
        with _lock:
            _done.add(id(dispatcher))
            if _first_at is None or now - _last_line_at < PROGRESS_EVERY_S:
                return
            _last_line_at = now
            elapsed = now - _first_at
            done = len(_done)
            left = len(_cold - _done) if _cold is not None else None
        line = f"compiled {done} kernel function{'s' if done != 1 else ''} in {elapsed:.0f} s"
        if left:
            line += (f"; up to {left} more are not cached yet (at most about "
                     f"{elapsed / done * left:.0f} s at this rate)")
        _say(line)


event.register("numba:compile", _CompileProgress())


def compile_count() -> int:
    """How many fastlinear kernels this process has compiled (loads from the cache excluded)."""
    return _compiles


#: (batch, in_features, out_features) of the problems `warmup` runs: one per shape class the
#: loop kernels treat differently (tiny, small, skinny, medium).
WARMUP_SHAPES = ((1, 16, 16), (32, 128, 128), (8, 784, 128), (4096, 256, 10), (256, 512, 512))


def warmup(
    dtypes: Iterable[str | np.dtype | type] = ("float32", "float64"),
    backends: Iterable[str] = ("loops",),
    shapes: Iterable[tuple[int, int, int]] = WARMUP_SHAPES,
) -> int:
    """Compile (or load from the disk cache) every kernel the given backends use, ahead of need.

    Runs forward and backward, with and without bias and with and without a fused activation, on
    small problems of each shape class, so that later calls of any size start at full speed. It
    runs inside ``fl.threads(2)`` (1 where Numba's pool has one thread), so that the parallel
    variants compile too: while it runs, every pool (Numba in this thread, BLAS, torch) uses that
    count and the adaptive default pauses; each is restored when it returns.

    Args:
        dtypes: float32 and/or float64.
        backends: backend names (see `fastlinear.available_backends`).
        shapes: (batch, in_features, out_features) problems to run.

    Returns:
        The number of kernels compiled (0 when everything came from the cache).
    """
    import numba

    from . import _validate as check
    from ._threads import threads
    from .functional import linear, linear_backward

    before = _compiles
    dts = [check.resolve_dtype(d) for d in dtypes]
    names = list(backends)
    rng = np.random.default_rng(0)
    # at least 2 threads where the pool has them: some kernels run a serial variant on one thread
    # (the same bits), and the parallel one must be compiled too
    with threads(min(2, numba.config.NUMBA_NUM_THREADS)):
        _warmup_runs(dts, names, shapes, rng, linear, linear_backward)
    return _compiles - before


def _warmup_runs(dts, names, shapes, rng, linear, linear_backward) -> None:
    for dt in dts:
        for n, k, m in shapes:
            x = rng.standard_normal((n, k)).astype(dt)
            w = rng.standard_normal((m, k)).astype(dt)
            b = rng.standard_normal(m).astype(dt)
            dy = rng.standard_normal((n, m)).astype(dt)
            for name in names:
                for bias in (b, None):
                    for activation in (None, "relu"):
                        y = linear(x, w, bias, activation=activation, backend=name)
                        linear_backward(dy, x, w, bias=bias is not None, activation=activation,
                                        y=y, backend=name)
