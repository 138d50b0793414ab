"""numpy's OpenBLAS on Numba's pool (`fastlinear._blas_pool`): every parallel BLAS call goes
through fastlinear's callback once Numba's pool is needed (a parallel kernel, set_num_threads),
never at import alone; it gives the same bits as on OpenBLAS's own threads, survives more BLAS
threads than Numba has, calls from several threads at once, and fork; FASTLINEAR_BLAS_POOL=0
leaves OpenBLAS alone."""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import threadpoolctl

import fastlinear as fl
from fastlinear import _blas_pool

pytestmark = pytest.mark.skipif(not _blas_pool.installed(),
                                reason="no OpenBLAS with the threads callback in this process")

# (rows, inner, columns): level-3 GEMM that OpenBLAS splits over threads (its jobs wait for each
# other), a matrix-vector product (level 2), and an odd size that crosses OpenBLAS's blocks.
SHAPES = [(256, 512, 512), (1024, 300, 1), (517, 1031, 263), (32, 128, 128)]


def _products(dtype):
    rng = np.random.default_rng(3)
    out = []
    for n, k, m in SHAPES:
        a = rng.standard_normal((n, k)).astype(dtype)
        b = rng.standard_normal((m, k)).astype(dtype)
        out.append((a, b))
    return out


def _run(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_same_bits_as_openblas_own_threads_and_the_callback_runs(dtype):
    pairs = _products(dtype)
    with fl.threads(2):
        before = _blas_pool.calls()
        on_pool = [a @ b.T for a, b in pairs]
        assert _blas_pool.calls() > before, "no BLAS call went through the callback"
        _blas_pool.uninstall()
        try:
            own = [a @ b.T for a, b in pairs]
        finally:
            _blas_pool.install()
    assert _blas_pool.installed()
    for (a, b), p, o in zip(pairs, on_pool, own):
        assert np.array_equal(p, o), a.shape
        ref = a.astype(np.float64) @ b.T.astype(np.float64)
        assert np.allclose(p, ref, rtol=1e-4 if dtype == np.float32 else 1e-12,
                           atol=1e-3 if dtype == np.float32 else 1e-10)


def test_numba_thread_count_is_restored_after_a_blas_call():
    with fl.threads(1):
        pass
    numba.set_num_threads(1)
    try:
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            a = np.ones((300, 300))
            a @ a
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_concurrent_blas_calls_from_python_threads_are_correct():
    pairs = _products(np.float64)
    expected = [a @ b.T for a, b in pairs]

    def work(i):
        a, b = pairs[i % len(pairs)]
        return i % len(pairs), a @ b.T

    with cf.ThreadPoolExecutor(4) as pool:
        for i, got in pool.map(work, range(48)):
            assert np.array_equal(got, expected[i])


def test_more_blas_threads_than_numba_has_runs_on_extra_threads():
    # Numba's pool of 2, BLAS asked for 5: each of the 5 jobs of a GEMM needs a thread at the
    # same time (they wait for each other), so the callback starts threads for the extra jobs.
    out = _run("""
        import numpy as np, threadpoolctl, fastlinear
        from fastlinear import _blas_pool
        fastlinear.set_num_threads(2)
        assert _blas_pool.installed()
        rng = np.random.default_rng(0)
        a = rng.standard_normal((700, 900)); b = rng.standard_normal((900, 800))
        ref = a @ b
        with threadpoolctl.threadpool_limits(5, user_api="blas"):
            before = _blas_pool.calls()
            got = a @ b
            assert _blas_pool.calls() > before
        assert np.allclose(got, ref, rtol=1e-12, atol=1e-9)
        print("ok")
    """, env={"NUMBA_NUM_THREADS": "2"}, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_blas_thread_count_above_the_pool_is_lowered_at_install():
    out = _run("""
        import threadpoolctl, fastlinear
        fastlinear.set_num_threads(1)
        info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]
        print(max(i["num_threads"] for i in info))
    """, env={"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize("env", [{"FASTLINEAR_BLAS_POOL": "0"},
                                 {"NUMBA_THREADING_LAYER": "workqueue"},
                                 {"OMP_DYNAMIC": "true"}],
                         ids=["switched off", "workqueue layer", "OMP_DYNAMIC"])
def test_left_alone_when_switched_off_or_unsafe(env):
    # workqueue aborts on concurrent use; OMP_DYNAMIC may give fewer threads than jobs (a hang).
    out = _run("""
        import numpy as np, fastlinear
        from fastlinear import _blas_pool
        fastlinear.set_num_threads(2)
        fastlinear.linear(np.ones((256, 512)), np.ones((512, 512)), backend="loops")
        a = np.ones((400, 400)); a @ a
        print(_blas_pool.installed(), _blas_pool.calls())
    """, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] 0"


@pytest.mark.parametrize("order", ["numpy first", "fastlinear first", "torch first"])
def test_installed_whatever_was_imported_first(order):
    imports = {"numpy first": "import numpy as np; import fastlinear",
               "fastlinear first": "import fastlinear; import numpy as np",
               "torch first": "import torch; import numpy as np; import fastlinear"}[order]
    if order == "torch first":
        pytest.importorskip("torch")
    out = _run(imports + textwrap.dedent("""
        from fastlinear import _blas_pool
        import numba
        assert not _blas_pool.installed()  # not at import: only when Numba's pool is needed
        fastlinear.linear(np.ones((256, 512)), np.ones((512, 512)), backend="loops")
        installed = bool(_blas_pool.installed())
        # a fixed count of 2 or more, so that OpenBLAS splits the product (the adaptive default
        # may be 1 thread on a busy machine, and then OpenBLAS never calls the callback)
        fastlinear.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        a = np.ones((400, 400)); b = a @ a
        assert b[0, 0] == 400
        print(installed, _blas_pool.calls() > 0 or numba.config.NUMBA_NUM_THREADS < 2)
    """))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True True"


def test_import_alone_does_not_start_numbas_pool():
    # Numba's GNU OpenMP layer terminates a forked child that runs a parallel region once the
    # parent has started the layer, so `import fastlinear` must leave it unstarted.
    out = _run("""
        import numba, numpy as np, fastlinear
        a = np.ones((400, 400)); a @ a
        try:
            print(numba.threading_layer())
        except ValueError:
            print("not started")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "not started"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_goes_back_to_openblas_threads():
    out = _run("""
        import multiprocessing as mp, numpy as np, fastlinear as fl
        from fastlinear import _blas_pool
        a = np.random.default_rng(0).standard_normal((500, 500))
        ref = a @ a
        fl.linear(np.ones((64, 512)), np.ones((512, 512)), backend="loops")  # starts the pool

        def child(q):
            # allclose, not equal: OpenBLAS may round differently at another thread count, and
            # the adaptive count may have changed since `ref` (the machine may be busy)
            q.put((_blas_pool.installed(), bool(np.allclose(a @ a, ref, rtol=1e-12, atol=1e-9))))

        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        print(q.get(timeout=60))
        p.join(60)
        print(p.exitcode, bool(_blas_pool.installed()))
    """, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["([], True)", "0 True"]


def test_info_reports_the_pool():
    from fastlinear.cli.info import blas_pools

    assert any("run on Numba's pool" in line for line in blas_pools())
    assert fl._threads.pools()["blas on numba's pool"] == _blas_pool.installed()


def test_torch_keeps_its_own_openmp_runtime_when_imported_after_fastlinear():
    # Numba's layer and torch both want "libgomp.so.1"; torch on the system's copy made some of
    # its operators ~150x slower (fastlinear._openmp). After `import fastlinear`, `import torch`
    # must map torch's bundled runtime.
    torch = pytest.importorskip("torch")
    bundled = os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    if not os.path.exists(bundled):
        pytest.skip("this torch build has no bundled libgomp")
    out = _run("""
        import fastlinear as fl, numpy as np
        fl.linear(np.ones((64, 512)), np.ones((512, 512)), backend="loops")  # Numba's pool runs
        import torch
        torch.set_num_threads(2)
        torch.rand(256, 256).sqrt()
        maps = open("/proc/self/maps").read()
        print(sorted({line.split()[-1] for line in maps.splitlines() if "libgomp" in line}))
    """)
    assert out.returncode == 0, out.stderr
    mapped = eval(out.stdout.strip())
    assert os.path.realpath(bundled) in {os.path.realpath(p) for p in mapped}, mapped
