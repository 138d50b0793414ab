"""The compiled half of `fastlinear._blas_pool`: the callback OpenBLAS calls with its parallel
jobs, which runs them on Numba's thread pool, and the per-process state it uses.

Importing this module starts Numba's threading layer (the cached code calls the layer's functions
by name, and Numba registers those names when the layer starts), so `fastlinear._blas_pool`
imports it only when Numba's pool is needed anyway: at the first parallel kernel of fastlinear or
at ``fastlinear.set_num_threads``. Starting the layer is what stops a process forked later from
running Numba's parallel regions (Numba's GNU OpenMP layer terminates such a child; see
`fastlinear._fork`), so ``import fastlinear`` alone must not do it.
"""

from __future__ import annotations

import ctypes

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import cfunc, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _config

_I8P = ir.IntType(8).as_pointer()
# void dojob(int thread_num, void *job, int dojob_data)
_DOJOB = ir.FunctionType(ir.VoidType(), [ir.IntType(32), _I8P, ir.IntType(32)])
# The name of the start routine of fallback threads (`_job_thread_routine`).
_JOB_THREAD_SYMBOL = "fastlinear_blas_job_thread"


@intrinsic
def _run_job(typingctx, dojob, thread_num, job, dojob_data):
    """Call OpenBLAS's ``dojob(thread_num, job, dojob_data)`` through its address."""
    sig = types.void(types.uintp, types.int32, types.uintp, types.int32)

    def codegen(context, builder, signature, args):
        fn = builder.inttoptr(args[0], _DOJOB.as_pointer())
        builder.call(fn, [args[1], builder.inttoptr(args[2], _I8P), args[3]])
        return context.get_dummy_value()

    return sig, codegen


# Per-process state of the callback, linked into the compiled code by name (so that code loaded
# from Numba's cache uses this process's copy): [0] the spin lock, [1] the size of Numba's pool,
# [2] the number of calls the callback has served (wrapping at 2^31; read by `calls`).
_STATE_SYMBOL = "fastlinear_blas_pool_state"
_STATE_WORDS = 3
_state = (ctypes.c_int32 * _STATE_WORDS)(0, numba.config.NUMBA_NUM_THREADS, 0)
llvm.add_symbol(_STATE_SYMBOL, ctypes.addressof(_state))


def _state_word(builder, index):
    i32 = ir.IntType(32)
    module = builder.module
    state = module.globals.get(_STATE_SYMBOL)
    if state is None:
        state = ir.GlobalVariable(module, ir.ArrayType(i32, _STATE_WORDS), _STATE_SYMBOL)
        state.linkage = "external"
    return builder.gep(state, [i32(0), i32(index)])


@intrinsic
def _lock(typingctx, acquire):
    """Take (``acquire`` true) or release the callback's process-wide spin lock."""
    sig = types.void(types.boolean)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        flag = _state_word(builder, 0)
        with builder.if_else(args[0]) as (take, give):
            with take:
                yield_fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(i32, []), "sched_yield")
                loop = builder.append_basic_block("lock.retry")
                done = builder.append_basic_block("lock.done")
                builder.branch(loop)
                builder.position_at_end(loop)
                pair = builder.cmpxchg(flag, i32(0), i32(1), "acquire", "monotonic")
                got = builder.extract_value(pair, 1)
                with builder.if_then(builder.not_(got)):
                    builder.call(yield_fn, [])
                builder.cbranch(got, done, loop)
                builder.position_at_end(done)
            with give:
                builder.store_atomic(i32(0), flag, "release", 4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _count_call(typingctx):
    """Add one to the callback's call counter (under the lock)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        word = _state_word(builder, 2)
        builder.store(builder.add(builder.load(word), ir.IntType(32)(1)), word)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _pool_size(typingctx):
    """The number of threads in Numba's pool in this process."""
    sig = types.int32()

    def codegen(context, builder, signature, args):
        return builder.load(_state_word(builder, 1))

    return sig, codegen


def _job_thread_routine(module: ir.Module) -> ir.Function:
    """The start routine of a fallback thread, ``void *routine(void *arg)``, where ``arg`` points
    to four 64-bit words: dojob, the job number, the job's address and dojob_data. Written in LLVM
    IR (internal to the module) so that pthread_create can take its address."""
    fn = module.globals.get(_JOB_THREAD_SYMBOL)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(_I8P, [_I8P]), _JOB_THREAD_SYMBOL)
    fn.linkage = "internal"
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    i32, i64 = ir.IntType(32), ir.IntType(64)
    words = builder.bitcast(fn.args[0], i64.as_pointer())
    word = [builder.load(builder.gep(words, [i32(k)])) for k in range(4)]
    builder.call(builder.inttoptr(word[0], _DOJOB.as_pointer()),
                 [builder.trunc(word[1], i32), builder.inttoptr(word[2], _I8P),
                  builder.trunc(word[3], i32)])
    builder.ret(fn.args[0])
    return fn


