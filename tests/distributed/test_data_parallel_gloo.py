"""DataParallel over torch.distributed's gloo backend: the communicator protocol is not MPI's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch.distributed")

from fastlinear import nn  # noqa: E402
from fastlinear.distributed import epoch_permutation, global_batches  # noqa: E402

HERE = Path(__file__).parent


@pytest.mark.slow
def test_gloo_ranks_match_one_process(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("mpi_worker", HERE / "mpi_worker.py")
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")]),
           "FASTLINEAR_COMPILE_NOTICE": "0"}
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, str(HERE / "gloo_worker.py"), str(r), "2", str(store),
                               str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    try:
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errors

    net = worker.model(seed=100, backend="blas")
    opt = nn.Adam(net, lr=1e-2)
    X, y = worker.problem()
    for epoch in range(2):
        for batch in global_batches(epoch_permutation(worker.ROWS, 7, epoch), 16):
            net.zero_grad()
            _, d = nn.CrossEntropyLoss()(net(X[batch]), y[batch])
            net.backward(d, need_input_grad=False)
            opt.step()
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    for name, p, _ in net.named_parameters():
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])
        np.testing.assert_allclose(ranks[0][name], p, rtol=1e-12, atol=1e-14)
