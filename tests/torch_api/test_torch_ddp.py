"""torch DistributedDataParallel (gloo, 2 spawned processes) over a model whose nn.Linear layers
were swapped for fastlinear's: after training, the two replicas hold the same parameters, and those
equal one process training on the whole batch (DDP averages the ranks' gradients)."""

from __future__ import annotations

import multiprocessing
import os
import queue

import pytest

torch = pytest.importorskip("torch")
flt = pytest.importorskip("fastlinear.torch")
dist = pytest.importorskip("torch.distributed")

WORLD = 2
STEPS = 5
BATCH = 16  # per rank
TIMEOUT_S = 300  # the first run on a machine may compile the float64 kernels in both processes


def _model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 24, dtype=torch.float64), torch.nn.Tanh(),
                                torch.nn.Linear(24, 24, dtype=torch.float64), torch.nn.ReLU(),
                                torch.nn.Linear(24, 3, dtype=torch.float64))
    return flt.replace_linear(model, fuse_activations=True)


def _data():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, WORLD * BATCH, 12, dtype=torch.float64, generator=gen)
    t = torch.randint(0, 3, (STEPS, WORLD * BATCH), generator=gen)
    return x, t


def _train(model, xs, ts) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, t in zip(xs, ts):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), t).backward()
        opt.step()


def _worker(rank: int, init_file: str, results) -> None:
    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                world_size=WORLD)
        model = torch.nn.parallel.DistributedDataParallel(_model())
        x, t = _data()
        shard = slice(rank * BATCH, (rank + 1) * BATCH)
        _train(model, x[:, shard], t[:, shard])
        # numpy arrays travel by pickling; tensors would go through shared memory that is gone
        # once this process exits
        results.put((rank, {k: v.numpy().copy() for k, v in model.module.state_dict().items()}))
        dist.destroy_process_group()
    except BaseException as exc:  # report, so the parent does not wait for the timeout
        results.put((rank, repr(exc)))
        raise


@pytest.mark.slow
def test_ddp_gloo_two_processes_keep_replicas_equal(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # GNU OpenMP is not fork-safe
    results = ctx.Queue()
    init_file = os.fspath(tmp_path / "rendezvous")
    procs = [ctx.Process(target=_worker, args=(rank, init_file, results)) for rank in range(WORLD)]
    for p in procs:
        p.start()
    states = {}
    try:
        for _ in range(WORLD):
            rank, state = results.get(timeout=TIMEOUT_S)
            assert not isinstance(state, str), f"rank {rank} failed: {state}"
            states[rank] = {k: torch.from_numpy(v) for k, v in state.items()}
    except queue.Empty:
        pytest.fail(f"DDP workers gave no result within {TIMEOUT_S} s")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * WORLD

    single = _model()
    before = {k: v.clone() for k, v in single.state_dict().items()}
    x, t = _data()
    _train(single, x, t)
    for key, value in single.state_dict().items():
        assert torch.equal(states[0][key], states[1][key]), f"replicas differ in {key}"
        err = (states[0][key] - value).abs().max().item()
        assert err <= 1e-12, f"{key}: DDP differs from one process by {err:.3g}"
        assert not torch.equal(value, before[key]), f"{key} did not train"
