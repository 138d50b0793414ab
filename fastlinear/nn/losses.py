"""Losses that return the loss value and its gradient with respect to their input, in one call.

Convention: with ``reduction="mean"`` (the default, as in torch) the loss is an average and the
returned gradient already carries the 1/N factor, so the linear layers keep their default
``reduction="sum"`` and their ``grad_weight`` is exactly the gradient of the mean loss. With
``reduction="sum"`` the loss and gradient are not divided; pair it with layers built with
``reduction="mean"`` to get the same updates for `CrossEntropyLoss` (N rows), or with
``reduction="sum"`` for the gradient of the summed loss.

The gradient array is a buffer owned by the loss object and overwritten by its next call.

NaN, Inf and huge values give torch's loss and gradient, element by element (a NaN or +Inf logit
makes its row's loss and gradient NaN; a -Inf logit has probability 0; a difference that
overflows in MSE gives Inf), silently: numpy's floating-point warnings are off inside the calls.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as check
from .buffers import RowBuffer

REDUCTIONS = ("mean", "sum")


def _reduction(value: object) -> str:
    if value not in REDUCTIONS:
        raise ValueError(f"unknown reduction {value!r}; valid reductions are 'mean', 'sum'")
    return value  # type: ignore[return-value]


class CrossEntropyLoss:
    r"""Softmax cross-entropy from logits and integer class labels.

    ``loss_i = logsumexp(z_i) - z_i[label_i]``, computed as ``log(sum(exp(z_i - max z_i))) +
    max z_i - z_i[label_i]`` so that no exp overflows; the gradient is ``softmax(z_i) -
    onehot(label_i)``. "mean" divides both by N (the number of rows), "sum" does not.

    Call it as ``loss, dz = loss_fn(logits, labels)`` with logits (N, classes) float32/float64 and
    labels (N,) of an integer dtype in 0..classes-1. ``loss`` is a Python float (summed in
    float64), ``dz`` has the logits' shape and dtype.
    """

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _reduction(reduction)
        self._grad: RowBuffer | None = None
        self._row: RowBuffer | None = None

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return self._call(logits, labels)

    def _call(self, logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        logits = check.require_array("logits", logits)
        check.float_dtype("logits", logits)
        labels = check.require_array("labels", labels)
        if logits.ndim != 2 or logits.shape[0] == 0:
            raise ValueError(f"logits must be 2-D (N, classes) with N >= 1, got shape {logits.shape}")
        n, c = logits.shape
        if labels.shape != (n,):
            raise ValueError(f"labels have shape {labels.shape}, expected ({n},) for logits {logits.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
        lo, hi = labels.min(), labels.max()
        if lo < 0 or hi >= c:
            raise ValueError(f"labels must be in 0..{c - 1} for {c} classes, got values in {lo}..{hi}")
        if self._grad is None or self._grad.width != c or self._grad.dtype != logits.dtype:
            self._grad = RowBuffer(c, logits.dtype)
            self._row = RowBuffer(3, logits.dtype)
        p = self._grad.rows(n)
        row = self._row.rows(n)
        m, s, picked = row[:, 0], row[:, 1], row[:, 2]  # strided views into one small buffer
        np.max(logits, axis=1, out=m)
        np.subtract(logits, m[:, None], out=p)
        # picked = z[label] - max z (small (N,) gather)
        np.subtract(logits[np.arange(n), labels], m, out=picked)
        np.exp(p, out=p)
        np.sum(p, axis=1, out=s)
        np.log(s, out=m)  # m now holds log-sum-exp of the shifted logits
        loss = float(np.sum(m, dtype=np.float64) - np.sum(picked, dtype=np.float64))
        np.divide(p, s[:, None], out=p)
        p[np.arange(n), labels] -= 1
        if self.reduction == "mean":
            np.multiply(p, p.dtype.type(1.0 / n), out=p)
            loss /= n
        return loss, p


class MSELoss:
    r"""Mean squared error: ``mean((y - target)^2)`` over every element, as torch's MSELoss.

    "mean" divides by the number of elements (N * features), "sum" does not. Returns
    ``(loss, dy)`` with ``dy = 2 (y - target)`` times that factor, in y's shape and dtype.
    """

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _reduction(reduction)
        self._grad: RowBuffer | None = None

    def __call__(self, y: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(invalid="ignore", over="ignore"):
            return self._call(y, target)

    def _call(self, y: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        y = check.require_array("y", y)
        check.float_dtype("y", y)
        target = check.require_array("target", target)
        check.same_dtype("target", target, "y", y)
        if y.ndim != 2 or y.shape[0] == 0:
            raise ValueError(f"y must be 2-D (N, features) with N >= 1, got shape {y.shape}")
        if target.shape != y.shape:
            raise ValueError(f"target has shape {target.shape}, expected y's shape {y.shape}")
        if self._grad is None or self._grad.width != y.shape[1] or self._grad.dtype != y.dtype:
            self._grad = RowBuffer(y.shape[1], y.dtype)
        d = self._grad.rows(y.shape[0])
        np.subtract(y, target, out=d)
        loss = float(np.vdot(d, d))
        scale = 2.0
        if self.reduction == "mean":
            loss /= d.size
            scale /= d.size
        np.multiply(d, d.dtype.type(scale), out=d)
        return loss, d
