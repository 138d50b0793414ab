"""One thread count for every thread pool in the process: Numba's (the loop kernels), BLAS's (numpy
matmul, through threadpoolctl) and, when torch has been imported, torch's intra-op pool.

`set_num_threads` fixes the count for the rest of the program, `threads` for a block. Until the
program fixes it, the count adapts to the machine (`adapt`): it is the number of cores this process
may run on (``os.sched_getaffinity``, not the machine's core count: a process restricted by
``taskset``, a container's cpuset or an MPI launcher has fewer), less the cores that other
processes keep busy. A parallel region waits for its slowest thread, and a thread that shares its
core with another program's busy process runs only in that process's pauses: on a 2-core machine
with one core kept busy, training at 2 threads ran at 33,000 samples/s against 82,000 at 1 thread
(README, "Threads").
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
import threading
import time
from typing import Callable, Iterator

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


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in Numba kernels, in BLAS calls and, if torch is imported, in torch ops,
    from now on; ``None`` goes back to the adaptive default (see `adapt`).

    ``n`` must be between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the size of Numba's pool,
    fixed when numba is imported; set the NUMBA_NUM_THREADS environment variable before importing
    to change it). As with ``numba.set_num_threads``, the Numba setting applies to the calling
    thread; the BLAS and torch settings are process-wide.

    Raises:
        TypeError: n is not an integer or None.
        ValueError: n is outside 1..NUMBA_NUM_THREADS.
    """
    global _fixed, _target, _last_sample, _next_look
    if n is None:
        n = min(numba.config.NUMBA_NUM_THREADS, available_cores())
        fixed = False
    else:
        n = _check(n)
        fixed = True
    _blas_pool.install()  # an OpenBLAS loaded since (scipy's, say) joins Numba's pool too
    numba.set_num_threads(n)
    _set_blas_and_torch(n)
    with _adapt_lock:
        _fixed = fixed
        _target, _next_look = None, 0.0
        if _last_sample is not False:
            _last_sample = None
            other_processes_cores()  # the first sample: the next look can decide at once
        _applied.__dict__.clear()
        if not fixed:
            _applied.count = n  # the count just set is the adaptive default's, not the program's


def _set_blas_and_torch(n: int) -> None:
    """The process-wide pools: BLAS (threadpoolctl) and torch's, when imported."""
    global _blas_limits
    _blas_limits = threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    torch = _torch()
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads Numba kernels use in the calling thread."""
    return numba.get_num_threads()


def fast_thread_count() -> Callable[[], int]:
    """Numba's thread count for the calling thread, read through Numba's C entry point, or by
    ``numba.get_num_threads`` (several times slower: it takes two locks on every call) if that
    entry point, a private name of Numba's, is not there. Starts Numba's pool."""
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
        fn = parallel._get_num_threads
        if fn() == numba.get_num_threads():
            return fn
    except Exception:  # noqa: BLE001 - a private API of Numba; the public one always works
        pass
    return numba.get_num_threads


_thread_count: Callable[[], int] | None = None


def thread_count() -> int:
    """`get_num_threads` for kernels' dispatch, where its cost counts: through `fast_thread_count`
    after the first call, 0.09 us against numba.get_num_threads()'s 0.63 us (timeit, 2-core Intel
    Xeon KVM guest), beside kernels of a few microseconds. Starts Numba's pool on the first call."""
    global _thread_count
    if _thread_count is None:
        _thread_count = fast_thread_count()
    return _thread_count()


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Run a block with ``n`` threads in every pool (see `set_num_threads`), then restore each
    pool's previous setting, also when the block raises.

        >>> import fastlinear as fl
        >>> with fl.threads(1):
        ...     pass  # kernels, BLAS and torch use one thread here
    """
    global _blocks
    n = _check(n)
    _blas_pool.install()
    torch = _torch()
    before_numba = numba.get_num_threads()
    before_torch = torch.get_num_threads() if torch is not None else None
    with _adapt_lock:
        _blocks += 1
    try:
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
    finally:
        with _adapt_lock:
            _blocks -= 1


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


# --- the adaptive default ---------------------------------------------------------------------

#: Seconds between two looks at the machine's load (each costs one read of /proc/stat, ~30 us).
ADAPT_INTERVAL = 0.25
#: A core counts as busy when other processes use more than this fraction of one core over an
#: interval: a quarter of the time slices is already enough to stall a parallel region.
BUSY_FRACTION = 0.25

_fixed = False  # set_num_threads was called: the count no longer adapts
_blas_pool_ready = False  # adapt has installed the BLAS callback once
_blocks = 0  # `threads` blocks running now (in any thread): no adapting meanwhile
_adapt_lock = threading.Lock()
_next_look = 0.0
_last_sample: tuple[float, float, float] | None | bool = None  # (monotonic s, busy CPU s, own
# CPU s) of the previous look; False where /proc/stat cannot be read (never adapt)
_target: int | None = None  # the count the last look chose
_applied = threading.local()  # .count: the Numba count adapt set in this thread; .user: the
# thread set its own count since (numba.set_num_threads), so adapt leaves it alone
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def adapting() -> bool:
    """Whether the thread count still adapts to other processes' load (no `set_num_threads`
    call, no `threads` block open, and Linux's /proc/stat readable)."""
    return not _fixed and _blocks == 0 and _last_sample is not False


