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
    import numba
    import numpy as np
    import fastlinear as fl
    from fastlinear._compile import compile_count

    # One thread count in every process: left adaptive, two processes starting together see each
    # other's load and run on one thread, where some ops take their serial kernels (same bits),
    # and a later process alone would run, and compile, the parallel ones.
    fl.set_num_threads(numba.config.NUMBA_NUM_THREADS)
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

    for jobs, error in ((0, ValueError), (-2, ValueError), ("2", TypeError), (True, TypeError),
                        (2.0, TypeError)):
        with pytest.raises(error, match="jobs must be"):
            fl.warmup(jobs=jobs)
    for shape in ((3, 5), (3, 5, 7, 1), (3, 0, 7), (3, 5.5, 7), "357", 3):
        with pytest.raises(ValueError, match="shape"):
            fl.warmup(shapes=[shape])

    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fl.warmup(dtypes=["int8"])
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        fl.warmup(backends=["fast"])


# A cold warmup in compile processes: this process compiles nothing and gets the same bits.
PARALLEL = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from numba.core import event

    compiled_here = []  # the modules of the functions this process compiles


    class Names(event.Listener):
        def on_start(self, ev):
            from fastlinear import _compile

            if not getattr(_compile._local, "probing", False):  # warmup's probe stops those
                compiled_here.append(getattr(ev.data["dispatcher"].py_func, "__module__", "?"))

        def on_end(self, ev):
            pass


    event.register("numba:compile", Names())
    import fastlinear as fl
    from fastlinear._compile import compile_count

    if sys.argv[1] == "no-python":  # every compile process fails to start
        sys.executable = "/nonexistent/python"
    # (257, 256, 256): above the built-in crossover of the forward, so the packed group runs too
    compiled = fl.warmup(dtypes=["float32"], shapes=[(3, 5, 7), (257, 256, 256)], jobs=2)
    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(3, 5)
    w = np.linspace(-2, 2, 35, dtype=np.float32).reshape(7, 5)
    b = np.ones(7, np.float32)
    y = fl.linear(x, w, b, activation="relu", backend="loops")
    grads = fl.linear_backward(np.ones_like(y), x, w, bias=True, activation="relu", y=y,
                               backend="loops")
    print(json.dumps({"compiled": compiled, "compiles": compile_count(),
                      "modules": sorted(set(m for m in compiled_here if m.startswith("fastlinear"))),
                      "bits": [a.tobytes().hex() for a in (y, *grads)]}))
    """
)


def _parallel(cache_dir, how: str = "") -> tuple[dict, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    proc = subprocess.Popen([sys.executable, "-c", PARALLEL, how], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return _finish(proc)


def test_a_cold_warmup_compiles_in_processes_and_a_warm_one_starts_none(tmp_path):
    cold, err = _parallel(tmp_path / "cache")
    assert "in 2 processes at once" in err, err
    assert err.count("fastlinear: compiled the ") == 5, err  # one line per group, none failed
    # this process compiles only the BLAS callback (before the processes start, so that they
    # load it rather than each compiling it); every kernel comes from the processes
    assert set(cold["modules"]) <= {"fastlinear._blas_callback"}, cold["modules"]
    warm, err = _parallel(tmp_path / "cache")
    assert err == "" and warm["compiles"] == 0
    assert warm["bits"] == cold["bits"]
    # the same kernels compiled here, in one process, give the same bits
    serial, err = _parallel(tmp_path / "other", "no-python")
    assert err.count("could not start a compile process") == 1, err
    assert serial["compiled"] > 0 and "fastlinear.kernels.forward" in serial["modules"]
    assert serial["bits"] == cold["bits"]


def test_an_interrupt_stops_the_compile_processes(monkeypatch):
    from fastlinear import _compile

    started = []

    def interrupted(running):
        started.extend(running)
        raise KeyboardInterrupt

    monkeypatch.setattr(_compile, "_wait_any", interrupted)
    monkeypatch.setenv("FASTLINEAR_COMPILE_NOTICE", "0")
    with pytest.raises(KeyboardInterrupt):
        _compile._compile_in_processes([("float32", g) for g in _compile.GROUPS], ["loops"],
                                       [(3, 5, 7)], jobs=3)
    assert len(started) == 3
    assert all(proc.returncode is not None for proc in started)  # killed and reaped


def test_warmup_takes_one_name_for_dtypes_and_backends_and_numpy_ints():
    import numpy as np

    import fastlinear as fl

    for dtype in ("float32", np.float32, np.dtype("float32")):
        assert fl.warmup(dtypes=dtype, backends="loops", shapes=[(3, 5, 7)],
                         jobs=np.int64(2)) == 0  # the suite's cache holds these already


def test_no_compile_processes_without_a_writable_cache(monkeypatch):
    from fastlinear import _cache, _compile

    started = []
    monkeypatch.setattr(_compile, "_group_cached", lambda *args: False)  # as if cold
    monkeypatch.setattr(_compile, "_compile_in_processes", lambda units, *a: started.append(units))
    _compile.warmup(dtypes=["float32"], shapes=[(3, 5, 7)], jobs=2)
    assert len(started) == 1 and len(started[0]) == len(_compile.GROUPS)
    monkeypatch.setattr(_cache, "can_write", lambda: False)
    _compile.warmup(dtypes=["float32"], shapes=[(3, 5, 7)], jobs=2)
    assert len(started) == 1  # nothing they compiled could reach this process


ORPHAN = textwrap.dedent(
    """
    import fastlinear._compile as c
    c._compile_in_processes([("float32", g) for g in c.GROUPS], ["loops"], [(300, 200, 100)], 2)
    """
)


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"_group_main" in cmdline and f'"parent": {pid}}}'.encode() in cmdline:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_compile_processes_end_when_their_parent_is_killed(tmp_path):
    import signal
    import time

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTLINEAR_COMPILE_NOTICE="0")
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], env=env)
    deadline = time.monotonic() + 60
    while len(_children_of(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    children = _children_of(parent.pid)
    assert len(children) == 2
    parent.send_signal(signal.SIGTERM)  # no clean-up runs in the parent
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _children_of(parent.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _children_of(parent.pid) == []
