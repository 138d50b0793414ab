"""Activations applied in the forward product's store, with the package's codes and maths
(`fastlinear.activations`: 0 none, 1 relu, 2 sigmoid, 3 tanh; NaN propagates through each).

One branch per call, none per element: each loop calls ``activations.apply`` with a constant code,
which Numba inlines and LLVM folds to that activation alone, so the loop still vectorizes.
"""

from __future__ import annotations

from numba import njit

from ... import activations
from ..._config import SERIAL

ACT_NONE = activations.NONE
ACT_RELU = activations.RELU
ACT_SIGMOID = activations.SIGMOID
ACT_TANH = activations.TANH


@njit(**SERIAL)
def apply_act(row, j0, n, act):
    """row[j0 + j] = act(row[j0 + j]) for j < n."""
    one = row.dtype.type(1)
    if act == ACT_RELU:
        for j in range(n):
            row[j0 + j] = activations.apply(row[j0 + j], ACT_RELU, one)
    elif act == ACT_SIGMOID:
        for j in range(n):
            row[j0 + j] = activations.apply(row[j0 + j], ACT_SIGMOID, one)
    elif act == ACT_TANH:
        for j in range(n):
            row[j0 + j] = activations.apply(row[j0 + j], ACT_TANH, one)
