"""The loops backend is deterministic: for a given input, every kernel returns bitwise-identical
results on every run and for every thread count, because each output element is reduced by one
thread in a fixed order and no block size depends on the number of threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastlinear as fl
from helpers import DTYPE_IDS, DTYPES, randn, shape_id

# (batch, in_features, out_features): each shape class the loop kernels treat differently, and
# sizes that are not multiples of any block.
SHAPES = [(1, 16, 16), (5, 3, 7), (32, 128, 128), (8, 784, 128), (4096, 256, 10),
          (256, 512, 512), (300, 1100, 520)]


def _step(layer, x, dy):
    layer.zero_grad()
    y = layer(x)
    dx = layer.backward(dy)
    return [y.copy(), dx, layer.grad_weight.copy(), layer.grad_bias.copy()]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads")
@pytest.mark.parametrize("activation", [None, "sigmoid"])
@pytest.mark.parametrize("shape", SHAPES, ids=[shape_id(*s) for s in SHAPES])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bitwise_identical_across_runs_and_thread_counts(dtype, shape, activation, rng):
    n, k, m = shape
    layer = fl.Linear(k, m, dtype=dtype, backend="loops", activation=activation, seed=0)
    x = randn(rng, (n, k), dtype)
    dy = randn(rng, (n, m), dtype)
    before = fl.get_num_threads()
    try:
        results = {}
        for threads in (2, 1, 2):
            fl.set_num_threads(threads)
            results.setdefault(threads, []).append(_step(layer, x, dy))
    finally:
        fl.set_num_threads(before)
    first = results[2][0]
    for threads, runs in results.items():
        for run in runs:
            for name, a, b in zip(("y", "dx", "dw", "db"), first, run):
                assert np.array_equal(a, b), f"{name} differs with {threads} threads"
