"""512-bit vectors for fastlinear's kernels only: Numba's process-wide settings, and other
libraries' code, are untouched.

The asm checks compile for ``NUMBA_CPU_NAME=skylake-avx512``, a CPU for which LLVM prefers 256-bit
vectors by default, so that the per-function preference is what makes the difference; they run
on any host whose CPU has AVX-512F (the code is compiled and inspected, not run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import llvmlite.binding as llvm
import numba
import pytest

import fastlinear  # noqa: F401
from fastlinear import _cpu

HOST_AVX512 = "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")

SCRIPT = textwrap.dedent("""
    import json, re
    import numpy as np
    import numba
    from numba import njit
    import fastlinear
    from fastlinear.kernels.packed._micro import compiled_micro

    micro = compiled_micro(np.float32)
    micro_asm = "\\n".join(micro.inspect_asm().values())
    micro_ir = "\\n".join(micro.inspect_llvm().values())

    @njit(fastmath={"reassoc", "contract"})
    def other_library_dot(x, y):
        s = np.float32(0)
        for i in range(x.shape[0]):
            s += x[i] * y[i]
        return s

    other_library_dot.compile("float32(float32[::1], float32[::1])")
    other_asm = "\\n".join(other_library_dot.inspect_asm().values())
    other_ir = "\\n".join(other_library_dot.inspect_llvm().values())
    print(json.dumps({
        "micro_zmm": len(re.findall(r"%zmm", micro_asm)),
        "micro_attr": '"prefer-vector-width"="512"' in micro_ir,
        "other_zmm": len(re.findall(r"%zmm", other_asm)),
        "other_ymm": len(re.findall(r"%ymm", other_asm)),
        "other_attr": "prefer-vector-width" in other_ir,
        "numba_features_set": numba.config.CPU_FEATURES is not None,
        "enabled": fastlinear._cpu.enabled,
    }))
""")


def _compile_and_inspect(**env) -> dict:
    full = dict(os.environ, NUMBA_CPU_NAME="skylake-avx512", FASTLINEAR_COMPILE_NOTICE="0", **env)
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not HOST_AVX512, reason="the host CPU has no AVX-512F")
def test_micro_kernel_uses_512_bit_registers_and_other_code_keeps_llvms_choice():
    got = _compile_and_inspect()
    assert got["enabled"] and got["micro_attr"]
    assert got["micro_zmm"] > 0, got
    # the other library's loop in the same process: LLVM's tuning for this CPU (256 bits)
    assert not got["other_attr"] and got["other_zmm"] == 0 and got["other_ymm"] > 0, got
    assert not got["numba_features_set"]


@pytest.mark.slow
@pytest.mark.skipif(not HOST_AVX512, reason="the host CPU has no AVX-512F")
def test_native_vectors_off_leaves_llvms_choice_for_fastlinear_too():
    got = _compile_and_inspect(FASTLINEAR_NATIVE_VECTORS="0")
    assert not got["enabled"] and not got["micro_attr"]
    assert got["micro_zmm"] == 0, got


def test_import_changes_no_process_wide_numba_setting():
    # fastlinear is imported above; the environment decides these, not fastlinear
    env_name = os.environ.get("NUMBA_CPU_NAME")
    env_features = os.environ.get("NUMBA_CPU_FEATURES")
    assert numba.config.CPU_NAME == (env_name or None)
    assert numba.config.CPU_FEATURES == (env_features or None)


def test_live_target_reports_the_code_generator_in_use():
    t = _cpu.live_target()
    from numba.core.registry import cpu_target

    _, name, features = cpu_target.target_context.codegen().magic_tuple()
    assert t["cpu_name"] == name
    assert t["avx512f"] == ("+avx512f" in features.split(","))
    assert _cpu.vectors_512() == (t["avx512f"] and _cpu.enabled)
