"""The auto backend follows the tuning table: for each op, the backend the table names for the
call's dtype, shape class and thread count; the built-in defaults (the loop kernels, bit for bit)
when the table is missing, off, corrupt, malformed or from another machine, with one line on
stderr for a table it ignores; correct results either way; and the shape classification rule."""

from __future__ import annotations

import json
import statistics

import numba
import numpy as np
import pytest

import fastlinear as fl
from fastlinear import tuning
from fastlinear.backends import auto, loops
from fastlinear.cli import harness
from fastlinear.cli.problems import SHAPE_CLASSES, error_ratio, reduction_lengths, reference

OPS = tuning.TUNED_OPS
SMALL, TINY = SHAPE_CLASSES["small"], SHAPE_CLASSES["tiny"]


@pytest.fixture
def matmul_calls(monkeypatch):
    """Counts numpy matmul calls: the blas kernels make one per product, the loop kernels none."""
    calls = []
    real = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    return calls


def notes(err: str) -> list[str]:
    """The stderr lines other than the compile notice (kernels compile on first use)."""
    return [line for line in err.splitlines() if not line.startswith("fastlinear: compil")]


def write_table(path, entries, key=None, classes=None) -> None:
    doc = {"command": tuning.COMMAND, "format": tuning.FORMAT, "key": key or tuning.machine_key(),
           "shape_classes": {c: list(s) for c, s in (classes or SHAPE_CLASSES).items()},
           "entries": entries}
    path.write_text(json.dumps(doc))


def entry(op, dtype, cls, threads, choice) -> dict:
    return {"op": op, "dtype": dtype, "class": cls, "threads": threads, "choice": choice}


def run_op(kernels, op, dtype, shape, seed=0):
    """Call ``kernels.<op>`` on seeded data; return the outputs and the inputs."""
    n, k, m = shape
    rng = np.random.default_rng(seed)
    x, w, b, dy = (rng.standard_normal(s).astype(dtype) for s in ((n, k), (m, k), (m,), (n, m)))
    if op == "forward":
        y = np.full((n, m), np.nan, dtype)
        kernels.forward(y, x, w, b, 0)
        return {"forward": y}, (x, w, b, dy)
    if op == "grad_weight":
        dw, db = np.full((m, k), np.nan, dtype), np.full(m, np.nan, dtype)
        kernels.grad_weight(dw, db, dy, x, np.dtype(dtype).type(1), False)
        return {"grad_weight": dw, "grad_bias": db}, (x, w, b, dy)
    dx = np.full((n, k), np.nan, dtype)
    kernels.grad_input(dx, dy, w)
    return {"grad_input": dx}, (x, w, b, dy)


def assert_correct(outputs, inputs, dtype, shape) -> None:
    for op, got in outputs.items():
        ((ref, mag),) = reference(op, *inputs)
        ratio = error_ratio(got, ref, mag, reduction_lengths(op, *shape)[0], dtype)
        assert ratio <= 1, f"{op} {shape} {dtype}: error {ratio:.3g} x tolerance"


# --- following a table ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", OPS)
def test_auto_runs_blas_exactly_where_the_table_says(op, dtype, table_file, matmul_calls, capsys):
    t = fl.get_num_threads()
    write_table(table_file, [entry(op, dtype, "small", t, "blas"),
                             entry(op, dtype, "tiny", t, "loops")])
    outputs, inputs = run_op(auto, op, dtype, SMALL)
    assert len(matmul_calls) == 1, "the table's blas entry was not followed"
    assert_correct(outputs, inputs, dtype, SMALL)

    matmul_calls.clear()
    for shape in (TINY, (30, 140, 120)):  # tiny: loops in the table; 30x140x120: nearest small
        outputs, inputs = run_op(auto, op, dtype, shape)
        assert_correct(outputs, inputs, dtype, shape)
    assert len(matmul_calls) == 1, "only the shape nearest small goes to blas"

    matmul_calls.clear()
    other = "float64" if dtype == "float32" else "float32"
    run_op(auto, op, other, SMALL)
    for other_op in OPS:
        if other_op != op:
            run_op(auto, other_op, dtype, SMALL)
    assert not matmul_calls, "a dtype or op the table does not route to blas ran blas"
    assert auto.table_in_use()["source"] == "table"
    assert auto.choice(op, dtype, *SMALL) == "blas" and auto.choice(op, dtype, *TINY) == "loops"
    assert auto.choice("grad_bias", dtype, *SMALL) == "loops"
    assert notes(capsys.readouterr().err) == []


