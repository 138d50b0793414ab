"""One rank of the torch.distributed (gloo) test: ``python gloo_worker.py RANK SIZE STORE OUT``.

Trains the model and data of mpi_worker.py with `TorchCommunicator` and saves the parameters to
OUT/rank<r>.npz."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch.distributed as dist

from fastlinear import nn
from fastlinear.distributed import DataParallel, TorchCommunicator, epoch_permutation, global_batches, shard_rows

_spec = importlib.util.spec_from_file_location("mpi_worker", Path(__file__).with_name("mpi_worker.py"))
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def main() -> None:
    rank, size, store, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        comm = TorchCommunicator()
        net = worker.model(seed=100 + rank, backend="blas")
        dp = DataParallel(net, comm, check_every=1)
        opt = nn.Adam(net, lr=1e-2)
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        X, y = worker.problem()
        for epoch in range(2):
            for batch in global_batches(epoch_permutation(worker.ROWS, 7, epoch), 16):
                mine = batch[shard_rows(len(batch), rank, size)]
                dp.step(X[mine], y[mine], loss_fn, opt)
        np.savez(os.path.join(out, f"rank{rank}.npz"),
                 **{name: p for name, p, _ in net.named_parameters()})
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
