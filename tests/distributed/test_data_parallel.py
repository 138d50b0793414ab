"""DataParallel with in-process ranks (threads, see fake_comm.py): the gradient it produces, the
broadcast, sharding, the replica check, thread counts and the CLI's argument forwarding.

The models run on the blas backend here: several Python threads may call numpy's BLAS at once,
and the MPI tests (test_data_parallel_mpi.py) cover the loop kernels in separate processes."""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import pytest

import fastlinear as fl
from .fake_comm import run_ranks
from fastlinear import nn
from fastlinear.distributed import (DataParallel, ReplicaMismatch, SingleProcess, abort_on_exception,
                                    epoch_permutation, global_batches, runtime, shard_rows,
                                    threads_per_rank, warm_cache)
from fastlinear.distributed.cli import _forwarded

FEATURES, CLASSES = 6, 4


def make_model(seed: int, dtype=np.float64) -> nn.Sequential:
    return nn.mlp([FEATURES, 9, CLASSES], "relu", dtype=dtype, backend="blas", seed=seed)


def data(rows: int, dtype=np.float64):
    rng = np.random.default_rng(rows)
    return rng.standard_normal((rows, FEATURES)).astype(dtype), rng.integers(0, CLASSES, rows)


def mean_gradient(rows: int) -> list[np.ndarray]:
    """The single-process gradient of the mean loss over all rows, from rank 0's initial model."""
    model = make_model(seed=0)
    X, y = data(rows)
    model.zero_grad()
    _, d = nn.CrossEntropyLoss()(model(X), y)
    model.backward(d, need_input_grad=False)
    return [g.copy() for _, g in model.parameters()]


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 2, 7, 16])
def test_allreduced_gradient_is_the_mean_gradient_of_the_global_batch(size, rows):
    # rows < size leaves some ranks an empty slice; they still join the allreduce.
    X, y = data(rows)

    def work(comm):
        model = make_model(seed=comm.rank)  # replaced by rank 0's parameters
        dp = DataParallel(model, comm)
        mine = shard_rows(rows, comm.rank, comm.size)
        dp.zero_grad()
        loss = 0.0
        if X[mine].shape[0]:
            loss, d = nn.CrossEntropyLoss(reduction="sum")(model(X[mine]), y[mine])
            model.backward(d, need_input_grad=False)
        mean, total = dp.allreduce_gradients(loss, X[mine].shape[0])
        return [g.copy() for _, g in model.parameters()], mean, total

    results, _ = run_ranks(size, work)
    expected = mean_gradient(rows)
    for grads, mean, total in results:
        assert total == rows
        assert mean == results[0][1]
        for g, g0, ref in zip(grads, results[0][0], expected):
            np.testing.assert_array_equal(g, g0)
            np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-15)


def test_ranks_seeded_differently_are_equal_after_construction():
    def work(comm):
        model = make_model(seed=10 + comm.rank)
        DataParallel(model, comm)
        return model.state_dict()

    results, _ = run_ranks(3, work)
    reference = make_model(seed=10).state_dict()
    for state in results:
        for name, p in reference.items():
            np.testing.assert_array_equal(state[name], p)


def train(comm, batch_size: int, epochs: int, rows: int = 37):
    model = make_model(seed=comm.rank)
    opt = nn.Adam(model, lr=1e-2)  # built before DataParallel: step() re-points its gradients
    dp = DataParallel(model, comm, check_every=2)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    X, y = data(rows)
    losses = []
    for epoch in range(epochs):
        for batch in global_batches(epoch_permutation(rows, 3, epoch), batch_size):
            mine = batch[shard_rows(len(batch), comm.rank, comm.size)]
            losses.append(dp.step(X[mine], y[mine], loss_fn, opt))
    return model.state_dict(), losses


@pytest.mark.parametrize("size,batch_size", [(2, 8), (3, 8), (3, 2), (4, 3)])
def test_training_on_ranks_matches_one_process(size, batch_size):
    results, group = run_ranks(size, lambda comm: train(comm, batch_size, epochs=3))
    model = make_model(seed=0)
    opt = nn.Adam(model, lr=1e-2)
    X, y = data(37)
    losses = []
    for epoch in range(3):
        for batch in global_batches(epoch_permutation(37, 3, epoch), batch_size):
            model.zero_grad()
            loss, d = nn.CrossEntropyLoss()(model(X[batch]), y[batch])
            model.backward(d, need_input_grad=False)
            opt.step()
            losses.append(loss)
    for state, rank_losses in results:
        np.testing.assert_allclose(rank_losses, losses, rtol=1e-12)
        for name, p in model.state_dict().items():
            np.testing.assert_array_equal(state[name], results[0][0][name])
            np.testing.assert_allclose(state[name], p, rtol=1e-12, atol=1e-14)
    # Every rank made the same collectives in the same order, empty slice or not.
    assert all(calls == group.calls[0] for calls in group.calls)


