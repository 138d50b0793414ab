"""``prefetch_write(a, i)``: ask the CPU to fetch the cache line holding a[i], for writing, ahead
of its use.

Numba has no prefetch, so this emits LLVM's ``llvm.prefetch`` intrinsic directly. The packed
driver uses it on the next tile of C while the micro-kernel computes the current one. Where C does
not fit in the caches and the reduction is short (the weight gradient at 64 x 4096 x 4096: a
64 MB dw, 64 steps per tile) storing C stalled on memory: the stores alone took as long as all
the arithmetic and did not overlap with it.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _prefetch_codegen(a, rw):
    def codegen(context, builder, signature, args):
        ary = context.make_array(a)(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # rw (0 read, 1 write), locality 3 (keep in all cache levels), cache type 1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(rw), i32(3), i32(1)])
        return context.get_dummy_value()

    return codegen


def _valid(a, i) -> bool:
    return isinstance(a, types.Array) and a.ndim == 1 and isinstance(i, types.Integer)


@intrinsic
def prefetch_write(typingctx, a, i):
    """Prefetch a[i] (1-D array, integer index) into L1 with intent to write. No bounds check
    and no effect on results: a prefetch never faults, even outside the array."""
    if not _valid(a, i):
        return None
    return types.void(a, i), _prefetch_codegen(a, 1)

