"""``micro``: the micro-kernel for the dtype of its arguments (8 x 32 float32, 8 x 16 float64),
resolved when the caller is compiled, so one driver source serves both dtypes."""

from __future__ import annotations

from numba import types
from numba.extending import overload

from ._micro_f32 import micro_8x32
from ._micro_f64 import micro_8x16


def micro(kc, a, ao, b, bo, t):
    """t = A-panel @ B-panel for packed panels (see ``_micro_f32.micro_8x32``); njit-only."""
    raise NotImplementedError("micro is only callable from compiled code")


@overload(micro, jit_options=dict(cache=True))
def _micro_impl(kc, a, ao, b, bo, t):
    if a.dtype == types.float32:
        return lambda kc, a, ao, b, bo, t: micro_8x32(kc, a, ao, b, bo, t)
    if a.dtype == types.float64:
        return lambda kc, a, ao, b, bo, t: micro_8x16(kc, a, ao, b, bo, t)
    return None
