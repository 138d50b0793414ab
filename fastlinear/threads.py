"""One thread count for both thread pools: Numba's (the loop kernels) and BLAS's (numpy matmul).

Two pools that both spin on a 2-core machine slow each other down several-fold when a Numba kernel
and a BLAS call alternate, so fastlinear sets both together.
"""

from __future__ import annotations

import numbers

import numba
import threadpoolctl

_blas_limits: threadpoolctl.threadpool_limits | None = None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in Numba kernels and in BLAS calls.

    ``n`` must be between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the size of Numba's pool,
    fixed when numba is imported; set the NUMBA_NUM_THREADS environment variable before importing
    to change it). As with ``numba.set_num_threads``, the Numba setting applies to the calling
    thread; the BLAS setting is process-wide.
    """
    global _blas_limits
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"number of threads must be an integer, got {type(n).__name__} {n!r}")
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise ValueError(f"number of threads must be between 1 and {limit}, got {n}")
    numba.set_num_threads(int(n))
    _blas_limits = threadpoolctl.threadpool_limits(limits=int(n), user_api="blas")


def get_num_threads() -> int:
    """The number of threads Numba kernels use in the calling thread."""
    return numba.get_num_threads()
