"""`fastlinear._compile.compile_steps`: before the first training step on a cold cache, the layers'
kernels compile here and in other processes at once, exactly those the steps call.

The first test starts fresh interpreters against an empty cache (slow); the others check the
split and its guards in this process, with the process start replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastlinear as fl
from fastlinear import _compile, nn
from fastlinear.activations import CODES

# A cold start: compile_steps, then training steps and an evaluation at each batch size; prints
# which modules compiled kernels during the steps and the trained weights.
STEPS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from numba.core import event

    phase = ["before"]
    compiled = []  # (module, phase) of every function this process compiles


    class Names(event.Listener):
        def on_start(self, ev):
            from fastlinear import _compile

            if not getattr(_compile._local, "probing", False):  # the probe stops those
                compiled.append((getattr(ev.data["dispatcher"].py_func, "__module__", "?"),
                                 phase[0]))

        def on_end(self, ev):
            pass


    event.register("numba:compile", Names())
    import fastlinear as fl
    from fastlinear import _compile, nn

    fl.set_num_threads(2)
    # 64 -> 256 at batch 64 reaches the parallel variants, 256 -> 10 at batch 5 the serial ones
    model = nn.mlp([64, 256, 10], "relu", backend="loops", seed=0)
    opt = nn.Adam(model, lr=1e-3)
    rows = (64, 5)
    if sys.argv[2] == "no-python":  # the other process fails to start
        sys.executable = "/nonexistent/python"
    model.warmup(rows, need_input_grad=False, jobs=int(sys.argv[1]))
    phase[0] = "steps"
    rng = np.random.default_rng(0)
    loss_fn = nn.CrossEntropyLoss()
    for n in rows:
        x = rng.standard_normal((n, 64)).astype(np.float32)
        model.zero_grad()
        loss, dlogits = loss_fn(model(x), rng.integers(0, 10, n))
        model.backward(dlogits, need_input_grad=False)
        opt.step()
        model.predict(x, batch_size=n)
    late = sorted({m for m, p in compiled if p == "steps" and m.startswith("fastlinear")})
    print(json.dumps({"late": late, "before": len([p for _, p in compiled if p == "before"]),
                      "bits": [l.weight.tobytes().hex() for l in model.linears]}))
    """
)


