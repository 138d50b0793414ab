"""Threads: the stateless API is safe to call from a thread pool (same results as serial calls),
and set_num_threads changes the thread count without changing correctness."""

from __future__ import annotations

import concurrent.futures as cf

import numba
import numpy as np
import pytest

import fastlinear as fl
import reference as ref
from helpers import BACKENDS, DTYPE_IDS, DTYPES, assert_close, randn

DETERMINISTIC = ("loops", "naive", "auto")  # documented: results do not depend on the thread count


def _job(backend, dtype, seed):
    """One forward + backward on data made from ``seed``; returns the inputs and all outputs."""
    rng = np.random.default_rng(seed)
    n, k, m = 5 + seed % 70, 1 + seed % 37, 1 + seed % 29
    x, w, b, dy = randn(rng, (n, k), dtype), randn(rng, (m, k), dtype), randn(rng, m, dtype), randn(rng, (n, m), dtype)
    y = fl.linear(x, w, b, backend=backend)
    dx, dw, db = fl.linear_backward(dy, x, w, reduction="mean" if seed % 2 else "sum", backend=backend)
    return (x, w, b, dy), (y, dx, dw, db)


JOBS = [(backend, dtype, seed) for seed in range(24) for backend in BACKENDS for dtype in DTYPES]


def _check_against_reference(job, inputs, outputs):
    backend, dtype, seed = job
    x, w, b, dy = inputs
    y, dx, dw, db = outputs
    reduction = "mean" if seed % 2 else "sum"
    n = x.shape[0]
    assert_close(y, ref.forward(x, w, b), ref.magnitude_forward(x, w, b), x.shape[1], dtype, f"{job} y")
    assert_close(dx, ref.grad_input(dy, w), ref.magnitude_grad_input(dy, w), w.shape[0], dtype, f"{job} dx")
    assert_close(dw, ref.grad_weight(dy, x, reduction), ref.magnitude_grad_weight(dy, x, reduction), n, dtype,
                 f"{job} dw")
    assert_close(db, ref.grad_bias(dy, reduction), ref.magnitude_grad_bias(dy, reduction), n, dtype, f"{job} db")


def test_thread_pool_matches_serial():
    serial = [_job(*job) for job in JOBS]
    for job, (inputs, outputs) in zip(JOBS, serial):
        _check_against_reference(job, inputs, outputs)
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):  # several rounds: 3 x 192 concurrent calls of each kernel
            futures = [pool.submit(_job, *job) for job in JOBS]
            for job, fut, (_, expected) in zip(JOBS, futures, serial):
                _, got = fut.result(timeout=120)
                for name, g, e in zip(("y", "dx", "dw", "db"), got, expected):
                    assert np.array_equal(g, e), f"{job} {name} differs from the serial call"


def test_thread_pool_layers():
    """Independent layers trained from separate threads end up with the serial weights."""
    def train(backend, seed):
        rng = np.random.default_rng(seed)
        layer = fl.Linear(17, 5, dtype=np.float64, backend=backend, seed=seed)
        for _ in range(5):
            layer.zero_grad()
            x = rng.standard_normal((8, 17))
            layer(x)
            layer.backward(rng.standard_normal((8, 5)))
            layer.step(0.01)
        return layer.weight.copy(), layer.bias.copy()

    jobs = [(backend, seed) for backend in BACKENDS for seed in range(6)]
    serial = [train(*j) for j in jobs]
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda j: train(*j), jobs))
    for j, (w, b), (we, be) in zip(jobs, results, serial):
        assert np.array_equal(w, we) and np.array_equal(b, be), j
    # and training moved the weights (so equal results are not just equal initial weights)
    assert not np.array_equal(serial[0][0], fl.Linear(17, 5, dtype=np.float64, seed=0).weight)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_set_num_threads(backend, dtype, restore_threads):
    rng = np.random.default_rng(7)
    x, w, b, dy = (randn(rng, (131, 70), dtype), randn(rng, (83, 70), dtype), randn(rng, 83, dtype),
                   randn(rng, (131, 83), dtype))
    results = {}
    for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        fl.set_num_threads(n)
        assert fl.get_num_threads() == n
        y = fl.linear(x, w, b, backend=backend)
        dx, dw, db = fl.linear_backward(dy, x, w, backend=backend)
        _check_against_reference((backend, dtype, 0), (x, w, b, dy), (y, dx, dw, db))
        results[n] = (y, dx, dw, db)
    if backend in DETERMINISTIC and len(results) == 2:
        for a, b_ in zip(results[1], results[2]):
            assert np.array_equal(a, b_), "result depends on the thread count"


def test_set_num_threads_also_limits_blas(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    if not blas_threads():
        pytest.skip("numpy links no BLAS that threadpoolctl can see")
    fl.set_num_threads(1)
    assert blas_threads() == {1}
    if numba.config.NUMBA_NUM_THREADS >= 2:
        fl.set_num_threads(2)
        assert blas_threads() == {2} and fl.get_num_threads() == 2


def _blas_threads() -> set:
    import threadpoolctl

    return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


def test_set_num_threads_also_sets_torch_when_imported(restore_threads):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            fl.set_num_threads(n)
            assert torch.get_num_threads() == n and fl.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def test_threads_block_sets_every_pool_and_restores_them_after_an_error(restore_threads):
    torch = pytest.importorskip("torch")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs a Numba pool of at least 2 threads")
    fl.set_num_threads(2)
    torch_before = torch.get_num_threads()
    blas_before = _blas_threads()
    with pytest.raises(KeyError):
        with fl.threads(1) as n:
            assert n == 1
            assert fl.get_num_threads() == 1 and torch.get_num_threads() == 1
            assert _blas_threads() in (set(), {1})
            raise KeyError("inside the block")
    assert fl.get_num_threads() == 2
    assert torch.get_num_threads() == torch_before
    assert _blas_threads() == blas_before


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (1.5, TypeError), (True, TypeError)])
def test_threads_block_refuses_bad_counts_before_changing_anything(bad, exc, restore_threads):
    before = fl.get_num_threads()
    with pytest.raises(exc):
        with fl.threads(bad):
            pass
    assert fl.get_num_threads() == before


def test_default_thread_count_is_the_cores_the_process_may_use():
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs taskset and sched_getaffinity")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    code = ("import fastlinear as fl, numba; "
            "print(numba.config.NUMBA_NUM_THREADS, fl.get_num_threads(), fl._threads.pools()['cores available'])")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out == ["1", "1", "1"]


def test_the_fast_thread_count_is_numbas_in_every_thread():
    """`_threads.thread_count` (Numba's C getter, for dispatch) agrees with
    numba.get_num_threads() under set_num_threads, in a threads block and in another Python
    thread, whose count Numba keeps apart."""
    import threading

    from fastlinear import _threads

    limit = numba.config.NUMBA_NUM_THREADS
    seen = []
    for n in sorted({1, min(2, limit), limit}):
        with fl.threads(n):
            seen.append((_threads.thread_count(), numba.get_num_threads(), n))

            def other():
                numba.set_num_threads(1)
                seen.append((_threads.thread_count(), numba.get_num_threads(), 1))

            t = threading.Thread(target=other)
            t.start()
            t.join()
            seen.append((_threads.thread_count(), numba.get_num_threads(), n))
    assert all(a == b == c for a, b, c in seen), seen
    # and it is the fast path, not the public getter it falls back to
    from numba.np.ufunc import parallel

    assert _threads._thread_count is parallel._get_num_threads