@intrinsic
def _start_thread(typingctx, tid_address, arg_address):
    """``pthread_create`` a thread that runs job ``arg_address`` points to (see
    `_job_thread_routine`); returns pthread_create's status (0 on success)."""
    sig = types.intc(types.uintp, types.uintp)

    def codegen(context, builder, signature, args):
        start = _job_thread_routine(builder.module)
        create = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.IntType(32), [_I8P, _I8P, start.type, _I8P]),
            "pthread_create")
        return builder.call(create, [builder.inttoptr(args[0], _I8P), _I8P(None), start,
                                     builder.inttoptr(args[1], _I8P)])

    return sig, codegen


@intrinsic
def _join_thread(typingctx, tid):
    """``pthread_join`` the thread ``tid``."""
    sig = types.intc(types.uint64)

    def codegen(context, builder, signature, args):
        join = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), [ir.IntType(64), _I8P.as_pointer()]),
            "pthread_join")
        return builder.call(join, [args[0], _I8P.as_pointer()(None)])

    return sig, codegen


@intrinsic
def _numba_threads(typingctx, n):
    """Set the calling thread's Numba thread count to ``n`` (if ``n`` > 0); return the count it
    had. Calls the threading layer's functions by the names Numba links them under, so that this
    code can be cached (``numba.set_num_threads`` goes through a ctypes pointer, which cannot)."""
    sig = types.int32(types.int32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        # Declared as Numba's parfor lowering declares it (returning intp), since both
        # declarations may meet in one module.
        get = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(types.intp.bitwidth), []),
            "get_num_threads")
        put = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i32]),
                                             "set_num_threads")
        before = builder.trunc(builder.call(get, []), i32)
        with builder.if_then(builder.icmp_signed(">", args[0], i32(0))):
            builder.call(put, [args[0]])
        return before

    return sig, codegen


# The compiled code below calls the threading layer's functions by name; Numba registers those
# names when it starts its threading layer, which must therefore happen before that code is
# loaded from the cache (see the module docstring).
from numba.np.ufunc import parallel as _parallel  # noqa: E402

_parallel._launch_threads()


@njit(**_config.BLAS_POOL_PARALLEL)
def _run_on_pool(dojob, numjobs, elsize, jobdata, dojob_data):
    """All jobs at once, one per thread of Numba's pool (numjobs <= the pool's size)."""
    before = _numba_threads(numjobs)
    for i in prange(numjobs):
        _run_job(dojob, np.int32(i), jobdata + np.uintp(i) * elsize, dojob_data)
    _numba_threads(before)


@njit(**_config.BLAS_POOL)
def _run_on_new_threads(dojob, numjobs, elsize, jobdata, dojob_data):
    """All jobs at once: job 0 on the calling thread, the others on threads created for them."""
    words = np.zeros((numjobs, 4), np.int64)
    tids = np.zeros(numjobs, np.uint64)
    started = np.zeros(numjobs, np.bool_)
    for i in range(1, numjobs):
        words[i, 0] = np.int64(dojob)
        words[i, 1] = i
        words[i, 2] = np.int64(jobdata + np.uintp(i) * elsize)
        words[i, 3] = dojob_data
        started[i] = _start_thread(tids.ctypes.data + np.uintp(8 * i),
                                   words.ctypes.data + np.uintp(32 * i)) == 0
    # A thread that could not be created (the process is out of threads or memory): its job runs
    # here, which finishes only for routines whose jobs do not wait for each other.
    for i in range(1, numjobs):
        if not started[i]:
            _run_job(dojob, np.int32(i), jobdata + np.uintp(i) * elsize, dojob_data)
    _run_job(dojob, np.int32(0), jobdata, dojob_data)
    for i in range(1, numjobs):
        if started[i]:
            _join_thread(tids[i])


# void callback(int sync, dojob, int numjobs, size_t jobdata_elsize, void *jobdata, int dojob_data)
_CALLBACK_SIG = types.void(types.int32, types.uintp, types.int32, types.uintp, types.uintp,
                           types.int32)


@cfunc(_CALLBACK_SIG, cache=_config.BLAS_POOL["cache"])
def _callback(sync, dojob, numjobs, elsize, jobdata, dojob_data):
    if numjobs <= 0:
        return
    _lock(True)
    _count_call()
    if numjobs == 1:
        _run_job(dojob, np.int32(0), jobdata, dojob_data)
    elif numjobs <= _pool_size():
        _run_on_pool(dojob, numjobs, elsize, jobdata, dojob_data)
    else:
        _run_on_new_threads(dojob, numjobs, elsize, jobdata, dojob_data)
    _lock(False)
