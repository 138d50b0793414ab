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
dtype, so a repeated shape costs a 4-tuple key and one dictionary lookup, plus, only where the
table's choice differs between thread counts, one read of Numba's thread count (a ctypes call into
Numba's C entry point: several times cheaper than ``numba.get_num_threads()``, which takes two locks).
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

from .._threads import fast_thread_count
from . import blas, loops

#: remembered decisions per op before the memo is emptied (a program with endlessly varying shapes
#: should not grow it without bound; 4096 entries of a 4-tuple key take under 1 MB)
_MEMO_MAX = 4096

_lock = threading.Lock()
_loaded = False
_DTYPES = {4: "float32", 8: "float64"}  # by itemsize: the kernels take these two dtypes only


def _blas_forward(y, x, w, b, act) -> None:
    """y = act(x @ w.T + b) by BLAS, where auto passes an empty ``b`` for none."""
    blas.forward(y, x, w, loops.present(b), act)


def _blas_grad_weight(dw, db, dy, x, scale, accumulate) -> None:
    """dw (+)= scale * dy.T @ x by BLAS; db by the loop kernel, which beat numpy's sum at every
    shape measured."""
    blas.grad_weight(dw, None, dy, x, scale, accumulate)
    if loops.present(db) is not None:  # auto passes an empty db for none
        loops.grad_bias(db, dy, scale, accumulate)


def _kernels(op: str) -> dict[str, Callable]:
    return {"forward": {"loops": loops.forward, "blas": _blas_forward},
            "grad_weight": {"loops": loops.grad_weight, "blas": _blas_grad_weight},
            "grad_input": {"loops": loops.grad_input, "blas": blas.grad_input}}[op]


# Per op: None for the built-in defaults, else the memo {(itemsize, n, k, m): kernel}, empty until
# the table is read (a miss reads it).
_forward: dict | None = {}
_grad_weight: dict | None = {}
_grad_input: dict | None = {}
# (op, dtype, class) -> the kernel to run, from the table; ``_by_threads`` holds, for the entries
# whose choice differs between thread counts, the kernel for each count (index 0 unused).
_routes: dict[tuple[str, str, str], Callable] = {}
_by_threads: dict[tuple[str, str, str], tuple] = {}
_classes: dict[str, tuple[int, int, int]] = {}
_in_use: dict = {}


def reload() -> None:
    """Forget the table; the next auto call reads it again (after ``fastlinear tune`` or a change
    of FASTLINEAR_TUNING)."""
    global _forward, _grad_weight, _grad_input, _loaded
    with _lock:
        # _loaded first: a call that sees a new, empty memo must also see that the table is to
        # be read again, or it would store a decision from the old table there
        _loaded = False
        _forward, _grad_weight, _grad_input = {}, {}, {}
        loops.forget_packed_limits()


def _nearest(t: int, measured: list[int]) -> int:
    """The measured thread count nearest ``t`` by ratio, the larger on a tie."""
    return min(measured, key=lambda c: (abs(math.log(t / c)), -c))


def _per_thread_count(kernels: tuple) -> Callable:
    """A kernel that runs ``kernels[Numba's current thread count]``."""
    count = fast_thread_count()

    def kernel(*args) -> None:
        kernels[count()](*args)

    return kernel


def _build(table: dict) -> tuple[dict, dict]:
    """`_routes` and `_by_threads` from a validated table."""
    import numba

    pool = numba.config.NUMBA_NUM_THREADS
    choices: dict[tuple[str, str, str], dict[int, str]] = {}
    for e in table["entries"]:
        choices.setdefault((e["op"], e["dtype"], e["class"]), {})[e["threads"]] = e["choice"]
    routes, by_threads = {}, {}
    for route, by_count in choices.items():
        kernels = _kernels(route[0])
        measured = sorted(by_count)
        per_t = [kernels[by_count[_nearest(t, measured)]] for t in range(1, pool + 1)]
        if all(f is per_t[0] for f in per_t):
            routes[route] = per_t[0]
        else:
            by_threads[route] = (per_t[0], *per_t)  # index 0 unused: counts start at 1
            routes[route] = _per_thread_count(by_threads[route])
    return routes, by_threads


def _load() -> None:
    """Read the table (once per process, or after `reload`) and set up the routes."""
    global _forward, _grad_weight, _grad_input, _loaded, _routes, _by_threads, _classes, _in_use
    with _lock:
        if _loaded:
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
            info["reason"] = "no table yet; run fastlinear tune"
            if os.environ.get(tuning.ENV, "").strip():
                info["reason"] = f"{tuning.ENV} names a file that does not exist"
                print(f"fastlinear: {tuning.ENV} names {info['path']!r}, which does not exist; the "
                      "auto backend uses the built-in defaults (loops everywhere)", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a bad table must never break a computation
            info["reason"] = f"ignored: {exc}"
            print(f"fastlinear: {exc}; ignored, the auto backend uses the built-in defaults "
                  "(loops everywhere; run fastlinear tune to measure a new table)", file=sys.stderr)
        # the loop kernels' direct-or-packed crossovers come from the same table
        info["packed"] = loops.use_packed_limits(table.get("packed") if table is not None else None)
        if table is None:
            _forward = _grad_weight = _grad_input = None
        else:
            _routes, _by_threads = _build(table)
            _classes = {c: tuple(s) for c, s in table["shape_classes"].items()}
            info.update(source="table", created=table.get("created"), quick=table.get("quick"),
                        entries=len(table["entries"]),
                        blas=sorted((e["op"], e["dtype"], e["class"], e["threads"])
                                    for e in table["entries"] if e["choice"] == "blas"))
            # the memos stay the (empty) dicts `reload` made: the call that triggered this load
            # holds one of them and stores its decision there
        _in_use = info
        _loaded = True


def _route(op: str, memo: dict, key: tuple) -> Callable:
    """The kernel for ``key`` = (itemsize, n, k, m), remembered in ``memo``; reads the table on
    the first call."""
    if not _loaded:
        _load()
        if _forward is None:
            return _kernels(op)["loops"]
    from ..tuning import classify

    size, n, k, m = key
    loop_kernel = _kernels(op)["loops"]
    kernel = _routes.get((op, _DTYPES.get(size), classify(n, k, m, _classes)), loop_kernel)
    if kernel is loop_kernel:  # skip loops' own Python layer where it would run a serial kernel
        kernel = loops.serial_kernel(op, size, n, k, m) or kernel
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = kernel
    return kernel


def table_in_use() -> dict:
    """What auto runs on in this process (see `fastlinear.tuning.describe`)."""
    if not _loaded:
        _load()
    return dict(_in_use)


def choice(op: str, dtype: str, n: int, k: int, m: int, threads: int | None = None) -> str:
    """"loops" or "blas": what auto runs for ``op`` ("forward", "grad_weight", "grad_bias" or
    "grad_input") at ``dtype`` ("float32" or "float64"), batch n, in_features k, out_features m
    and ``threads`` (default: Numba's current count)."""
    import numba

    from ..tuning import classify

    if not _loaded:
        _load()
    if op == "grad_bias" or _forward is None:
        return "loops"
    route = (op, dtype, classify(n, k, m, _classes))
    kernel = _routes.get(route)
    if route in _by_threads:
        kernel = _by_threads[route][threads or numba.get_num_threads()]
    return "blas" if kernel is _kernels(op)["blas"] else "loops"


# The three kernels below are the hot path: with the defaults, one global read and a comparison
# before the loop kernel; with a table, a 4-tuple key from the arrays' shapes and one dictionary
# lookup (the try costs nothing unless the key is missing).


def forward(y, x, w, b, act) -> None:
    """y = act(x @ w.T + b); ``b`` may be None."""
    memo = _forward
    if memo is None:
        loops.forward(y, x, w, b, act)
        return
    n, k = x.shape
    key = (x.itemsize, n, k, w.shape[0])
    try:
        kernel = memo[key]
    except KeyError:
        kernel = _route("forward", memo, key)
    # an empty b rather than None, as for grad_weight's db below
    kernel(y, x, w, loops.ABSENT[key[0]] if b is None else b, act)


def grad_weight(dw, db, dy, x, scale, accumulate) -> None:
    """dw (+)= scale * dy.T @ x and, when ``db`` is not None, db (+)= scale * dy.sum(0)."""
    memo = _grad_weight
    if memo is None:
        loops.grad_weight(dw, db, dy, x, scale, accumulate)
        return
    n, k = x.shape
    key = (x.itemsize, n, k, dw.shape[0])
    try:
        kernel = memo[key]
    except KeyError:
        kernel = _route("grad_weight", memo, key)
    # an empty db rather than None: loops' serial kernel, which the memo may hold, then runs the
    # signature it compiled for calls with db
    kernel(dw, loops.ABSENT[key[0]] if db is None else db, dy, x, scale, accumulate)


def grad_bias(db, dy, scale, accumulate) -> None:
    """db (+)= scale * dy.sum(0): the loop kernel, which beat numpy's sum at every shape measured."""
    loops.grad_bias(db, dy, scale, accumulate)


def grad_input(dx, dy, w) -> None:
    """dx = dy @ w."""
    memo = _grad_input
    if memo is None:
        loops.grad_input(dx, dy, w)
        return
    m, k = w.shape
    key = (w.itemsize, dy.shape[0], k, m)
    try:
        kernel = memo[key]
    except KeyError:
        kernel = _route("grad_input", memo, key)
    kernel(dx, dy, w)