def _run(cache_dir, jobs: int, how: str = "") -> tuple[dict, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    proc = subprocess.run([sys.executable, "-c", STEPS, str(jobs), how], env=env, text=True,
                          capture_output=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.slow
def test_cold_steps_compile_in_two_processes_and_nothing_of_the_layers_later(tmp_path):
    cold, err = _run(tmp_path, 2)
    assert "here and in 1 other process at once" in err, err
    assert "compiled the weight grad kernels of the layers: 1 of 1" in err, err
    assert cold["before"] > 0
    # during the steps only the optimizer's kernels compile: every layer kernel came from
    # compile_steps, here or through the cache from the other process
    assert set(cold["late"]) <= {"fastlinear.nn._optim_kernels"}, cold["late"]
    warm, err = _run(tmp_path, 2)
    assert "process" not in err and warm["before"] == 0 and warm["late"] == []
    assert warm["bits"] == cold["bits"]
    # when the other process cannot start, its part compiles here before warmup returns
    alone, err = _run(tmp_path / "other", 2, "no-python")
    assert "could not start a compile process" in err and "the 1 group not started" in err, err
    assert set(alone["late"]) <= {"fastlinear.nn._optim_kernels"}, alone["late"]
    assert alone["bits"] == cold["bits"]


def _model(bias: bool = True):
    return nn.Sequential(fl.Linear(5, 7, bias=False, backend="loops"), nn.ReLU(),
                         fl.Linear(7, 3, bias=bias, backend="loops", reduction="mean"))


def test_step_layers_describes_each_dense_layer():
    first, last = _compile.step_layers(_model())
    assert first == {"in_features": 5, "out_features": 7, "dtype": "float32", "backend": "loops",
                     "act": CODES["relu"], "bias": False, "reduction": "sum",
                     "input_grad": False}
    assert last == {**first, "in_features": 7, "out_features": 3, "act": CODES[None],
                    "bias": True, "reduction": "mean", "input_grad": True}
    assert [l["input_grad"] for l in _compile.step_layers(_model(), need_input_grad=True)] == [
        True, True]


@pytest.fixture
def cold(monkeypatch):
    """compile_steps as on a cold cache, with the steps and the processes recorded, not run."""
    calls = {"probe": 0, "here": [], "units": []}

    def run_steps(layers, rows, parts, threads):
        if getattr(_compile._local, "probing", False):
            calls["probe"] += 1
            raise _compile._Uncached(None)
        calls["here"].append((sorted(parts), rows, threads))

    def run_processes(units, jobs, meanwhile=None):
        calls["units"].append(([spec["parts"] for _, spec in units], jobs))
        meanwhile()

    monkeypatch.setattr(_compile, "_run_steps", run_steps)
    monkeypatch.setattr(_compile, "_run_processes", run_processes)
    return calls


def test_cold_steps_split_the_weight_gradients_off_first(cold):
    layers = _compile.step_layers(_model())
    with fl.threads(2):
        _compile.compile_steps(layers, [30, 64, 0, 64], jobs=2)
    assert cold["units"] == [([["weight_grad"]], 2)]
    # this process's part while the other runs, then the other's part: loaded from the cache,
    # or compiled here if that process failed
    assert cold["here"] == [(["forward", "input_grad"], [30, 64], 2),
                            (["weight_grad"], [30, 64], 2)]
    for jobs in (3, 8):
        cold["units"].clear()
        cold["here"].clear()
        _compile.compile_steps(layers, [8], jobs=jobs)
        assert cold["units"] == [([["weight_grad"], ["input_grad"]], jobs)]
        assert [parts for parts, _, _ in cold["here"]] == [["forward"],
                                                           ["input_grad", "weight_grad"]]


def test_without_jobs_or_a_writable_cache_everything_compiles_here(cold, monkeypatch):
    from fastlinear import _cache

    layers = _compile.step_layers(_model())
    _compile.compile_steps(layers, [8], jobs=1)
    monkeypatch.setattr(_cache, "can_write", lambda: False)
    _compile.compile_steps(layers, [8], jobs=2)
    assert cold["probe"] == 0 and cold["units"] == []
    assert [parts for parts, _, _ in cold["here"]] == [sorted(_compile.STEP_PARTS)] * 2


def test_nothing_to_compile_runs_nothing(cold):
    layers = _compile.step_layers(_model())
    _compile.compile_steps([{**layer, "backend": "blas"} for layer in layers], [8], jobs=2)
    _compile.compile_steps(layers, [0], jobs=2)
    _compile.compile_steps([], [8], jobs=2)
    assert cold == {"probe": 0, "here": [], "units": []}


def test_model_warmup_passes_its_layers_and_checks_its_arguments(monkeypatch):
    seen = []
    monkeypatch.setattr(_compile, "compile_steps", lambda *a: seen.append(a))
    model = _model()
    with fl.threads(2):
        model.warmup(64)  # as backward's default: with the first layer's input gradient
        model.warmup((n for n in [64, np.int64(5)]), need_input_grad=False, jobs=3)
    assert seen == [(_compile.step_layers(model, True), [64], 2),
                    (_compile.step_layers(model), [64, 5], 3)]
    for sizes, error, match in ((0, ValueError, "batch sizes must be >= 1, got 0"),
                                ([64, -1], ValueError, "batch sizes must be >= 1, got -1"),
                                ([], ValueError, "batch_sizes is empty"),
                                ([2.0], TypeError, r"batch sizes must be ints, got 2.0 in \[2.0\]"),
                                ([True], TypeError, "batch sizes must be ints, got True"),
                                ("64", TypeError, "an int or an iterable of ints, got '64'"),
                                (64.0, TypeError, "an int or an iterable of ints, got 64.0"),
                                (None, TypeError, "an int or an iterable of ints, got None"),
                                (np.array(64), TypeError, r"got array\(64\)")):
        with pytest.raises(error, match=match):
            model.warmup(sizes)
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        model.warmup(8, jobs=0)
    with pytest.raises(TypeError, match="need_input_grad must be True or False"):
        model.warmup(8, need_input_grad="yes")
    assert len(seen) == 2


def test_warm_steps_start_no_process(monkeypatch):
    started = []
    monkeypatch.setattr(_compile, "_run_processes", lambda *a, **k: started.append(a))
    layers = _compile.step_layers(_model())
    _compile._run_steps(layers, [8], _compile.STEP_PARTS, 1)  # compiled or loaded here
    _compile.compile_steps(layers, [8], jobs=2)
    assert started == []


class _Proc:
    """Stands in for a compile process that ends at once, successfully."""

    def __init__(self, args, **kwargs):
        _Proc.started.append(json.loads(args[3])["label"])
        self.returncode = 0

    def poll(self):
        return 0


def test_while_this_process_compiles_it_takes_one_job(monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", _Proc)
    monkeypatch.setenv("FASTLINEAR_COMPILE_NOTICE", "0")
    _Proc.started = []
    seen = []
    units = [(f"unit {i}", {"label": i}) for i in range(3)]
    _compile._run_processes(units, 2, meanwhile=lambda: seen.append(list(_Proc.started)))
    assert seen == [[0]]  # one process beside this one
    assert _Proc.started == [0, 1, 2]


def test_this_process_still_compiles_when_no_process_starts(monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise OSError("no python here")

    monkeypatch.setattr(subprocess, "Popen", fail)
    monkeypatch.setenv("FASTLINEAR_COMPILE_NOTICE", "1")
    seen = []
    _compile._run_processes([("unit", {})], 2, meanwhile=lambda: seen.append(1))
    assert seen == [1]
    assert "could not start a compile process (no python here)" in capsys.readouterr().err
