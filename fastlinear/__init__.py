"""fastlinear: the neural-network linear layer as explicit Numba loop kernels.

    >>> import numpy as np, fastlinear as fl
    >>> layer = fl.Linear(784, 128, backend="loops", seed=0)
    >>> fl.available_backends()
    ('loops', 'naive', 'blas', 'auto')
"""

# Set-up that must precede the import of any kernel module: the 512-bit preference for
# fastlinear's own kernels (_cpu), where their machine code is cached (_cache), the compile
# progress notice (_compile) and the fork guard (threads).
from . import _cpu
from . import _cache

_cache.install("" if _cpu.enabled else "-nopref")

from ._compile import warmup
from .backends import Backend, available_backends, get_backend
from .functional import Cache, backward, forward, linear, linear_backward
from .layer import Linear
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "Cache",
    "Linear",
    "available_backends",
    "backward",
    "forward",
    "get_backend",
    "get_num_threads",
    "linear",
    "linear_backward",
    "set_num_threads",
    "warmup",
]
