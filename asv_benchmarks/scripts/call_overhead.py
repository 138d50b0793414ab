"""Per-call cost of Linear.forward/backward at batch 1, 16 -> 16 features, beside torch.nn.Linear.

Best of 5 repeats of 20,000 calls each, 2 threads for Numba, BLAS and torch, in one process:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_benchmarks/scripts/call_overhead.py
"""

from __future__ import annotations

import timeit

import numpy as np

import fastlinear as fl


def per_call_us(fn) -> float:
    return min(timeit.repeat(fn, number=20000, repeat=5)) / 20000 * 1e6


def main() -> None:
    fl.set_num_threads(2)
    x = np.ones((1, 16), np.float32)
    dy = np.ones((1, 16), np.float32)
    results = {}
    for backend in ("loops", "blas"):
        layer = fl.Linear(16, 16, backend=backend, seed=0)
        layer.backward(layer(x))  # compile or load before timing
        results[f"{backend} forward"] = per_call_us(lambda: layer(x))
        results[f"{backend} backward"] = per_call_us(lambda: layer.backward(dy))
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.set_num_threads(2)
        lin, xt = torch.nn.Linear(16, 16), torch.ones(1, 16)
        with torch.no_grad():
            results["torch forward, no_grad"] = per_call_us(lambda: lin(xt))
        results["torch forward, autograd"] = per_call_us(lambda: lin(xt))
    for name, us in results.items():
        print(f"{name:24s} {us:6.2f} us")


if __name__ == "__main__":
    main()
