"""The fork guard: in a process forked after the parent's GNU OpenMP pool started, fastlinear's
parallel kernels raise `ForkedThreadPoolError` at once instead of killing the process (see the
comment above `ForkedThreadPoolError`)."""

from __future__ import annotations

import os
import sys

import numba


# --- fork -------------------------------------------------------------------------------------
#
# Numba's "omp" threading layer runs parallel kernels on GNU OpenMP, which does not survive fork():
# in a child forked after the parent's pool started, Numba's pool prints "Terminating: fork()
# called from a process already using GNU OpenMP, this is unsafe." and kills the child with
# SIGTERM on the first parallel region (measured with Numba 0.68, also with set_num_threads(1)).
# A multiprocessing pool then replaces the dead worker and waits for the lost task for ever. The
# child cannot switch to another layer (the compiled kernels are linked to this one), so in such
# a child fastlinear's parallel kernels raise ForkedThreadPoolError instead, before any work;
# serial kernels (small problems) keep working. The "workqueue" and "tbb" layers, and Intel
# OpenMP, are fork-safe and are left alone.


class ForkedThreadPoolError(RuntimeError):
    """A parallel kernel was called in a process forked after the parent's GNU OpenMP pool had
    started (see `fastlinear._fork`)."""


def _fork_unsafe_pool_started() -> bool:
    """Whether this process runs Numba's parallel kernels on a started GNU OpenMP pool."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run: the child starts its own pool
        return False
    if layer != "omp":
        return False
    try:
        from numba.np.ufunc import omppool
    except ImportError:  # pragma: no cover
        return True
    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def _message(name: str) -> str:
    return (f"fastlinear: the parallel kernel {name} cannot run in this process: it was forked "
            "from a process whose GNU OpenMP thread pool (Numba's 'omp' threading layer) had "
            "already started, and GNU OpenMP does not work after fork(). Start worker processes "
            "with multiprocessing's 'spawn' or 'forkserver' method, or choose a fork-safe layer "
            "before the first kernel runs (NUMBA_THREADING_LAYER=workqueue, or install tbb). "
            "Small problems, which take serial kernels, still work here.")


_guarded: dict[type, type] = {}


def _guarded_class(cls: type) -> type:
    sub = _guarded.get(cls)
    if sub is None:
        def __call__(self, *args, **kwargs):
            raise ForkedThreadPoolError(_message(
                f"{self.py_func.__module__}.{self.py_func.__qualname__}"))

        sub = _guarded[cls] = type(cls.__name__, (cls,), {"__call__": __call__,
                                                          "__module__": cls.__module__})
    return sub


def _parallel_dispatchers():
    """fastlinear's parallel Numba kernels reachable from its modules (at module level or in a
    module-level tuple, list or dict)."""
    from numba.core.dispatcher import Dispatcher

    seen: set[int] = set()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "fastlinear" or name.startswith("fastlinear.")):
            continue
        for value in list(vars(module).values()):
            items = (value.values() if isinstance(value, dict)
                     else value if isinstance(value, (tuple, list)) else (value,))
            for item in items:
                if (isinstance(item, Dispatcher) and id(item) not in seen
                        and item.targetoptions.get("parallel")):
                    seen.add(id(item))
                    yield item


#: Set in a child forked after the parent's GNU OpenMP pool had started.
forked_from_started_pool = False


def _after_fork_in_child() -> None:
    global forked_from_started_pool
    if not _fork_unsafe_pool_started():
        return
    forked_from_started_pool = True
    for dispatcher in _parallel_dispatchers():
        dispatcher.__class__ = _guarded_class(type(dispatcher))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
