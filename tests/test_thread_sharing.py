"""What may be shared between Python threads: inference on one model or layer from many threads at
once gives every thread its own correct result; training calls on one layer or model from two
threads raise RuntimeError instead of mixing their buffers and gradients."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastlinear as fl
from fastlinear import nn


def _inputs(count: int, rows: int, features: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((rows, features)).astype(np.float32) for _ in range(count)]


def test_shared_model_predict_from_many_threads_gives_each_its_own_labels():
    model = nn.mlp([64, 256, 256, 10], "relu", seed=0)
    xs = _inputs(40, 37, 64)
    expected = [model.predict(x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(model.predict, xs))
            for e, g in zip(expected, got):
                assert np.array_equal(e, g)
    assert model.training, "predict changed the model's mode"


def test_shared_model_in_eval_mode_forward_from_many_threads():
    model = nn.mlp([32, 64, 5], "tanh", seed=1).eval()
    xs = _inputs(30, 9, 32)
    expected = [model(x).copy() for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: model(x).copy(), xs * 3))
    for e, g in zip(expected * 3, got):
        assert np.array_equal(e, g)


def test_shared_layer_inference_without_cache_from_many_threads():
    layer = fl.Linear(48, 40, activation="relu", seed=0)
    xs = _inputs(30, 11, 48)
    expected = [layer(x, cache=False) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: layer(x, cache=False), xs * 3))
    for e, g in zip(expected * 3, got):
        assert np.array_equal(e, g)


def test_predict_keeps_a_pending_training_forward():
    model = nn.mlp([8, 6, 3], seed=0)
    x = np.ones((4, 8), np.float32)
    out = model(x)
    model.predict(x)
    model.backward(np.ones_like(out))  # the training forward's cache is still there
    assert np.any(model[0].grad_weight != 0)


def _in_other_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    return box


@pytest.mark.parametrize("kind", ["Linear", "Sequential"])
def test_backward_from_another_thread_than_its_forward_is_refused(kind):
    x = np.ones((4, 8), np.float32)
    module = fl.Linear(8, 3, seed=0) if kind == "Linear" else nn.mlp([8, 5, 3], seed=0)
    y = module(x)
    box = _in_other_thread(lambda: module.backward(np.ones_like(y)))
    assert isinstance(box.get("error"), RuntimeError)
    assert "another thread" in str(box["error"])
    module.backward(np.ones_like(y))  # the owning thread still can


@pytest.mark.parametrize("kind", ["Linear", "Sequential"])
def test_training_from_two_threads_at_once_raises_instead_of_corrupting(kind):
    """Two threads each run forward+backward on one shared module many times. Every step either
    completes with the gradients one thread alone would give, or raises RuntimeError: none ever
    returns a gradient mixed from the two threads' batches."""
    rng = np.random.default_rng(0)
    make = (lambda: fl.Linear(256, 256, activation="relu", seed=0)) if kind == "Linear" else (
        lambda: nn.mlp([256, 256, 256], "relu", seed=0))
    shared, alone = make(), make()
    batches = [rng.standard_normal((64, 256)).astype(np.float32) for _ in range(2)]
    expected = []
    for x in batches:
        alone.zero_grad()
        y = alone(x)
        dx = alone.backward(np.ones_like(y))
        expected.append(dx.copy())
    errors, wrong, ok = [], [], []
    start = threading.Barrier(2)

    def worker(i):
        start.wait()
        for _ in range(200):
            try:
                y = shared(batches[i])
                dx = shared.backward(np.ones_like(y)).copy()
            except RuntimeError as exc:
                errors.append(str(exc))
                continue
            (ok if np.array_equal(dx, expected[i]) else wrong).append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not wrong, f"{len(wrong)} steps returned a dx mixed from two threads' data"
    assert ok, "no step completed at all"
    assert all("thread" in e for e in errors)
