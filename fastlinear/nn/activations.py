"""Element-wise activations ReLU, Sigmoid and Tanh as modules, for an activation that does not
directly follow a Linear layer (one that does is fused into the layer's kernels by `Sequential`).

The maths is `fastlinear.activations`', with torch's results at NaN, Inf, signed zeros and huge
values; the backward is written in terms of the activation's OUTPUT y (relu: 0 where y <= 0 and
dy elsewhere, NaN included; sigmoid: dy (1 - y) y; tanh: dy (1 - y^2)), so it needs only what
forward produced. Both directions run as numpy ufuncs with ``out=`` (the blas backend's own
functions): float32 stays float32, and the only temporary is relu's boolean mask (one byte per
element).
"""

from __future__ import annotations

import numpy as np

from ..activations import apply_numpy
from ..backends.blas import activation_grad
from ..activations import code as activation_code
from .buffers import RowBuffer
from .module import Module

ACTIVATIONS = ("relu", "sigmoid", "tanh")


def check_activation(name: object) -> str | None:
    """Return ``name`` if it is None or a known activation; raise ValueError listing them."""
    if name is None or (isinstance(name, str) and name in ACTIVATIONS):
        return name
    valid = ", ".join(repr(a) for a in ACTIVATIONS)
    raise ValueError(f"unknown activation {name!r}; valid activations are {valid} or None")


class _Activation(Module):
    """An activation module: forward writes act(x) into its own buffer and keeps it for backward."""

    name: str = ""

    def __init__(self) -> None:
        self._out: RowBuffer | None = None
        self._grad: RowBuffer | None = None
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return act(x) (x of shape (batch, features)) in a buffer that the next call reuses."""
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects a 2-D array (batch, features), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if self._out is None or self._out.width != x.shape[1] or self._out.dtype != x.dtype:
            self._out = RowBuffer(x.shape[1], x.dtype)
            self._grad = RowBuffer(x.shape[1], x.dtype)
        y = self._out.rows(x.shape[0])
        np.copyto(y, x)
        apply_numpy(y, activation_code(self.name))
        self._y = y if self.training else None
        return y

    def backward(self, dy: np.ndarray, *, need_input_grad: bool = True) -> np.ndarray | None:
        """Return dx = dy * act'(x) for the last forward (no parameters, so nothing else)."""
        if self._y is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a preceding forward() in training mode")
        if dy.shape != self._y.shape or dy.dtype != self._y.dtype:
            raise ValueError(f"dy is {dy.shape} {dy.dtype}, expected the forward output's "
                             f"{self._y.shape} {self._y.dtype}")
        if not need_input_grad:
            return None
        g = self._grad.rows(dy.shape[0])
        activation_grad(g, None, dy, self._y, activation_code(self.name), None, False)
        return g

    def _drop_cache(self) -> None:
        self._y = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ReLU(_Activation):
    """max(x, 0), element-wise."""

    name = "relu"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), element-wise."""

    name = "sigmoid"


class Tanh(_Activation):
    """tanh(x), element-wise."""

    name = "tanh"


MODULES = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
