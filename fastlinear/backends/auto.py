"""The "auto" backend (the default): for each call, the loop kernels or BLAS (numpy's matmul),
whichever this machine's tuning table says is faster for that op, dtype, shape class and thread
count. Same signatures as ``fastlinear.backends.loops``.

The table (`fastlinear.tuning`) is written by ``fastlinear tune`` / ``fl.tune()`` and read once,
on the first auto call in the process; ``reload()`` forgets it. Until a table exists (and when
FASTLINEAR_TUNING=off) the built-in defaults apply: the loop kernels everywhere. A table that is
corrupt, or was measured on another CPU or with other library versions, is ignored with one line on
stderr, and the defaults apply.

Per call, auto classifies the shape (batch, in_features, out_features) into the table's nearest
shape class (`fastlinear.tuning.classify`, by distance in log space) and looks up the backend for
the op, dtype, class and Numba's current thread count (the nearest measured count if that one was
not measured; a class missing from the table runs loops). The decision is remembered per shape and
dtype, so a repeated shape costs building a 4-tuple key, one dictionary lookup and, only where the
choice differs between thread counts, one read of Numba's thread count (about 0.2 us through
Numba's C entry point; ``numba.get_num_threads()`` took 1.4 us, as it takes a lock each time).
grad_bias always runs the loop kernel; grad_weight through BLAS computes db with it too.

Determinism: the loop kernels give bitwise the same result at any thread count; BLAS does not
promise that (OpenBLAS gave different bits at 1 and 2 threads at 257x256x256), and auto's choice
itself may differ between thread counts. Which (op, dtype, class, threads) go to BLAS on this
machine is listed by ``fastlinear info`` and printed by ``fastlinear tune``; with the built-in
defaults none do. For results that never depend on the thread count, use ``backend="loops"`` (or
set FASTLINEAR_TUNING=off, which makes auto run loops everywhere).
"""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import Callable

from . import blas, loops

#: remembered decisions per op before the memo is emptied (a program with endlessly varying shapes
#: should not grow it without bound; 4096 entries of a 4-tuple key are about 1 MB)
_MEMO_MAX = 4096

_UNLOADED = "unloaded"
_lock = threading.Lock()


def _blas_grad_weight(dw, db, dy, x, scale, accumulate) -> None:
    """dw (+)= scale * dy.T @ x by BLAS; db by the loop kernel, which beat numpy's sum at every
    shape measured."""
    blas.grad_weight(dw, None, dy, x, scale, accumulate)
    if db is not None:
        loops.grad_bias(db, dy, scale, accumulate)


def _kernels(op: str) -> dict[str, Callable]:
    return {"forward": {"loops": loops.forward, "blas": blas.forward},
            "grad_weight": {"loops": loops.grad_weight, "blas": _blas_grad_weight},
            "grad_input": {"loops": loops.grad_input, "blas": blas.grad_input}}[op]


# Per op: None (built-in defaults), _UNLOADED, or the memo {(dtype char, n, k, m): kernel or a
# tuple of kernels indexed by thread count}.
_forward: dict | str | None = _UNLOADED
_grad_weight: dict | str | None = _UNLOADED
_grad_input: dict | str | None = _UNLOADED
# (op, dtype char, class) -> kernel, or tuple indexed by thread count; the table's classes.
_routes: dict[tuple[str, str, str], object] = {}
_classes: dict[str, tuple[int, int, int]] = {}
_num_threads: Callable[[], int] = lambda: 1  # noqa: E731 - replaced in _load when needed
_in_use: dict = {}

_DTYPE_CHARS = {"float32": "f", "float64": "d"}


def reload() -> None:
    """Forget the table; the next auto call reads it again (after ``fastlinear tune`` or a change
    of FASTLINEAR_TUNING)."""
    global _forward, _grad_weight, _grad_input
    with _lock:
        _forward = _grad_weight = _grad_input = _UNLOADED


def _fast_thread_count() -> Callable[[], int]:
    """Numba's thread count for the calling thread, read through Numba's C entry point (0.2 us),
    or ``numba.get_num_threads`` (1.4 us; it takes a lock) if that entry point is not there."""
    import numba

    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
        fn = parallel._get_num_threads
        if fn() == numba.get_num_threads():
            return fn
    except Exception:  # noqa: BLE001 - a private API of Numba; the public one always works
        pass
    return numba.get_num_threads


def _nearest(t: int, measured: list[int]) -> int:
    """The measured thread count nearest ``t`` by ratio, the larger on a tie."""
    return min(measured, key=lambda c: (abs(math.log(t / c)), -c))


def _build(table: dict) -> tuple[dict, bool]:
    """(op, dtype char, class) -> kernel or per-thread-count tuple; and whether any is a tuple."""
    import numba

    pool = numba.config.NUMBA_NUM_THREADS
    by_threads: dict[tuple[str, str, str], dict[int, str]] = {}
    for e in table["entries"]:
        by_threads.setdefault((e["op"], _DTYPE_CHARS[e["dtype"]], e["class"]), {})[e["threads"]] = e["choice"]
    routes, varies = {}, False
    for (op, char, name), choices in by_threads.items():
        kernels = _kernels(op)
        measured = sorted(choices)
        per_t = [kernels[choices[_nearest(t, measured)]] for t in range(1, pool + 1)]
        if all(f is per_t[0] for f in per_t):
            routes[(op, char, name)] = per_t[0]
        else:
            routes[(op, char, name)] = (per_t[0],) + tuple(per_t)  # index 0 unused: counts start at 1
            varies = True
    return routes, varies


