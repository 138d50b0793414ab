"""The backend registry: a plain dict from name to a `Backend` holding four kernels.

Every backend's kernels have the same signature (outputs first, see ``fastlinear.backends.naive``),
so a layer or a benchmark can swap one for another by name. Backends are looked up on every call,
never fixed at import, so several can be compared in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import auto as _auto
from . import blas
from . import loops as _loops
from . import naive
from ..kernels.activation import activation_grad as _loops_activation_grad


@dataclass(frozen=True)
class Backend:
    """The kernels that together implement a linear layer, optionally with a fused activation.

    Attributes:
        name: the registry name.
        forward: ``forward(y, x, w, b, act)`` computes ``y = act(x @ w.T + b)`` (``b`` may be
            None; ``act`` is a code from `fastlinear.activations`). (loops and auto also take an
            empty ``b`` for None, see `fastlinear.backends.loops.ABSENT`; blas and naive do not.)
        grad_weight: ``grad_weight(dw, db, dy, x, scale, accumulate)`` computes
            ``dw (+)= scale * dy.T @ x`` and, unless ``db`` is None, ``db (+)= scale * dy.sum(0)``
            in the same call. (loops and auto also take an empty ``db`` for None, see
            `fastlinear.backends.loops.ABSENT`; blas and naive do not.)
        grad_bias: ``grad_bias(db, dy, scale, accumulate)`` computes ``db (+)= scale * dy.sum(0)``.
        grad_input: ``grad_input(dx, dy, w)`` computes ``dx = dy @ w``.
        activation_grad: ``activation_grad(g, db, dy, y, act, scale, accumulate)`` computes
            ``g = dy * act'(y)`` from the forward output ``y`` and, unless ``db`` is None,
            ``db (+)= scale * g.sum(0)`` in the same pass.

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
    activation_grad: Callable


LOOPS = Backend("loops", _loops.forward, _loops.grad_weight, _loops.grad_bias, _loops.grad_input,
                _loops_activation_grad)
NAIVE = Backend("naive", naive.forward, naive.grad_weight, naive.grad_bias, naive.grad_input,
                naive.activation_grad)
BLAS = Backend("blas", blas.forward, blas.grad_weight, blas.grad_bias, blas.grad_input,
               blas.activation_grad)
AUTO = Backend("auto", _auto.forward, _auto.grad_weight, _auto.grad_bias, _auto.grad_input,
               _loops_activation_grad)

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
