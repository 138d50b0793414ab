"""Helpers for the fastlinear.nn tests: small seeded models, data, and a finite-difference check."""

from __future__ import annotations

import numpy as np

import fastlinear as fl
from fastlinear import nn
from helpers import numeric_grad  # noqa: F401  (re-exported for the nn tests)


def small_mlp(sizes=(5, 7, 6, 4), activation="relu", dtype=np.float64, backend="loops", seed=0):
    """A seeded MLP with the given layer sizes (Linear + activation, then a final Linear)."""
    return nn.mlp(list(sizes), activation, dtype=dtype, backend=backend, seed=seed)


def linear_layers(model) -> list[fl.Linear]:
    return [m for m in model.modules if isinstance(m, fl.Linear)]
