"""fastlinear on a machine where another program keeps a core busy: the default (adaptive) thread
count against one thread and against every core, for `fastlinear train` and for a kernel loop.

Each measurement runs in a fresh process, beside a busy loop of another process that stops by
itself after ``--busy-seconds``; rows without the busy loop are the idle reference. Run from the
repository root:

    python asv_benchmarks/scripts/busy_machine.py

Prints a markdown table: training samples/s (median over epochs 2+, higher is better) and the
median time of one forward + backward (``fl.linear`` then ``fl.linear_backward``) of a
256x512x512 float32 layer in microseconds (lower is better), with ``--backend`` (loops, blas, or
torch for the training run only).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

_KERNEL = """
import sys, time, statistics
import numpy as np, fastlinear as fl
threads, backend = sys.argv[1], sys.argv[3]
if threads != "default":
    fl.set_num_threads(int(threads))
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 512), dtype=np.float32)
w = rng.standard_normal((512, 512), dtype=np.float32)
b = np.zeros(512, np.float32)
dy = rng.standard_normal((256, 512), dtype=np.float32)
for _ in range(5):
    fl.linear(x, w, b, backend=backend); fl.linear_backward(dy, x, w, backend=backend)
times, end = [], time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < end:
    t = time.perf_counter()
    fl.linear(x, w, b, backend=backend); fl.linear_backward(dy, x, w, backend=backend)
    times.append(time.perf_counter() - t)
print(statistics.median(times) * 1e6, fl.get_num_threads())
"""


def _busy(seconds: float) -> subprocess.Popen:
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def _train(threads: str, epochs: int, backend: str) -> float:
    args = [sys.executable, "-m", "fastlinear", "train", "--no-progress", "--epochs", str(epochs),
            "--backend", backend]
    if threads != "default":
        args += ["--threads", threads]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"median ([\d,]+) samples/s", out).group(1).replace(",", ""))


def _kernel(threads: str, seconds: float, backend: str) -> float:
    if backend == "torch":
        return float("nan")  # the kernel loop is fastlinear's functional API
    out = subprocess.run([sys.executable, "-c", _KERNEL, threads, str(seconds), backend],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="seconds of kernel timing per run (default 3)")
    parser.add_argument("--busy-seconds", type=float, default=60.0,
                        help="life of each busy loop (default 60)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each row (default 2)")
    parser.add_argument("--backend", choices=["loops", "blas", "torch"], default="loops",
                        help="backend of the training run and the kernel loop (torch: training "
                             "only) (default loops)")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [("idle", "default"), ("busy", "default"), ("busy", "1"), ("busy", str(cores))]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {r: [] for r in rows}
    _train("1", 2, args.backend)  # compile (or load from the cache) before timing anything
    for _ in range(args.repeat):
        for load, threads in rows:
            busy = _busy(args.busy_seconds) if load == "busy" else None
            try:
                time.sleep(0.5)
                results[(load, threads)].append((_train(threads, args.epochs, args.backend),
                                                 _kernel(threads, args.seconds, args.backend)))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            time.sleep(0.5)
    print(f"{cores} cores; backend {args.backend}; one busy process beside each 'busy' run; "
          f"runs: {args.repeat}")
    print("| load | threads | train samples/s | 256x512x512 step (us) |")
    print("|---|---|---|---|")
    for load, threads in rows:
        train = ", ".join(f"{r[0]:,.0f}" for r in results[(load, threads)])
        kernel = ", ".join(f"{r[1]:,.0f}" for r in results[(load, threads)])
        print(f"| {load} | {threads} | {train} | {kernel} |")


if __name__ == "__main__":
    main()
