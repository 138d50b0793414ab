"""``fastlinear info``: every field is present and agrees with the libraries it describes."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest

from fastlinear import cli
from fastlinear.cli import info


def _kernel_code_uses_512_bits() -> bool:
    """From the machine code: whether a float32 loop compiled as one of fastlinear's kernels (its
    module says so, which is what the per-function vector-width setting goes by) now uses 512-bit
    registers."""
    def scale(a):
        for i in range(a.shape[0]):
            a[i] *= 3.0

    scale.__module__ = "fastlinear._info_probe"
    probe = numba.njit(cache=False)(scale)
    probe(np.ones(1024, np.float32))
    return "zmm" in probe.inspect_asm(probe.signatures[0])


def test_info_prints_versions_threads_blas_cpu_and_cache(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"numpy: {np.__version__}" in out
    assert f"numba: {numba.__version__}" in out
    assert f"Numba threading layer: {numba.threading_layer()}" in out  # the pool has started
    assert f"Numba threads: {numba.get_num_threads()} of a pool of" in out
    for field in ("BLAS:", "CPU:", "SIMD:", "512-bit vectors:", "Numba cache:", "cache warm:"):
        assert field in out
    assert ("512-bit vectors: on" in out) == _kernel_code_uses_512_bits()


def test_info_json_is_valid_and_complete(capsys):
    assert cli.main(["info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("numpy", "numba", "llvmlite", "torch", "threading_layer", "numba_threads", "blas",
                "cpu", "simd", "vector_width_512", "cache"):
        assert key in doc
    assert doc["vector_width_512"] == _kernel_code_uses_512_bits()
    assert doc["vector_target"]["cpu_name"] == numba.core.registry.cpu_target.target_context.codegen().magic_tuple()[1]
    assert doc["cache"]["kernels"] >= 4


def test_cache_reports_kernels_that_ran_as_warm():
    import fastlinear as fl

    x, w = np.ones((2, 3)), np.ones((4, 3))
    fl.linear(x, w, np.ones(4), backend="naive")  # naive.forward: one cached Numba function
    cache = info.kernel_cache()
    assert "backends.naive.forward" in cache["warm"]
    assert set(cache["warm"]) <= set(cache["names"]) and len(cache["names"]) == cache["kernels"]
    assert cache["dirs"]


def test_torch_version_reported_when_installed():
    torch = pytest.importorskip("torch")
    assert info.summary()["torch"].split("+")[0] == torch.__version__.split("+")[0]


def test_info_compiles_nothing_on_an_empty_cache(tmp_path):
    """`fastlinear info` reads the cache and starts Numba's pool, it compiles no kernel (it once
    ran a naive kernel to learn the threading layer: seconds on a cold cache), and its count of
    kernel functions is the set a first compile reports progress on, once the same modules are
    imported."""
    import os
    import subprocess
    import sys

    script = (
        "import json, io, contextlib\n"
        "from fastlinear import _compile, cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert cli.main(['info', '--json']) == 0\n"
        "doc = json.loads(out.getvalue())\n"
        "print(json.dumps([_compile.compile_count(), doc['threading_layer'],\n"
        "                  doc['cache']['kernels'], len(doc['cache']['warm']),\n"
        "                  len(_compile._uncached_kernels())]))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    compiled, layer, kernels, warm, uncached = json.loads(done.stdout.strip().splitlines()[-1])
    assert compiled == 0
    assert layer in ("omp", "tbb", "workqueue")
    # on an empty cache, what a first compile would report as "not cached yet" (with the same
    # modules imported) is every function info counts
    assert warm == 0 and kernels == uncached > 80
