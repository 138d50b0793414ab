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
