"""Start-up: kernels compile once per machine and later processes load them from Numba's disk
cache. Each test runs fresh interpreters against its own empty cache directory: a cold start
compiles (and says so in one line on stderr), a warm start compiles nothing and prints nothing,
and two processes starting together on an empty cache both succeed with the same results (numba
#4807 reports cache corruption with concurrent writers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # fresh interpreters compiling every kernel: minutes

SCRIPT = textwrap.dedent(
    """
    import hashlib, json
    import numpy as np
    import fastlinear as fl
    from fastlinear._compile import compile_count


    digest = hashlib.sha256()
    for n, k, m in [(1, 16, 16), (70, 300, 130)]:
        rng = np.random.default_rng(n)
        layer = fl.Linear(k, m, backend="loops", activation="relu", seed=0)
        x = rng.standard_normal((n, k)).astype(np.float32)
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        layer.step(0.01)
        for a in (y, dx, layer.weight, layer.bias):
            digest.update(a.tobytes())
    print(json.dumps({"compiles": compile_count(), "digest": digest.hexdigest()}))
    """
)

NOTICE = "fastlinear: compiling kernels"


def _start(cache_dir, **env) -> subprocess.Popen:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), **env)
    return subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def test_cold_then_warm_start(tmp_path):
    cold, err = _finish(_start(tmp_path))
    assert cold["compiles"] > 0
    assert err.count(NOTICE) == 1, err
    warm, err = _finish(_start(tmp_path))
    assert warm["compiles"] == 0, "a warm start recompiled"
    assert NOTICE not in err
    assert warm["digest"] == cold["digest"]


def test_two_processes_starting_together(tmp_path):
    procs = [_start(tmp_path), _start(tmp_path)]
    (a, _), (b, _) = (_finish(p) for p in procs)
    assert a["digest"] == b["digest"]
    after, _ = _finish(_start(tmp_path))
    assert after["compiles"] == 0, "the cache the two processes wrote together is not usable"
    assert after["digest"] == a["digest"]


def test_notice_can_be_silenced(tmp_path):
    result, err = _finish(_start(tmp_path, FASTLINEAR_COMPILE_NOTICE="0"))
    assert result["compiles"] > 0 and NOTICE not in err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_warmup_then_nothing_compiles(dtype):
    import numpy as np

    import fastlinear as fl
    from fastlinear._compile import compile_count

    fl.warmup(dtypes=[dtype], backends=fl.available_backends())
    before = compile_count()
    for n, k, m in fl._compile.WARMUP_SHAPES:
        layer = fl.Linear(k, m, dtype=dtype, activation="tanh", seed=0)
        x = np.ones((n, k), dtype)
        layer.backward(layer(x))
    assert compile_count() == before
    assert fl.warmup(dtypes=[dtype]) == 0


def test_warmup_rejects_bad_arguments():
    import fastlinear as fl

    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fl.warmup(dtypes=["int8"])
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        fl.warmup(backends=["fast"])
