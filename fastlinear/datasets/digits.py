"""The embedded digits data set (see DIGITS.md beside this file for its source and license)."""

from __future__ import annotations

from importlib import resources

import numpy as np

N_SAMPLES = 1797
N_FEATURES = 64
N_CLASSES = 10
MAX_PIXEL = 16


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return ``(X, y)``: uint8 pixels of shape (1797, 64) in 0..16 and int64 labels 0..9.

    The images are the UCI optical-recognition test set (Alpaydin and Kaynak, 1998; CC BY 4.0),
    stored in the package as ``digits.npz``. Each call reads a fresh copy.
    """
    with resources.files(__package__).joinpath("digits.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as data:
            X, y = data["X"], data["y"]
    if X.shape != (N_SAMPLES, N_FEATURES) or y.shape != (N_SAMPLES,):
        raise RuntimeError(f"the packaged digits.npz is damaged: X {X.shape}, y {y.shape}")
    return X, y
