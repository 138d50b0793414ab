"""Training speed inside an ordinary PyTorch loop: torch.nn.Linear against fastlinear.torch layers.

Two networks (ReLU between layers, float32): the digits net 64-256-256-10 at batch 64 (on the
embedded digits data) and 784-1024-1024-10 at batch 256 (on random data of that size); SGD with
momentum 0.9 and cross-entropy, as in a plain torch script. Variants:

* ``torch``: the model as written, with ``torch.nn.Linear``;
* ``fastlinear``: the same model after ``fastlinear.torch.replace_linear(model)``;
* ``fastlinear fused``: ``replace_linear(model, fuse_activations=True)`` (ReLU inside the kernel);
* ``fastlinear.nn``: fastlinear's own training loop (``fastlinear.nn``, no torch), for reference.

Thread counts are set together for torch, Numba and BLAS. Each variant is timed in its own settled
block (a pause for the other pools' threads to go idle, then warm-up steps), the variants take turns
block by block, and the table gives the median samples/s over the blocks:

    python asv_benchmarks/scripts/torch_training.py                  # the table (about 2 minutes)
    python asv_benchmarks/scripts/torch_training.py --overhead       # per call, batch 1, 16 -> 16
    python asv_benchmarks/scripts/torch_training.py --profile fastlinear --net 784-1024-1024-10

Run it on an otherwise idle machine. With other work on the cores, the two OpenMP runtimes in the
process (torch's bundled libgomp, and the system's under Numba's ``omp`` layer) keep their idle
threads spinning, and every parallel region waits for a thread that lost its core: on a shared
2-core machine the 2-thread rows fell 10-50x below the 1-thread ones for every variant, torch's
included, and ``OMP_WAIT_POLICY=PASSIVE`` gave most of it back.

``--profile VARIANT`` runs cProfile over that variant's steps and prints where the time goes;
``--ops`` times each layer's kernels alone (fastlinear's raw kernels on numpy arrays against the
torch calls nn.Linear makes), to tell the kernels' share from the wrapper's.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import time
import timeit

import numba
import numpy as np
import threadpoolctl
import torch

import fastlinear as fl
import fastlinear.torch as flt
from fastlinear.datasets import load_digits

NETS = {"64-256-256-10": 64, "784-1024-1024-10": 256}  # net -> batch size
VARIANTS = ("torch", "fastlinear", "fastlinear fused", "fastlinear.nn")
LR, MOMENTUM = 0.01, 0.9


def set_threads(n: int) -> None:
    """One thread count for torch's pool, Numba's and BLAS's."""
    torch.set_num_threads(n)
    fl.set_num_threads(n)


def batches(net: str, batch: int, count: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``count`` batches (count, batch, features) float32 and labels (count, batch) int64."""
    sizes = [int(s) for s in net.split("-")]
    rng = np.random.default_rng(0)
    if sizes[0] == 64:
        x, y = load_digits()
        x = (x / 16.0).astype(np.float32)  # pixel values 0..16
        idx = rng.integers(0, len(x), size=(count, batch))
        return x[idx], y[idx].astype(np.int64)
    x = rng.standard_normal((count, batch, sizes[0])).astype(np.float32)
    return x, rng.integers(0, sizes[-1], size=(count, batch)).astype(np.int64)


def torch_model(net: str) -> torch.nn.Sequential:
    sizes = [int(s) for s in net.split("-")]
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def make_step(variant: str, net: str, xs: np.ndarray, ys: np.ndarray):
    """A function running one training step on the next batch (cycling through ``xs``)."""
    count = len(xs)
    state = {"i": 0}
    if variant == "fastlinear.nn":
        from fastlinear.nn import SGD, CrossEntropyLoss, mlp

        model = mlp([int(s) for s in net.split("-")], "relu", dtype=np.float32, init="torch")
        loss_fn, opt = CrossEntropyLoss(), SGD(model, lr=LR, momentum=MOMENTUM)

        def step() -> None:
            i = state["i"] = (state["i"] + 1) % count
            opt.zero_grad()
            _, dz = loss_fn(model.forward(xs[i]), ys[i])
            model.backward(dz, need_input_grad=False)
            opt.step()

        return step
    model = torch_model(net)
    if variant != "torch":
        flt.replace_linear(model, fuse_activations=variant == "fastlinear fused")
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xt, yt = torch.from_numpy(xs), torch.from_numpy(ys)
    cross_entropy = torch.nn.functional.cross_entropy

    def step() -> None:
        i = state["i"] = (state["i"] + 1) % count
        opt.zero_grad()
        cross_entropy(model(xt[i]), yt[i]).backward()
        opt.step()

    return step


#: the clock blocks are timed with: wall time, or (``--clock cpu``) the process's CPU time, which on
#: a machine shared with other work leaves out the time spent waiting for a core; it is a fair
#: measure of one thread only (with more, it adds up the threads, idle spinning included)
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def settled_rate(step, batch: int, steps: int, warmup: int, pause: float) -> float:
    """Samples/s over ``steps`` steps, after a pause and ``warmup`` untimed steps."""
    time.sleep(pause)  # let the last block's spinning OpenMP / Numba threads go idle
    for _ in range(warmup):
        step()
    t0 = clock()
    for _ in range(steps):
        step()
    return steps * batch / (clock() - t0)


def machine() -> str:
    """The CPU model, core count and library versions, for the header of a table."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs; torch {torch.__version__}, numpy {np.__version__}, "
            f"numba {numba.__version__}")


