"""Update kernels of the optimizers: one pass over a flattened parameter, in place.

Each element is updated independently, so the parallel loop cannot race and the result does not
depend on the thread count. Scalars arrive as numpy scalars of the parameter's dtype (float32
stays float32). One fused pass instead of numpy's ~8 whole-array passes for Adam: on a 1.9M
parameter MLP that is the difference between ~0.5 ms and several ms per step.
"""

from __future__ import annotations

import math

from numba import njit, prange

from .._config import PARALLEL


@njit(**PARALLEL)
def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """SGD with momentum, as torch.optim.SGD: d = g + wd p; buf = d on the first step, else
    momentum buf + (1 - dampening) d; step along d + momentum buf (Nesterov) or buf."""
    # p, g, buf are 1-D of equal length (buf unused when momentum == 0)
    one = p.dtype.type(1)
    for i in prange(p.shape[0]):
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


@njit(**PARALLEL)
def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2_sqrt):
    """Adam / AdamW, as torch.optim.Adam(W): m, v moving averages of g and g^2;
    p -= (lr / bias1) m / (sqrt(v) / bias2_sqrt + eps). Weight decay is added to g (Adam) or
    applied as p *= 1 - lr wd first (``decoupled``, AdamW)."""
    # p, g, m, v are 1-D of equal length
    one = p.dtype.type(1)
    step = lr / bias1
    for i in prange(p.shape[0]):
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
