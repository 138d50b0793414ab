"""Helpers for the fastlinear.nn tests: small seeded models, data, and a finite-difference check."""

from __future__ import annotations

import numpy as np

import fastlinear as fl
from fastlinear import nn


def small_mlp(sizes=(5, 7, 6, 4), activation="relu", dtype=np.float64, backend="loops", seed=0):
    """A seeded MLP with the given layer sizes (Linear + activation, then a final Linear)."""
    return nn.mlp(list(sizes), activation, dtype=dtype, backend=backend, seed=seed)


def numeric_grad(f, a: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f() with respect to every element of a
    (changed in place and restored)."""
    g = np.zeros(a.shape, dtype=np.float64)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + h
        up = f()
        a[i] = old - h
        down = f()
        a[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def linear_layers(model) -> list[fl.Linear]:
    return [m for m in model.modules if isinstance(m, fl.Linear)]
