"""Communicators: the few collectives data-parallel training needs, behind one small protocol.

`DataParallel` calls only ``bcast``, ``allreduce`` (in place, sum), ``barrier``, ``rank`` and
``size``, so anything that provides them can carry the training: MPI through mpi4py (the default,
`MPICommunicator`), torch.distributed with the gloo backend (`TorchCommunicator`), or an
in-process stand-in in tests. Every collective works on a numpy array in place; every rank must
call the same collectives in the same order with arrays of the same shape and dtype.

Two optional members are used when present: ``node_rank``/``node_size`` (this process's place
among the ranks on its machine; without them every rank counts as a machine of its own) and
``abort(code)`` (end every rank at once; without it a failing rank just raises).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Communicator(Protocol):
    """What `DataParallel` needs from a communication library."""

    @property
    def rank(self) -> int:
        """This process's index, 0..size-1."""

    @property
    def size(self) -> int:
        """The number of processes taking part."""

    def bcast(self, array: np.ndarray, root: int = 0) -> None:
        """Overwrite ``array`` on every rank with root's ``array``, in place."""

    def allreduce(self, array: np.ndarray) -> None:
        """Replace ``array`` on every rank by the elementwise sum over all ranks, in place.

        Every rank must receive the same bits (true of MPI's and gloo's sums of floats, whose
        additions are commutative; `DataParallel`'s replica check verifies it)."""

    def barrier(self) -> None:
        """Return once every rank has called it."""


def _contiguous(array: np.ndarray, what: str) -> None:
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.flags.writeable:
        got = type(array).__name__ if not isinstance(array, np.ndarray) else f"{array.shape} {array.dtype}"
        raise ValueError(f"{what} needs a writeable C-contiguous numpy array, got {got}")


class MPICommunicator:
    """MPI through mpi4py (imported here, not when fastlinear is imported).

    Args:
        comm: an ``mpi4py.MPI.Comm``; default ``MPI.COMM_WORLD``.

    The ranks on one machine are found with ``Split_type(COMM_TYPE_SHARED)``.
    """

    def __init__(self, comm=None) -> None:
        try:
            from mpi4py import MPI
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "fastlinear.distributed needs mpi4py and an MPI library: "
                "pip install 'fastlinear[distributed]' (mpi4py and the MPICH wheel), or build "
                "mpi4py against your cluster's MPI"
            ) from exc
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.comm.Get_rank())
        self.node_rank = node.Get_rank()
        self.node_size = node.Get_size()
        node.Free()

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        return self.comm.Get_size()

    def bcast(self, array: np.ndarray, root: int = 0) -> None:
        _contiguous(array, "bcast")
        self.comm.Bcast(array, root=root)

    def allreduce(self, array: np.ndarray) -> None:
        _contiguous(array, "allreduce")
        self.comm.Allreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job with exit status ``code`` (MPI_Abort)."""
        self.comm.Abort(code)


class TorchCommunicator:
    """torch.distributed (e.g. the gloo backend on CPUs) as a communicator.

    The process group must be initialised (``torch.distributed.init_process_group("gloo", ...)``)
    before this is made. Arrays are shared with torch through ``torch.from_numpy``, so the
    collectives work in place without copies.
    """

    def __init__(self, group=None) -> None:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised; call "
                               "torch.distributed.init_process_group('gloo', ...) first")
        self._torch, self._dist, self.group = torch, dist, group

    @property
    def rank(self) -> int:
        return self._dist.get_rank(self.group)

    @property
    def size(self) -> int:
        return self._dist.get_world_size(self.group)

    def bcast(self, array: np.ndarray, root: int = 0) -> None:
        _contiguous(array, "bcast")
        self._dist.broadcast(self._torch.from_numpy(array), src=root, group=self.group)

    def allreduce(self, array: np.ndarray) -> None:
        _contiguous(array, "allreduce")
        self._dist.all_reduce(self._torch.from_numpy(array), group=self.group)

    def barrier(self) -> None:
        self._dist.barrier(group=self.group)


class SingleProcess:
    """The trivial communicator of one process: every collective leaves the array as it is."""

    rank = 0
    size = 1
    node_rank = 0
    node_size = 1

    def bcast(self, array: np.ndarray, root: int = 0) -> None:
        if root != 0:
            raise ValueError(f"root {root} does not exist in a single-process group")

    def allreduce(self, array: np.ndarray) -> None:
        pass

    def barrier(self) -> None:
        pass


def default_communicator() -> Communicator:
    """MPI's COMM_WORLD (mpi4py must be installed)."""
    return MPICommunicator()


def check_communicator(comm: object) -> Communicator:
    """Raise TypeError naming what is missing when ``comm`` lacks a member of the protocol."""
    missing = [m for m in ("rank", "size", "bcast", "allreduce", "barrier") if not hasattr(comm, m)]
    if missing:
        raise TypeError(f"{type(comm).__name__} is not a communicator: it lacks {', '.join(missing)} "
                        f"(see fastlinear.distributed.Communicator)")
    return comm  # type: ignore[return-value]
