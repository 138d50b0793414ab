"""float32 kernels compute in float32: no value is widened to float64 inside them (a Python float
literal or a float64 scale would do that silently, see numba #888)."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest

import fastlinear as fl

# An fpext widens a float to double, and double arithmetic follows it. (Unboxing arguments may
# narrow a double with fptrunc, which is harmless and not matched.)
WIDENING = re.compile(r"fpext float .* to double|f(add|sub|mul|div)( [a-z]+)* double ")

F = np.float32
X, W, B, DY = np.ones((5, 3), F), np.ones((4, 3), F), np.ones(4, F), np.ones((5, 4), F)
CALLS = {
    "forward": [lambda k: k(np.empty((5, 4), F), X, W, B), lambda k: k(np.empty((5, 4), F), X, W, None)],
    "grad_weight": [lambda k: k(np.empty((4, 3), F), DY, X, F(1), False)],
    "grad_bias": [lambda k: k(np.empty(4, F), DY, F(1), True)],
    "grad_input": [lambda k: k(np.empty((5, 3), F), DY, W)],
}


def llvm_ir(kernel, calls) -> str:
    """LLVM IR of ``kernel``'s source compiled afresh with its own options (Numba cannot show
    the IR of code loaded from its cache), after running it on float32 inputs."""
    options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}
    fresh = numba.njit(**options)(kernel.py_func)
    for call in calls:
        call(fresh)
    return "\n".join(fresh.inspect_llvm().values())


# The loop backend dispatches among several compiled variants in Python; their float32 checks
# are in test_small.py.
@pytest.mark.parametrize("backend", ["naive"])
@pytest.mark.parametrize("kernel", list(CALLS))
def test_float32_kernels_never_widen_to_float64(backend, kernel):
    ir = llvm_ir(getattr(fl.get_backend(backend), kernel), CALLS[kernel])
    found = WIDENING.search(ir)
    assert found is None, f"{backend}.{kernel} widens float32 to float64: {found.group(0)}"


def test_the_check_catches_a_float_literal():
    def scaled_copy(y, x):
        for i in numba.prange(x.shape[0]):
            y[i] = x[i] * 0.1  # 0.1 is a float64 literal

    kernel = numba.njit(parallel=True)(scaled_copy)
    ir = llvm_ir(kernel, [lambda k: k(np.empty(4, F), np.ones(4, F))])
    assert WIDENING.search(ir)
