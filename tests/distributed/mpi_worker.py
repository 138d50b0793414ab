"""One rank of the multi-process tests: ``mpiexec -n N python -m mpi4py mpi_worker.py SCENARIO OUT``.

Scenarios (see test_data_parallel_mpi.py):
  train  - every rank builds the model with its own seed, wraps it (rank 0's parameters win) and
           trains on `problem()`; each rank saves its parameters to OUT/rank<r>.npz.
  raise  - rank 1 raises after its first step while the others go on to the next allreduce.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from fastlinear import nn
from fastlinear.distributed import DataParallel, MPICommunicator, epoch_permutation, global_batches, shard_rows

# Shared with the tests: sizes chosen so that the last batch is short (203 = 12 * 16 + 11).
ROWS, FEATURES, CLASSES, HIDDEN = 203, 12, 5, 16


def problem(dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    X = rng.standard_normal((ROWS, FEATURES)).astype(dtype)
    y = rng.integers(0, CLASSES, ROWS)
    return X, y


def model(seed: int, dtype=np.float64, backend: str = "loops") -> nn.Sequential:
    return nn.mlp([FEATURES, HIDDEN, HIDDEN, CLASSES], "tanh", dtype=dtype, backend=backend, seed=seed)


def main() -> None:
    scenario, out = sys.argv[1], sys.argv[2]
    batch_size = int(os.environ.get("WORKER_BATCH", "16"))
    epochs = int(os.environ.get("WORKER_EPOCHS", "3"))
    comm = MPICommunicator()
    net = model(seed=100 + comm.rank)  # different on every rank until DataParallel broadcasts
    dp = DataParallel(net, comm, check_every=1)
    opt = nn.Adam(net, lr=1e-2)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    X, y = problem()
    losses = []
    for epoch in range(epochs):
        for batch in global_batches(epoch_permutation(ROWS, 7, epoch), batch_size):
            mine = batch[shard_rows(len(batch), comm.rank, comm.size)]
            losses.append(dp.step(X[mine], y[mine], loss_fn, opt))
            if scenario == "raise" and comm.rank == 1:
                raise RuntimeError("rank 1 fails on purpose")
    params = {name: p for name, p, _ in net.named_parameters()}
    np.savez(os.path.join(out, f"rank{comm.rank}.npz"), losses=np.array(losses), **params)


if __name__ == "__main__":
    main()