def test_grad_weight_through_blas_still_computes_db(table_file, matmul_calls):
    write_table(table_file, [entry("grad_weight", "float32", "small", t, "blas")
                             for t in range(1, numba.config.NUMBA_NUM_THREADS + 1)])
    outputs, inputs = run_op(auto, "grad_weight", "float32", SMALL)
    assert matmul_calls
    assert set(outputs) == {"grad_weight", "grad_bias"}
    assert_correct(outputs, inputs, "float32", SMALL)
    # accumulate with a scale: dw += s * dy.T @ x and db += s * sum(dy)
    x, _, _, dy = inputs
    dw, db = outputs["grad_weight"].copy(), outputs["grad_bias"].copy()
    auto.grad_weight(dw, db, dy, x, np.float32(0.5), True)
    np.testing.assert_allclose(dw, 1.5 * outputs["grad_weight"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(db, 1.5 * outputs["grad_bias"], rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_the_choice_follows_the_thread_count(table_file, matmul_calls, restore_threads):
    write_table(table_file, [entry("forward", "float64", "small", 1, "blas"),
                             entry("forward", "float64", "small", 2, "loops")])
    with fl.threads(2):
        run_op(auto, "forward", "float64", SMALL)
        assert not matmul_calls
        assert auto.choice("forward", "float64", *SMALL) == "loops"
    with fl.threads(1):
        outputs, inputs = run_op(auto, "forward", "float64", SMALL)
        assert len(matmul_calls) == 1
        assert_correct(outputs, inputs, "float64", SMALL)
    assert auto.choice("forward", "float64", *SMALL, threads=1) == "blas"


def test_an_unmeasured_thread_count_uses_the_nearest_measured_one():
    assert auto._nearest(3, [1, 2]) == 2
    assert auto._nearest(16, [1, 2, 8]) == 8
    assert auto._nearest(1, [2, 8]) == 2
    assert auto._nearest(4, [2, 8]) == 8  # a tie by ratio goes to the larger count


def test_the_remembered_decisions_are_bounded(table_file, monkeypatch):
    write_table(table_file, [entry("forward", "float32", "small", 1, "blas")])
    monkeypatch.setattr(auto, "_MEMO_MAX", 3)
    for n in range(1, 10):
        run_op(auto, "forward", "float32", (n, 4, 4))
        assert len(auto._forward) <= 3


# --- the built-in defaults ------------------------------------------------------------------


def _same_bits_as_loops(op: str, dtype: str, shape) -> None:
    got, inputs = run_op(auto, op, dtype, shape)
    want, _ = run_op(loops, op, dtype, shape)
    for name in want:
        assert np.array_equal(got[name], want[name]), f"auto {name} differs from loops"
    assert_correct(got, inputs, dtype, shape)


BAD_TABLES = {
    "not JSON": lambda p: p.write_text("{ this is not json"),
    "not a table": lambda p: p.write_text(json.dumps({"results": []})),
    "wrong format": lambda p: p.write_text(json.dumps({"command": tuning.COMMAND, "format": 99})),
    "malformed entry": lambda p: write_table(p, [entry("forward", "float32", "small", 1, "magic")]),
    "unknown class": lambda p: write_table(p, [entry("forward", "float32", "huge", 1, "blas")]),
    "binary": lambda p: p.write_bytes(b"\xff\xfe\x00garbage"),
}


@pytest.mark.parametrize("kind", list(BAD_TABLES))
def test_a_corrupt_table_is_ignored_with_one_line(kind, table_file, matmul_calls, capsys):
    BAD_TABLES[kind](table_file)
    for op in OPS:
        _same_bits_as_loops(op, "float32", SMALL)
    assert not matmul_calls
    (err,) = notes(capsys.readouterr().err)
    assert str(table_file) in err and "built-in defaults" in err, err
    assert auto.table_in_use()["source"] == "defaults"


@pytest.mark.parametrize("field, value", [("cpu", "Some Other CPU 9000"), ("cpus", 4096),
                                          ("numpy", "0.0.1"), ("numba", "0.1"),
                                          ("blas", ["mkl 1.0 (Haswell)"]), ("fastlinear", "0.0")])
def test_a_table_from_another_machine_or_version_is_ignored(field, value, table_file, matmul_calls,
                                                            capsys):
    key = tuning.machine_key()
    key[field] = value
    write_table(table_file, [entry(op, "float32", c, t, "blas") for op in OPS for c in SHAPE_CLASSES
                             for t in range(1, numba.config.NUMBA_NUM_THREADS + 1)], key=key)
    for op in OPS:
        _same_bits_as_loops(op, "float32", SMALL)
    assert not matmul_calls
    (err,) = notes(capsys.readouterr().err)
    assert f"another {field}" in err, err
    with pytest.raises(tuning.TableError) as exc:
        tuning.load(table_file, tuning.machine_key())
    assert exc.value.foreign


def test_a_missing_table_named_by_the_variable_gives_one_line(table_file, matmul_calls, capsys):
    _same_bits_as_loops("forward", "float64", SMALL)
    _same_bits_as_loops("grad_input", "float64", SMALL)
    (err,) = notes(capsys.readouterr().err)
    assert "does not exist" in err
    assert not matmul_calls


def test_no_table_in_the_cache_means_defaults_silently(tmp_path, monkeypatch, matmul_calls, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(tuning.ENV, raising=False)
    auto.reload()
    try:
        for op in OPS:
            _same_bits_as_loops(op, "float32", SMALL)
        info = auto.table_in_use()
        assert info["source"] == "defaults" and info["path"] == str(tuning.default_path())
        assert notes(capsys.readouterr().err) == []
        assert not matmul_calls

        # the same file, once written, is read after a reload
        tuning.default_path().parent.mkdir(parents=True)
        write_table(tuning.default_path(), [entry("forward", "float32", "small", t, "blas")
                                            for t in range(1, numba.config.NUMBA_NUM_THREADS + 1)])
        auto.reload()
        run_op(auto, "forward", "float32", SMALL)
        assert len(matmul_calls) == 1
    finally:
        auto.reload()


def test_off_means_defaults_even_with_a_table(table_file, monkeypatch, matmul_calls, capsys):
    write_table(table_file, [entry("forward", "float32", "small", t, "blas")
                             for t in range(1, numba.config.NUMBA_NUM_THREADS + 1)])
    monkeypatch.setenv(tuning.ENV, "off")
    _same_bits_as_loops("forward", "float32", SMALL)
    assert not matmul_calls and notes(capsys.readouterr().err) == []
    used = auto.table_in_use()
    assert used.pop("packed") == loops.packed_limits()
    assert used == {"source": "defaults", "path": None, "reason": f"{tuning.ENV}=off", "blas": []}
    assert loops.packed_limits()["source"] == "defaults"


def test_default_path_is_keyed_by_the_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    key = tuning.machine_key()
    assert set(key) == {"cpu", "cpus", "fastlinear", "numpy", "blas", "numba"}
    path = tuning.default_path(key)
    assert path.parent == tmp_path / "fastlinear" and path.name.startswith("tuning-")
    other = dict(key, numpy="0.0.1")
    assert tuning.default_path(other) != path
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, per XDG
    assert tuning.cache_dir() == tuning.Path.home() / ".cache" / "fastlinear"


# --- the classification rule ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(SHAPE_CLASSES))
def test_each_class_shape_is_its_own_class(name):
    assert tuning.classify(*SHAPE_CLASSES[name], SHAPE_CLASSES) == name


@pytest.mark.parametrize("shape, name", [
    ((2, 16, 16), "tiny"),
    ((0, 16, 16), "tiny"),  # sizes below 1 count as 1
    ((64, 1024, 1024), "medium"),  # squared log distance 2.9, against 3.8 to wide, 7.7 to large
    ((32, 784, 10), "skinny_in"),
    ((512, 256, 10), "skinny_out"),
    ((1, 4096, 4096), "wide"),
    ((4096, 4096, 4096), "large"),
    ((30, 140, 120), "small"),
])
def test_classification_examples(shape, name):
    assert tuning.classify(*shape, SHAPE_CLASSES) == name


def test_classification_is_by_log_distance_with_ties_to_the_first():
    classes = {"a": (1, 1, 1), "b": (4, 4, 4)}
    assert tuning.classify(2, 2, 2, classes) == "a"  # exactly between by ratio: the first listed
    assert tuning.classify(3, 2, 2, classes) == "b"  # ln 3 > ln 2: nearer b in one coordinate
    assert tuning.classify(2, 2, 2, {"b": (4, 4, 4), "a": (1, 1, 1)}) == "b"
    # 10x100x10: squared log distance 31.8 to 1x1x1, 5.3 to 10x100x100
    assert tuning.classify(10, 100, 10, {"x": (1, 1, 1), "y": (10, 100, 100)}) == "y"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_serial_loops_shape_goes_straight_to_the_loop_kernel(dtype, table_file):
    """Where the table says loops and loops would run a serial kernel, auto calls that compiled
    kernel itself (no second Python layer), and the result is loops' bit for bit."""
    t = fl.get_num_threads()
    write_table(table_file, [entry(op, dtype, "tiny", t, "loops") for op in OPS])
    for op in OPS:
        want, _ = run_op(loops, op, dtype, TINY)
        got, inputs = run_op(auto, op, dtype, TINY)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
        memo = {"forward": auto._forward, "grad_weight": auto._grad_weight,
                "grad_input": auto._grad_input}[op]
        kernel = loops.serial_kernel(op, np.dtype(dtype).itemsize, *TINY)
        assert kernel is not None and kernel in memo.values()
    assert loops.serial_kernel("forward", 4, *SHAPE_CLASSES["large"]) is None


@pytest.mark.parametrize("choice", ["loops", "blas"])
@pytest.mark.parametrize("shape", [TINY, (4, 5, 0), SHAPE_CLASSES["small"]])
def test_grad_weight_without_db_through_every_route(choice, shape, table_file, monkeypatch):
    """auto hands an empty db (`loops.ABSENT`) for None to whichever kernel it remembered (loops'
    serial kernel, loops' Python layer, BLAS with the loop bias gradient): dw is right, no bias
    gradient is computed (the BLAS route never calls the bias kernel), and the shared empty arrays
    stay empty."""
    bias_calls = []
    real_grad_bias = loops.grad_bias
    monkeypatch.setattr(loops, "grad_bias", lambda db, *rest: (bias_calls.append(db.shape),
                                                              real_grad_bias(db, *rest)))
    t = fl.get_num_threads()
    write_table(table_file, [entry("grad_weight", "float32", c, t, choice) for c in SHAPE_CLASSES])
    n, k, m = shape
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, k)).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    want = dy.astype(np.float64).T @ x
    one = np.float32(1)
    for with_db in (False, True, False):
        dw = np.full((m, k), np.nan, np.float32)
        db = np.full(m, np.nan, np.float32) if with_db else None
        bias_calls.clear()
        auto.grad_weight(dw, db, dy, x, one, False)
        assert bias_calls == ([(m,)] if with_db and choice == "blas" and m else [])
        np.testing.assert_allclose(dw, want, rtol=1e-4, atol=1e-4)
        if with_db:
            np.testing.assert_allclose(db, dy.astype(np.float64).sum(0), rtol=1e-4, atol=1e-4)
    assert loops.ABSENT[4].shape == (0,) and loops.ABSENT[8].shape == (0,)


@pytest.mark.parametrize("choice", ["loops", "blas"])
@pytest.mark.parametrize("shape", [TINY, (4, 5, 0), SHAPE_CLASSES["small"]])
def test_forward_without_bias_through_every_route(choice, shape, table_file):
    """auto hands an empty bias (`loops.ABSENT`) for None to whichever kernel it remembered (loops'
    serial kernel, loops' Python layer, BLAS, which must see None again): y is right with and
    without a bias, and the shared empty arrays stay empty."""
    t = fl.get_num_threads()
    write_table(table_file, [entry("forward", "float32", c, t, choice) for c in SHAPE_CLASSES])
    n, k, m = shape
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    for bias in (None, b, None):
        y = np.full((n, m), np.nan, np.float32)
        auto.forward(y, x, w, bias, 0)
        want = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if bias is None else b)
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    assert loops.ABSENT[4].shape == (0,) and loops.ABSENT[8].shape == (0,)


def _result(backend: str, samples: list[float]) -> harness.Result:
    return harness.Result((32, 128, 128), "float32", "forward", backend, 2, "ok", 1,
                          error=0.0, median_s=statistics.median(samples), samples_s=samples)


@pytest.mark.parametrize("loops_s, blas_s, choice, won", [
    # blas 1.5x faster in every round: chosen
    ([3.0] * 5, [2.0] * 5, "blas", 5),
    # 1.5x in the medians, but blas slower in 2 of 5 rounds: a win the noise could have made
    ([3.0] * 5, [2.0, 2.0, 3.5, 3.5, 2.0], "loops", 3),
    # blas won 4 of 5 rounds by more than 3%, and the medians agree: chosen
    ([3.0, 3.0, 3.0, 3.0, 1.0], [2.0] * 5, "blas", 4),
    # blas won 4 of 5 rounds by more than 3%, but the medians say loops (one slow blas round
    # among slower loops rounds): loops
    ([0.6, 0.6, 1.05, 1.05, 0.1], [0.5, 0.5, 1.01, 1.01, 5.0], "loops", 4),
    # 3 of 5 rounds: not enough
    ([3.0, 3.0, 3.0, 1.0, 1.0], [2.0] * 5, "loops", 3),
    # within 3% in every round (a near tie): the loop kernels
    ([2.05] * 5, [2.0] * 5, "loops", 0),
    # loops faster
    ([1.0] * 5, [2.0] * 5, "loops", 0),
])
def test_blas_is_chosen_only_when_it_wins_the_medians_and_most_paired_rounds(loops_s, blas_s,
                                                                              choice, won):
    e = tuning._entry("forward", "float32", "small", 2,
                      {"loops": _result("loops", loops_s), "blas": _result("blas", blas_s)})
    assert (e["choice"], e["blas_rounds_won"], e["rounds"]) == (choice, won, 5)
    assert e["faster"] == ("blas" if e["blas_s"] < e["loops_s"] else "loops")


def test_a_sign_test_of_three_rounds_needs_all_three():
    assert tuning.blas_wins(3.0, 2.0, won=3, rounds=3)
    assert not tuning.blas_wins(3.0, 2.0, won=2, rounds=3)
    assert tuning.blas_wins(3.0, 2.0, won=6, rounds=7)
    assert not tuning.blas_wins(3.0, 2.0, won=5, rounds=7)
    assert not tuning.blas_wins(3.0, 2.0, won=0, rounds=0)
