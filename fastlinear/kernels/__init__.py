"""Numba kernels. Each module holds one kernel of the "loops" backend; ``naive`` holds all four
kernels of the "naive" backend. See ``fastlinear.kernels.naive`` for the calling conventions."""
