"""`mlp`: a multi-layer perceptron from a list of layer sizes."""

from __future__ import annotations

from collections.abc import Sequence as Seq

import numpy as np
import numpy.typing as npt

from ..layer import Linear
from .activations import MODULES, check_activation
from .sequential import Sequential


def mlp(
    sizes: Seq[int],
    activation: str = "relu",
    *,
    dtype: npt.DTypeLike = np.float32,
    backend: str = "auto",
    init: str = "he_normal",
    seed: int | None = 0,
) -> Sequential:
    """Linear layers of the given sizes with ``activation`` after every layer but the last.

    Args:
        sizes: [in_features, hidden..., out_features], at least two numbers.
        activation: "relu", "sigmoid" or "tanh".
        dtype, backend, init: passed to every `fastlinear.Linear`.
        seed: layer i is seeded from ``np.random.SeedSequence(seed).spawn(...)[i]``, so the same
            seed gives the same initial weights in every dtype and on every backend.

    Example: ``mlp([64, 256, 256, 10])`` is Linear(64, 256), ReLU, Linear(256, 256), ReLU,
    Linear(256, 10).
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least in_features and out_features, got {sizes}")
    act = check_activation(activation)
    if act is None:
        raise ValueError("mlp needs an activation between layers ('relu', 'sigmoid' or 'tanh')")
    seeds = np.random.SeedSequence(seed).spawn(len(sizes) - 1)
    modules: list = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        modules.append(Linear(n_in, n_out, dtype=dtype, backend=backend, init=init,
                              seed=np.random.default_rng(seeds[i])))
        if i < len(sizes) - 2:
            modules.append(MODULES[act]())
    return Sequential(*modules)
