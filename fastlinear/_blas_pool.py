"""Run OpenBLAS's parallel work on Numba's thread pool, so that the process has one pool of
threads for the loop kernels and for numpy's matrix products.

Why: OpenBLAS (numpy's BLAS) keeps its own worker threads, and after each call they spin for
2^28 CPU cycles (about 0.1 s) before they sleep; Numba's GNU OpenMP workers spin after each
parallel region too. When the two alternate, each library's workers take the cores the other
needs: on a 2-core machine a 32x128x128 loops forward right after a numpy matmul took 250-425x
as long as alone, and a 1024x1024x1024 matmul right after a loops kernel 1.7x
(``asv_benchmarks/scripts/mixed_pools.py``; README, "Threads").

How: OpenBLAS 0.3.27 and later let a program supply the threads for its parallel work
(``openblas_set_threads_callback_function``; the callback receives ``numjobs`` jobs and a function
that runs one of them). `install` hands every OpenBLAS that threadpoolctl finds in the process a
callback compiled with Numba, which runs the jobs in a ``prange`` on Numba's pool. OpenBLAS's
own workers then fall asleep after their timeout and are never woken; OpenBLAS still decides how
many jobs a call has (its thread count, which `fastlinear.set_num_threads` keeps equal to
Numba's). It makes no difference whether numpy was imported before or after fastlinear: the
callback can be set at any time.

Three rules keep the callback correct:

- OpenBLAS's level-3 jobs wait for each other (each packs a panel the others read), so all jobs of
  a call must run at the same time. The callback asks Numba for exactly ``numjobs`` threads; if
  Numba's pool is smaller than that (a BLAS thread count raised above it by hand), the jobs run on
  threads created for the call instead.
- OpenBLAS gives the callback job numbers 0..numjobs-1, and each job number selects a per-thread
  work buffer inside OpenBLAS, so two calls must not run at once: a lock in the callback
  serialises BLAS calls made from several Python threads (OpenBLAS's own pool would hand them
  different workers).
- A process forked from this one cannot use the parent's GNU OpenMP pool (see `fastlinear._fork`),
  so a forked child goes back to OpenBLAS's own threads.

``FASTLINEAR_BLAS_POOL=0`` in the environment before ``import fastlinear`` leaves OpenBLAS alone.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numba
import numpy as np
import threadpoolctl
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
# loaded from the cache.
from numba.np.ufunc import parallel as _parallel  # noqa: E402

_parallel._launch_threads()


@njit(parallel=True, **_config.BLAS_POOL)
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


# --- installing the callback ------------------------------------------------------------------

_SETTER = "openblas_set_threads_callback_function"
_installed: list[tuple[str, ctypes._CFuncPtr]] = []  # (library path, its setter)
_examined: set[str] = set()
_install_lock = threading.Lock()
_fork_hook = False


def enabled() -> bool:
    """Whether ``FASTLINEAR_BLAS_POOL`` allows the callback (anything but 0/false/no/off)."""
    return os.environ.get("FASTLINEAR_BLAS_POOL", "1").strip().lower() not in {
        "0", "false", "no", "off"}


def _setter(dynlib: ctypes.CDLL) -> ctypes._CFuncPtr | None:
    # scipy-openblas (numpy's and scipy's wheels) prefixes its symbols with scipy_ and suffixes
    # the 64-bit-integer build's with 64_; a system OpenBLAS uses the plain name.
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            fn = getattr(dynlib, f"{prefix}{_SETTER}{suffix}", None)
            if fn is not None:
                fn.argtypes = [ctypes.c_void_p]
                fn.restype = None
                return fn
    return None


def _pool_is_safe() -> bool:
    """Whether Numba's pool can run every job of a BLAS call at the same time, from any thread.

    Only the 'omp' layer promises that: ``#pragma omp parallel num_threads(n)`` gives a team of n
    threads, and Numba turns nested regions on, so a BLAS call from inside a parallel region gets a
    team of its own. 'tbb' may run two jobs one after the other on one thread (OpenBLAS's level-3
    jobs wait for each other: a hang), 'workqueue' aborts on concurrent use, and OMP_DYNAMIC or
    OMP_THREAD_LIMIT would let GNU OpenMP hand out fewer threads than asked for."""
    if numba.threading_layer() != "omp":
        return False
    if os.environ.get("OMP_DYNAMIC", "").strip().lower() in {"true", "1", "yes", "on"}:
        return False
    limit = os.environ.get("OMP_THREAD_LIMIT", "").strip()
    return not (limit.isdigit() and int(limit) < numba.config.NUMBA_NUM_THREADS)


def install() -> list[str]:
    """Give every OpenBLAS loaded in the process (that has not been examined yet) the callback
    that runs its parallel jobs on Numba's pool; return the paths of the libraries that run on it.

    Does nothing when ``FASTLINEAR_BLAS_POOL=0``, with a Numba threading layer other than 'omp'
    (see `_pool_is_safe`), in a process forked from one whose pool had started, or for an OpenBLAS
    older than 0.3.27 (no callback API).
    OpenBLAS's thread count is lowered to the size of Numba's pool where it is larger, since every
    job of a call needs a thread of its own. Safe to call again: libraries loaded later (scipy's
    OpenBLAS, say) are picked up then.
    """
    global _fork_hook
    if not enabled():
        return []
    from . import _fork

    with _install_lock:
        if _fork.forked_from_started_pool:
            return []
        libraries = [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers
                     if lib.internal_api == "openblas" and lib.filepath not in _examined]
        if libraries and _pool_is_safe():
            pool = numba.config.NUMBA_NUM_THREADS
            for lib in libraries:
                _examined.add(lib.filepath)
                setter = _setter(lib.dynlib)
                if setter is None or lib.threading_layer != "pthreads":
                    continue  # too old for the callback, or built on OpenMP (no spinning pool)
                if lib.get_num_threads() > pool:
                    lib.set_num_threads(pool)
                setter(_callback.address)
                _installed.append((lib.filepath, setter))
        if _installed and not _fork_hook and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_after_fork)
            _fork_hook = True
        return [path for path, _ in _installed]


def uninstall() -> None:
    """Give every OpenBLAS its own threads back."""
    with _install_lock:
        for _, setter in _installed:
            setter(None)
        _installed.clear()
        _examined.clear()


def _reset_after_fork() -> None:
    # The child's copy of Numba's GNU OpenMP pool is unusable; OpenBLAS re-creates its own
    # threads in a forked child, so hand the work back to them. (The lock is not taken: the child
    # has a single thread.)
    for _, setter in _installed:
        setter(None)
    _installed.clear()
    _examined.clear()


def calls() -> int:
    """How many parallel OpenBLAS calls the callback has run in this process (modulo 2^31)."""
    return _state[2]


def installed() -> list[str]:
    """Paths of the OpenBLAS libraries whose parallel work runs on Numba's pool now."""
    return [path for path, _ in _installed]
