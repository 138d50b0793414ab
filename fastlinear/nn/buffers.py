"""Row buffers that are allocated once and reused while the batch size stays the same or shrinks."""

from __future__ import annotations

import numpy as np


class RowBuffer:
    """A C-contiguous (capacity, width) array handed out as views of its first ``rows`` rows.

    A view of leading rows of a C-contiguous array is itself C-contiguous, so a smaller last batch
    of an epoch reuses the same memory; only a batch larger than any before allocates.
    """

    def __init__(self, width: int, dtype: np.dtype) -> None:
        self.width = width
        self.dtype = np.dtype(dtype)
        self.array = np.empty((0, width), dtype=self.dtype)

    def rows(self, n: int) -> np.ndarray:
        """A (n, width) view into the buffer, growing it first if it has fewer than n rows."""
        if n > self.array.shape[0]:
            self.array = np.empty((n, self.width), dtype=self.dtype)
        return self.array[:n]
