"""Data-parallel training in real MPI jobs: ``mpiexec -n 2`` and ``-n 3`` run as subprocesses with
timeouts, so that a hang fails the test and no rank outlives it."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")

from fastlinear import nn  # noqa: E402
from fastlinear.distributed import epoch_permutation, global_batches  # noqa: E402
from fastlinear.distributed.cli import mpiexec  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
_spec = importlib.util.spec_from_file_location("mpi_worker", HERE / "mpi_worker.py")
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

try:
    MPIEXEC = mpiexec()
except ValueError:
    MPIEXEC = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install 'fastlinear[distributed]')"),
]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["FASTLINEAR_COMPILE_NOTICE"] = "0"
    env.update(extra)
    return env


def run_job(command: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    """Run an mpiexec command in its own process group; on timeout kill the whole group (mpiexec,
    its proxies and every rank) and fail."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(**env), cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(command)} did not finish in {timeout} s\n{out}\n{err}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def run_worker(n: int, scenario: str, out: Path, timeout: float = 300, **env: str):
    command = [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", str(HERE / "mpi_worker.py"),
               scenario, str(out)]
    return run_job(command, timeout, **env)


def single_process(batch_size: int = 16, epochs: int = 3) -> tuple[dict, list[float]]:
    """The same training in one process, with the usual mean loss: what N ranks must reproduce."""
    net = worker.model(seed=100)  # rank 0's seed: its parameters are the ones broadcast
    opt = nn.Adam(net, lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    X, y = worker.problem()
    losses = []
    for epoch in range(epochs):
        for batch in global_batches(epoch_permutation(worker.ROWS, 7, epoch), batch_size):
            net.zero_grad()
            loss, d = loss_fn(net(X[batch]), y[batch])
            net.backward(d, need_input_grad=False)
            opt.step()
            losses.append(loss)
    return {name: p.copy() for name, p, _ in net.named_parameters()}, losses


def load_ranks(out: Path, n: int) -> list[dict[str, np.ndarray]]:
    ranks = []
    for r in range(n):
        with np.load(out / f"rank{r}.npz") as f:
            ranks.append({k: f[k] for k in f.files})
    return ranks


def assert_matches_one_process(ranks, reference, losses) -> None:
    for r, got in enumerate(ranks):
        for name, ref in reference.items():
            # Replicas are bitwise identical to each other...
            np.testing.assert_array_equal(got[name], ranks[0][name], err_msg=f"rank {r} {name}")
            # ...and equal to one process up to the rounding of summing per rank first.
            err = np.max(np.abs(got[name] - ref)) / np.max(np.abs(ref))
            assert err < 1e-12, f"rank {r} {name}: relative difference {err:.2e} from one process"
    np.testing.assert_allclose(ranks[0]["losses"], losses, rtol=1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_ranks_match_one_process_on_the_same_global_batches(n, tmp_path):
    # Ranks build their models with different seeds: equality shows the broadcast too. The
    # replica check runs every step, and 203 rows in batches of 16 leave a short last batch.
    done = run_worker(n, "train", tmp_path)
    assert done.returncode == 0, done.stderr
    reference, losses = single_process()
    assert_matches_one_process(load_ranks(tmp_path, n), reference, losses)


def test_rank_with_an_empty_slice_still_takes_part(tmp_path):
    # Batches of 2 rows over 3 ranks: rank 0's slice of every batch is empty, and the last
    # batch (203 is odd) leaves two ranks empty.
    done = run_worker(3, "train", tmp_path, WORKER_BATCH="2", WORKER_EPOCHS="1")
    assert done.returncode == 0, done.stderr
    reference, losses = single_process(batch_size=2, epochs=1)
    assert_matches_one_process(load_ranks(tmp_path, 3), reference, losses)


def test_same_ranks_give_the_same_bits_run_to_run(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    for out in (first, second):
        done = run_worker(3, "train", out, WORKER_EPOCHS="2")
        assert done.returncode == 0, done.stderr
    for a, b in zip(load_ranks(first, 3), load_ranks(second, 3)):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_rank_that_raises_ends_the_job_promptly(tmp_path):
    start = time.perf_counter()
    done = run_worker(3, "raise", tmp_path, timeout=120)
    seconds = time.perf_counter() - start
    assert done.returncode != 0
    assert "rank 1 fails on purpose" in done.stderr
    # Without the abort the other ranks would wait in the next allreduce until the timeout.
    assert seconds < 60, f"the job took {seconds:.0f} s to end after a rank failed"
    assert not list(tmp_path.glob("rank*.npz"))


def _train(*options: str, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fastlinear", "train", "--epochs", "2", "--dtype", "float64",
               "--hidden", "32,32", "--batch-size", "50", "--no-progress", *options]
    return run_job(command, timeout)


def test_cli_processes_trains_like_one_process(tmp_path):
    one = _train("--save", str(tmp_path / "one.npz"))
    assert one.returncode == 0, one.stderr
    two = _train("--processes", "2", "--save", str(tmp_path / "two.npz"))
    assert two.returncode == 0, two.stderr
    # Only rank 0 prints: one line per epoch, and the summary names the process count.
    assert two.stdout.count("epoch   1/2") == 1, two.stdout
    assert "2 processes x 1 thread" in two.stdout
    assert two.stdout.count("saved model to") == 1
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    for name in a.files:
        if a[name].dtype.kind == "f":
            err = np.max(np.abs(a[name] - b[name])) / np.max(np.abs(a[name]))
            assert err < 1e-12, f"{name}: {err:.2e}"


def test_cli_distributed_under_mpiexec_directly(tmp_path):
    command = [MPIEXEC, "-n", "3", sys.executable, "-m", "mpi4py", "-m", "fastlinear", "train",
               "--distributed", "--epochs", "1", "--hidden", "8", "--batch-size", "7", "--no-progress"]
    done = run_job(command, 600)
    assert done.returncode == 0, done.stderr
    assert "3 processes" in done.stdout and done.stdout.count("epoch   1/1") == 1


def test_cli_failing_rank_exits_non_zero(tmp_path):
    # A save path in a missing directory fails on rank 0 only (the others never save).
    done = _train("--processes", "2", "--save", str(tmp_path / "missing" / "m.npz"), timeout=300)
    assert done.returncode != 0
    assert "does not exist" in done.stderr


def test_cli_failing_rank_ends_the_job_without_python_m_mpi4py(tmp_path):
    # Started without `-m mpi4py`: the train command itself must abort the job when rank 0
    # stops, or rank 1 would wait in the parameter broadcast until the timeout.
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "fastlinear", "train", "--distributed",
               "--epochs", "1", "--hidden", "8", "--no-progress",
               "--save", str(tmp_path / "missing" / "m.npz")]
    start = time.perf_counter()
    done = run_job(command, 120)
    assert done.returncode != 0
    assert "does not exist" in done.stderr
    assert time.perf_counter() - start < 120
