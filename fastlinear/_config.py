"""Compile options for every Numba kernel in fastlinear, in one place.

Every ``@njit`` in the package takes its options from one of the dictionaries below, and every
change to LLVM's vectorizer settings around a compilation comes from `VECTORIZE` through
`fastlinear.kernels._slp.llvm_flags` (``tests/test_compile_options.py`` checks the options of every
compiled function against the entries its module may use, the vectorizer settings recorded on the
register-blocked and packed micro-kernels, and the source of every module). The options are read once, when a kernel module is imported;
nothing here is changed at run time.

Numba's on-disk cache is keyed on a kernel's own source file, not on these options nor on the
other files whose functions a kernel calls: after editing this file (or a helper such as
``activations.py``), delete the cached ``*.nbi``/``*.nbc`` files
(``find fastlinear -name '*.nb[ic]' -delete``) or point ``NUMBA_CACHE_DIR`` at a new directory,
or the old machine code keeps being loaded. The test suite does the latter by itself: its cache
directory is keyed on a hash of every source file (``tests/conftest.py``).

``FASTMATH`` lets LLVM reassociate and contract (fuse multiply-adds), which is what allows a float
reduction to vectorize. It deliberately leaves out ``nnan`` and ``ninf`` (which ``fastmath=True``
would add): with those LLVM may assume the data holds no NaN or Inf, and then NaN/Inf in a user's
input would not propagate the way they do in numpy.
"""

from __future__ import annotations

FASTMATH: frozenset[str] = frozenset({"reassoc", "contract", "nsz"})

#: Options for the parallel kernels. ``cache=True`` writes compiled machine code next to the module
#: (or wherever `fastlinear._cache` finds room when that is read-only), so only the first process
#: compiles.
PARALLEL: dict = dict(parallel=True, cache=True, nogil=True, fastmath=set(FASTMATH))

#: Options for the serial kernels that serve problems too small for a parallel region to pay, and
#: for the serial helpers of the packed kernels (packing, storing a tile, the activation).
SERIAL: dict = dict(cache=True, nogil=True, fastmath=set(FASTMATH))

#: Options for helpers that do only index arithmetic (the packed driver's task and tile shapes,
#: prefetches): no float operations for fastmath to change.
PLAIN: dict = dict(cache=True, nogil=True)

#: Options for every function that adds up a leaf or the tree of a long sum (``kernels/_sums``):
#: ``FASTMATH`` less ``reassoc``. With reassociation allowed LLVM may fold "s2 += s1; s1 = 0" back
#: into one running sum, and did: the tree compiled with it summed 2**20 rows of 0.1 with 1e-5
#: relative error, as in-order runs of 1024 would. Flags are per instruction, so this holds when
#: LLVM inlines these functions into a caller compiled with ``reassoc``; callers keep their leaf
#: loops in functions compiled with these options too.
ORDERED: dict = dict(cache=True, nogil=True, fastmath=set(FASTMATH) - {"reassoc"})

#: Options for the register-blocked kernels (``kernels/grad_input``, ``kernels/grad_weight``):
#: fused multiply-add only, no reassociation. Without reassociation LLVM's loop vectorizer may not
#: turn the reduction loop into vector reductions over the MR * NR accumulators (which spilled and
#: ran at 12 GFLOP/s), while the SLP vectorizer (`VECTORIZE`), which only combines independent
#: lanes, still vectorizes across the NR columns. NaN and Inf propagate.
BLOCKED_SERIAL: dict = dict(cache=True, nogil=True, fastmath=set(FASTMATH) & {"contract"})
BLOCKED_PARALLEL: dict = dict(BLOCKED_SERIAL, parallel=True)

#: Options for the packed micro-kernels (``kernels/packed/_micro``). Never cached on their own:
#: Numba's cache key does not include `VECTORIZE`'s settings, so each is compiled once per process
#: with them and linked into the cached driver that calls it.
PACKED_MICRO: dict = dict(cache=False, nogil=True, fastmath=set(FASTMATH))

#: Options for the "naive" reference kernels: parallel, but no reassociation, so each sum runs in
#: the plain left-to-right order a reader would expect.
NAIVE: dict = dict(parallel=True, cache=True, nogil=True)

#: Options for the optimizers' element-wise updates (``nn/_optim_kernels``). No fastmath: an
#: element-wise update needs no reassociation to vectorize, and without "contract" LLVM cannot
#: fuse multiply-adds differently in the serial and the parallel build (it did: 1-ulp differences
#: in ~6% of elements), so both give the same bits. ``error_model="numpy"``: a float division by
#: zero gives Inf or NaN, as in numpy and torch (Adam with eps = 0 and a zero gradient divides 0 by
#: 0 and torch's parameter becomes NaN); Numba's default, "python", raises ZeroDivisionError from
#: the middle of the loop, after some elements (and earlier parameters) were already updated.
OPTIM_PARALLEL: dict = dict(NAIVE, error_model="numpy")
OPTIM_SERIAL: dict = {k: v for k, v in OPTIM_PARALLEL.items() if k != "parallel"}

#: Options for the code that runs OpenBLAS's parallel jobs on Numba's pool
#: (`fastlinear._blas_callback`): it only calls OpenBLAS, so there is no float arithmetic for
#: fastmath to change.
BLAS_POOL: dict = dict(cache=True, nogil=True)
BLAS_POOL_PARALLEL: dict = dict(BLAS_POOL, parallel=True)

#: Options for scalar helpers (an activation, one optimizer element) that Numba inlines into each
#: caller before compiling it, so that they run under the caller's options.
INLINE: dict = dict(inline="always")

#: LLVM vectorizer settings (``numba.core.config`` names) for a compilation, per kernel family;
#: Numba's defaults (loop vectorizer on, SLP off) for every other kernel compiled on its own (a
#: helper first compiled from inside a compilation with these settings gets them too). A register
#: block (the ``_dx_block*``/``_dw_block*`` of ``kernels/grad_input``/``grad_weight``, the packed
#: micro-kernels) sums into a small array on its stack through loops of constant trip count: with
#: the loop vectorizer off, LLVM unrolls them and the SLP vectorizer, which combines independent
#: lanes, turns the array into vector registers; with the loop vectorizer on, it vectorized those
#: loops first and the block ran from memory, 40x slower (2.2 against 90-130 GFLOP/s for the 8 x 32
#: float32 weight-gradient block on one core). The drivers around the register blocks ("blocked")
#: keep the loop vectorizer for their edge loops.
VECTORIZE: dict[str, dict[str, int]] = {
    "blocked": {"SLP_VECTORIZE": 1},
    "register_block": {"SLP_VECTORIZE": 1, "LOOP_VECTORIZE": 0},
    "packed_micro": {"SLP_VECTORIZE": 1, "LOOP_VECTORIZE": 0},
}
