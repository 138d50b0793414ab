"""Element-wise activations that the kernels can fuse: names, integer codes and their maths.

A fused layer computes ``y = act(x @ w.T + b)`` with ``act`` applied as each output element is
stored, and in the backward pass multiplies ``dy`` by the derivative ``act'`` on its first read.
The derivative is written in terms of the forward's *output* ``y`` (relu: ``y > 0``; sigmoid:
``y * (1 - y)``; tanh: ``1 - y * y``), so the pre-activation never has to be kept.

Kernels receive the activation as an integer code (`NONE`, `RELU`, `SIGMOID`, `TANH`) and call
`apply` (forward) and `grad` (backward: ``dy`` times the derivative), which Numba inlines.
`apply_numpy` and `grad_numpy` are the same maths as numpy ufuncs, for the blas backend and the
activation modules.

NaN, Inf, signed zeros and huge values give torch's results, element by element:

* relu: ``y = x`` unless ``x < 0`` (NaN and -0.0 pass through, as torch.relu keeps them); its
  backward is ``0 if y <= 0 else dy``, a select, not a product: where y is NaN the gradient
  passes, and where y <= 0 a NaN or Inf ``dy`` still gives 0 (``Inf * 0`` would be NaN).
* sigmoid: ``1 / (1 + exp(-x))`` for every x, torch's formula: exp overflows to Inf for
  x < -88.7 (float32) or x < -709.8 (float64) and y is then exactly 0, as in torch; NaN gives
  NaN, +-Inf give 1 and 0. Backward ``dy * (1 - y) * y``, in that order.
* tanh: ``tanh(x)``; backward ``dy * (1 - y * y)``.

So an Inf ``dy`` where sigmoid or tanh saturated (y exactly 0 or +-1) gives NaN, as in torch.
The tuned kernels are compiled with LLVM's no-signed-zeros flag (``nsz``, see
`fastlinear._config`), so the sign of a zero they output may differ from torch's; the naive
kernels and the numpy versions keep it (relu(-0.0) and tanh(-0.0) are -0.0).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import INLINE

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


@njit(**INLINE)
def apply(v, act, one):
    """``act(v)`` for one scalar; ``one`` is 1 in v's dtype (keeps float32 in float32)."""
    if act == RELU:
        return v if not v < one - one else one - one
    if act == SIGMOID:
        # torch's formula: exact 0 below about -88.7 (float32) where exp(-v) overflows, and no
        # cancellation anywhere (1 + e >= 1), so one branch is as accurate as two.
        return one / (one + np.exp(-v))
    if act == TANH:
        return np.tanh(v)
    return v


@njit(**INLINE)
def grad(dy, y, act, one):
    """The gradient with respect to the activation's input, from the gradient ``dy`` with respect
    to its output ``y``: torch's formula for each activation (see the module docstring)."""
    zero = one - one
    if act == RELU:
        return zero if y <= zero else dy
    if act == SIGMOID:
        return dy * (one - y) * y
    if act == TANH:
        return dy * (one - y * y)
    return dy


@njit(**INLINE)
def derivative(y, act, one):
    """``act'`` at the point whose activation output is ``y``, alone. Kernels apply `grad`
    instead: relu's backward is a select, and ``dy * derivative(y)`` would turn an Inf or NaN
    ``dy`` where ``y <= 0`` into NaN, where torch gives 0."""
    if act == RELU:
        return one if y > one - one else one - one
    if act == SIGMOID:
        return y * (one - y)
    if act == TANH:
        return one - y * y
    return one


# NaN and Inf propagate silently, as in the kernels and in torch: numpy's "invalid value" and
# "overflow" warnings (Inf * 0, exp overflow) are switched off around these ufuncs.
_QUIET = dict(invalid="ignore", over="ignore")


def apply_numpy(y: np.ndarray, act: int) -> None:
    """Apply the activation to ``y`` in place with numpy: `apply`'s maths (for the blas backend)."""
    with np.errstate(**_QUIET):
        _apply_numpy(y, act)


def _apply_numpy(y: np.ndarray, act: int) -> None:
    if act == RELU:
        # y = 0 where y < 0: NaN and -0.0 stay as they are (np.maximum(y, 0) would turn -0.0 into 0.0)
        np.copyto(y, 0, where=y < 0)
    elif act == SIGMOID:
        np.negative(y, out=y)
        np.exp(y, out=y)  # Inf for very negative v: y is then 0, as in torch
        y += 1
        np.reciprocal(y, out=y)
    elif act == TANH:
        np.tanh(y, out=y)


def grad_numpy(g: np.ndarray, dy: np.ndarray, y: np.ndarray, act: int) -> None:
    """``g = grad(dy, y, act)`` element-wise with numpy, written into ``g`` (`grad`'s maths)."""
    with np.errstate(**_QUIET):
        _grad_numpy(g, dy, y, act)


def _grad_numpy(g: np.ndarray, dy: np.ndarray, y: np.ndarray, act: int) -> None:
    if act == RELU:
        # torch's select: 0 where y <= 0 whatever dy is, dy elsewhere (a NaN y passes dy). A masked
        # copy costs about 1 ms for 256 x 1024 (a branch per element) against about 0.1 ms for
        # dy * (y > 0), which differs from the select only where dy is Inf or NaN and y <= 0
        # (Inf * 0 = NaN) or y is NaN: take the multiply and redo the select only if one occurs.
        np.greater(y, 0, out=g)
        np.multiply(g, dy, out=g)
        if not np.isfinite(g).all() or np.isnan(y).any():
            np.copyto(g, dy)
            np.copyto(g, 0, where=y <= 0)
    elif act == SIGMOID:
        np.subtract(1, y, out=g)
        np.multiply(dy, g, out=g)
        np.multiply(g, y, out=g)
    elif act == TANH:
        np.multiply(y, y, out=g)
        np.subtract(1, g, out=g)
        np.multiply(dy, g, out=g)
    else:
        np.copyto(g, dy)

