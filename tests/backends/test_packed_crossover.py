"""Where the loops backend switches from its direct kernels to the packed GEMM: the built-in
crossovers until a tuning table has a ``packed`` section, then the table's (read once per process,
again after a reload), for the forward, weight-gradient and input-gradient products of both
dtypes; a malformed section makes the whole table ignored; and the rule `fastlinear tune` uses to
place a crossover on its ladder of measured shapes."""

from __future__ import annotations

import json
import math

import numba
import numpy as np
import pytest

from fastlinear import tuning
from fastlinear.backends import auto, loops
from fastlinear.cli.problems import SHAPE_CLASSES

WORKS = [n * k * m for n, k, m in tuning.CROSSOVER_LADDER]


def write_table(path, packed) -> None:
    doc = {"command": tuning.COMMAND, "format": tuning.FORMAT, "key": tuning.machine_key(),
           "shape_classes": {c: list(s) for c, s in SHAPE_CLASSES.items()}, "entries": []}
    if packed is not None:
        doc["packed"] = packed
    path.write_text(json.dumps(doc))


@pytest.fixture
def packed_calls(monkeypatch):
    """Records which packed kernels the loops backend calls (they still run). The crossovers
    alone: the gradients' rule for an operand as large as the L2 cache, which depends on the
    machine, is off here (tested in test_loops_dispatch)."""
    monkeypatch.setattr(loops, "L2_BYTES", 1 << 62)
    calls = []
    for name in ("packed_forward", "packed_grad_weight", "packed_grad_input"):
        real = getattr(loops, name)
        monkeypatch.setattr(loops, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    return calls


def call(op, dtype, n, k, m, seed=0):
    """One call of the loops backend's ``op`` on seeded data; returns its output."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    x, w, b, dy = (rng.standard_normal(s).astype(dt) for s in ((n, k), (m, k), (m,), (n, m)))
    if op == "forward":
        y = np.empty((n, m), dt)
        loops.forward(y, x, w, b, 0)
        return y
    if op == "grad_weight":
        dw, db = np.empty((m, k), dt), np.empty(m, dt)
        loops.grad_weight(dw, db, dy, x, dt.type(1), False)
        return dw
    dx = np.empty((n, k), dt)
    loops.grad_input(dx, dy, w)
    return dx


OPS = ("forward", "grad_weight", "grad_input")


def test_builtin_crossovers_without_a_packed_section(table_file, packed_calls):
    write_table(table_file, None)
    limits = loops.packed_limits()
    assert limits["source"] == "defaults"
    assert limits["above"]["forward"] == {"float32": 1 << 24, "float64": 1 << 24}
    assert limits["above"]["grad_input"] == {"float32": 1 << 26, "float64": 1 << 26}
    call("forward", "float32", 64, 512, 512)  # 2**24: not above the forward's crossover
    call("grad_input", "float64", 128, 512, 1024)  # 2**26: not above
    assert packed_calls == []
    call("forward", "float32", 128, 512, 512)
    call("grad_weight", "float64", 256, 512, 1024)
    assert packed_calls == ["packed_forward", "packed_grad_weight"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_tables_crossover_moves_the_switch_both_ways(op, dtype, table_file, packed_calls):
    other = "float64" if dtype == "float32" else "float32"
    write_table(table_file, {"above": {op: {dtype: 0}}})
    assert loops.packed_limits()["source"] == "table"
    call(op, dtype, 64, 128, 128)  # 2**20, far below the built-in crossovers
    assert packed_calls == [f"packed_{op}"]
    call(op, other, 64, 128, 128)  # the dtype the table leaves out keeps the built-in crossover
    assert packed_calls == [f"packed_{op}"]
    call(op, dtype, 7, 2048, 8192)  # above 2**26, but a batch too narrow for every op
    assert packed_calls == [f"packed_{op}"]

    write_table(table_file, {"above": {op: {dtype: 1 << 40}}})
    auto.reload()
    del packed_calls[:]
    n, k, m = 256, 512, 1024  # 2**27: above every built-in crossover
    got = call(op, dtype, n, k, m)
    assert packed_calls == []
    # the direct kernel's own result, bit for bit
    direct, _ = loops.direct_and_packed(op)
    auto.reload()
    write_table(table_file, None)
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    x, w, b, dy = (rng.standard_normal(s).astype(dt) for s in ((n, k), (m, k), (m,), (n, m)))
    if op == "forward":
        want = np.empty((n, m), dt)
        direct(want, x, w, b, 0)
    elif op == "grad_weight":
        want = np.empty((m, k), dt)
        direct(want, np.empty(m, dt), dy, x, dt.type(1), False)
    else:
        want = np.empty((n, k), dt)
        direct(want, dy, w)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("packed", [
    {"above": {"forward": {"float32": -1}}},
    {"above": {"forward": {"float16": 5}}},
    {"above": {"grad_bias": {"float32": 5}}},
    {"above": {"forward": {"float32": 1.5}}},
    {"above": []},
    {"no above": 1},
    "packed",
    {"above": {}, "w_in_place_rows": {"float32": -1}},
    {"above": {}, "w_in_place_rows": {"float32": 64.0}},
    {"above": {}, "w_in_place_rows": [64]},
    {"above": {}, "w_in_place_rows": {"float32": 4096}},
    {"above": {}, "w_in_place_rows": {"float16": 64}},
    {"above": {}, "w_in_tile_rows": {"float64": -1}},
    {"above": {}, "w_in_tile_rows": {"float32": 4096}},
    {"above": {}, "w_in_tile_rows": 64},
], ids=["negative", "dtype", "op", "float", "list", "missing", "string", "rows negative",
        "rows float", "rows list", "rows above MC", "rows dtype", "tile rows negative",
        "tile rows above MC", "tile rows int"])
def test_a_malformed_packed_section_makes_the_table_ignored(packed, table_file, packed_calls,
                                                            capsys):
    write_table(table_file, packed)
    with pytest.raises(tuning.TableError, match="packed section"):
        tuning.load(table_file, tuning.machine_key())
    assert loops.packed_limits()["source"] == "defaults"
    assert "malformed packed section" in capsys.readouterr().err
    call("forward", "float32", 64, 128, 128)
    assert packed_calls == []


def test_the_crossover_is_shown_with_the_table_in_use(table_file):
    write_table(table_file, {"above": {"grad_weight": {"float64": 1 << 20}}})
    used = tuning.describe()
    assert used["packed"]["source"] == "table"
    assert used["packed"]["above"]["grad_weight"]["float64"] == 1 << 20
    from fastlinear.cli import info

    assert used["packed"]["measured"] == {"grad_weight": {"float64": 1 << 20}}
    line = info._tuning_line(used)
    rows, tile = loops.W_IN_PLACE_ROWS, loops.W_IN_TILE_ROWS
    l2 = (f"; below the built-in ones, the input gradient packs from a batch of "
          f"{loops.REREAD_ROWS['grad_input']} where w has at least {loops.L2_BYTES >> 10} KiB "
          f"(this machine's L2 cache), the weight gradient from "
          f"{loops.REREAD_ROWS['grad_weight']} out_features where x has")
    tiles = (f"; its forward and input gradient pack w in the tiles: float32 up to a batch of "
             f"{tile}, float64 up to a batch of {tile} (built-in){l2}")
    assert line.endswith("packed GEMM above batch x in x out = grad_weight float64 2**20 "
                         "(measured; built-in crossovers for the rest); its forward reads w in "
                         f"place: float32 up to a batch of {rows}, float64 up to a batch of {rows} "
                         f"(built-in){tiles}"), line
    auto.reload()
    write_table(table_file, None)
    line = info._tuning_line(tuning.describe())
    assert line.endswith("forward float32 2**24, float64 2**24; grad_weight float32 2**26, "
                         "float64 2**26; grad_input float32 2**26, float64 2**26 (built-in); its "
                         f"forward reads w in place: float32 up to a batch of {rows}, float64 up "
                         f"to a batch of {rows} (built-in){tiles}"), line
    auto.reload()
    write_table(table_file, {"above": {}, "w_in_place_rows": {"float64": 0},
                             "w_in_tile_rows": {"float32": 64, "float64": 0}})
    line = info._tuning_line(tuning.describe())
    assert line.endswith(f"in place: float32 up to a batch of {rows}, float64 never "
                         "(measured for float64); its forward and input gradient pack w in the "
                         f"tiles: float32 up to a batch of 64, float64 never (measured){l2}"), line


def logs(*ratios):
    return [math.log(r) for r in ratios]


@pytest.mark.parametrize("ratios, above", [
    # direct time / packed time per rung, from the smallest work (2**21) to the largest (2**28)
    ((0.5, 0.6, 0.7, 0.9, 1.2, 1.5, 2.0, 2.5), WORKS[3]),  # packed from the fifth rung on
    ((0.45, 0.57, 0.72, 0.91, 1.11, 0.86, 1.90, 2.53), WORKS[5]),  # one noisy rung: it stays below
    ((0.5, 0.6, 0.7, 0.9, 1.5, 0.95, 2.0, 2.5), WORKS[3]),  # ... or is outweighed by its neighbours
    ((2.0,) * 8, WORKS[0] // 2),  # packed everywhere
    ((0.5,) * 8, WORKS[-1]),  # direct everywhere on the ladder: packed only beyond it
    ((1.0,) * 8, WORKS[-1]),  # a tie keeps the direct kernel
])
def test_the_split_saves_the_most_time_on_the_ladder(ratios, above):
    assert tuning._best_split(logs(*ratios)) == above


def test_a_wrong_rung_is_never_sent_to_the_packed_kernel():
    gains = logs(2, 2, 2, 2, 2, 2, 2, 2)
    gains[5] = -math.inf
    assert tuning._best_split(gains) == WORKS[5]
    gains[7] = -math.inf
    assert tuning._best_split(gains) == WORKS[-1]


def test_a_failed_tune_leaves_the_table_in_use_in_force(table_file, monkeypatch, tmp_path):
    write_table(table_file, {"above": {"forward": {"float32": 1 << 20}},
                             "w_in_place_rows": {"float32": 96}})
    assert loops.packed_limits()["measured"] == {"forward": {"float32": 1 << 20}}
    assert loops.w_in_place_rows(4) == 96

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "_measure_entries", interrupted)
    monkeypatch.setattr(tuning, "in_place_rows", lambda dtype, **kw: {"rows": 0, "rungs": []})
    seen = []
    monkeypatch.setattr(tuning, "crossover", lambda op, dtype, **kw: (
        seen.append(loops.w_in_place_rows(4)), {"above": 0, "rungs": []})[1])
    with pytest.raises(KeyboardInterrupt):
        tuning.tune(classes=["tiny"], dtypes=["float32"], ops=["forward"], threads=[1],
                    output=tmp_path / "new.json")
    assert not (tmp_path / "new.json").exists()
    # the measured crossover of the interrupted run is gone; the table's is back, and auto agrees
    assert seen == [0]  # the crossover was timed with the limit just measured
    assert loops.packed_limits()["measured"] == {"forward": {"float32": 1 << 20}}
    assert loops.w_in_place_rows(4) == 96  # and the measured limit is gone too
    assert auto.table_in_use()["packed"] == loops.packed_limits()


@pytest.fixture
def forward_calls(monkeypatch):
    """The ``w_in_place_rows`` argument of each packed forward the loops backend calls."""
    calls = []
    real = loops.packed_forward
    monkeypatch.setattr(loops, "packed_forward",
                        lambda *a: calls.append(a[5]) or real(*a))
    return calls


def test_the_tables_in_place_limit_reaches_the_packed_forward(table_file, forward_calls):
    """A table's w_in_place_rows is passed to the packed forward for its dtype (the other keeps
    the built-in limit), and a batch below 64 packs only where w is read in place."""
    write_table(table_file, {"above": {}, "w_in_place_rows": {"float32": 32}})
    limits = loops.packed_limits()
    assert limits["source"] == "table" and limits["measured"] == {}
    assert limits["w_in_place_rows"] == {"float32": 32, "float64": loops.W_IN_PLACE_ROWS}
    assert limits["w_in_place_measured"] == {"float32": 32}
    call("forward", "float32", 64, 512, 1024)  # 2**25: above the forward's crossover
    call("forward", "float64", 64, 512, 1024)
    assert forward_calls == [32, loops.W_IN_PLACE_ROWS]
    forward_calls.clear()
    y = call("forward", "float32", 32, 1024, 1024)  # a batch of 32, read in place: packed
    call("forward", "float32", 48, 1024, 1024)  # 48 > 32: w would be packed, so direct
    assert forward_calls == [32]
    assert np.array_equal(y, call_packed_w("float32", 32, 1024, 1024))  # w in place: same bits
    auto.reload()
    write_table(table_file, {"above": {}, "w_in_place_rows": {"float32": 0}})
    forward_calls.clear()
    call("forward", "float32", 16, 2048, 1024)
    assert forward_calls == []  # no in-place read: a batch of 16 stays direct
    assert not loops.runs_packed("forward", 4, 16, 2048, 1024)
    assert loops.runs_packed("forward", 8, 16, 2048, 1024)


def test_the_tables_in_tile_limit_reaches_the_packed_input_gradient(table_file, monkeypatch):
    """A table's w_in_tile_rows is passed to the packed input gradient for its dtype (the other
    keeps the built-in limit); in the tiles or whole, the same bits."""
    calls = []
    real = loops.packed_grad_input
    monkeypatch.setattr(loops, "packed_grad_input", lambda *a: calls.append(a[3]) or real(*a))
    write_table(table_file, {"above": {}, "w_in_tile_rows": {"float32": 32}})
    limits = loops.packed_limits()
    assert limits["source"] == "table"
    assert limits["w_in_tile_rows"] == {"float32": 32, "float64": loops.W_IN_TILE_ROWS}
    assert limits["w_in_tile_measured"] == {"float32": 32}
    assert loops.w_in_tile_rows(4) == 32 and loops.w_in_tile_rows(8) == loops.W_IN_TILE_ROWS
    got = call("grad_input", "float32", 128, 1024, 1024)  # 2**27: above the crossover
    call("grad_input", "float64", 128, 1024, 1024)
    assert calls == [32, loops.W_IN_TILE_ROWS]
    rng = np.random.default_rng(0)  # call's data
    _, w, _, dy = (rng.standard_normal(s).astype(np.float32)
                   for s in ((128, 1024), (1024, 1024), (1024,), (128, 1024)))
    before = numba.get_num_threads()
    numba.set_num_threads(1)  # 4 tiles: in the tiles on up to 4 threads
    try:
        for rows in (0, 128):  # whole, and in the tiles
            dx = np.empty((128, 1024), np.float32)
            real(dx, dy, w, rows)
            assert np.array_equal(dx, got)
    finally:
        numba.set_num_threads(before)


def call_packed_w(dtype, n, k, m, seed=0):
    """The packed forward of `call`'s data with w packed (never read in place)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    x, w, b = (rng.standard_normal(s).astype(dt) for s in ((n, k), (m, k), (m,)))
    y = np.empty((n, m), dt)
    loops.packed_forward(y, x, w, b, 0, 0)
    return y


@pytest.mark.parametrize("ratios, count", [
    # packed time / in-place time per rung, batch 16 to 512
    ((3.0, 2.5, 2.0, 1.5, 1.0, 0.8), 4),   # in place up to 128 (the tie at 256 is not taken)
    ((3.0, 2.5, 0.9, 1.5, 0.95, 0.8), 4),  # one noisy rung inside is outweighed
    ((0.9, 0.8, 0.9, 0.9, 0.9, 0.9), 0),   # never in place
    ((1.5,) * 6, 6),                        # in place over the whole ladder
])
def test_the_in_place_limit_saves_the_most_time_on_its_ladder(ratios, count):
    assert tuning._best_prefix(logs(*ratios)) == count


def test_a_wrong_rung_is_never_read_in_place():
    gains = logs(2, 2, 2, 2, 2, 2)
    gains[2] = -math.inf
    assert tuning._best_prefix(gains) == 2
    gains[0] = -math.inf
    assert tuning._best_prefix(gains) == 0
