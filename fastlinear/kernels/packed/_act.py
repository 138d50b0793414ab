"""Activations applied in the forward product's store: codes 0 none, 1 relu, 2 sigmoid, 3 tanh.

NaN propagates through every one (relu keeps NaN: ``NaN < 0`` is false), as in numpy.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..._config import FASTMATH

ACT_NONE = 0
ACT_RELU = 1
ACT_SIGMOID = 2
ACT_TANH = 3


@njit(cache=True, nogil=True, fastmath=set(FASTMATH))
def apply_act(row, j0, n, act):
    """row[j0 + j] = act(row[j0 + j]) for j < n; one branch per call, none per element."""
    zero = row.dtype.type(0)
    one = row.dtype.type(1)
    if act == ACT_RELU:
        for j in range(n):
            v = row[j0 + j]
            if v < zero:
                row[j0 + j] = zero
    elif act == ACT_SIGMOID:
        for j in range(n):
            row[j0 + j] = one / (one + np.exp(-row[j0 + j]))
    elif act == ACT_TANH:
        for j in range(n):
            row[j0 + j] = np.tanh(row[j0 + j])
