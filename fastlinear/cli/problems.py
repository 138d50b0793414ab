"""What a benchmark problem is, defined once: the shape classes, the ops, their floating-point
operation counts, the reduction length behind each output, when the naive kernels are too slow to
time, and when a result counts as correct.

``fastlinear compare`` (`fastlinear.cli.harness`) and the test helpers use this module. The asv
suite (asv_benchmarks/benchmarks/common.py) keeps its own copy, because asv runs that file against
old commits that do not have this module; tests/cli/test_problems.py checks that the copies agree.
"""

from __future__ import annotations

import math

import numpy as np

#: Shape classes: name -> (batch, in_features, out_features).
SHAPE_CLASSES: dict[str, tuple[int, int, int]] = {
    "tiny": (1, 16, 16),  # one sample through a tiny layer: call overhead is most of the time
    "small": (32, 128, 128),  # a minibatch through a small layer
    "medium": (256, 512, 512),  # weight is 1 MiB in float32, 2 MiB in float64
    "large": (1024, 1024, 1024),  # 2.1 GFLOP per product: compute bound
    "skinny_in": (8, 784, 128),  # a few MNIST images into a hidden layer
    "skinny_out": (4096, 256, 10),  # a big batch into a 10-class output layer
    "wide": (64, 4096, 4096),  # weight is 64 MiB in float32: memory bound
}

#: The four kernels, then one whole layer step through the public API (``fl.linear``, then
#: ``fl.linear_backward`` for dx, dw and db).
KERNEL_OPS = ("forward", "grad_weight", "grad_bias", "grad_input")
OPS = KERNEL_OPS + ("step",)

#: The naive kernels do about 2 GFLOP/s at larger shapes; past this many floating-point operations
#: per product (about 0.1 s a call; the large and wide classes) they are skipped, not timed.
NAIVE_MAX_FLOPS = 2 * 10**8

#: Rounding-error allowance, in units of eps(dtype) * sqrt(reduction length) * magnitude, where the
#: magnitude of an output element is the sum of the absolute values of its terms. Random rounding
#: errors of a length-k sum grow like sqrt(k) * eps * magnitude (the worst case is k * eps); a
#: factor of 8 leaves room for blocked, fused and reassociated sums while staying about 1e3 times
#: below the error of dropping one term of a 300-term float32 sum (tests/test_reference.py).
TOL_FACTOR = 8.0


def _op_check(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; valid ops are {', '.join(OPS)}")


def flops(op: str, n: int, k: int, m: int) -> int:
    """Floating-point operations of one call of ``op`` at batch ``n``, in_features ``k``,
    out_features ``m``, counting a multiply-add as two."""
    _op_check(op)
    product, rows = 2 * n * k * m, n * m
    return {
        "forward": product + rows,  # the product, then the bias
        "grad_weight": product,
        "grad_bias": rows,
        "grad_input": product,
        "step": 3 * product + 2 * rows,  # forward, dw, db, dx
    }[op]


def reduction_lengths(op: str, n: int, k: int, m: int) -> tuple[int, ...]:
    """The length of the sum behind each output of ``op``, in the order the op returns its
    outputs (step: y, dw, db, dx)."""
    _op_check(op)
    per_output = {"forward": k, "grad_weight": n, "grad_bias": n, "grad_input": m}
    if op == "step":
        return tuple(per_output[o] for o in KERNEL_OPS)
    return (per_output[op],)


def naive_too_slow(n: int, k: int, m: int) -> bool:
    """Whether the naive backend is skipped at this shape (see `NAIVE_MAX_FLOPS`)."""
    return 2 * n * k * m > NAIVE_MAX_FLOPS


def reference(op: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray
              ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``(result, magnitude)`` in float64 for each output of ``op`` (no activation, reduction
    "sum"): x (n, k), w (m, k), b (m,), dy (n, m). The magnitude is the same sum over the absolute
    values of the terms; `tolerance` scales with it."""
    _op_check(op)
    x, w, b, dy = (np.asarray(a, dtype=np.float64) for a in (x, w, b, dy))
    ax, aw, ab, ady = np.abs(x), np.abs(w), np.abs(b), np.abs(dy)
    out = {
        "forward": (x @ w.T + b, ax @ aw.T + ab),
        "grad_weight": (dy.T @ x, ady.T @ ax),
        "grad_bias": (dy.sum(axis=0), ady.sum(axis=0)),
        "grad_input": (dy @ w, ady @ aw),
    }
    if op == "step":
        return tuple(out[o] for o in KERNEL_OPS)
    return (out[op],)


def tolerance(dtype, k: int, mag) -> np.ndarray:
    """Elementwise allowed error, in float64, for a sum of length ``k`` computed in ``dtype``
    whose terms have absolute sum ``mag``."""
    eps = float(np.finfo(dtype).eps)
    return TOL_FACTOR * eps * math.sqrt(max(k, 1)) * np.asarray(mag, dtype=np.float64)


def error_ratio(got, ref: np.ndarray, mag: np.ndarray, k: int, dtype) -> float:
    """The largest elementwise error of ``got`` against ``ref`` as a multiple of `tolerance`: a
    result is correct when this is at most 1. Infinite when a shape differs or ``got`` holds NaN
    or Inf; an element whose terms are all zero must be exactly zero."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != ref.shape or not np.isfinite(got).all():
        return math.inf
    err = np.abs(got - ref)
    tol = tolerance(dtype, k, mag)
    if err.size == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tol > 0, err / np.where(tol > 0, tol, 1.0), np.where(err > 0, math.inf, 0.0))
    return float(ratio.max())
