"""Process set-up for data-parallel runs: threads per rank, and ending the whole job when one
rank fails."""

from __future__ import annotations

import os
import sys
import time
import warnings

from ._launch_errors import ABORT_PAUSE_S
from .comm import Communicator


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), or ``os.cpu_count()`` where the
    platform has no affinity call."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def threads_per_rank(comm: Communicator) -> int:
    """How many threads each rank should use so that the ranks on a machine share its cores.

    When this process may run on every core of the machine, the cores are divided among the
    ranks on the machine (``comm.node_size``, 1 if the communicator does not say): 2 ranks on
    16 cores get 8 threads each. When a launcher restricted the process to some cores (binding),
    those are its own, and it uses all of them. At least 1.

    Warns (RuntimeWarning) when the process was pinned to a single core on a machine with more
    cores than ranks: the launcher's binding then leaves cores idle (with MPICH's hydra, pass
    ``-bind-to core:K`` for K cores per rank, or ``-bind-to none``).
    """
    cores = usable_cores()
    machine = os.cpu_count() or cores
    per_node = max(1, int(getattr(comm, "node_size", 1)))
    if cores >= machine:
        return max(1, cores // per_node)
    if cores == 1 and machine > per_node:
        warnings.warn(
            f"rank {comm.rank} is pinned to one core but its machine has {machine} cores for "
            f"{per_node} ranks; it runs 1 thread. Bind each rank to several cores (MPICH: "
            f"mpiexec -bind-to core:{machine // per_node}) or to none to use them",
            RuntimeWarning, stacklevel=2)
    return cores


def abort_on_exception(comm: Communicator) -> None:
    """Make an uncaught exception on this rank end every rank (``comm.abort(1)``) after the
    traceback is printed, instead of leaving the other ranks waiting in a collective.

    ``python -m mpi4py`` does the same for MPI; this covers launching without it and other
    communicators that have ``abort``. Does nothing for a single rank or a communicator without
    ``abort``."""
    if comm.size < 2 or not hasattr(comm, "abort"):
        return
    previous = sys.excepthook

    def hook(kind, value, traceback) -> None:
        try:
            previous(kind, value, traceback)
            sys.stderr.flush()
            time.sleep(ABORT_PAUSE_S)  # let the launcher forward the traceback (`end_job`)
        finally:
            comm.abort(1)

    sys.excepthook = hook
