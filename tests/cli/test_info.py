"""``fastlinear info``: every field is present and agrees with the libraries it describes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from fastlinear import _cpu, cli
from fastlinear.cli import info


def _live_codegen_prefers_512_bits() -> bool:
    """From the machine code: whether a float32 loop Numba compiles now uses 512-bit registers."""
    @numba.njit(cache=False)
    def scale(a):
        for i in range(a.shape[0]):
            a[i] *= 3.0

    a = np.ones(1024, np.float32)
    scale(a)
    return "zmm" in scale.inspect_asm(scale.signatures[0])


def test_info_prints_versions_threads_blas_cpu_and_cache(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"numpy: {np.__version__}" in out
    assert f"numba: {numba.__version__}" in out
    assert f"Numba threading layer: {numba.threading_layer()}" in out  # a kernel has run
    assert f"Numba threads: {numba.get_num_threads()} of a pool of" in out
    for field in ("BLAS:", "CPU:", "SIMD:", "512-bit vectors:", "Numba cache:", "cache warm:"):
        assert field in out
    assert ("512-bit vectors: on" in out) == _live_codegen_prefers_512_bits()


def test_info_json_is_valid_and_complete(capsys):
    assert cli.main(["info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("numpy", "numba", "llvmlite", "torch", "threading_layer", "numba_threads", "blas",
                "cpu", "simd", "vector_width_512", "cache"):
        assert key in doc
    assert doc["vector_width_512"] == _live_codegen_prefers_512_bits()
    assert doc["vector_width_requested"] == _cpu.vector_width_applied
    assert doc["cache"]["kernels"] >= 4


_FIRST_COMPILE = """
import numba
numba.njit(lambda x: x + 1)(1)  # the code generator's target is fixed here
import fastlinear
from fastlinear import _cpu
from fastlinear.cli import info
s = info.summary()
print(_cpu.vector_width_applied, s["vector_width_512"])
print(info.format_summary(s))
"""


def test_vector_width_reported_off_when_numba_compiled_before_fastlinear_was_imported():
    if "avx512f" not in info.simd_flags():
        pytest.skip("the CPU has no AVX-512")
    proc = subprocess.run([sys.executable, "-c", _FIRST_COMPILE], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items()
                                            if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES",
                                                         "FASTLINEAR_NATIVE_VECTORS")})
    assert proc.returncode == 0, proc.stderr
    first, *rest = proc.stdout.splitlines()
    assert first == "True False"  # requested, but not in effect
    assert any(line.startswith("512-bit vectors: off") and "requested" in line for line in rest)


def test_cache_reports_kernels_that_ran_as_warm():
    import fastlinear as fl

    x, w = np.ones((2, 3)), np.ones((4, 3))
    fl.linear(x, w, np.ones(4), backend="naive")  # naive.forward: one cached Numba function
    cache = info.kernel_cache()
    assert "naive.forward" in cache["warm"]
    assert set(cache["warm"]) <= set(cache["names"]) and len(cache["names"]) == cache["kernels"]
    assert cache["dirs"]


def test_torch_version_reported_when_installed():
    torch = pytest.importorskip("torch")
    assert info.summary()["torch"].split("+")[0] == torch.__version__.split("+")[0]
