"""The micro-kernel of the packed GEMM: its source (`micro_kernel`), its compilation
(`compiled_micro`), and ``micro`` (packed panels) and ``micro_in_place`` (panels with any
strides, such as rows of w read in place), through which a driver calls the one for its dtype.

The micro-kernel sums an MR x NR block of C = A-panel @ B-panel into an array on its own stack,
with loops whose trip counts are constants: LLVM unrolls them, keeps the block in vector registers
(16 zmm registers for 8 x 32 float32 and 8 x 16 float64) and makes every step of the k-loop 2
vector loads of B, MR broadcasts of A and 2 * MR fused multiply-adds. For that LLVM's SLP
vectorizer must be on and its loop vectorizer off (the loop vectorizer turns the k-loop into vector
reductions that spill; Numba's defaults are the other way round). Numba reads
``numba.core.config.SLP_VECTORIZE`` and ``LOOP_VECTORIZE`` when it builds LLVM's pass pipeline
for a compilation, so `compiled_micro` runs an explicit ``dispatcher.compile(signature)`` inside
``kernels._slp.llvm_flags`` with the settings of ``_config.VECTORIZE["packed_micro"]`` (the
package's one mechanism for such flags).

Why this cannot go wrong silently:
* Numba's on-disk cache key does not include these flags, so a cached micro-kernel could have
  been built with either setting. The micro-kernels are therefore never cached on their own
  (``cache=False``): the only dispatcher for each is made here, compiled with the flags, and then
  closed to further compilation.
* `compiled_micro` is called while a driver that uses the micro-kernel is being compiled (from
  the ``micro`` overload below). The driver is cached with the micro-kernel's machine code linked
  into it, so a process that loads the driver from the cache never compiles a micro-kernel at
  all. The driver itself is compiled with Numba's default flags; LLVM's loop vectorizer leaves
  the micro-kernel's already vectorized loop alone when it is linked in.
* Numba does not notice when a function that a cached kernel calls changes in another file: after
  editing anything in this package, delete the cache files
  (``find fastlinear -name '*.nb[ic]' -delete``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba import carray, from_dtype, njit, types
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import overload

from ..._config import PACKED_MICRO, VECTORIZE
from .._scratch import stack_row
from .._slp import llvm_flags

#: (MR, NR) of the micro-kernel for each dtype: 16 vector registers of 512 bits hold the block.
#: 12 x 32 and 14 x 32 spilled; 4 x 64 and 16 x 16 were slower.
MICRO = {
    np.dtype(np.float32): (8, 32),
    np.dtype(np.float64): (8, 16),
}

_compiled: dict = {}


def micro_kernel(mr: int, nr: int, in_place: bool = False) -> Callable:
    """The source of the mr x nr micro-kernel, a plain function for `compiled_micro` to compile
    (mr and nr become constants of its code). Unless ``in_place``, the strides are those of packed
    panels (``sa`` 1, ``step_a`` mr, ``step_b`` nr) as constants, and the arguments that give
    them are ignored: with them as run-time values the packed products ran 3-7% slower (1024^3
    and 256x512x512, both dtypes, one thread, three alternations of processes)."""
    size = mr * nr
    one = np.uintp(1)
    mr_u = np.uintp(mr)
    nr_u = np.uintp(nr)

    def micro_kernel_source(kc, a, ao, sa, step_a, b, bo, step_b, t):
        """t[i * nr + j] = sum over p < kc of a[ao + p * step_a + i * sa] * b[bo + p * step_b + j].

        ``a`` holds an mr-row panel of A: packed (``sa`` 1, ``step_a`` mr: column p of the panel
        at ao + p * mr), or read in place from a row-major matrix (``sa`` its row length,
        ``step_a`` 1: row i of the panel is a run of kc values). ``b`` holds an nr-column panel
        of B whose row p starts at bo + p * step_b (packed: ``step_b`` nr). ``t`` receives the
        mr x nr block row-major. Sizes, offsets and strides are np.uintp: unsigned indices need no
        negative-index fix-up, which would otherwise block vectorization. The A values are
        broadcast one at a time, so where they lie in memory does not change the vector code:
        packed and in place ran at the same speed (float32 152-168 / 137-146 GFLOP/s on panels
        in L1 / L2, one thread, 2-core Intel Xeon KVM guest)."""
        if in_place:
            sa_, step_a_, step_b_ = sa, step_a, step_b
        else:
            sa_, step_a_, step_b_ = one, mr_u, nr_u
        acc = carray(stack_row(t, size), (mr, nr))
        zero = t.dtype.type(0)
        for i in range(mr):
            for j in range(nr):
                acc[i, j] = zero
        pa = ao
        pb = bo
        for _ in range(kc):
            for i in range(mr):
                for j in range(nr):
                    acc[i, j] += a[pa + np.uintp(i) * sa_] * b[pb + np.uintp(j)]
            pa += step_a_
            pb += step_b_
        for i in range(mr):
            for j in range(nr):
                t[i * nr + j] = acc[i, j]

    return micro_kernel_source


def _signature(dtype: np.dtype):
    """(kc, a, ao, sa, step_a, b, bo, step_b, t): uintp sizes, offsets and strides and 1-D
    C-contiguous arrays of ``dtype``."""
    arr = types.Array(from_dtype(dtype), 1, "C")
    u = types.uintp
    return (u, arr, u, u, u, arr, u, u, arr)


def compiled_micro(dtype, in_place: bool = False):
    """The micro-kernel dispatcher for ``dtype``, compiled with SLP-only vectorization for its
    single signature on the first call (under a second for either dtype)."""
    dtype = np.dtype(dtype)
    # Numba's (re-entrant) compiler lock, not a lock of our own: this runs inside the compilation
    # of a driver, which already holds it, and taking a second lock here could deadlock.
    with global_compiler_lock:
        kernel = _compiled.get((dtype, in_place))
        if kernel is None:
            flags = dict(VECTORIZE["packed_micro"])
            kernel = njit(**PACKED_MICRO)(micro_kernel(*MICRO[dtype], in_place))
            with llvm_flags(**flags):
                kernel.compile(_signature(dtype))
            kernel.llvm_flags = flags
            kernel.disable_compile()
            _compiled[dtype, in_place] = kernel
    return kernel


def micro(kc, a, ao, sa, step_a, b, bo, step_b, t):
    """t = A-panel @ B-panel for packed panels (see `micro_kernel`; the stride arguments are
    ignored); compiled code only."""
    raise NotImplementedError("micro is only callable from Numba-compiled code")


def micro_in_place(kc, a, ao, sa, step_a, b, bo, step_b, t):
    """t = A-panel @ B-panel with the panels' strides as given (see `micro_kernel`); compiled
    code only."""
    raise NotImplementedError("micro_in_place is only callable from Numba-compiled code")


def _overload_micro(in_place: bool):
    def typer(kc, a, ao, sa, step_a, b, bo, step_b, t):
        if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)):
            return None
        # runs only when a caller is compiled
        kernel = compiled_micro(np.dtype(a.dtype.name), in_place)

        def impl(kc, a, ao, sa, step_a, b, bo, step_b, t):
            kernel(kc, a, ao, sa, step_a, b, bo, step_b, t)

        return impl

    return typer


overload(micro)(_overload_micro(False))
overload(micro_in_place)(_overload_micro(True))
