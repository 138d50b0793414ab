"""`Dense`: one `fastlinear.Linear` layer and the activation applied to its output, run as one
fused step with buffers that are reused from one batch to the next.

`Sequential` builds these; they are not meant to be created by hand. The layer keeps its
parameters and gradients; this object keeps the activations: its output (which is also the
input the next step's backward reads), the gradient after the activation's derivative, and dx.
The activation is the layer's own (``Linear(..., activation=...)``) or that of an activation
module that follows the layer; either way it goes to the backend's kernels as a code, applied in
the forward's store and differentiated in the pass that computes the bias gradient.
"""

from __future__ import annotations

import numpy as np

from .. import _dispatch
from .. import _validate as check
from ..activations import code as activation_code
from ..backends import get_backend
from ..layer import Linear
from .buffers import RowBuffer


class Dense:
    """``y = act(x @ layer.weight.T + layer.bias)`` with forward and backward into owned buffers.

    Args:
        layer: the linear layer (its backend, reduction, parameters and gradients are used).
        activation: "relu", "sigmoid", "tanh" or None.
    """

    def __init__(self, layer: Linear, activation: str | None) -> None:
        self.layer = layer
        self.activation = activation
        self._act = activation_code(activation)
        self._y = RowBuffer(layer.out_features, layer.dtype)
        self._g = RowBuffer(layer.out_features, layer.dtype)
        self._dx = RowBuffer(layer.in_features, layer.dtype)
        self._x: np.ndarray | None = None
        self._out: np.ndarray | None = None
        #: Set by `Sequential.zero_grad`: the layer's gradients are zero, so the next backward
        #: writes them instead of adding to them (same values, one read-modify-write pass less,
        #: and no temporary array with the blas backend, whose accumulate computes ``dw += dy.T @ x``
        #: through a temporary).
        self.grads_zero = False

    def forward(self, x: np.ndarray, cache: bool) -> np.ndarray:
        """x: C-contiguous (batch, in_features) of the layer's dtype, checked by the caller.

        Returns the output buffer's view (batch, out_features); the next forward overwrites it."""
        layer = self.layer
        ready = layer._check_parameters()
        w, b = (layer.weight, layer.bias) if ready else layer._kernel_parameters()
        y = self._y.rows(x.shape[0])
        _dispatch.run_forward(get_backend(layer.backend), y, x, w, b, self._act)
        self._x, self._out = (x, y) if cache else (None, None)
        return y

    def backward(self, dy: np.ndarray, need_input_grad: bool) -> np.ndarray | None:
        """Add this batch's gradients to the layer's and return dx (a buffer view) or None.

        dy: (batch, out_features), the gradient with respect to this step's output."""
        if self._x is None:
            raise RuntimeError(
                "backward() needs a preceding forward() in training mode (call model.train())"
            )
        layer = self.layer
        layer._check_parameters()
        w, _ = layer._kernel_parameters()
        x, y = self._x, self._out
        dy = check.grad_output(dy, x.shape[:-1], w)
        g = self._g.rows(dy.shape[0])
        dx = self._dx.rows(x.shape[0]) if need_input_grad else None
        _dispatch.run_backward(get_backend(layer.backend), dy, x, w, dx, layer.grad_weight,
                               layer.grad_bias, layer.reduction, not self.grads_zero, y, self._act, g)
        self.grads_zero = False
        return dx

    def drop_cache(self) -> None:
        """Forget the input and output kept for backward."""
        self._x = self._out = None