def thread_pools() -> str:
    """The thread pools loaded in this process (after a step of each variant has run)."""
    # the last two path components tell torch's bundled libgomp (torch/lib/) from the system's
    pools = [f"{p['internal_api']} {os.path.join(*p['filepath'].split(os.sep)[-2:])} "
             f"({p['num_threads']} threads)" for p in threadpoolctl.threadpool_info()]
    return f"numba threading layer {numba.threading_layer()}; pools: " + ", ".join(pools)


def table(nets, threads, variants, blocks: int, seconds: float, pause: float) -> None:
    print(f"# {machine()}; float32, SGD momentum {MOMENTUM}, cross-entropy; median samples/s "
          f"over {blocks} settled blocks, {clock.__name__}")
    print("| net | batch | threads | " + " | ".join(variants) + " | fastlinear / torch |")
    print("|---|---:|---:|" + "---:|" * (len(variants) + 1))
    for net in nets:
        batch = NETS[net]
        xs, ys = batches(net, batch)
        for n in threads:
            set_threads(n)
            steppers = {v: make_step(v, net, xs, ys) for v in variants}
            # steps per block: about ``seconds`` of the slowest variant, measured once
            steps = {}
            for v, step in steppers.items():
                rate = settled_rate(step, batch, 3, 3, pause)
                steps[v] = max(5, int(seconds * rate / batch))
            rates: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(blocks):
                for v, step in steppers.items():
                    rates[v].append(settled_rate(step, batch, steps[v], 3, pause))
            med = {v: statistics.median(r) for v, r in rates.items()}
            cells = " | ".join(f"{med[v]:,.0f}" for v in variants)
            ratio = (f"{med['fastlinear'] / med['torch']:.2f}x"
                     if "fastlinear" in med and "torch" in med else "")
            if "fastlinear fused" in med and "torch" in med:
                ratio += f" ({med['fastlinear fused'] / med['torch']:.2f}x fused)"
            print(f"| {net} | {batch} | {n} | {cells} | {ratio} |", flush=True)
    print(f"# {thread_pools()}")


def overhead(threads: int) -> None:
    """Per-call cost at batch 1, 16 -> 16 features (best of 5 x 20,000 calls)."""
    set_threads(threads)

    def per_call_us(fn) -> float:
        fn()
        return min(timeit.repeat(fn, timer=clock, number=20000, repeat=5)) / 20000 * 1e6

    x = torch.ones(1, 16)
    ref, ours = torch.nn.Linear(16, 16), flt.Linear(16, 16)
    rows = []
    for name, layer in (("torch.nn.Linear", ref), ("fastlinear.torch.Linear", ours)):
        with torch.no_grad():
            rows.append((f"{name} forward, no_grad", per_call_us(lambda: layer(x))))
        rows.append((f"{name} forward, autograd", per_call_us(lambda: layer(x))))
        y = layer(x)
        dy = torch.ones_like(y)
        rows.append((f"{name} forward + backward",
                     per_call_us(lambda: layer(x).backward(dy))))
    w, b = ours.weight.detach(), ours.bias.detach()
    rows.append(("torch.ops.fastlinear.linear (dispatcher), no_grad",
                 per_call_us(lambda: torch.ops.fastlinear.linear(x, w, b, 0, "auto"))))
    rows.append(("torch.ops.fastlinear.linear (dispatcher), autograd",
                 per_call_us(lambda: torch.ops.fastlinear.linear(x, ours.weight, ours.bias, 0,
                                                                 "auto"))))
    print(f"# per call, batch 1, 16 -> 16 features, float32, {threads} thread(s); best of 5 x "
          f"20,000, {clock.__name__}")
    for name, us in rows:
        print(f"{name:52s} {us:7.2f} us")


