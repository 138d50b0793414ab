"""Data-parallel training over processes and machines, on MPI (through mpi4py, imported only when
a communicator is made).

    mpiexec -n 4 python -m mpi4py train.py

with, in ``train.py``::

    from fastlinear import nn
    from fastlinear.distributed import DataParallel, epoch_permutation, global_batches, shard_rows

    model = nn.mlp([784, 1024, 1024, 10], "relu", seed=0)
    dp = DataParallel(model)                    # rank 0's parameters on every rank
    opt = nn.Adam(model, lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for epoch in range(10):
        for batch in global_batches(epoch_permutation(len(X), seed=0, epoch=epoch), 256):
            mine = batch[shard_rows(len(batch), dp.rank, dp.size)]
            loss = dp.step(X[mine], y[mine], loss_fn, opt)   # global mean loss

Install with ``pip install 'fastlinear[distributed]'`` (mpi4py and the MPICH wheel).
"""

from .comm import Communicator, MPICommunicator, SingleProcess, TorchCommunicator, default_communicator
from .data_parallel import DataParallel, ReplicaMismatch, warm_cache
from .runtime import abort_on_exception, threads_per_rank, usable_cores
from .sharding import epoch_permutation, global_batches, shard_rows

__all__ = [
    "Communicator",
    "DataParallel",
    "MPICommunicator",
    "ReplicaMismatch",
    "SingleProcess",
    "TorchCommunicator",
    "abort_on_exception",
    "default_communicator",
    "epoch_permutation",
    "global_batches",
    "shard_rows",
    "threads_per_rank",
    "usable_cores",
    "warm_cache",
]
