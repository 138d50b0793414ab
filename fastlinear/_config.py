"""Compile options for every Numba kernel in fastlinear, in one place.

The options are read once, when a kernel module is imported; nothing here is changed at run time.
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

#: Options for the "naive" reference kernels: parallel, but no reassociation, so each sum runs in
#: the plain left-to-right order a reader would expect.
NAIVE: dict = dict(parallel=True, cache=True, nogil=True)

#: Options for the serial kernels that serve problems too small for a parallel region to pay.
SERIAL: dict = dict(cache=True, nogil=True, fastmath=set(FASTMATH))

#: Options for the code that runs OpenBLAS's parallel jobs on Numba's pool
#: (`fastlinear._blas_callback`): it only calls OpenBLAS, so there is no float arithmetic for
#: fastmath to change.
BLAS_POOL: dict = dict(cache=True, nogil=True)
