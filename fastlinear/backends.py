"""The backend registry: a plain dict from name to a `Backend` holding four kernels.

Every backend's kernels have the same signature (outputs first, see ``fastlinear.kernels.naive``),
so a layer or a benchmark can swap one for another by name. Backends are looked up on every call,
never fixed at import, so several can be compared in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import blas
from .kernels import naive
from .kernels import auto as _auto
from .kernels import loops as _loops


def _no_act(kernels):
    """forward(y, x, w, b) and grad_weight(dw, dy, x, scale, accumulate) of a module whose kernels
    take an activation code and a fused db (no activation, no fused db)."""
    return (lambda y, x, w, b: kernels.forward(y, x, w, b, 0),
            lambda dw, dy, x, scale, accumulate: kernels.grad_weight(dw, None, dy, x, scale, accumulate))


@dataclass(frozen=True)
class Backend:
    """Four kernels that together implement a linear layer.

    Attributes:
        name: the registry name.
        forward: ``forward(y, x, w, b)`` computes ``y = x @ w.T + b`` (``b`` may be None).
        grad_weight: ``grad_weight(dw, dy, x, scale, accumulate)`` computes
            ``dw (+)= scale * dy.T @ x``.
        grad_bias: ``grad_bias(db, dy, scale, accumulate)`` computes ``db (+)= scale * dy.sum(0)``.
        grad_input: ``grad_input(dx, dy, w)`` computes ``dx = dy @ w``.

    The kernels do no checking: every array must be C-contiguous with one float dtype, shapes
    must agree, and ``scale`` must be a numpy scalar of that dtype (a Python float would make a
    float32 kernel compute in float64). The public functions in `fastlinear.functional` do
    all of this.
    """

    name: str
    forward: Callable
    grad_weight: Callable
    grad_bias: Callable
    grad_input: Callable


LOOPS = Backend("loops", *_no_act(_loops), _loops.grad_bias, _loops.grad_input)
NAIVE = Backend("naive", naive.forward, naive.grad_weight, naive.grad_bias, naive.grad_input)
BLAS = Backend("blas", blas.forward, blas.grad_weight, blas.grad_bias, blas.grad_input)
AUTO = Backend("auto", *_no_act(_auto), _auto.grad_bias, _auto.grad_input)

_BACKENDS: dict[str, Backend] = {b.name: b for b in (LOOPS, NAIVE, BLAS, AUTO)}


def available_backends() -> tuple[str, ...]:
    """Names accepted wherever a ``backend=`` argument is taken."""
    return tuple(_BACKENDS)


def get_backend(name: str) -> Backend:
    """Return the backend registered as ``name``; raise ValueError listing the valid names."""
    try:
        return _BACKENDS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(n) for n in _BACKENDS)
        raise ValueError(f"unknown backend {name!r}; valid backends are {valid}") from None
