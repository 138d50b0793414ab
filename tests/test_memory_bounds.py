"""Memory: a call's peak is its inputs and outputs plus a bounded workspace, and nothing large is
kept after a large problem once a small one follows.

Measured in a fresh Python from /proc/self/statm (resident pages) and VmHWM in /proc/self/status
(peak resident size, reset by writing 5 to /proc/self/clear_refs). Before the fix, a 256 MiB
float64 forward on the loops backend kept a 256 MiB packing buffer for good and peaked 256 MiB
above its input and output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastlinear.kernels.packed import _workspace
from fastlinear.nn.buffers import KEEP_BYTES, RowBuffer

MIB = 1 << 20
#: What a packed call may use beyond its inputs and outputs (the documented workspace: 8 MiB of
#: packed rows + 1 MiB per Numba thread, see kernels/packed/_workspace.py), plus 24 MiB for what
#: the interpreter and allocator do around a call (measured on 2 cores: under 1 MiB).
ALLOWANCE = _workspace.KEEP_BYTES + 2 * MIB * (os.cpu_count() or 1) + 24 * MIB
#: What may stay allocated after a large problem once a small one has run: the kept buffers
#: (at most KEEP_BYTES each) and allocator slack. Before the fix: 256 MiB after the functional
#: forward, 32 MiB (a layer's output buffer) after the model's.
KEPT = _workspace.KEEP_BYTES + 8 * MIB

SCRIPT = textwrap.dedent("""
    import gc, json, os, sys
    import numpy as np
    import fastlinear as fl
    from fastlinear import nn

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def peak():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    dt = np.dtype(sys.argv[1])
    n, k, m = int(sys.argv[2]), 512, 64
    rng = np.random.default_rng(0)
    # load (or compile) the packed kernels on a problem of the same kind first
    small_x = rng.standard_normal((2048, k)).astype(dt)
    w = rng.standard_normal((m, k)).astype(dt)
    b = rng.standard_normal(m).astype(dt)
    y = fl.linear(small_x, w, b, backend="loops")
    fl.linear_backward(np.ones_like(y), small_x, w, bias=True, backend="loops")
    del y
    gc.collect()
    base = rss()
    out = {}

    x = rng.standard_normal((n, k)).astype(dt)
    dy = rng.standard_normal((n, m)).astype(dt)
    gc.collect()
    before = rss()
    reset_peak()
    y = fl.linear(x, w, b, backend="loops")
    out["forward_extra"] = peak() - before - y.nbytes
    del y
    gc.collect()
    before = rss()
    reset_peak()
    grads = fl.linear_backward(dy, x, w, bias=True, backend="loops")
    out["backward_extra"] = peak() - before - sum(g.nbytes for g in grads if g is not None)
    del grads, x, dy
    gc.collect()
    fl.linear(small_x, w, b, backend="loops")  # a small problem follows
    gc.collect()
    out["kept_after_functional"] = rss() - base

    model = nn.mlp([k, m, 10], "relu", seed=0, dtype=dt)
    model.eval()
    model.forward(small_x)
    gc.collect()
    base = rss()
    big = rng.standard_normal((n, k)).astype(dt)
    model.forward(big)
    del big
    model.forward(small_x[:16])
    gc.collect()
    out["kept_after_model"] = rss() - base
    print(json.dumps(out))
""")


def _measure(dtype: str, n: int) -> dict:
    env = dict(os.environ, FASTLINEAR_COMPILE_NOTICE="0")
    result = subprocess.run([sys.executable, "-c", SCRIPT, dtype, str(n)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_batch_peak_is_inputs_outputs_and_a_bounded_workspace(dtype):
    n = (256 * MIB) // (512 * np.dtype(dtype).itemsize)  # x is 256 MiB
    got = _measure(dtype, n)
    in_mib = {key: round(v / MIB, 1) for key, v in got.items()}
    assert got["forward_extra"] <= ALLOWANCE, in_mib
    assert got["backward_extra"] <= ALLOWANCE, in_mib
    assert got["kept_after_functional"] <= KEPT, in_mib
    assert got["kept_after_model"] <= KEPT, in_mib


def test_workspace_keeps_at_most_keep_bytes():
    ws = _workspace.workspace(np.float64)
    small = ws.packed_a(64)
    assert ws.packed_a(64) is small  # reused
    big = ws.packed_a(1 << 20)       # far beyond KEEP_BYTES: a buffer of its own
    assert big.nbytes > _workspace.KEEP_BYTES
    assert ws.apack.nbytes <= _workspace.KEEP_BYTES and ws.packed_a(64) is ws.apack


def test_row_blocks_cover_rows_in_order_with_panel_aligned_starts():
    mc = _workspace.MC
    for m in (0, 1, 7, 8, mc - 1, mc, mc + 1, 5 * mc + 3):
        blocks = _workspace.row_blocks(m)
        assert [i for s in blocks for i in range(s.start, s.stop)] == list(range(m))
        assert all(s.start % 8 == 0 and s.stop - s.start <= _workspace.MC for s in blocks)


def test_row_buffer_releases_a_large_buffer_when_a_much_smaller_batch_follows():
    width = 64
    rows_big = 4 * KEEP_BYTES // (width * 8)
    buf = RowBuffer(width, np.float64)
    buf.rows(rows_big)
    assert buf.array.nbytes > KEEP_BYTES
    buf.rows(rows_big // 4)
    assert buf.array.shape[0] == rows_big // 4
    # small buffers are kept for a short last batch
    buf = RowBuffer(width, np.float64)
    kept = buf.rows(256).base
    assert buf.rows(10).base is kept


def test_row_blocked_products_equal_one_call_over_all_rows_bitwise(rng):
    """Splitting rows into blocks of MC keeps every row panel, hence every bit of the result."""
    from fastlinear.kernels.packed import _api
    from fastlinear.kernels.packed._driver import gemm

    for dt in (np.float32, np.float64):
        n, k, m = 2 * _workspace.MC + 13, 70, 66
        x = rng.standard_normal((n, k)).astype(dt)
        w = rng.standard_normal((m, k)).astype(dt)
        b = rng.standard_normal(m).astype(dt)
        ws = _workspace.workspace(dt)
        empty, no_leaves = np.empty(0, dt), np.empty((0, 0), dt)
        whole = np.empty((n, m), dt)
        # One driver call over all rows, as _api makes for each row block.
        gemm(whole, False, x, True, False, w, True, False, k, dt(1), empty, no_leaves, False, b,
             True, 1, False,
             ws.mr, ws.nr, ws.kc, ws.packed_a(n), _api._packed_b(ws, np.dtype(dt), m), ws.tiles)
        y = np.empty((n, m), dt)
        _api.packed_forward(y, x, w, b, 1)
        assert np.array_equal(y, whole)
        dy = rng.standard_normal((n, m)).astype(dt)
        whole_dx = np.empty((n, k), dt)
        gemm(whole_dx, False, dy, True, False, w, False, False, m, dt(1), empty, no_leaves, False,
             empty, False, 0, False, ws.mr, ws.nr, ws.kc, ws.packed_a(n),
             _api._packed_b(ws, np.dtype(dt), k), ws.tiles)
        dx = np.empty((n, k), dt)
        _api.packed_grad_input(dx, dy, w)
        assert np.array_equal(dx, whole_dx)
