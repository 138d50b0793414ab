"""Run OpenBLAS's parallel work on Numba's thread pool, so that the process has one pool of
threads for the loop kernels and for numpy's matrix products.

Why: OpenBLAS (numpy's BLAS) keeps its own worker threads, and after each call they spin for
2^28 CPU cycles (about 0.1 s) before they sleep; Numba's GNU OpenMP workers spin after each
parallel region too. When the two alternate, each library's workers take the cores the other
needs: on a 2-core machine a 32x128x128 loops forward right after a numpy matmul took 250-425x
as long as alone, and a 1024x1024x1024 matmul right after a loops kernel 1.7x
(``asv_benchmarks/scripts/mixed_pools.py``; README, "Threads").

How: OpenBLAS 0.3.27 and later let a program supply the threads for its parallel work
(``openblas_set_threads_callback_function``; the callback receives ``numjobs`` jobs and a function
that runs one of them). `install` hands every OpenBLAS that threadpoolctl finds in the process a
callback compiled with Numba (`fastlinear._blas_callback`), which runs the jobs in a ``prange`` on
Numba's pool. OpenBLAS's own workers then fall asleep after their timeout and are never woken;
OpenBLAS still decides how many jobs a call has (its thread count, which
`fastlinear.set_num_threads` keeps equal to Numba's). It makes no difference whether numpy was
imported before or after fastlinear: the callback can be set at any time, and it is set when
Numba's pool is first needed (the first parallel kernel of the loops or blas backend, or
`fastlinear.set_num_threads` / `fastlinear.threads`): a process that never starts Numba's pool has
only OpenBLAS's, and nothing to fight with.

Three rules keep the callback correct:

- OpenBLAS's level-3 jobs wait for each other (each packs a panel the others read), so all jobs of
  a call must run at the same time. The callback asks Numba for exactly ``numjobs`` threads; if
  Numba's pool is smaller than that (a BLAS thread count raised above it by hand), the jobs run on
  threads created for the call instead.
- OpenBLAS gives the callback job numbers 0..numjobs-1, and each job number selects a per-thread
  work buffer inside OpenBLAS, so two calls must not run at once: a lock in the callback
  serialises BLAS calls made from several Python threads (OpenBLAS's own pool would hand them
  different workers).
- A process forked from this one cannot use the parent's GNU OpenMP pool (see `fastlinear._fork`),
  so a forked child goes back to OpenBLAS's own threads.

``FASTLINEAR_BLAS_POOL=0`` in the environment leaves OpenBLAS alone.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import numba
import threadpoolctl

# --- installing the callback ------------------------------------------------------------------

_SETTER = "openblas_set_threads_callback_function"
_installed: list[tuple[str, ctypes._CFuncPtr]] = []  # (library path, its setter)
_examined: set[str] = set()
_install_lock = threading.Lock()
_fork_hook = False


def enabled() -> bool:
    """Whether ``FASTLINEAR_BLAS_POOL`` allows the callback (anything but 0/false/no/off)."""
    return os.environ.get("FASTLINEAR_BLAS_POOL", "1").strip().lower() not in {
        "0", "false", "no", "off"}


def _setter(dynlib: ctypes.CDLL) -> ctypes._CFuncPtr | None:
    # scipy-openblas (numpy's and scipy's wheels) prefixes its symbols with scipy_ and suffixes
    # the 64-bit-integer build's with 64_; a system OpenBLAS uses the plain name.
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            fn = getattr(dynlib, f"{prefix}{_SETTER}{suffix}", None)
            if fn is not None:
                fn.argtypes = [ctypes.c_void_p]
                fn.restype = None
                return fn
    return None


def _pool_is_safe() -> bool:
    """Whether Numba's pool can run every job of a BLAS call at the same time, from any thread.

    Only the 'omp' layer promises that: ``#pragma omp parallel num_threads(n)`` gives a team of n
    threads, and Numba turns nested regions on, so a BLAS call from inside a parallel region gets a
    team of its own. 'tbb' may run two jobs one after the other on one thread (OpenBLAS's level-3
    jobs wait for each other: a hang), 'workqueue' aborts on concurrent use, and OMP_DYNAMIC or
    OMP_THREAD_LIMIT would let GNU OpenMP hand out fewer threads than asked for."""
    if numba.threading_layer() != "omp":
        return False
    if os.environ.get("OMP_DYNAMIC", "").strip().lower() in {"true", "1", "yes", "on"}:
        return False
    limit = os.environ.get("OMP_THREAD_LIMIT", "").strip()
    return not (limit.isdigit() and int(limit) < numba.config.NUMBA_NUM_THREADS)


def install() -> list[str]:
    """Give every OpenBLAS loaded in the process (that has not been examined yet) the callback
    that runs its parallel jobs on Numba's pool; return the paths of the libraries that run on it.

    Does nothing when ``FASTLINEAR_BLAS_POOL=0``, with a Numba threading layer other than 'omp'
    (see `_pool_is_safe`), in a process forked from one whose pool had started, or for an OpenBLAS
    older than 0.3.27 (no callback API).
    OpenBLAS's thread count is lowered to the size of Numba's pool where it is larger, since every
    job of a call needs a thread of its own. Safe to call again: libraries loaded later (scipy's
    OpenBLAS, say) are picked up then.
    """
    global _fork_hook
    if not enabled():
        return []
    from . import _fork

    with _install_lock:
        if _fork.forked_from_started_pool:
            return []
        libraries = [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers
                     if lib.internal_api == "openblas" and lib.filepath not in _examined]
        if libraries:
            from numba.np.ufunc import parallel

            parallel._launch_threads()  # Numba's layer is needed now: start it, learn which it is
        if libraries and _pool_is_safe():
            from . import _blas_callback
            pool = numba.config.NUMBA_NUM_THREADS
            for lib in libraries:
                _examined.add(lib.filepath)
                setter = _setter(lib.dynlib)
                if setter is None or lib.threading_layer != "pthreads":
                    continue  # too old for the callback, or built on OpenMP (no spinning pool)
                if lib.get_num_threads() > pool:
                    lib.set_num_threads(pool)
                setter(_blas_callback._callback.address)
                _installed.append((lib.filepath, setter))
        if _installed and not _fork_hook and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_after_fork)
            _fork_hook = True
        return [path for path, _ in _installed]


def uninstall() -> None:
    """Give every OpenBLAS its own threads back."""
    with _install_lock:
        for _, setter in _installed:
            setter(None)
        _installed.clear()
        _examined.clear()


def _reset_after_fork() -> None:
    # The child's copy of Numba's GNU OpenMP pool is unusable; OpenBLAS re-creates its own
    # threads in a forked child, so hand the work back to them. (The lock is not taken: the child
    # has a single thread.)
    for _, setter in _installed:
        setter(None)
    _installed.clear()
    _examined.clear()


def calls() -> int:
    """How many parallel OpenBLAS calls the callback has run in this process (modulo 2^31)."""
    callback = sys.modules.get(f"{__package__}._blas_callback")
    return 0 if callback is None else callback._state[2]


def installed() -> list[str]:
    """Paths of the OpenBLAS libraries whose parallel work runs on Numba's pool now."""
    return [path for path, _ in _installed]
