"""fastlinear: the neural-network linear layer as explicit Numba loop kernels.

    >>> import numpy as np, fastlinear as fl
    >>> layer = fl.Linear(784, 128, backend="loops", seed=0)
    >>> fl.available_backends()
    ('loops', 'naive', 'blas', 'auto')
"""

import os as _os
import sys as _sys

if (
    "numba" not in _sys.modules and "NUMBA_NUM_THREADS" not in _os.environ
    and hasattr(_os, "sched_getaffinity")
):
    # Numba sizes its thread pool by the machine's core count when it is imported; a process
    # confined by taskset, a container's cpuset or an MPI launcher may run on fewer cores, and
    # more threads than cores only spin against each other (see fastlinear._threads).
    _cores = len(_os.sched_getaffinity(0))
    if 0 < _cores < (_os.cpu_count() or _cores):
        _os.environ["NUMBA_NUM_THREADS"] = str(_cores)

# Before Numba's threading layer starts: torch (if installed) keeps its own OpenMP runtime
# (see fastlinear._openmp).
from . import _openmp  # noqa: E402

_openmp.load_torch_runtime()

# Set-up that must precede the import of any kernel module: the 512-bit preference for
# fastlinear's own kernels (_cpu), where their machine code is cached (_cache), and the fork
# guard (_fork).
from . import _cpu  # noqa: E402
from . import _cache  # noqa: E402
from . import _fork  # noqa: E402, F401

_cache.install("" if _cpu.enabled else "-nopref")

from ._compile import warmup
from ._fork import ForkedThreadPoolError
from ._memory import aligned_copy, empty_aligned, zeros_aligned
from .backends import Backend, available_backends, get_backend
from .functional import Cache, backward, forward, linear, linear_backward
from .layer import Linear
from ._threads import get_num_threads, set_num_threads, threads
from .tuning import tune

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "Cache",
    "ForkedThreadPoolError",
    "Linear",
    "aligned_copy",
    "available_backends",
    "backward",
    "empty_aligned",
    "forward",
    "get_backend",
    "get_num_threads",
    "linear",
    "linear_backward",
    "set_num_threads",
    "threads",
    "tune",
    "warmup",
    "zeros_aligned",
]