def _busy_cpu_seconds(cpus: set[int]) -> float | None:
    """CPU time (seconds) the cores in ``cpus`` have spent not idle since boot, from /proc/stat:
    user, nice, system, irq, softirq and steal (time the hypervisor gave to other machines)."""
    try:
        with open("/proc/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    ticks = 0
    for line in text.split(b"\n"):
        if not line.startswith(b"cpu") or line[3:4] == b" ":
            continue
        fields = line.split()
        if int(fields[0][3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
            ticks += user + nice + system + irq + softirq + steal
    return ticks / _CLOCK_TICKS


def other_processes_cores() -> float | None:
    """How many of this process's cores other processes kept busy since the previous call (a
    float; None on the first call or without /proc/stat). Busy time of those cores less this
    process's own CPU time (all its threads), per second of wall time."""
    global _last_sample
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    busy = _busy_cpu_seconds(cpus) if cpus else None
    if busy is None:
        _last_sample = False  # no /proc/stat: never adapt
        return None
    own = sum(os.times()[:2])
    now = time.monotonic()
    previous, _last_sample = _last_sample, (now, busy, own)
    if not previous or now - previous[0] < ADAPT_INTERVAL / 2:
        return None
    return max(0.0, ((busy - previous[1]) - (own - previous[2])) / (now - previous[0]))


def adapt() -> None:
    """Before a parallel kernel: on the first call, run numpy's BLAS on Numba's pool
    (`fastlinear._blas_pool.install`); every ADAPT_INTERVAL seconds, set the calling thread's Numba
    count (and BLAS's and torch's) to the cores this process may use less those other processes
    keep busy, at least 1 and at most Numba's pool. Does nothing once the program has fixed the
    count. The loop kernels give the same bits at any count, so this changes only the speed."""
    global _next_look, _target, _blas_pool_ready
    if not _blas_pool_ready:
        # Numba's pool is about to start: numpy's BLAS joins it (fastlinear._blas_pool)
        _blas_pool_ready = True
        _blas_pool.install()
    if _fixed or _blocks or _last_sample is False:
        return
    now = time.monotonic()
    if now < _next_look:
        return
    if not _adapt_lock.acquire(blocking=False):
        return
    try:
        _next_look = now + ADAPT_INTERVAL
        other = other_processes_cores()
        if other is None:
            return
        busy_cores = max(0, math.ceil(other - BUSY_FRACTION))
        target = min(numba.config.NUMBA_NUM_THREADS, max(1, available_cores() - busy_cores))
        if target != _target:
            _target = target
            _set_blas_and_torch(target)
    finally:
        _adapt_lock.release()
    _apply_here(_target)


def _apply_here(n: int) -> None:
    """Set the calling thread's Numba count to ``n``, unless this thread set its own count since
    adapt last set it, or before adapt first did (a direct numba.set_num_threads call is left
    alone, unless it set the very count adapt would see as its own: the pool size before adapt's
    first setting, its last setting after)."""
    if getattr(_applied, "user", False):
        return
    current = numba.get_num_threads()
    # before adapt's first setting in this thread, Numba's default (the pool size) means nobody
    # chose a count; anything else was a numba.set_num_threads call made before the first kernel
    last = getattr(_applied, "count", numba.config.NUMBA_NUM_THREADS)
    if current != last:
        _applied.user = True  # someone else chose this thread's count: leave it for good
        return
    if current != n:
        numba.set_num_threads(n)
    _applied.count = n


other_processes_cores()  # the first sample, so that the first parallel kernel can already adapt
