"""A kernel in a forked child: it works, or it raises a clear error at once; it never hangs.

GNU OpenMP (Numba's "omp" threading layer) does not survive fork(): before the guard in
``fastlinear._fork``, a parallel kernel in a forked multiprocessing worker killed the worker and
the pool waited for ever. Each case runs in a fresh Python under a timeout, so a hang fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

TIMEOUT_S = 240

SCRIPT = textwrap.dedent("""
    import multiprocessing, sys
    import numpy as np
    import fastlinear as fl
    from fastlinear._fork import ForkedThreadPoolError, _fork_unsafe_pool_started

    BIG = (64, 64, 64)     # 2**18 multiply-adds: a parallel kernel
    SMALL = (2, 3, 4)      # a serial kernel

    def run(shape):
        n, k, m = shape
        rng = np.random.default_rng(n)
        x, w = rng.standard_normal((n, k)), rng.standard_normal((m, k))
        y = fl.linear(x, w, backend="loops")
        return float(np.abs(y - x @ w.T).max())

    def in_child(shape):
        try:
            return ("ok", run(shape))
        except ForkedThreadPoolError as exc:
            return ("refused", str(exc))

    mode = sys.argv[1]
    if mode == "started":
        run(BIG)                # the parent's pool starts
    guarded = _fork_unsafe_pool_started()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        big = pool.map(in_child, [BIG, BIG])
        small = pool.map(in_child, [SMALL])
    print("GUARDED", guarded)
    print("BIG", big)
    print("SMALL", small)
""")


def _run(mode: str, **env):
    full_env = dict(os.environ, FASTLINEAR_COMPILE_NOTICE="0", **env)
    try:
        result = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=full_env,
                                capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"a forked worker hung ({TIMEOUT_S} s): {exc.stderr}")
    assert result.returncode == 0, result.stderr
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    return eval(out["GUARDED"]), eval(out["BIG"]), eval(out["SMALL"])  # noqa: S307 (our output)


@pytest.mark.slow
def test_parallel_kernel_in_a_child_forked_after_the_pool_started_fails_fast_or_works():
    guarded, big, small = _run("started")
    for status, detail in big:
        if guarded:
            assert status == "refused"
            assert "fork" in detail and "spawn" in detail and "NUMBA_THREADING_LAYER" in detail
        else:  # a fork-safe threading layer: the kernel simply runs
            assert status == "ok" and detail < 1e-10
    # serial kernels (small problems) work in the child either way
    assert small[0][0] == "ok" and small[0][1] < 1e-12


@pytest.mark.slow
def test_parallel_kernel_in_a_child_forked_before_the_pool_started_works():
    guarded, big, small = _run("not-started")
    assert not guarded
    assert all(status == "ok" and err < 1e-10 for status, err in big)
    assert small[0][0] == "ok"


@pytest.mark.slow
def test_fork_safe_workqueue_layer_is_not_guarded():
    guarded, big, _ = _run("started", NUMBA_THREADING_LAYER="workqueue")
    assert not guarded
    assert all(status == "ok" and err < 1e-10 for status, err in big)
