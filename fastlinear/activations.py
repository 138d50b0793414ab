"""Element-wise activations that the kernels can fuse: names, integer codes and their maths.

A fused layer computes ``y = act(x @ w.T + b)`` with ``act`` applied as each output element is
stored, and in the backward pass multiplies ``dy`` by the derivative ``act'`` on its first read.
The derivative is written in terms of the forward's *output* ``y`` (relu: ``y > 0``; sigmoid:
``y * (1 - y)``; tanh: ``1 - y * y``), so the pre-activation never has to be kept.

Kernels receive the activation as an integer code (`NONE`, `RELU`, `SIGMOID`, `TANH`) and call
`apply` / `derivative`, which Numba inlines. NaN propagates through all three, as in numpy and
torch: relu keeps a NaN input (its test is ``not v < 0``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE = 0
RELU = 1
SIGMOID = 2
TANH = 3

#: Public names accepted by ``activation=`` arguments, with their kernel codes.
CODES: dict[str | None, int] = {None: NONE, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}


def code(name: str | None) -> int:
    """The kernel code of an activation name; raise ValueError listing the valid names."""
    try:
        return CODES[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(n) for n in CODES)
        raise ValueError(f"unknown activation {name!r}; valid activations are {valid}") from None


@njit(inline="always")
def apply(v, act, one):
    """``act(v)`` for one scalar; ``one`` is 1 in v's dtype (keeps float32 in float32)."""
    if act == RELU:
        return v if not v < one - one else one - one
    if act == SIGMOID:
        if v >= one - one:
            return one / (one + np.exp(-v))
        e = np.exp(v)
        return e / (one + e)
    if act == TANH:
        return np.tanh(v)
    return v


@njit(inline="always")
def derivative(y, act, one):
    """``act'`` at the point whose activation output is ``y``."""
    if act == RELU:
        return one if y > one - one else one - one
    if act == SIGMOID:
        return y * (one - y)
    if act == TANH:
        return one - y * y
    return one


def apply_numpy(y: np.ndarray, act: int) -> None:
    """Apply the activation to ``y`` in place with numpy (for the blas backend)."""
    if act == RELU:
        np.maximum(y, 0, out=y)  # np.maximum propagates NaN
    elif act == SIGMOID:
        # 1 / (1 + exp(-v)) written through tanh: no overflow for large |v|
        y *= 0.5
        np.tanh(y, out=y)
        y += 1
        y *= 0.5
    elif act == TANH:
        np.tanh(y, out=y)

