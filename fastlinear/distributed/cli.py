"""``fastlinear train --distributed`` and ``--processes N``: the data-parallel parts of the
training command.

``mpiexec -n N python -m mpi4py -m fastlinear train --distributed [options]`` runs N ranks that
each hold the model and take their slice of every global batch (``--batch-size``); only rank 0
prints and saves. ``fastlinear train --processes N [options]`` runs that command for you, on this
machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

from .._memory import empty_aligned
from .comm import Communicator, MPICommunicator
from .data_parallel import DataParallel
from .runtime import abort_on_exception, threads_per_rank
from .sharding import shard_rows


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add --distributed and --processes to the ``train`` parser."""
    group = parser.add_argument_group("data-parallel training (needs fastlinear[distributed])")
    group.add_argument("--distributed", action="store_true",
                       help="run as one rank of an MPI job (start it with mpiexec -n N python -m "
                       "mpi4py -m fastlinear train --distributed ...); --batch-size is the global "
                       "batch, split over the ranks")
    group.add_argument("--processes", type=int, default=None, metavar="N",
                       help="run N processes on this machine through mpiexec (same as the "
                       "command above)")


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The ``train`` options of ``args`` as command-line words, without --processes."""
    words: list[str] = []
    for key, value in vars(args).items():
        if key in ("command", "handler", "run", "processes", "distributed", "comm") or value is None:
            continue
        option = "--" + key.replace("_", "-")
        if value is True:
            words.append(option)
        elif value is False:
            continue
        elif isinstance(value, (list, tuple)):
            # --hidden: sizes joined by commas; no hidden layer is spelled "none".
            words += [option, ",".join(map(str, value)) if value else "none"]
        else:
            words += [option, str(value)]
    return words


def mpiexec() -> str:
    """The mpiexec next to this Python (the MPICH wheel installs one there), else on PATH.

    Raises:
        MissingDependency: there is none."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpiexec")
    if found is None:
        from ..cli._common import MissingDependency

        raise MissingDependency("--processes needs mpiexec, which was not found; install it with: "
                                "pip install 'fastlinear[distributed]' (or put your MPI's mpiexec "
                                "on PATH)")
    return found


def launch_command(n: int, args: argparse.Namespace) -> list[str]:
    """The mpiexec command line that ``--processes n`` runs."""
    return [mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py", "-m", "fastlinear", "train",
            "--distributed", *_forwarded(args)]


def run_train(args: argparse.Namespace, run) -> int:
    """Handle --processes (start mpiexec and return its exit status) and --distributed (set this
    rank up, then call ``run(args)``, the ordinary train handler, with ``args.comm`` set).

    Raises:
        ValueError: --processes below 1 or together with --distributed, or --backend torch.
        MissingDependency: mpi4py (or, for --processes, mpiexec) is not installed.
    """
    from ._launch_errors import abort_job, end_job, require_mpi

    if args.processes is not None:
        if args.distributed:
            raise ValueError("--processes starts the ranks itself; leave out --distributed")
        if args.processes < 1:
            raise ValueError(f"--processes must be >= 1, got {args.processes}")
        require_mpi("--processes")
        return subprocess.run(launch_command(args.processes, args)).returncode
    if args.backend == "torch":
        raise ValueError("--distributed needs a fastlinear backend (loops, blas, naive, auto), not torch")
    require_mpi("--distributed")
    comm = MPICommunicator()
    abort_on_exception(comm)
    if comm.rank != 0:
        # Rank 0 speaks for the job; the others keep stderr for their own errors.
        sys.stdout = open(os.devnull, "w")
        args.save = None
        args.no_progress = True
    args.comm = comm
    try:
        code = run(args)
    except BaseException as exc:
        if comm.size < 2 or (isinstance(exc, SystemExit) and not exc.code):
            raise
        abort_job(comm, exc)  # the other ranks may be waiting in a collective: end them too
    if code != 0 and comm.size > 1:
        end_job(comm, code)
    return code


class DistributedSteps:
    """The training step of ``fastlinear train`` for one rank: this rank's rows of each global
    batch, one allreduce, the optimizer step; the same ``step(X, y, idx)``/``predict`` as the
    single-process steps, returning the global batch's mean loss."""

    def __init__(self, comm: Communicator, model, opt, batch_size: int, X: np.ndarray,
                 y: np.ndarray, X_eval: np.ndarray | None = None, check_every: int = 0) -> None:
        from .. import nn

        self.comm = comm
        self.model, self.opt = model, opt
        self.loss_fn = nn.CrossEntropyLoss(reduction="sum")
        self.dp = DataParallel(model, comm, check_every=check_every)
        self.dp.sync_optimizer(opt)
        local = -(-batch_size // comm.size)
        self.xb = empty_aligned((local, X.shape[1]), X.dtype)  # read as vectors by the kernels
        self.yb = np.empty(local, dtype=np.int64)
        # This rank's slice of a full batch and of the short last one (kernels go by shape).
        sizes = {min(batch_size, X.shape[0]), X.shape[0] % batch_size} - {0}
        labels = y.astype(np.int64)
        batches = [(X[s], labels[s]) for s in (shard_rows(k, comm.rank, comm.size) for k in sorted(sizes))]
        self.dp.warm_cache(batches, self.loss_fn, opt, X_eval)

    def step(self, X, y, idx) -> float:
        part = idx[shard_rows(len(idx), self.comm.rank, self.comm.size)]
        xb, yb = self.xb[: len(part)], self.yb[: len(part)]
        np.take(X, part, axis=0, out=xb)
        np.take(y, part, out=yb)
        return self.dp.step(xb, yb, self.loss_fn, self.opt)

    def predict(self, X) -> np.ndarray:
        return self.model.predict(X)


def set_threads(comm: Communicator, threads: int | None) -> int:
    """Threads for this rank: ``threads`` if given, else its share of the machine's cores."""
    from .. import set_num_threads

    n = threads_per_rank(comm) if threads is None else threads
    set_num_threads(n)
    return n
