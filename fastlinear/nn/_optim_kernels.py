"""Update kernels of the optimizers: one pass over a flattened parameter, in place.

Each element is updated independently, so the parallel loop cannot race and the result does not
depend on the thread count (serial and parallel runs give identical bits). Scalars arrive as
numpy scalars of the parameter's dtype (float32 stays float32). One fused pass instead of numpy's
~8 whole-array passes for Adam: on the 1.9M-parameter 784-1024-1024-10 MLP the update takes
about 1 ms on one thread. Parameters of fewer than `SERIAL_MAX` elements (biases, small layers)
are updated serially: a parallel region costs more than they do.
"""

from __future__ import annotations

import math

from numba import njit, prange

from .._config import INLINE, OPTIM_PARALLEL, OPTIM_SERIAL

SERIAL_MAX = 1 << 15

# Options (`fastlinear._config`): no fastmath, so the serial and parallel builds give the same
# bits, and numpy's error model, so a division by zero gives Inf or NaN as in numpy and torch.
PARALLEL = OPTIM_PARALLEL
SERIAL = OPTIM_SERIAL


@njit(**INLINE)
def _sgd_element(p, g, buf, i, lr, momentum, dampening, weight_decay, nesterov, first, one):
    d = g[i]
    if weight_decay != 0:
        d += weight_decay * p[i]
    if momentum != 0:
        if first:
            b = d
        else:
            b = momentum * buf[i] + (one - dampening) * d
        buf[i] = b
        if nesterov:
            d = d + momentum * b
        else:
            d = b
    p[i] -= lr * d


@njit(**SERIAL)
def _sgd_serial(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    one = p.dtype.type(1)
    for i in range(p.shape[0]):
        _sgd_element(p, g, buf, i, lr, momentum, dampening, weight_decay, nesterov, first, one)


@njit(**PARALLEL)
def _sgd_parallel(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    one = p.dtype.type(1)
    for i in prange(p.shape[0]):
        _sgd_element(p, g, buf, i, lr, momentum, dampening, weight_decay, nesterov, first, one)


def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """SGD with momentum, as torch.optim.SGD: d = g + wd p; buf = d on the step that creates the
    buffer (``first``), else momentum buf + (1 - dampening) d; step along d + momentum buf
    (Nesterov) or buf."""
    # p, g are 1-D of equal length; buf too when momentum != 0, else never read (may be empty)
    kernel = _sgd_parallel if p.shape[0] >= SERIAL_MAX else _sgd_serial
    kernel(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first)


@njit(**INLINE)
def _adam_element(p, g, m, v, i, lr, beta1, beta2, eps, weight_decay, decoupled, step, bias2_sqrt, one):
    gi = g[i]
    if decoupled:
        p[i] *= one - lr * weight_decay
    elif weight_decay != 0:
        gi += weight_decay * p[i]
    mi = beta1 * m[i] + (one - beta1) * gi
    vi = beta2 * v[i] + (one - beta2) * gi * gi
    m[i] = mi
    v[i] = vi
    p[i] -= step * mi / (math.sqrt(vi) / bias2_sqrt + eps)


@njit(**SERIAL)
def _adam_serial(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2_sqrt):
    one = p.dtype.type(1)
    step = lr / bias1
    for i in range(p.shape[0]):
        _adam_element(p, g, m, v, i, lr, beta1, beta2, eps, weight_decay, decoupled, step, bias2_sqrt, one)


@njit(**PARALLEL)
def _adam_parallel(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2_sqrt):
    one = p.dtype.type(1)
    step = lr / bias1
    for i in prange(p.shape[0]):
        _adam_element(p, g, m, v, i, lr, beta1, beta2, eps, weight_decay, decoupled, step, bias2_sqrt, one)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2_sqrt):
    """Adam / AdamW, as torch.optim.Adam(W): m, v moving averages of g and g^2;
    p -= (lr / bias1) m / (sqrt(v) / bias2_sqrt + eps). Weight decay is added to g (Adam) or
    applied as p *= 1 - lr wd first (``decoupled``, AdamW)."""
    # p, g, m, v are 1-D of equal length
    kernel = _adam_parallel if p.shape[0] >= SERIAL_MAX else _adam_serial
    kernel(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2_sqrt)