def _load() -> None:
    """Read the table (once per process, or after `reload`) and set up the routes."""
    global _forward, _grad_weight, _grad_input, _routes, _classes, _num_threads, _in_use
    with _lock:
        if _forward is not _UNLOADED:
            return
        from .. import tuning

        info = {"source": "defaults", "path": None, "reason": "", "blas": []}
        table = None
        try:
            path = tuning.table_path()
            if path is None:
                info["reason"] = f"{tuning.ENV}=off"
            else:
                info["path"] = str(path)
                table = tuning.load(path, tuning.machine_key())
        except FileNotFoundError:
            info["reason"] = "no table yet (run fastlinear tune)"
            if os.environ.get(tuning.ENV, "").strip():
                print(f"fastlinear: {tuning.ENV} names {info['path']!r}, which does not exist; the "
                      "auto backend uses the built-in defaults (loops everywhere)", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a bad table must never break a computation
            info["reason"] = f"ignored: {exc}"
            print(f"fastlinear: {exc}; ignored, the auto backend uses the built-in defaults "
                  "(loops everywhere; run fastlinear tune to measure a new table)", file=sys.stderr)
        if table is None:
            _in_use = info
            _forward = _grad_weight = _grad_input = None
            return
        _routes, varies = _build(table)
        _classes = {c: tuple(s) for c, s in table["shape_classes"].items()}
        _num_threads = _fast_thread_count() if varies else (lambda: 1)
        info.update(source="table", created=table.get("created"), quick=table.get("quick"),
                    entries=len(table["entries"]),
                    blas=sorted((e["op"], e["dtype"], e["class"], e["threads"])
                                for e in table["entries"] if e["choice"] == "blas"))
        _in_use = info
        _forward, _grad_weight, _grad_input = {}, {}, {}


def _route(op: str, memo: dict, key: tuple) -> object:
    """The kernel (or per-thread-count tuple) for ``key`` = (dtype char, n, k, m); remembered."""
    from ..tuning import classify

    char, n, k, m = key
    kernel = _routes.get((op, char, classify(n, k, m, _classes)), _kernels(op)["loops"])
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = kernel
    return kernel


def table_in_use() -> dict:
    """What auto runs on in this process (see `fastlinear.tuning.describe`)."""
    if _forward is _UNLOADED:
        _load()
    return dict(_in_use)


def choice(op: str, dtype: str, n: int, k: int, m: int, threads: int | None = None) -> str:
    """"loops" or "blas": what auto runs for ``op`` ("forward", "grad_weight", "grad_bias" or
    "grad_input") at this dtype ("float32"/"float64"), batch n, in_features k, out_features m and
    thread count (default: Numba's current count)."""
    import numba

    if _forward is _UNLOADED:
        _load()
    if op == "grad_bias" or _forward is None:
        return "loops"
    from ..tuning import classify

    kernel = _routes.get((op, _DTYPE_CHARS[dtype], classify(n, k, m, _classes)))
    if type(kernel) is tuple:
        kernel = kernel[threads or numba.get_num_threads()]
    return "blas" if kernel is not None and kernel is _kernels(op)["blas"] else "loops"


def forward(y, x, w, b, act) -> None:
    """y = act(x @ w.T + b); ``b`` may be None."""
    memo = _forward
    if memo is None:
        loops.forward(y, x, w, b, act)
        return
    if memo is _UNLOADED:
        _load()
        forward(y, x, w, b, act)
        return
    key = (x.dtype.char, x.shape[0], x.shape[1], w.shape[0])
    kernel = memo.get(key) or _route("forward", memo, key)
    if type(kernel) is tuple:
        kernel = kernel[_num_threads()]
    kernel(y, x, w, b, act)


def grad_weight(dw, db, dy, x, scale, accumulate) -> None:
    """dw (+)= scale * dy.T @ x and, when ``db`` is not None, db (+)= scale * dy.sum(0)."""
    memo = _grad_weight
    if memo is None:
        loops.grad_weight(dw, db, dy, x, scale, accumulate)
        return
    if memo is _UNLOADED:
        _load()
        grad_weight(dw, db, dy, x, scale, accumulate)
        return
    key = (x.dtype.char, x.shape[0], x.shape[1], dw.shape[0])
    kernel = memo.get(key) or _route("grad_weight", memo, key)
    if type(kernel) is tuple:
        kernel = kernel[_num_threads()]
    kernel(dw, db, dy, x, scale, accumulate)


def grad_bias(db, dy, scale, accumulate) -> None:
    """db (+)= scale * dy.sum(0): the loop kernel, which beat numpy's sum at every shape measured."""
    loops.grad_bias(db, dy, scale, accumulate)


def grad_input(dx, dy, w) -> None:
    """dx = dy @ w."""
    memo = _grad_input
    if memo is None:
        loops.grad_input(dx, dy, w)
        return
    if memo is _UNLOADED:
        _load()
        grad_input(dx, dy, w)
        return
    key = (dy.dtype.char, dy.shape[0], w.shape[1], w.shape[0])
    kernel = memo.get(key) or _route("grad_input", memo, key)
    if type(kernel) is tuple:
        kernel = kernel[_num_threads()]
    kernel(dx, dy, w)
