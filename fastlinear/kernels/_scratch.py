"""Scratch buffers for the kernels: allocated outside every parallel region, 64-byte aligned, reused.

No kernel allocates inside a parallel task: a heap allocation there takes the allocator's lock on
every task and places each buffer at an address that differs from call to call and from process to
process (and with it the cache-set and 64-byte-line alignment of the data a task works on). Scratch
space comes instead from the Python wrapper, which takes it from here:

* `buffer(name, dtype, size)`: a 1-D buffer of at least ``size`` elements for one use (``name``)
  in this Python thread. It grows to the next power of two when a call needs more and is then kept,
  so a training loop over fixed shapes allocates nothing after its first step; a buffer larger than
  `KEEP_BYTES` is made for the call alone and freed when the call drops it, so one huge call does not
  pin its scratch memory for the rest of the process.
* `per_thread(dtype)`: one row of `THREAD_SLOT` elements per Numba worker, indexed in a kernel by
  ``numba.get_thread_id()``; each row starts on a 64-byte boundary.

Buffers belong to the Python thread that asked for them (`threading.local`), so two Python threads
running kernels at the same time never share one. How much of a buffer a task uses depends only on
the problem's shape, never on the number of threads, and a task always writes its part of a buffer
before reading it: results do not depend on what a buffer held before.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

#: Bytes of alignment for every buffer and every per-thread row: one cache line.
ALIGN = 64
#: Elements of a per-thread row: the widest edge block of the register-blocked kernels (32 float32
#: columns) rounded up to a cache line of either dtype.
THREAD_SLOT = 32
#: Largest buffer kept between calls (the same cap as the packed workspace's): the shared packed B
#: (4 KiB per output column) and the db partial sums (one row per 32 batch rows) exceed it only for
#: very large layers or batches, where one allocation per call is cheap beside the work.
KEEP_BYTES = 8 << 20

_local = threading.local()


def _aligned(size: int, dtype: np.dtype) -> np.ndarray:
    """A new 1-D array of ``size`` elements whose first element sits on an `ALIGN`-byte boundary."""
    raw = np.empty(size * dtype.itemsize + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + size * dtype.itemsize].view(dtype)


def buffer(name: str, dtype, size: int) -> np.ndarray:
    """This Python thread's buffer ``name`` for ``dtype``: 1-D, at least ``size`` elements (the
    contents are whatever the last call left), 64-byte aligned."""
    dtype = np.dtype(dtype)
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    key = (name, dtype)
    buf = pool.get(key)
    if buf is None or buf.size < size:
        if size * dtype.itemsize > KEEP_BYTES:
            return _aligned(size, dtype)  # for this call only
        buf = pool[key] = _aligned(1 << max(size - 1, 0).bit_length(), dtype)
    return buf


def shaped(name: str, dtype, shape: tuple[int, int]) -> np.ndarray:
    """Buffer ``name`` as a C-contiguous 2-D array of ``shape``; the view of the last shape asked
    for is kept, so a loop over one shape builds no new array objects and, after its first call,
    costs one dictionary lookup and a shape comparison (this runs before every small kernel, where
    the general path's ~1 us was as long as the kernel itself)."""
    try:
        last = _local.last[name, dtype]
        if last.shape == shape:
            return last
    except (AttributeError, KeyError):
        pass
    return _shaped(name, dtype, shape)


def _shaped(name: str, dtype, shape: tuple[int, int]) -> np.ndarray:
    """`shaped` when the last view of ``name`` has another shape (or there is none yet)."""
    asked = dtype
    dtype = np.dtype(dtype)
    views = getattr(_local, "last", None)
    if views is None:
        views = _local.last = {}
    last = views.get((name, dtype))
    flat = buffer(name, dtype, shape[0] * shape[1])
    if _local.pool.get((name, dtype)) is not flat:  # too large to keep: a view for this call only
        return flat[: shape[0] * shape[1]].reshape(shape)
    if last is None or last.shape != shape or last.base is not flat.base:
        last = flat[: shape[0] * shape[1]].reshape(shape)
        # forget this buffer's other remembered views (the same dtype spelt another way may
        # point at a buffer just replaced)
        for stale in [k for k in views if k[0] == name and np.dtype(k[1]) == dtype]:
            del views[stale]
    # kept under the dtype as given (np.float32 or np.dtype(...)) and as a dtype
    views[name, asked] = views[name, dtype] = last
    return last


def per_thread(dtype) -> np.ndarray:
    """(NUMBA_NUM_THREADS, `THREAD_SLOT`) scratch rows for ``dtype``, one per Numba worker, each
    64-byte aligned (the row length is a whole number of cache lines for both dtypes)."""
    return shaped("per_thread", dtype, (numba.config.NUMBA_NUM_THREADS, THREAD_SLOT))
