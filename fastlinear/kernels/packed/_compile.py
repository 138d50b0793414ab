"""Compiling the micro-kernels with the SLP vectorizer on and the loop vectorizer off.

Numba runs LLVM with the loop vectorizer on and the SLP vectorizer off. For a register-blocked
micro-kernel that is the wrong way round: the loop vectorizer turns the k-loop into vector
reductions that spill, and without SLP the MR * NR scalar accumulators stay scalar; with SLP alone
each row of accumulators becomes vector registers. Numba reads ``numba.core.config.SLP_VECTORIZE``
and ``LOOP_VECTORIZE`` when it builds LLVM's pass pipeline for a compilation, so `compiled_micro`
runs an explicit ``dispatcher.compile(signature)`` inside ``kernels._slp.llvm_flags`` with the
settings of ``_config.VECTORIZE["packed_micro"]`` (the package's one mechanism for such flags).

Why this cannot go wrong silently:
* Numba's on-disk cache key does not include these flags, so a cached micro-kernel could have
  been built with either setting. The micro-kernels are therefore never cached on their own
  (``cache=False``): the generated sources are plain functions and the only dispatcher for each is
  made here, compiled with the flags, and then closed to further compilation.
* `compiled_micro` is called while a driver that uses the micro-kernel is being compiled (from
  the ``micro`` overload in ``_micro.py``). The driver is cached with the micro-kernel's machine
  code linked into it, so a process that loads the driver from the cache never compiles a
  micro-kernel at all. The driver itself is compiled with Numba's default flags; LLVM's loop
  vectorizer leaves the micro-kernel's already vectorized loop alone when it is linked in.
* Numba does not notice when a function that a cached kernel calls changes in another file: after
  editing anything in this package, delete the cache files
  (``find fastlinear -name '*.nb[ic]' -delete``).
"""

from __future__ import annotations

import numpy as np
from numba import from_dtype, njit, types
from numba.core.compiler_lock import global_compiler_lock

from ..._config import PACKED_MICRO, VECTORIZE
from .._slp import llvm_flags
from ._micro_f32 import micro_8x32
from ._micro_f64 import micro_8x16

#: The micro-kernel source for each dtype, with its (MR, NR).
MICRO = {
    np.dtype(np.float32): (micro_8x32, 8, 32),
    np.dtype(np.float64): (micro_8x16, 8, 16),
}

_compiled: dict = {}


def _signature(dtype: np.dtype):
    """(kc, a, ao, b, bo, t): uintp sizes/offsets and 1-D C-contiguous arrays of ``dtype``."""
    arr = types.Array(from_dtype(dtype), 1, "C")
    return (types.uintp, arr, types.uintp, arr, types.uintp, arr)


def compiled_micro(dtype):
    """The micro-kernel dispatcher for ``dtype``, compiled with SLP-only vectorization for its
    single signature on the first call (about 2 s for float32, 1 s for float64)."""
    dtype = np.dtype(dtype)
    # Numba's (re-entrant) compiler lock, not a lock of our own: this runs inside the compilation
    # of a driver, which already holds it, and taking a second lock here could deadlock.
    with global_compiler_lock:
        kernel = _compiled.get(dtype)
        if kernel is None:
            source = MICRO[dtype][0]
            flags = dict(VECTORIZE["packed_micro"])
            kernel = njit(**PACKED_MICRO)(source)
            with llvm_flags(**flags):
                kernel.compile(_signature(dtype))
            kernel.llvm_flags = flags
            kernel.disable_compile()
            _compiled[dtype] = kernel
    return kernel
