"""One thread count for every thread pool in the process: Numba's (the loop kernels), BLAS's (numpy
matmul, through threadpoolctl) and, when torch has been imported, torch's intra-op pool.

Pools that spin on the same cores slow each other down several-fold when a Numba kernel and a BLAS
call alternate, so fastlinear sets all of them together: `set_num_threads` for the rest of the
program, `threads` for a block. The default is the number of cores this process may run on
(``os.sched_getaffinity``), not the machine's core count: a process restricted by ``taskset``, a
container's cpuset or an MPI launcher would otherwise start more threads than it has cores.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
from typing import Iterator

import numba
import threadpoolctl

from . import _blas_pool

_blas_limits: threadpoolctl.threadpool_limits | None = None


def available_cores() -> int:
    """The number of cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def _check(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"number of threads must be an integer, got {type(n).__name__} {n!r}")
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise ValueError(f"number of threads must be between 1 and {limit}, got {n}")
    return int(n)


def _torch():
    """torch, if this process has imported it (fastlinear never imports it for this)."""
    return sys.modules.get("torch")


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in Numba kernels, in BLAS calls and, if torch is imported, in torch ops.

    ``n`` must be between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the size of Numba's pool,
    fixed when numba is imported; set the NUMBA_NUM_THREADS environment variable before importing
    to change it). As with ``numba.set_num_threads``, the Numba setting applies to the calling
    thread; the BLAS and torch settings are process-wide.

    Raises:
        TypeError: n is not an integer.
        ValueError: n is outside 1..NUMBA_NUM_THREADS.
    """
    global _blas_limits
    n = _check(n)
    _blas_pool.install()  # an OpenBLAS loaded since (scipy's, say) joins Numba's pool too
    numba.set_num_threads(n)
    _blas_limits = threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    torch = _torch()
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads Numba kernels use in the calling thread."""
    return numba.get_num_threads()


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Run a block with ``n`` threads in every pool (see `set_num_threads`), then restore each
    pool's previous setting, also when the block raises.

        >>> import fastlinear as fl
        >>> with fl.threads(1):
        ...     pass  # kernels, BLAS and torch use one thread here
    """
    n = _check(n)
    _blas_pool.install()
    torch = _torch()
    before_numba = numba.get_num_threads()
    before_torch = torch.get_num_threads() if torch is not None else None
    with threadpoolctl.threadpool_limits(limits=n, user_api="blas"):
        numba.set_num_threads(n)
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            numba.set_num_threads(before_numba)
            if before_torch is not None:
                torch.set_num_threads(before_torch)


def pools() -> dict[str, object]:
    """What each thread pool in the process uses now: Numba's thread count and threading layer
    (None before the first parallel kernel has run), each BLAS library threadpoolctl finds
    (name, version, internal kernel, threads), and torch's thread count (None unless imported)."""
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    torch = _torch()
    return {
        "numba": {"threads": numba.get_num_threads(), "pool size": numba.config.NUMBA_NUM_THREADS,
                  "layer": layer},
        "blas": [
            {"library": i.get("internal_api"), "version": i.get("version"),
             "kernel": i.get("architecture"), "threads": i.get("num_threads")}
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"
        ],
        "blas on numba's pool": _blas_pool.installed(),
        "torch": None if torch is None else {"threads": torch.get_num_threads()},
        "cores available": available_cores(),
    }