def ops(nets, threads: int) -> None:
    """Per layer of each net: fastlinear's raw kernels against torch's, microseconds per call."""
    set_threads(threads)
    kernels = fl.get_backend("auto")
    one = np.float32(1)

    def per_call_us(fn, seconds: float = 0.2) -> float:
        fn()
        t0 = clock()
        calls = 0
        while clock() - t0 < seconds:
            fn()
            calls += 1
        return min(timeit.repeat(fn, timer=clock, number=max(1, calls // 5), repeat=7)) / max(
            1, calls // 5) * 1e6

    print(f"# microseconds per call, float32, {threads} thread(s), best of 7, {clock.__name__}")
    print("| layer (batch x in x out) | op | fastlinear kernel | torch | torch / fastlinear |")
    print("|---|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for net in nets:
        sizes = [int(s) for s in net.split("-")]
        n = NETS[net]
        for k, m in zip(sizes[:-1], sizes[1:]):
            x = rng.standard_normal((n, k)).astype(np.float32)
            w = rng.standard_normal((m, k)).astype(np.float32)
            b, dy = np.zeros(m, np.float32), rng.standard_normal((n, m)).astype(np.float32)
            y, dx, dw, db = (np.empty((n, m), np.float32), np.empty((n, k), np.float32),
                             np.empty((m, k), np.float32), np.empty(m, np.float32))
            g = np.empty_like(dy)
            xt, wt, bt, dyt, yt = map(torch.from_numpy, (x, w, b, dy, y))
            rows = [
                ("forward", lambda: kernels.forward(y, x, w, b, 0),
                 lambda: torch.addmm(bt, xt, wt.T)),
                ("forward + relu", lambda: kernels.forward(y, x, w, b, 1),
                 lambda: torch.relu(torch.addmm(bt, xt, wt.T))),
                ("grad_weight + bias", lambda: kernels.grad_weight(dw, db, dy, x, one, False),
                 lambda: (dyt.T.mm(xt), dyt.sum(0))),
                ("grad_input", lambda: kernels.grad_input(dx, dy, w), lambda: dyt.mm(wt)),
                ("relu grad + bias", lambda: kernels.activation_grad(g, db, dy, y, 1, one, False),
                 lambda: torch.ops.aten.threshold_backward(dyt, yt, 0).sum(0)),
            ]
            for op, ours, theirs in rows:
                a, t = per_call_us(ours), per_call_us(theirs)
                print(f"| {n}x{k}x{m} | {op} | {a:,.1f} | {t:,.1f} | {t / a:.2f}x |", flush=True)


def profile(variant: str, net: str, threads: int, steps: int, top: int) -> None:
    set_threads(threads)
    batch = NETS[net]
    xs, ys = batches(net, batch)
    step = make_step(variant, net, xs, ys)
    settled_rate(step, batch, 3, 3, 0.2)
    prof = cProfile.Profile()
    prof.enable()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - t0
    prof.disable()
    print(f"# {variant}, {net}, batch {batch}, {threads} thread(s): {steps} steps in "
          f"{elapsed:.3f} s, {steps * batch / elapsed:,.0f} samples/s (under cProfile)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", action="append", choices=tuple(NETS),
                        help="network (repeatable; default: both)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--blocks", type=int, default=7, help="timed blocks per variant")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one block")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds of rest before a block")
    parser.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                        help="wall time, or process CPU time (a proxy on a busy machine, 1 thread)")
    parser.add_argument("--overhead", action="store_true",
                        help="per-call cost at batch 1, 16 -> 16")
    parser.add_argument("--ops", action="store_true",
                        help="each layer's kernels alone, fastlinear against torch")
    parser.add_argument("--profile", choices=VARIANTS, help="cProfile one variant's steps")
    parser.add_argument("--steps", type=int, default=200, help="steps to profile")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCK[args.clock]
    nets = args.net or list(NETS)
    if args.overhead:
        overhead(args.threads[-1])
    elif args.ops:
        ops(nets, args.threads[-1])
    elif args.profile:
        profile(args.profile, nets[0], args.threads[-1], args.steps, 25)
    else:
        table(nets, args.threads, args.variants, args.blocks, args.seconds, args.pause)


if __name__ == "__main__":
    main()
