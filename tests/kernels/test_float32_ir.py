"""float32 kernels compute in float32: no value is widened to float64 inside them (a Python float
literal or a float64 scale would do that silently, see numba #888).

Numba cannot show the LLVM IR of code loaded from its on-disk cache, so the check runs in a fresh
interpreter with an empty cache directory: there every kernel is compiled anew, on float32 inputs
of shapes chosen to reach every kernel variant the backends dispatch to, and then the IR of every
float32 specialisation of every Numba kernel under ``fastlinear`` is searched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # fresh interpreters compiling every kernel: minutes

# An fpext widens a float to double, and double arithmetic follows it. (Unboxing arguments may
# narrow a double with fptrunc, which is harmless and not matched.)
WIDENING = re.compile(r"fpext float .* to double|f(add|sub|mul|div)( [a-z]+)* double ")


# (batch, in_features, out_features): from a single element to shapes past every block size.
SHAPES = [(1, 1, 1), (1, 16, 16), (5, 3, 4), (33, 70, 129), (300, 257, 520), (8, 784, 128),
          (4096, 256, 10), (260, 1100, 300)]

SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, re, sys
    import numpy as np
    import fastlinear as fl
    from numba.core.registry import CPUDispatcher

    widening = re.compile(sys.argv[1])
    F = np.float32
    rng = np.random.default_rng(0)
    for n, k, m in json.loads(sys.argv[2]):
        x, w, b = rng.random((n, k), F), rng.random((m, k), F), rng.random(m, F)
        dy, one = rng.random((n, m), F), F(0.5)
        for name in ("loops", "naive", "auto"):
            be = fl.get_backend(name)
            for act in range(4):
                be.forward(np.empty((n, m), F), x, w, b if act % 2 else None, act)
                be.activation_grad(np.empty((n, m), F), np.empty(m, F) if act % 2 else None,
                                   dy, dy, act, one, act > 1)
            be.grad_weight(np.empty((m, k), F), np.empty(m, F), dy, x, one, False)
            be.grad_weight(np.empty((m, k), F), None, dy, x, one, True)
            be.grad_bias(np.empty(m, F), dy, one, False)
            be.grad_input(np.empty((n, k), F), dy, w)

    found, checked = {}, 0
    modules = [m.name for m in pkgutil.walk_packages(fl.__path__, "fastlinear.")
               if not m.name.endswith("__main__")]
    for modname in modules:
        module = importlib.import_module(modname)
        for attr, obj in vars(module).items():
            if not isinstance(obj, CPUDispatcher) or obj.__module__ != modname:
                continue
            for sig in obj.signatures:
                if not any(str(t).startswith("array(float32") for t in sig):
                    continue
                checked += 1
                hit = widening.search(obj.inspect_llvm(sig))
                if hit:
                    found[f"{modname}.{attr}{sig}"] = hit.group(0)
    print(json.dumps({"checked": checked, "found": found}))
    """
)


def run_check(tmp_path, script: str = SCRIPT) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script, WIDENING.pattern, json.dumps(SHAPES)],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_float32_kernels_never_widen_to_float64(tmp_path):
    result = run_check(tmp_path)
    assert result["checked"] >= 8, f"too few float32 kernels compiled: {result}"
    assert result["found"] == {}, f"float32 kernels widen to float64: {result['found']}"


def test_the_check_catches_a_float_literal():
    def scaled_copy(y, x):
        for i in numba.prange(x.shape[0]):
            y[i] = x[i] * 0.1  # 0.1 is a float64 literal

    kernel = numba.njit(parallel=True)(scaled_copy)
    kernel(np.empty(4, np.float32), np.ones(4, np.float32))
    ir = "\n".join(kernel.inspect_llvm().values())
    assert WIDENING.search(ir)
