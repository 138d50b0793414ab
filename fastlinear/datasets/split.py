"""A seeded train/test split and the feature scaling the training command uses."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class Split(NamedTuple):
    """Train and test arrays: float features and int64 labels."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def train_test_split(
    X: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle rows with a seeded generator and return ``(X_train, y_train, X_test, y_test)``.

    The last ``round(test_fraction * n)`` shuffled rows form the test set (at least one row in each
    part). The same seed gives the same split on every machine.
    """
    n = len(X)
    if len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)} labels")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 samples to split into train and test, got {n}")
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    train, test = order[: n - n_test], order[n - n_test :]
    return X[train], y[train], X[test], y[test]


def split_and_scale(
    X: np.ndarray, y: np.ndarray, dtype: npt.DTypeLike = np.float32,
    test_fraction: float = 0.2, seed: int = 0,
) -> Split:
    """`train_test_split`, then standardise features with the training part's mean and standard
    deviation (a constant feature is only centred), as C-contiguous arrays of ``dtype``."""
    X_train, y_train, X_test, y_test = train_test_split(X, y, test_fraction, seed)
    X_train = X_train.astype(np.float64)
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0
    scale = lambda a: np.ascontiguousarray((a.astype(np.float64) - mean) / std, dtype=dtype)  # noqa: E731
    return Split(scale(X_train), y_train.astype(np.int64), scale(X_test), y_test.astype(np.int64))
