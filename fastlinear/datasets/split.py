"""A seeded train/test split, the feature scaling the training command uses (`Standardize`), and
the mapping from a data set's labels to class indices (`encode_labels`)."""

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


class Standardize:
    """Feature standardisation ``(X - mean) / scale``, computed in float64.

    Attributes:
        mean: (features,) float64, the training rows' mean.
        scale: (features,) float64, their standard deviation (1 for a constant feature, which is
            then only centred).
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        mean = np.array(mean, dtype=np.float64)
        scale = np.array(scale, dtype=np.float64)
        if mean.ndim != 1 or scale.shape != mean.shape:
            raise ValueError(f"mean and scale must be 1-D of one length, got {mean.shape} and {scale.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("mean must be finite and scale finite and > 0")
        self.mean, self.scale = mean, scale

    @classmethod
    def fit(cls, X: np.ndarray) -> "Standardize":
        """The standardisation of ``X`` (samples, features): its column means and deviations."""
        X = np.asarray(X, dtype=np.float64)
        std = X.std(axis=0)
        std[std == 0] = 1.0
        return cls(X.mean(axis=0), std)

    @property
    def n_features(self) -> int:
        return self.mean.shape[0]

    def __call__(self, X: np.ndarray, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
        """Standardised ``X`` (samples, n_features) as a new C-contiguous array of ``dtype``.

        Raises ValueError if X is not 2-D with n_features columns."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X has shape {X.shape}; the standardisation expects (samples, {self.n_features})")
        return np.ascontiguousarray((X.astype(np.float64) - self.mean) / self.scale, dtype=dtype)

    def __repr__(self) -> str:
        return f"Standardize(n_features={self.n_features})"


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to class indices 0..C-1 in sorted order of the distinct labels.

    Returns ``(classes, indices)``: ``classes`` (C,) int64 holds the distinct labels, sorted, and
    ``indices`` (n,) int64 is each label's position in it, so ``classes[indices] == y``. Labels
    1..10 give 10 classes (not 11 with an empty class 0), and a label of 10**9 costs nothing."""
    classes, indices = np.unique(np.asarray(y), return_inverse=True)
    return classes.astype(np.int64), indices.reshape(-1).astype(np.int64)


def split_and_standardize(
    X: np.ndarray, y: np.ndarray, dtype: npt.DTypeLike = np.float32,
    test_fraction: float = 0.2, seed: int = 0,
) -> tuple[Split, Standardize]:
    """`split_and_scale`, also returning the `Standardize` it applied (fitted on the training
    part), which a saved model needs to be used on raw inputs."""
    X_train, y_train, X_test, y_test = train_test_split(X, y, test_fraction, seed)
    prep = Standardize.fit(X_train)
    split = Split(prep(X_train, dtype), y_train.astype(np.int64), prep(X_test, dtype), y_test.astype(np.int64))
    return split, prep


def split_and_scale(
    X: np.ndarray, y: np.ndarray, dtype: npt.DTypeLike = np.float32,
    test_fraction: float = 0.2, seed: int = 0,
) -> Split:
    """`train_test_split`, then standardise features with the training part's mean and standard
    deviation (a constant feature is only centred), as C-contiguous arrays of ``dtype``."""
    return split_and_standardize(X, y, dtype, test_fraction, seed)[0]
