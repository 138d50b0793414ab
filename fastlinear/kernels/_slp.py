"""Compile options of the register-blocked kernels (the ``_micro`` module), kept in one place.

The register-blocked kernels hold an MR x NR block of the output in MR * NR scalar locals and add
one outer product per step of the reduction. Only LLVM's SLP vectorizer turns those scalars into
full-width vector registers, and Numba ships with it off (``numba.core.config.SLP_VECTORIZE``).
Numba reads that setting each time it builds its optimisation pipeline, so `slp_njit` sets it for
the duration of one compilation only, holding Numba's global compiler lock so that no other
compilation in the process sees it. Nothing else changes and no setting leaks out.

The kernels allow fused multiply-add (``contract``) but not reassociation: without reassociation
LLVM's loop vectorizer may not turn the reduction loop into vector reductions over its MR * NR
accumulators (which spilled and ran at 12 GFLOP/s), while the SLP vectorizer, which only combines
independent lanes, still vectorizes across the NR columns. NaN and Inf propagate.

Numba's on-disk cache is not keyed on the vectorizer setting, which is harmless here because every
kernel decorated with `slp_njit` is always compiled with it on.
"""

from __future__ import annotations

from typing import Callable

from numba import njit
from numba.core import config
from numba.core.compiler_lock import global_compiler_lock

from .._config import FASTMATH

#: fused multiply-add only, and only if the package-wide options allow it.
MICRO_FASTMATH: set[str] = set(FASTMATH) & {"contract"}

SERIAL: dict = dict(cache=True, nogil=True, fastmath=MICRO_FASTMATH)
PARALLEL: dict = dict(parallel=True, cache=True, nogil=True, fastmath=MICRO_FASTMATH)


def slp_njit(**options) -> Callable:
    """Like ``numba.njit(**options)``, but every compilation of the kernel (including a load from
    the cache, which is harmless) runs with the SLP vectorizer on."""

    def decorate(func):
        dispatcher = njit(**options)(func)
        plain_compile = dispatcher.compile

        def compile_with_slp(sig):
            with global_compiler_lock:
                before = config.SLP_VECTORIZE
                config.SLP_VECTORIZE = 1
                try:
                    return plain_compile(sig)
                finally:
                    config.SLP_VECTORIZE = before

        dispatcher.compile = compile_with_slp
        return dispatcher

    return decorate
