"""The "auto" backend: the loop kernels, except for shape classes where numpy's matmul (BLAS) was
measured faster. Same signatures as ``fastlinear.backends.loops``.

Measured on a 2-core AVX-512 AMD EPYC (znver5), numpy 2.4 / OpenBLAS 0.3.31 (SkylakeX kernel), 2 threads,
medians, GFLOP/s loops vs BLAS:

* small and skinny shapes (batch 32 x 128 x 128, 8 x 784 x 128, 4096 x 256 x 10): the loop kernels
  match or beat BLAS for forward, grad_input and grad_bias, and a BLAS call costs 1.3 us or more
  even at batch 1, 16 x 16 against 0.4-0.8 us for the serial loop kernels -> loops;
* large shapes, without the packed kernels: at 256 x 512 x 512 the direct (unpacked) loop kernels
  took 1.2 ms (forward) and 0.6-0.7 ms (gradients) on one thread against about 0.5 ms for BLAS on
  two, and at 1024^3 they reached 30-70 GFLOP/s against BLAS's ~300 -> BLAS above ``BLAS_WORK``
  multiply-adds (``fastlinear.backends.blas``; db still by the loop kernel), unless ``fastlinear.kernels.packed`` is present, in which case the loop backend's
  packed kernels are used.

The choice depends only on shape and dtype. Below ``BLAS_WORK`` results are therefore bitwise the
same for any thread count, as for the loop backend; above it BLAS makes no such promise (OpenBLAS
gave different bits with 1 and 2 threads at 257 x 256 x 256). Mixing
BLAS calls and Numba parallel kernels in one step lets their idle thread pools spin against each
other on a small machine (see ``fastlinear._threads``); with a single shape class per layer that
happens only at layer boundaries.
"""

from __future__ import annotations

from . import blas, loops

#: work (n * in * out) above which BLAS is used when the packed loop kernels are absent.
BLAS_WORK = 1 << 24

#: whether large shapes go to BLAS (no packed loop kernels in this build)
_USE_BLAS = loops.packed_forward is None


def forward(y, x, w, b, act) -> None:
    """y = act(x @ w.T + b); ``b`` may be None."""
    if _USE_BLAS and x.shape[0] * x.shape[1] * w.shape[0] > BLAS_WORK:
        blas.forward(y, x, w, b, act)
    else:
        loops.forward(y, x, w, b, act)


def grad_weight(dw, db, dy, x, scale, accumulate) -> None:
    """dw (+)= scale * dy.T @ x and, when ``db`` is not None, db (+)= scale * dy.sum(0)."""
    if _USE_BLAS and x.shape[0] * x.shape[1] * dw.shape[0] > BLAS_WORK:
        blas.grad_weight(dw, None, dy, x, scale, accumulate)
        if db is not None:  # the loop kernel beat numpy's sum at every shape measured
            loops.grad_bias(db, dy, scale, accumulate)
    else:
        loops.grad_weight(dw, db, dy, x, scale, accumulate)


def grad_bias(db, dy, scale, accumulate) -> None:
    """db (+)= scale * dy.sum(0): the loop kernel, which beat numpy's sum at every shape measured."""
    loops.grad_bias(db, dy, scale, accumulate)


def grad_input(dx, dy, w) -> None:
    """dx = dy @ w."""
    if _USE_BLAS and dy.shape[0] * dy.shape[1] * w.shape[1] > BLAS_WORK:
        blas.grad_input(dx, dy, w)
    else:
        loops.grad_input(dx, dy, w)
