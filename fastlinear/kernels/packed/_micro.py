"""``micro``: the micro-kernel for the dtype of its arguments (8 x 32 float32, 8 x 16 float64),
resolved when the calling driver is compiled, so one driver source serves both dtypes."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from ._compile import compiled_micro


def micro(kc, a, ao, b, bo, t):
    """t = A-panel @ B-panel for packed panels (see ``_micro_f32.micro_8x32``); compiled code only."""
    raise NotImplementedError("micro is only callable from Numba-compiled code")


@overload(micro)
def _micro_impl(kc, a, ao, b, bo, t):
    if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)):
        return None
    kernel = compiled_micro(np.dtype(a.dtype.name))  # runs only when a caller is compiled

    def impl(kc, a, ao, b, bo, t):
        kernel(kc, a, ao, b, bo, t)

    return impl
