"""The adaptive default thread count (`fastlinear._threads.adapt`): other processes' load is
measured from /proc/stat, a busy core takes one thread away, and an explicit count (set_num_threads,
a `threads` block, a direct numba.set_num_threads) is never overridden."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numba
import numpy as np
import pytest
import threadpoolctl

import fastlinear as fl
from fastlinear import _threads

POOL = numba.config.NUMBA_NUM_THREADS
needs_two = pytest.mark.skipif(min(POOL, _threads.available_cores()) < 2,
                               reason="needs a pool of at least 2 threads")


@pytest.fixture
def adaptive(monkeypatch):
    """Adaptive mode from a clean start, with the load reading replaced by ``load[0]``."""
    load = [0.0]
    before = fl.get_num_threads()
    monkeypatch.setattr(_threads, "other_processes_cores", lambda: load[0])
    fl.set_num_threads(None)
    try:
        yield load
    finally:
        fl.set_num_threads(before)  # the test run's fixed count (tests/conftest.py)


def _look():
    _threads._next_look = 0.0
    _threads.adapt()


def _blas_threads():
    return max(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")


@needs_two
def test_a_busy_core_takes_a_thread_away_and_gives_it_back(adaptive):
    full = min(POOL, _threads.available_cores())
    _look()
    assert fl.get_num_threads() == full and _threads.adapting()
    adaptive[0] = 1.0  # another process keeps one core busy
    _look()
    assert fl.get_num_threads() == full - 1
    assert _blas_threads() == full - 1
    adaptive[0] = 0.1  # a little background noise does not count
    _look()
    assert fl.get_num_threads() == full
    adaptive[0] = 50.0  # every core busy: still one thread
    _look()
    assert fl.get_num_threads() == 1


@needs_two
def test_kernels_adapt_on_their_own_and_results_do_not_change(adaptive):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((256, 300)), rng.standard_normal((200, 300))
    before = fl.linear(x, w, backend="loops")
    adaptive[0] = 1.0
    _threads._next_look = 0.0
    after = fl.linear(x, w, backend="loops")  # a parallel kernel: looks at the load first
    assert fl.get_num_threads() == min(POOL, _threads.available_cores()) - 1
    assert np.array_equal(before, after)


@needs_two
def test_an_explicit_count_is_never_overridden(adaptive):
    adaptive[0] = 1.0
    fl.set_num_threads(2)
    _look()
    assert fl.get_num_threads() == 2 and not _threads.adapting()
    fl.set_num_threads(None)
    with fl.threads(2):
        _look()
        assert fl.get_num_threads() == 2 and not _threads.adapting()
    assert _threads.adapting()


@needs_two
def test_a_thread_that_set_numba_itself_is_left_alone(adaptive):
    seen = []

    def worker():
        _look()  # adapt sets this thread's count once (all cores) ...
        numba.set_num_threads(1)  # ... then the thread chooses its own
        _look()
        adaptive[0] = 1.0
        _look()
        seen.append(numba.get_num_threads())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1]


@needs_two
def test_a_count_set_with_numba_before_adapt_first_looks_is_left_alone(adaptive):
    seen = []

    def worker():  # a fresh thread: adapt has never set its count
        numba.set_num_threads(1)  # the program pins it before its first kernel ...
        _threads._apply_here(2)  # ... and adapt's first look would choose 2
        seen.append(numba.get_num_threads())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1]


def test_other_processes_cores_sees_a_busy_process():
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not os.path.exists("/proc/stat") or not cpus:
        pytest.skip("needs Linux's /proc/stat and CPU affinity")
    before = fl.get_num_threads()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {cpus[-1]})
        time.sleep(0.3)  # let it start
        fl.set_num_threads(None)
        _threads.other_processes_cores()
        time.sleep(1.0)
        other = _threads.other_processes_cores()
    finally:
        busy.kill()
        busy.wait()
        fl.set_num_threads(before)
    # One core fully busy reads as about 1.0 (plus whatever else runs on this machine).
    assert other is not None and other >= 0.6, other


def test_set_num_threads_none_is_the_only_non_integer_accepted():
    with pytest.raises(TypeError):
        fl.set_num_threads(1.5)
    with pytest.raises(TypeError):
        fl.set_num_threads("auto")


@needs_two
def test_blas_backend_adapts_too(adaptive):
    # OpenBLAS's level-3 jobs wait for each other: with a thread on a busy core a blas call
    # stalls much longer than a loops one, so blas must follow the load as well.
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((64, 256)), rng.standard_normal((256, 256))
    adaptive[0] = 1.0
    _threads._next_look = 0.0
    fl.linear(x, w, backend="blas")
    full = min(POOL, _threads.available_cores())
    assert fl.get_num_threads() == full - 1
    assert _blas_threads() == full - 1
