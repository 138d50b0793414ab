"""Training throughput of data-parallel ranks against one process, with the allreduce's share.

For the digits network (64-256-256-10) and a 784-1024-1024-10 network, float32, Adam, loop
kernels, at several global batch sizes, three ways to use the cores:

- 1 process x 1 thread,
- 2 ranks x 1 thread (mpiexec -n 2, `fastlinear.distributed.DataParallel`),
- 1 process x 2 threads;

and, for the ranks, the time per step spent in the allreduce (including any wait for the slower
rank) and the time of the allreduce alone (after a barrier, median of 50). Needs
``pip install 'fastlinear[distributed]'``:

    python asv_benchmarks/scripts/distributed_training.py [--json out.json]

Each configuration runs in fresh processes; kernels load from Numba's cache after the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

NETS = {"digits": [64, 256, 256, 10], "784-1024-1024-10": [784, 1024, 1024, 10]}
BATCHES = {"digits": (64, 256, 1024), "784-1024-1024-10": (64, 256, 1024)}
#: Steps timed per configuration (after 3 untimed ones), enough for about a second or more.
STEPS = {"digits": 300, "784-1024-1024-10": 20}


class TimedComm:
    """A communicator that adds up the seconds its allreduces take."""

    def __init__(self, comm) -> None:
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.node_rank, self.node_size = comm.node_rank, comm.node_size
        self.allreduce_s = 0.0

    def bcast(self, array, root=0):
        self.comm.bcast(array, root)

    def allreduce(self, array):
        t0 = time.perf_counter()
        self.comm.allreduce(array)
        self.allreduce_s += time.perf_counter() - t0

    def barrier(self):
        self.comm.barrier()


def worker(net: str, batch: int, threads: int, steps: int, distributed: bool) -> dict:
    import fastlinear as fl
    from fastlinear import nn

    fl.set_num_threads(threads)
    sizes = NETS[net]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    model = nn.mlp(sizes, "relu", dtype="float32", backend="loops", seed=0)
    opt = nn.Adam(model, lr=1e-4)
    if distributed:
        from fastlinear.distributed import DataParallel, MPICommunicator, shard_rows

        comm = TimedComm(MPICommunicator())
        dp = DataParallel(model, comm)
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        mine = shard_rows(batch, comm.rank, comm.size)
        xb, yb = np.ascontiguousarray(X[mine]), y[mine]
        dp.warm_cache([(xb, yb)], loss_fn, opt)

        def step():
            dp.step(xb, yb, loss_fn, opt)
    else:
        loss_fn = nn.CrossEntropyLoss()

        def step():
            model.zero_grad()
            _, d = loss_fn(model(X), y)
            model.backward(d, need_input_grad=False)
            opt.step()

    for _ in range(3):
        step()
    if distributed:
        comm.barrier()
        comm.allreduce_s = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    result = {"net": net, "batch": batch, "threads": threads, "steps": steps,
              "ms_per_step": 1e3 * seconds / steps, "samples_per_s": batch * steps / seconds,
              "ranks": 1, "gradient_mb": 0.0, "allreduce_ms_in_step": 0.0, "allreduce_ms_alone": 0.0}
    if distributed:
        alone = []
        for _ in range(50):
            comm.barrier()
            t = time.perf_counter()
            comm.comm.allreduce(dp.buffer)
            alone.append(time.perf_counter() - t)
        # Every rank's numbers; rank 0 reports the slowest rank's (the job runs at its pace).
        from mpi4py import MPI

        mine_stats = np.array([comm.allreduce_s / steps, float(np.median(alone))])
        slowest = np.empty_like(mine_stats)
        comm.comm.comm.Allreduce(mine_stats, slowest, op=MPI.MAX)  # the mpi4py communicator
        result.update(ranks=comm.size, gradient_mb=dp.buffer.nbytes / 1e6,
                      allreduce_ms_in_step=1e3 * slowest[0], allreduce_ms_alone=1e3 * slowest[1])
        if comm.rank != 0:
            return {}
    return result


def parameters(net: str) -> int:
    return sum(a * b + b for a, b in zip(NETS[net][:-1], NETS[net][1:]))


def flops_per_sample(net: str) -> int:
    """Forward, weight gradient and (except for the first layer) input gradient: 2 FLOPs per
    weight each."""
    layers = list(zip(NETS[net][:-1], NETS[net][1:]))
    return sum(6 * a * b for a, b in layers) - 2 * layers[0][0] * layers[0][1]


def allreduce_s(nbytes: float, ranks: int, gbit_s: float, latency_s: float) -> float:
    """Ring allreduce: 2(N-1) messages of nbytes/N each way (reduce-scatter, then allgather)."""
    return 2 * (ranks - 1) / ranks * nbytes / (gbit_s * 1e9 / 8) + 2 * (ranks - 1) * latency_s


def scaling_model(gflops_per_rank: float, fixed_ms: dict, latency_us: float) -> None:
    """Print the modelled efficiency T_1 / (N T_N) with T_N = fixed + c B/N + allreduce."""
    print(f"model: {gflops_per_rank:g} GFLOP/s per rank, per-step fixed cost {fixed_ms} ms, "
          f"{latency_us:g} us per message; efficiency at N ranks = T_1 / (N T_N)")
    print(f"{'network':18s} {'link':>8s} {'N':>3s} {'allreduce ms':>13s} "
          + " ".join(f"{f'b={b}':>7s}" for b in (16, 64, 256, 1024, 4096)))
    for net in NETS:
        c = flops_per_sample(net) / (gflops_per_rank * 1e9)
        nbytes = 4 * (parameters(net) + 2)
        f = fixed_ms[net] * 1e-3
        for gbit in (10, 25, 100):
            for n in (2, 16):
                a = allreduce_s(nbytes, n, gbit, latency_us * 1e-6)
                effs = []
                for b in (16, 64, 256, 1024, 4096):  # rows per rank per step
                    t1 = f + c * b * n
                    effs.append(t1 / (n * (f + c * b + a)))
                print(f"{net:18s} {f'{gbit} Gb/s':>8s} {n:3d} {1e3 * a:13.3f} "
                      + " ".join(f"{100 * e:6.0f}%" for e in effs))


def run_config(net: str, batch: int, ranks: int, threads: int) -> dict:
    script = os.path.abspath(__file__)
    words = ["--worker", net, str(batch), str(threads), str(STEPS[net])]
    if ranks > 1:
        from fastlinear.distributed.cli import mpiexec

        command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py", script, *words,
                   "--distributed"]
    else:
        command = [sys.executable, script, *words]
    env = {**os.environ, "FASTLINEAR_COMPILE_NOTICE": "0"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", nargs=4, metavar=("GFLOPS", "DIGITS_MS", "BIG_MS", "LATENCY_US"),
                        type=float, help="print only the scaling model for this compute rate per "
                        "rank, fixed per-step cost of each network, and link latency")
    args = parser.parse_args()
    if args.model:
        gflops, digits_ms, big_ms, latency = args.model
        scaling_model(gflops, {"digits": digits_ms, "784-1024-1024-10": big_ms}, latency)
        return
    if args.worker:
        net, batch, threads, steps = args.worker
        result = worker(net, int(batch), int(threads), int(steps), args.distributed)
        if result:
            print(json.dumps(result), flush=True)
        return
    rows = []
    print(f"{'network':18s} {'batch':>5s} {'processes x threads':>20s} {'samples/s':>10s} "
          f"{'ms/step':>8s} {'allreduce ms/step':>18s} {'allreduce alone ms':>19s} {'MB':>6s}")
    for net in NETS:
        for batch in BATCHES[net]:
            for ranks, threads in ((1, 1), (2, 1), (1, 2)):
                r = run_config(net, batch, ranks, threads)
                rows.append(r)
                extra = (f"{r['allreduce_ms_in_step']:18.3f} {r['allreduce_ms_alone']:19.3f} "
                         f"{r['gradient_mb']:6.2f}" if ranks > 1 else f"{'':18s} {'':19s} {'':6s}")
                print(f"{net:18s} {batch:5d} {f'{ranks} x {threads}':>20s} "
                      f"{r['samples_per_s']:10,.0f} {r['ms_per_step']:8.2f} {extra}", flush=True)
    # One process, one thread: ms/step = fixed + per_sample * batch (least squares over the
    # batch sizes). The fixed part (optimizer update, per-call overheads) is repeated on every
    # rank; the per-sample part is what the ranks divide. The scaling model starts from these.
    for net in NETS:
        ones = [r for r in rows if r["net"] == net and r["ranks"] == 1 and r["threads"] == 1]
        per_sample, fixed = np.polyfit([r["batch"] for r in ones], [r["ms_per_step"] for r in ones], 1)
        flops = flops_per_sample(net)
        print(f"{net}: 1 x 1 ms/step = {fixed:.3f} + {1e3 * per_sample:.2f} us x batch "
              f"({flops * 1e-6:.2f} MFLOP per sample: {flops / per_sample * 1e-6:.0f} GFLOP/s per core)")
    if args.json:
        from fastlinear._io import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump({"cpu_count": os.cpu_count(), "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
