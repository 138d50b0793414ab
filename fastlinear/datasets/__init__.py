"""Data for training examples: the embedded 8x8 digits set and a loader for the user's own files.

    >>> from fastlinear.datasets import load_digits, train_test_split
    >>> X, y = load_digits()
    >>> X.shape, y.shape
    ((1797, 64), (1797,))
"""

from .digits import load_digits
from .files import load_arrays, load_features
from .split import Split, Standardize, encode_labels, split_and_scale, split_and_standardize, train_test_split

__all__ = ["Split", "Standardize", "encode_labels", "load_arrays", "load_digits", "load_features",
           "split_and_scale", "split_and_standardize", "train_test_split"]
