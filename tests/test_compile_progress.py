"""Compile progress: a first line, then progress lines with an estimate, while fastlinear's kernels
compile; nothing when everything loads from the cache or when silenced."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np
    import fastlinear as fl
    fl._compile.PROGRESS_EVERY_S = 0.0  # a line after every compile, for the test
    x, w = np.ones((3, 5)), np.ones((4, 5))
    fl.linear(x, w, backend="naive")
    fl.linear(x.astype(np.float32), w.astype(np.float32), backend="naive")
    print("compiles", fl._compile.compile_count())
""")


def _run(cache_dir, **env):
    full = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), **env)
    full.pop("FASTLINEAR_COMPILE_NOTICE", None)
    full.update(env)
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("fastlinear:")]
    return int(result.stdout.split()[-1]), lines


@pytest.mark.slow
def test_cold_start_reports_progress_with_an_estimate_and_warm_start_is_silent(tmp_path):
    compiles, lines = _run(tmp_path)
    assert compiles > 0
    assert lines[0].startswith("fastlinear: compiling kernels for this machine")
    progress = lines[1:]
    assert progress and all(ln.startswith("fastlinear: compiled ") for ln in progress), lines
    # the first progress line knows more kernels are not cached yet, and gives a time for them
    assert "more are not cached yet" in progress[0] and " s at this rate" in progress[0]
    warm, lines = _run(tmp_path)
    assert warm == 0 and lines == []


@pytest.mark.slow
def test_progress_can_be_silenced(tmp_path):
    compiles, lines = _run(tmp_path, FASTLINEAR_COMPILE_NOTICE="0")
    assert compiles > 0 and lines == []


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _kernel(name: str):
    """A stand-in for one of fastlinear's Numba dispatchers, as the listener sees it."""
    from types import SimpleNamespace

    def py_func():
        pass

    py_func.__module__ = f"fastlinear.kernels.{name}"
    return SimpleNamespace(py_func=py_func)


def test_progress_counts_seconds_spent_compiling_not_seconds_since_the_first(monkeypatch):
    from numba.core.event import Event, EventStatus

    from fastlinear import _compile

    clock, said = _Clock(), []
    monkeypatch.setattr(_compile.time, "perf_counter", clock)
    monkeypatch.setattr(_compile, "_say", said.append)
    monkeypatch.setattr(_compile, "_uncached_kernels", lambda: set())
    for name, value in (("_started", True), ("_compile_s", 0.0), ("_last_line_s", 0.0),
                        ("_done", set()), ("_cold", set()), ("PROGRESS_EVERY_S", 5.0)):
        monkeypatch.setattr(_compile, name, value)
    listener = _compile._CompileProgress()

    def compile_(kernel, seconds, inner=None):
        listener.on_start(Event("numba:compile", EventStatus.START, {"dispatcher": kernel}))
        if inner is not None:
            compile_(*inner)
        clock.now += seconds
        listener.on_end(Event("numba:compile", EventStatus.END, {"dispatcher": kernel}))

    a, b, c, d = (_kernel(name) for name in "abcd")  # kept alive: the listener keeps their ids
    compile_(a, 2.0, inner=(b, 1.0))  # nested: 3 s in all, not 4
    assert _compile._compile_s == pytest.approx(3.0) and said == []
    clock.now += 500.0  # the program computes: not compile time
    compile_(c, 2.5)
    assert _compile._compile_s == pytest.approx(5.5)
    assert said == ["compiled 3 kernel functions in 6 s"]
    # an end without its start (an interrupt raised before the listener counted it) is ignored
    listener.on_end(Event("numba:compile", EventStatus.END, {"dispatcher": d}))
    assert _compile._compile_s == pytest.approx(5.5) and len(_compile._done) == 3
