"""Scratch buffers for the kernels: allocated outside every parallel region, 64-byte aligned, reused.

No kernel allocates inside a parallel task: a heap allocation there takes the allocator's lock on
every task and places each buffer at an address that differs from call to call and from process to
process (and with it the cache-set and 64-byte-line alignment of the data a task works on). Scratch
space comes instead from the Python wrapper or from the stack, through one of these:

* `buffer(name, dtype, size)`: a 1-D buffer of at least ``size`` elements for one use (``name``)
  in this Python thread. It grows to the next power of two when a call needs more and is then kept,
  so a training loop over fixed shapes allocates nothing after its first step; a buffer larger than
  `KEEP_BYTES` is made for the call alone and freed when the call drops it, so one huge call does not
  pin its scratch memory for the rest of the process.
* `fastlinear._memory.empty_aligned`: a new array starting on a 64-byte boundary, for buffers a
  caller keeps itself (the packed GEMM's workspace, `packed._workspace`, makes its buffers with it).
* `stack_row(like, count)`, inside a kernel: room for ``count`` elements of ``like``'s dtype on
  the stack of the calling function (``numba.carray(stack_row(x, 32), 32)`` makes it an array),
  64-byte aligned, for small per-call rows such as an edge block's sums. No heap, no reference
  count, nothing for the caller to pass.

Buffers belong to the Python thread that asked for them (`threading.local`), so two Python threads
running kernels at the same time never share one. How much of a buffer a task uses depends only on
the problem's shape, never on the number of threads (except where a thread's own part of a buffer
is indexed by its thread id, as the packed GEMM's B blocks packed in the tiles), and a task always
writes its part of a buffer before reading it: results do not depend on what a buffer held before.

Beside `stack_row`, the register blocks take one more intrinsic from here, `nonnegative(i)`: no
scratch space, a promise to LLVM that an offset is not negative, so that Numba's checks for
negative indices leave their reduction loops.
"""

from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .._memory import ALIGN, empty_aligned  # ALIGN: every buffer's and stack row's alignment

#: An empty 1-D array per dtype, never written: what the kernels take for "no bias" or "no bias
#: gradient" where None would compile them a second time (one Numba type either way).
EMPTY = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}
#: Largest buffer kept between calls (the same cap as the packed workspace's): the shared packed B
#: (4 KiB per output column) and the db partial sums (one row per 32 batch rows) exceed it only for
#: very large layers or batches, where one allocation per call is cheap beside the work.
KEEP_BYTES = 8 << 20

_local = threading.local()


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
            return empty_aligned(size, dtype)  # for this call only
        buf = pool[key] = empty_aligned(1 << max(size - 1, 0).bit_length(), dtype)
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


@intrinsic
def stack_row(typingctx, like, count):
    """A pointer to ``count`` (a constant) uninitialised elements of ``like``'s dtype on the stack
    of the jitted function that calls it, `ALIGN`-byte aligned; valid until that function returns.
    The space is reserved once, at the function's entry, however often the call runs (an LLVM
    ``alloca`` in the entry block). ``numba.carray(ptr, count)`` views it as an array."""
    if not isinstance(like, types.Array) or not isinstance(count, types.IntegerLiteral):
        return None  # Numba then reports that no signature matches
    dtype = like.dtype
    size = count.literal_value

    def codegen(context, builder, signature, args):
        with builder.goto_entry_block():
            row = builder.alloca(context.get_value_type(dtype), size=ir.Constant(ir.IntType(64), size))
            row.align = ALIGN
        return row

    return types.CPointer(dtype)(like, count), codegen


@intrinsic
def nonnegative(typingctx, value):
    """``value`` (a signed integer), with a promise to LLVM that it is >= 0 (``llvm.assume``).

    Numba wraps a negative index around (``a[-1]`` is the last element), so a loop that indexes
    or slices with a start it cannot prove non-negative re-checks the sign on every pass. A
    register block's row and column offsets come from its caller and are never negative; with
    this promise LLVM drops those checks from the reduction loop (float32 32x128x128 weight
    gradient, one thread: see ``_generate``). A negative value breaks the promise and gives
    undefined behaviour, so it is only for offsets computed from loop counters and shapes."""
    if not isinstance(value, types.Integer) or not value.signed:
        return None

    def codegen(context, builder, signature, args):
        (v,) = args
        assume = builder.module.declare_intrinsic(
            "llvm.assume", fnty=ir.FunctionType(ir.VoidType(), [ir.IntType(1)]))
        builder.call(assume, [builder.icmp_signed(">=", v, ir.Constant(v.type, 0))])
        return v

    return value(value), codegen
