"""No kernel function compiles twice for arguments that differ only in how Numba typed an integer
or a flag: a constant (``Literal[int](0)``, ``Literal[bool](True)``) or prange's unsigned index
(``uint64``) where another caller passes an int64. Each such twin is a whole second compilation
(seconds per dtype on 2 cores) with the same machine code. Nor does an activation-gradient or
direct weight-gradient kernel compile twice for a bias gradient given and not given, nor a direct
forward kernel for a bias given and not given.

Checked in a fresh process (signatures a test process compiled for other reasons would hide
nothing but could add twins of their own) after `fastlinear.warmup`, which calls every loops
kernel of both dtypes with and without bias and activation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import re, sys
    import fastlinear as fl
    from numba.core.registry import CPUDispatcher

    fl.warmup()
    twins = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("fastlinear"):
            continue
        for value in list(vars(module).values()):
            if not isinstance(value, CPUDispatcher) or value.__module__ != name:
                continue
            seen = {}
            for sig in value.signatures:
                plain = re.sub(r"Literal\\[int\\]\\(-?\\d+\\)", "int64", str(sig))
                plain = re.sub(r"Literal\\[bool\\]\\((True|False)\\)", "bool", plain)
                plain = plain.replace("uint64", "int64")
                if plain in seen:
                    twins.append(f"{name}.{value.__name__}: {seen[plain]} and {sig}")
                seen[plain] = str(sig)
    # where the callers pass an empty array for "no bias" or "no bias gradient" (not None), one
    # signature per dtype: the direct forward, activation-gradient and weight-gradient kernels
    for name in ("fastlinear.kernels.forward", "fastlinear.kernels.activation",
                 "fastlinear.kernels.grad_weight"):
        for value in vars(sys.modules[name]).values():
            if isinstance(value, CPUDispatcher) and value.__module__ == name:
                firsts = [str(sig[0]) for sig in value.signatures]
                if len(set(firsts)) != len(firsts):
                    twins.append(f"{name}.{value.__name__}: {value.signatures}")
    print("\\n".join(twins))
    sys.exit(1 if twins else 0)
    """
)


@pytest.mark.slow
def test_no_kernel_compiles_a_needless_twin():
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, FASTLINEAR_COMPILE_NOTICE="0")
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