def test_one_allreduce_per_step_over_one_buffer():
    def work(comm):
        model = make_model(seed=0)
        dp = DataParallel(model, comm)
        for layer in model.linears:
            for g in (layer.grad_weight, layer.grad_bias):
                assert np.shares_memory(g, dp.buffer)
                assert g.ctypes.data % 64 == 0  # each on a line of the buffer
        return dp.buffer.size

    results, group = run_ranks(2, lambda comm: (work(comm), train(comm, 8, 1, rows=16)))
    line = 64 // make_model(seed=0).dtype.itemsize
    padded = sum(-(-p.size // line) * line for _, p in make_model(seed=0).state_dict().items())
    assert results[0][0] == padded + 2  # gradients each padded to a line, loss sum, rows
    steps = [c for c in group.calls[0] if c.startswith("allreduce") and f"({padded + 2},)" in c]
    assert len(steps) == 2  # 16 rows in batches of 8


def test_replica_check_raises_on_every_rank_when_one_differs():
    def work(comm):
        model = make_model(seed=0)
        dp = DataParallel(model, comm)
        if comm.rank == 1:
            w = model.linears[0].weight
            w[0, 0] = np.nextafter(w[0, 0], np.inf)  # one bit
        try:
            dp.check_replicas()
        except ReplicaMismatch as exc:
            return str(exc)
        return None

    results, _ = run_ranks(3, work)
    assert all(r is not None and "1 of 3 ranks" in r for r in results)


def test_replica_check_passes_for_equal_replicas():
    results, _ = run_ranks(2, lambda comm: DataParallel(make_model(0), comm).check_replicas())
    assert results == [None, None]


def test_sync_optimizer_gives_every_rank_rank_0s_state():
    def work(comm):
        model = make_model(seed=0)
        dp = DataParallel(model, comm)
        opt = nn.Adam(model, lr=1e-3)
        if comm.rank == 0:  # only rank 0 "resumed" from a checkpoint
            opt.steps = 5
            for arrays in opt.state.values():
                for i, (p, _) in enumerate(opt.params):
                    if i != 1:  # one buffer never created: it must stay absent everywhere
                        arrays[i] = np.full_like(p, 0.25 + i)
        elif comm.rank == 2:  # a rank with stale state of its own
            for arrays in opt.state.values():
                arrays[1] = np.ones_like(opt.params[1][0])
        dp.sync_optimizer(opt)
        return opt.state_dict()

    results, _ = run_ranks(3, work)
    assert any(k.endswith(".0") for k in results[0]) and not any(k.endswith(".1") for k in results[0])
    for state in results:
        assert int(state["steps"]) == 5
        assert sorted(state) == sorted(results[0])
        for name, a in state.items():
            np.testing.assert_array_equal(a, results[0][name])


def test_single_process_communicator_is_plain_training():
    model, ref = make_model(0), make_model(0)
    dp = DataParallel(model, SingleProcess())
    opt, ref_opt = nn.SGD(model, lr=0.1), nn.SGD(ref, lr=0.1)
    X, y = data(10)
    loss = dp.step(X, y, nn.CrossEntropyLoss(reduction="sum"), opt)
    ref.zero_grad()
    ref_loss, d = nn.CrossEntropyLoss()(ref(X), y)
    ref.backward(d, need_input_grad=False)
    ref_opt.step()
    assert loss == pytest.approx(ref_loss, rel=1e-14)
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_a_bare_linear_layer_can_be_wrapped():
    layer = fl.Linear(3, 2, dtype=np.float32, backend="blas", seed=0)
    dp = DataParallel(layer, SingleProcess())
    # weight (6) and bias (2) each padded to a 64-byte line (16 float32), then loss sum and rows
    assert dp.buffer.dtype == np.float32 and dp.buffer.size == 16 + 16 + 2
    assert np.shares_memory(layer.grad_weight, dp.buffer)


def test_refuses_what_would_give_a_wrong_gradient():
    model = make_model(0)
    model.linears[0].reduction = "mean"
    with pytest.raises(ValueError, match="layer 0 has reduction='mean'"):
        DataParallel(model, SingleProcess())
    dp = DataParallel(make_model(0), SingleProcess())
    X, y = data(4)
    with pytest.raises(ValueError, match="reduction='mean'"):
        dp.step(X, y, nn.CrossEntropyLoss(), nn.SGD(dp.model, lr=0.1))
    with pytest.raises(ValueError, match="global batch has 0 rows"):
        dp.allreduce_gradients(0.0, 0)
    with pytest.raises(ValueError, match="rows must be an integer >= 0"):
        dp.allreduce_gradients(0.0, -1)
    with pytest.raises(ValueError, match="does not update this model"):
        dp.step(X, y, nn.CrossEntropyLoss(reduction="sum"), nn.SGD(make_model(0), lr=0.1))


def test_refuses_wrong_arguments():
    with pytest.raises(TypeError, match="lacks rank, size, bcast, allreduce, barrier"):
        DataParallel(make_model(0), object())
    with pytest.raises(TypeError, match="takes a fastlinear.Linear or an nn.Sequential"):
        DataParallel(object(), SingleProcess())
    with pytest.raises(ValueError, match="check_every"):
        DataParallel(make_model(0), SingleProcess(), check_every=-1)


def test_shard_rows_split_a_batch_into_contiguous_near_equal_slices():
    for rows in range(0, 30):
        for size in range(1, 6):
            slices = [shard_rows(rows, r, size) for r in range(size)]
            covered = np.concatenate([np.arange(rows)[s] for s in slices])
            np.testing.assert_array_equal(covered, np.arange(rows))
            lengths = [s.stop - s.start for s in slices]
            assert max(lengths) - min(lengths) <= 1
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        shard_rows(4, 2, 2)


def test_epoch_permutation_depends_only_on_seed_and_epoch():
    np.testing.assert_array_equal(epoch_permutation(50, 1, 2), epoch_permutation(50, 1, 2))
    assert not np.array_equal(epoch_permutation(50, 1, 2), epoch_permutation(50, 1, 3))
    assert not np.array_equal(epoch_permutation(50, 1, 2), epoch_permutation(50, 2, 2))
    assert sorted(epoch_permutation(50, 1, 2)) == list(range(50))


class _NodeComm:
    def __init__(self, rank=0, size=2, node_rank=0, node_size=2):
        self.rank, self.size, self.node_rank, self.node_size = rank, size, node_rank, node_size
        self.aborted = None
        self.barriers = 0

    def barrier(self):
        self.barriers += 1

    def abort(self, code=1):
        self.aborted = code


@pytest.mark.parametrize("cores,machine,node_size,expected", [
    (16, 16, 2, 8),   # the whole machine, shared by two ranks
    (16, 16, 3, 5),
    (2, 2, 2, 1),
    (1, 1, 1, 1),
    (4, 16, 4, 4),    # bound to 4 cores by the launcher: they are this rank's
])
def test_threads_per_rank_share_the_machine(monkeypatch, cores, machine, node_size, expected):
    monkeypatch.setattr(runtime, "usable_cores", lambda: cores)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: machine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert threads_per_rank(_NodeComm(node_size=node_size)) == expected


def test_threads_per_rank_warns_when_pinned_to_one_core(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cores", lambda: 1)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 16)
    with pytest.warns(RuntimeWarning, match="pinned to one core but its machine has 16 cores for 2"):
        assert threads_per_rank(_NodeComm(node_size=2)) == 1


def test_warm_cache_runs_on_the_first_rank_of_each_machine_only():
    ran = []
    first, other = _NodeComm(node_rank=0), _NodeComm(node_rank=1)
    warm_cache(first, lambda: ran.append("first"))
    warm_cache(other, lambda: ran.append("other"))
    assert ran == ["first"] and first.barriers == other.barriers == 1


def test_warm_cache_step_leaves_the_model_and_optimizer_unchanged():
    model = make_model(0)
    dp = DataParallel(model, SingleProcess())
    opt = nn.Adam(model, lr=0.1)
    before = model.state_dict()
    X, y = data(5)
    dp.warm_cache([(X, y), (X[:2], y[:2])], nn.CrossEntropyLoss(reduction="sum"), opt,
                  eval_x=data(9)[0])
    assert opt.steps == 0 and model.training
    for name, p in model.state_dict().items():
        np.testing.assert_array_equal(p, before[name])


def test_uncaught_exception_aborts_every_rank(monkeypatch, capsys):
    comm = _NodeComm()
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    abort_on_exception(comm)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    assert comm.aborted == 1
    assert "boom" in capsys.readouterr().err


def test_processes_forwards_every_train_option():
    from fastlinear.cli import parser as make_parser

    parser = make_parser()
    for argv in (["train", "--processes", "2"],
                 ["train", "--processes", "3", "--hidden", "32,16", "--lr", "0.0001234567891",
                  "--no-progress", "--save", "m.npz", "--dtype", "float64", "--threads", "1",
                  "--optimizer", "sgd", "--momentum", "0.5", "--test-fraction", "0.3"],
                 ["train", "--processes", "2", "--hidden", "none", "--data", "x.csv"]):
        args = parser.parse_args(argv)
        again = parser.parse_args(["train", "--distributed", *_forwarded(args)])
        expected = {**vars(args), "processes": None, "distributed": True}
        assert vars(again) == expected, argv


def test_distributed_options_refuse_bad_combinations(capsys):
    from fastlinear.cli import main

    assert main(["train", "--processes", "0"]) == 2
    assert "--processes must be >= 1" in capsys.readouterr().err
    assert main(["train", "--processes", "2", "--distributed"]) == 2
    assert "leave out --distributed" in capsys.readouterr().err


def test_ranks_that_are_pure_threads_abort_together_on_barrier_errors():
    # The fake group frees waiting ranks when one fails, so a failing test cannot hang.
    def work(comm):
        if comm.rank == 1:
            raise KeyError("rank 1")
        comm.barrier()

    with pytest.raises(KeyError):
        run_ranks(3, work)


def test_argparse_namespace_without_comm_is_untouched():
    args = argparse.Namespace(processes=None, distributed=False)
    assert _forwarded(args) == []
