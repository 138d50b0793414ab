"""Compiling the micro-kernels with the SLP vectorizer on and the loop vectorizer off.

Numba runs LLVM with the loop vectorizer on and the SLP vectorizer off. For a register-blocked
micro-kernel that is the wrong way round: the loop vectorizer turns the k-loop into vector
reductions that spill (measured 12 GFLOP/s), and without SLP the 256 scalar accumulators stay
scalar (14 GFLOP/s); with SLP alone each row of accumulators becomes vector registers (~180 on one
thread). Numba reads ``numba.core.config.SLP_VECTORIZE`` / ``LOOP_VECTORIZE`` when it builds LLVM's
pass pipeline for a compilation, so `compile_micro` sets them around an explicit
``dispatcher.compile(signature)`` and restores them afterwards, under Numba's global compiler lock
so that no other compilation in the process sees the changed flags.

Caution, and why this is safe here: Numba's on-disk cache key does not include these flags. A
micro-kernel compiled through any other path (e.g. called directly before `compile_micro` ran)
would be compiled with Numba's defaults, be slow, and be cached that way. The micro-kernels are
therefore private, reached only through `compile_micro`, which every driver runs before its
first call (`fastlinear.kernels.packed.compile_packed`). The drivers that call a micro-kernel are
compiled later with the default flags; LLVM's loop vectorizer leaves the micro-kernel's already
vectorized loop alone when it is linked (or inlined) into them. If a cached build ever comes out
slow, delete the cache files (``find fastlinear -name '*.nb[ic]' -delete``).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from numba import from_dtype, types
from numba.core import config
from numba.core.compiler_lock import global_compiler_lock

from ._micro_f32 import micro_8x32
from ._micro_f64 import micro_8x16

#: The micro-kernel for each dtype, with its (MR, NR).
MICRO = {
    np.dtype(np.float32): (micro_8x32, 8, 32),
    np.dtype(np.float64): (micro_8x16, 8, 16),
}


def _signature(dtype: np.dtype):
    """(kc, a, ao, b, bo, t): uintp sizes/offsets and 1-D C-contiguous arrays of ``dtype``."""
    arr = types.Array(from_dtype(dtype), 1, "C")
    return (types.uintp, arr, types.uintp, arr, types.uintp, arr)


@contextmanager
def _slp_only():
    """SLP vectorizer on, loop vectorizer off, for compilations inside the block."""
    with global_compiler_lock:
        saved = config.SLP_VECTORIZE, config.LOOP_VECTORIZE
        config.SLP_VECTORIZE, config.LOOP_VECTORIZE = 1, 0
        try:
            yield
        finally:
            config.SLP_VECTORIZE, config.LOOP_VECTORIZE = saved


def compile_micro(dtype) -> None:
    """Compile (or load from the cache) the micro-kernel for ``dtype`` with SLP-only vectorization.
    Does nothing when it is already compiled in this process."""
    kernel, _, _ = MICRO[np.dtype(dtype)]
    sig = _signature(np.dtype(dtype))
    if any(tuple(s.args) == sig for s in kernel.signatures):
        return
    with _slp_only():
        kernel.compile(sig)
