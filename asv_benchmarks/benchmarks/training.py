"""Training throughput: samples per second of one full training step (forward, softmax
cross-entropy, backward, Adam update) of an MLP, for the loop kernels, numpy's BLAS and PyTorch
with the same network, initial weights and batch, in float32.

Networks: "digits" is the `fastlinear train` default (64-256-256-10, ReLU, batch 64); "mnist" a
synthetic 784-1024-1024-10 ReLU MLP at batch 256. time_step and peakmem_step are asv's usual
measurements; track_samples_per_s reports the rate of the fastest step.

Compare a branch with main (from asv_benchmarks/; both must be committed):

    FASTLINEAR_BENCH_PROFILE=regular asv continuous -b '^training' main my-branch

Side by side in one process, interleaved, equal threads (medians of several rounds), from the
repository root:

    cd asv_benchmarks && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=.. \\
        python -m benchmarks.training --threads 1
"""

from __future__ import annotations

import numpy as np

from fastlinear import nn

from .common import THREADS, Benchmark, best_time, use_threads

#: name -> (layer sizes, batch size)
NETWORKS = {"digits": ([64, 256, 256, 10], 64), "mnist": ([784, 1024, 1024, 10], 256)}
BACKENDS = ["loops", "blas", "torch"]


class _Step:
    """One training step of an MLP on a fixed random batch, on a fastlinear backend or torch."""

    def __init__(self, network: str, backend: str, seed: int = 0) -> None:
        sizes, batch = NETWORKS[network]
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
        self.labels = rng.integers(0, sizes[-1], batch)
        self.batch = batch
        model = nn.mlp(sizes, "relu", backend="loops" if backend == "torch" else backend, seed=seed)
        opt = nn.Adam(model, lr=1e-4)
        if backend == "torch":
            try:
                import torch
            except ImportError:
                raise NotImplementedError("torch is not installed") from None
            from fastlinear.nn.torch_bridge import to_torch, torch_optimizer

            self.torch = torch
            self.tmodel = to_torch(model)
            self.topt = torch_optimizer(opt, self.tmodel)
            self.tx, self.tl = torch.from_numpy(self.x), torch.from_numpy(self.labels)
            self.run = self._torch_step
        else:
            self.model, self.opt, self.loss_fn = model, opt, nn.CrossEntropyLoss()
            self.run = self._step

    def _step(self) -> float:
        self.model.zero_grad()
        loss, dlogits = self.loss_fn(self.model(self.x), self.labels)
        self.model.backward(dlogits, need_input_grad=False)
        self.opt.step()
        return loss

    def _torch_step(self) -> float:
        self.topt.zero_grad(set_to_none=False)
        loss = self.torch.nn.functional.cross_entropy(self.tmodel(self.tx), self.tl)
        loss.backward()
        self.topt.step()
        return loss.item()


class TrainingStep(Benchmark):
    param_names = ["network", "backend", "threads"]
    params = [list(NETWORKS), BACKENDS, THREADS]

    def setup(self, network, backend, threads):
        use_threads(threads)
        self.step = _Step(network, backend)
        if backend == "torch":
            self.step.torch.set_num_threads(threads)
        # Warm-up outside the timed region (compiles or loads kernels, grows the buffers); the
        # loss must be finite and the same step must lower it, or the step is not training.
        first = self.step.run()
        for _ in range(3):
            last = self.step.run()
        if not (np.isfinite(first) and last < first):
            raise AssertionError(f"{network}/{backend}: loss went from {first} to {last}")

    def time_step(self, *params):
        self.step.run()

    def peakmem_step(self, *params):
        self.step.run()

    def track_samples_per_s(self, network, *params):
        return self.step.batch / best_time(self.step.run, (), 0.25)

    track_samples_per_s.unit = "samples/s"


def side_by_side(threads: int, rounds: int, steps: int) -> None:
    """Print the median samples/s of each backend, interleaved round by round in this process."""
    import statistics
    import time

    import fastlinear as fl

    fl.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
        backends = BACKENDS
    except ImportError:
        backends = [b for b in BACKENDS if b != "torch"]
    print(f"{threads} thread(s) for Numba, BLAS and torch; {rounds} rounds of {steps} steps, medians")
    print(f"{'network':28} " + " ".join(f"{b:>14}" for b in backends) + "   loops/blas  loops/torch")
    for network, (sizes, batch) in NETWORKS.items():
        runners = {b: _Step(network, b) for b in backends}
        for r in runners.values():
            r.run()  # warm-up
        rates: dict[str, list[float]] = {b: [] for b in backends}
        for _ in range(rounds):
            for b, r in runners.items():
                t0 = time.perf_counter()
                for _ in range(steps):
                    r.run()
                rates[b].append(steps * batch / (time.perf_counter() - t0))
                time.sleep(0.05)  # let the previous backend's spinning threads go idle
        med = {b: statistics.median(v) for b, v in rates.items()}
        label = f"{'-'.join(map(str, sizes))} b{batch}"
        ratios = f"{med['loops'] / med['blas']:11.2f}"
        if "torch" in med:
            ratios += f"  {med['loops'] / med['torch']:11.2f}"
        print(f"{label:28} " + " ".join(f"{med[b]:14,.0f}" for b in backends) + "   " + ratios)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="training samples/s, backends side by side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    a = parser.parse_args()
    side_by_side(a.threads, a.rounds, a.steps)
