"""Weight initialisation schemes, by name.

Each scheme draws float64 values from a numpy Generator and rounds them once to the layer's dtype,
so a given seed gives the same float64 weights, and the same float32 weights, on every machine.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

# (rng, out_features, in_features) -> float64 weight of shape (out_features, in_features)
_WeightInit = Callable[[np.random.Generator, int, int], np.ndarray]


def _normal(std: Callable[[int, int], float]) -> _WeightInit:
    return lambda rng, fan_out, fan_in: rng.normal(0.0, std(fan_out, fan_in), (fan_out, fan_in))


def _uniform(limit: Callable[[int, int], float]) -> _WeightInit:
    def draw(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
        a = limit(fan_out, fan_in)
        return rng.uniform(-a, a, (fan_out, fan_in))

    return draw


def _zeros(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    warnings.warn(
        "init='zeros' gives every output unit the same weights and the same gradient, so they "
        "never become different (symmetry is not broken); use it only for tests or the last layer",
        UserWarning,
        stacklevel=4,
    )
    return np.zeros((fan_out, fan_in))


WEIGHT_INITS: dict[str, _WeightInit] = {
    "he_normal": _normal(lambda o, i: math.sqrt(2.0 / i)),
    "he_uniform": _uniform(lambda o, i: math.sqrt(6.0 / i)),
    "lecun_normal": _normal(lambda o, i: math.sqrt(1.0 / i)),
    "xavier_uniform": _uniform(lambda o, i: math.sqrt(6.0 / (i + o))),
    "xavier_normal": _normal(lambda o, i: math.sqrt(2.0 / (i + o))),
    "small_normal": _normal(lambda o, i: 0.01),
    "torch": _uniform(lambda o, i: 1.0 / math.sqrt(i)),
    "zeros": _zeros,
}


def check_init(name: object) -> str:
    """Raise ValueError listing the valid names unless ``name`` is a known scheme."""
    if not isinstance(name, str) or name not in WEIGHT_INITS:
        valid = ", ".join(repr(n) for n in WEIGHT_INITS)
        raise ValueError(f"unknown init {name!r}; valid inits are {valid}")
    return name  # type: ignore[return-value]


def initial_parameters(
    name: str, rng: np.random.Generator, out_features: int, in_features: int, bias: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw float64 (weight, bias) for scheme ``name``.

    The bias is zero except under "torch", which draws it from U(-1/sqrt(in), 1/sqrt(in)) after
    the weight, as torch.nn.Linear does.

    A layer with no inputs or no outputs has an empty weight: nothing is drawn for it (every
    scheme's scale would divide by a zero fan), and under "torch" its bias is drawn from
    U(0, 0), i.e. zero, as torch.nn.Linear does for ``in_features == 0``."""
    if out_features == 0 or in_features == 0:
        check_init(name)
        w = np.zeros((out_features, in_features))
    else:
        w = WEIGHT_INITS[check_init(name)](rng, out_features, in_features)
    if not bias:
        return w, None
    if name == "torch":
        a = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        return w, rng.uniform(-a, a, out_features)
    return w, np.zeros(out_features)
