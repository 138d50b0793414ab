"""Row buffers that are allocated once and reused while the batch size stays the same or shrinks
a little, and released when a much smaller batch follows a large one."""

from __future__ import annotations

import numpy as np

from .._memory import empty_aligned

#: A buffer larger than this (bytes) is replaced by one of the right size when a batch of at most
#: a quarter of its rows follows, so one large batch (say a 1 GiB evaluation) does not pin its
#: memory for the rest of a training run; smaller buffers are kept, so a short last batch of an
#: epoch allocates nothing.
KEEP_BYTES = 8 << 20


class RowBuffer:
    """A C-contiguous (capacity, width) array handed out as views of its first ``rows`` rows.

    A view of leading rows of a C-contiguous array is itself C-contiguous, so a smaller last batch
    of an epoch reuses the same memory; only a batch larger than any before allocates, and a batch
    of at most a quarter of the rows of a buffer over `KEEP_BYTES` reallocates it at its size.
    """

    def __init__(self, width: int, dtype: np.dtype) -> None:
        self.width = width
        self.dtype = np.dtype(dtype)
        self.array = empty_aligned((0, width), self.dtype)

    def rows(self, n: int) -> np.ndarray:
        """A (n, width) view into the buffer, reallocated first if it has fewer than n rows or is
        large and n is at most a quarter of its rows."""
        capacity = self.array.shape[0]
        if n > capacity or (4 * n <= capacity and self.array.nbytes > KEEP_BYTES):
            self.array = empty_aligned((n, self.width), self.dtype)
        return self.array[:n]
