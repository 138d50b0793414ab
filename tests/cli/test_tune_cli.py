"""``fastlinear tune``: a quick run on the tiny shape class writes a valid table, atomically, that
auto then follows; a bad output path or option exits 2 before anything is measured; a wrong
result exits 1 and is never chosen; ``fastlinear info`` names the table in use. No timing
assertions."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from fastlinear import backends, cli, tuning
from fastlinear.backends import BLAS, auto, loops
from fastlinear.cli import harness, info
from fastlinear.cli import tune as tune_cli

QUICK = ["tune", "--quick", "--classes", "tiny", "--threads", "1", "--dtype", "float32", "--plain"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The user's cache directory and FASTLINEAR_TUNING out of the way; auto forgets its table
    before and after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(tuning.ENV, raising=False)
    auto.reload()
    yield
    auto.reload()


@pytest.fixture
def no_measuring(monkeypatch):
    """Fail the test if anything is measured."""
    def refuse(*a, **k):
        raise AssertionError("measured before the arguments were checked")

    monkeypatch.setattr(harness, "run", refuse)


def test_quick_tune_writes_a_valid_table_that_auto_then_follows(tmp_path, capsys, monkeypatch,
                                                                 restore_threads):
    out = tmp_path / "out" / "table.json"
    out.parent.mkdir()
    assert cli.main([*QUICK, "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out
    assert f"set {tuning.ENV}={out}" in captured.out  # it is not the file auto reads
    rungs = len(tuning.CROSSOVER_LADDER) * len(tuning.TUNED_OPS)
    in_tile = 2 * len(tuning.IN_TILE_LADDER)  # the forward and the input gradient
    limits = in_tile + len(tuning.IN_PLACE_LADDER)
    total = rungs + limits + 3
    n, k, m = tuning.IN_TILE_LADDER[0]
    # plain progress: the in-tile limit first, then the in-place one, then the crossovers, then
    # the table's entries
    assert (f"[1/{total}] 1 thread, w packed whole or in tiles: float32 forward {n}x{k}x{m}"
            in captured.err)
    assert (f"[2/{total}] 1 thread, w packed whole or in tiles: float32 grad_input {n}x{k}x{m}"
            in captured.err)
    n, k, m = tuning.IN_PLACE_LADDER[0]
    assert (f"[{in_tile + 1}/{total}] 1 thread, w packed or in place: float32 forward {n}x{k}x{m}"
            in captured.err)
    n, k, m = tuning.CROSSOVER_LADDER[0]
    assert (f"[{limits + 1}/{total}] 1 thread, direct or packed: float32 forward {n}x{k}x{m}"
            in captured.err)
    assert (f"[{rungs + limits + 1}/{total}] 1 thread, float32 1x16x16 forward (tiny)"
            in captured.err)
    assert "its forward reads w in place, not packing it: float32 " in captured.out
    assert ("its forward (where it does not read w in place) and input gradient pack w in the "
            "tiles, not whole (where the tiles keep the threads busy): float32 " in captured.out)
    assert "loops runs its packed GEMM above these sizes" in captured.out
    assert os.listdir(out.parent) == ["table.json"]  # no temporary file left beside it

    doc = tuning.load(out, tuning.machine_key())
    assert doc["quick"] is True and doc["key"] == tuning.machine_key()
    assert [(e["op"], e["dtype"], e["class"], e["threads"]) for e in doc["entries"]] == [
        (op, "float32", "tiny", 1) for op in tuning.TUNED_OPS]
    for e in doc["entries"]:
        assert e["loops_status"] == e["blas_status"] == "ok"
        assert e["loops_error"] <= 1 and e["blas_error"] <= 1
        assert e["loops_s"] > 0 and e["blas_s"] > 0
        assert e["faster"] == ("blas" if e["blas_s"] < e["loops_s"] else "loops")
        assert e["rounds"] == 3 and 0 <= e["blas_rounds_won"] <= 3
        assert e["choice"] == ("blas" if e["loops_s"] > tuning.PREFER_LOOPS_WITHIN * e["blas_s"]
                               and e["blas_rounds_won"] == 3 else "loops")
        assert e["speedup"] == pytest.approx(max(e["loops_s"], e["blas_s"])
                                             / min(e["loops_s"], e["blas_s"]))

    packed = doc["packed"]
    assert packed["threads"] == 1 and packed["ladder"] == [list(s) for s in tuning.CROSSOVER_LADDER]
    works = [n * k * m for n, k, m in tuning.CROSSOVER_LADDER]
    for op in tuning.TUNED_OPS:
        assert list(packed["above"][op]) == ["float32"]  # only the dtype measured
        assert packed["above"][op]["float32"] in [works[0] // 2, *works]
        rungs = packed["rungs"][op]["float32"]
        assert [r["shape"] for r in rungs] == packed["ladder"]
        assert all(r["status"] == "ok" and r["direct_s"] > 0 and r["packed_s"] > 0 for r in rungs)
    assert packed["w_in_place_ladder"] == [list(s) for s in tuning.IN_PLACE_LADDER]
    assert packed["w_in_place_rows"]["float32"] in [0] + [s[0] for s in tuning.IN_PLACE_LADDER]
    rungs = packed["w_in_place_rungs"]["float32"]
    assert [r["shape"] for r in rungs] == packed["w_in_place_ladder"]
    assert all(r["status"] == "ok" and r["packed_s"] > 0 and r["in_place_s"] > 0 for r in rungs)
    assert packed["w_in_tile_ladder"] == [list(s) for s in tuning.IN_TILE_LADDER]
    assert packed["w_in_tile_rows"]["float32"] in [0] + [s[0] for s in tuning.IN_TILE_LADDER]
    rungs = packed["w_in_tile_rungs"]["float32"]
    assert [(r["op"], r["shape"]) for r in rungs] == [
        (op, s) for s in packed["w_in_tile_ladder"] for op in ("forward", "grad_input")]
    assert all(r["status"] == "ok" and r["whole_s"] > 0 and r["in_tile_s"] > 0 for r in rungs)

    monkeypatch.setenv(tuning.ENV, str(out))
    auto.reload()
    assert loops.packed_limits()["measured"] == {op: {"float32": packed["above"][op]["float32"]}
                                                 for op in tuning.TUNED_OPS}
    assert loops.packed_limits()["w_in_place_measured"] == packed["w_in_place_rows"]
    assert loops.packed_limits()["w_in_tile_measured"] == packed["w_in_tile_rows"]
    used = auto.table_in_use()
    assert used["source"] == "table" and used["path"] == str(out)
    assert used["blas"] == sorted((e["op"], e["dtype"], e["class"], e["threads"])
                                  for e in doc["entries"] if e["choice"] == "blas")
    line = info._tuning_line(tuning.describe())
    assert line.startswith(str(out)) and "quick" in line


def test_a_failed_write_leaves_the_old_table_and_no_temporary_file(tmp_path, monkeypatch):
    out = tmp_path / "table.json"
    out.write_text("old table")
    real_dump = json.dump

    def dump_then_fail(obj, f, **kw):
        real_dump({"half": "written"}, f)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tuning.json, "dump", dump_then_fail)
    with pytest.raises(OSError, match="No space left"):
        tuning.tune(classes=["tiny"], dtypes=["float64"], ops=["forward"], threads=[1],
                    quick=True, output=out)
    assert out.read_text() == "old table"
    assert os.listdir(tmp_path) == ["table.json"]


@pytest.mark.parametrize("where, fragment", [
    ("missing/dir/table.json", "does not exist"),
    (".", "is a directory"),
    ("file.txt/table.json", "is not a directory"),
])
def test_an_unwritable_output_exits_2_before_measuring(where, fragment, tmp_path, capsys,
                                                       no_measuring):
    (tmp_path / "file.txt").write_text("")
    target = tmp_path / where
    assert cli.main([*QUICK, "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastlinear tune: error:") and fragment in err and str(target) in err


def test_an_unwritable_cache_directory_exits_2_before_measuring(tmp_path, monkeypatch, capsys,
                                                                no_measuring):
    (tmp_path / "blocked").write_text("a file where the cache directory should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
    assert cli.main(QUICK) == 2
    assert "fastlinear tune: error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["--classes", "huge"], "invalid shape class 'huge'"),
    (["--ops", "grad_bias"], "invalid op 'grad_bias'"),
    (["--dtype", "int8"], "invalid dtype 'int8'"),
    (["--threads", "0"], "must be >= 1"),
])
def test_argument_errors_exit_2(argv, fragment, capsys, no_measuring):
    with pytest.raises(SystemExit) as exc:
        cli.main(["tune", *argv])
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["--threads", "999"], "number of threads must be between 1 and"),
    (["--repeats", "0"], "--repeats must be >= 1"),
])
def test_bad_values_exit_2_before_measuring(argv, fragment, tmp_path, capsys, no_measuring):
    assert cli.main([*QUICK, "--output", str(tmp_path / "t.json"), *argv]) == 2
    assert fragment in capsys.readouterr().err


def _wrong_forward(y, x, w, b, act):
    BLAS.forward(y, x, w, b, act)
    y += 1.0


def test_a_wrong_result_exits_1_and_is_never_chosen(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(backends._BACKENDS, "blas", dataclasses.replace(BLAS, forward=_wrong_forward))
    out = tmp_path / "t.json"
    assert cli.main([*QUICK, "--ops", "forward", "--no-crossovers", "--output", str(out)]) == 1
    doc = tuning.load(out, tuning.machine_key())
    assert "packed" not in doc  # --no-crossovers: loops keeps its built-in crossovers
    (e,) = doc["entries"]
    assert e["blas_status"] == "wrong" and e["choice"] == "loops" and e["faster"] is None
    assert e["rounds"] is None and e["blas_rounds_won"] is None
    captured = capsys.readouterr()
    assert "loops ok, blas wrong" in captured.err and "(blas wrong)" in captured.out


def test_default_target_is_the_cache_file_auto_reads(tmp_path, monkeypatch):
    path, note = tune_cli._target(None)
    assert path == tuning.default_path() and path.parent.is_dir() and note == ""
    monkeypatch.setenv(tuning.ENV, str(tmp_path / "mine.json"))
    assert tune_cli._target(None) == (tmp_path / "mine.json", "")
    monkeypatch.setenv(tuning.ENV, "off")
    path, note = tune_cli._target(None)
    assert path == tuning.default_path() and "=off" in note


def test_info_names_the_defaults_when_there_is_no_table():
    line = info._tuning_line(tuning.describe())
    assert line.startswith("built-in defaults, loops everywhere") and "fastlinear tune" in line


def test_tune_rejects_unknown_names_before_measuring(no_measuring, tmp_path):
    for kwargs, fragment in [({"classes": ["huge"]}, "unknown shape class 'huge'"),
                             ({"dtypes": ["float16"]}, "unknown dtype 'float16'"),
                             ({"ops": ["grad_bias"]}, "unknown op 'grad_bias'"),
                             ({"threads": []}, "at least one thread count"),
                             ({"repeats": 0}, "repeats must be >= 1")]:
        with pytest.raises(ValueError, match=fragment):
            tuning.tune(output=tmp_path / "t.json", **kwargs)
    assert not (tmp_path / "t.json").exists()


def test_a_wrong_packed_kernel_exits_1_and_is_never_chosen(tmp_path, monkeypatch, capsys):
    direct, packed = loops.direct_and_packed("forward")

    def wrong_packed(y, x, w, b, act):
        packed(y, x, w, b, act)
        y += 1.0

    monkeypatch.setattr(loops, "direct_and_packed", lambda op: (direct, wrong_packed))
    out = tmp_path / "t.json"
    assert cli.main([*QUICK, "--ops", "forward", "--output", str(out)]) == 1
    packed_section = tuning.load(out, tuning.machine_key())["packed"]
    rungs = packed_section["rungs"]["forward"]["float32"]
    assert [r["status"] for r in rungs] == ["wrong"] * len(tuning.CROSSOVER_LADDER)
    n, k, m = tuning.CROSSOVER_LADDER[-1]
    assert packed_section["above"]["forward"]["float32"] == n * k * m  # never on the ladder
    err = capsys.readouterr().err
    assert ("float32 forward at 64x128x256: the loop kernels' direct or packed result is wrong"
            in err)


@pytest.mark.parametrize("op, kernel, first_wrong, prefix, ladder, message", [
    ("forward", "packed_forward", 32, "w_in_place", tuning.IN_PLACE_LADDER,
     "float32 forward at 32x512x512: the packed forward with w read in place and with w packed "
     "gave different results"),
    ("forward", "packed_forward", 64, "w_in_tile", tuning.IN_TILE_LADDER,
     "float32 forward at 64x512x512: the packed forward with w packed in the tiles and whole "
     "gave different results"),
    ("grad_input", "packed_grad_input", 64, "w_in_tile", tuning.IN_TILE_LADDER,
     "float32 grad_input at 64x512x512: the packed input gradient with w packed in the tiles and "
     "whole gave different results"),
], ids=["forward in place", "forward in tiles", "grad_input in tiles"])
def test_a_limit_whose_two_ways_differ_exits_1_and_stops_the_limit_below_it(
        op, kernel, first_wrong, prefix, ladder, message, tmp_path, monkeypatch, capsys):
    """The forward with w in place must give the bits of w packed, and the forward and the input
    gradient with w packed in the tiles those of w packed whole; where they do not, tune says so
    on stderr, exits 1, and the limit stays below that batch."""
    real = getattr(loops, kernel)
    # the position of the limit at fault among the kernel's arguments after the output
    at = {"w_in_place": 4, "w_in_tile": 5 if op == "forward" else 2}[prefix]

    def differs(out, *args):
        real(out, *args)
        if len(args) > at and first_wrong <= out.shape[0] <= args[at]:
            out[0, 0] = np.nextafter(out[0, 0], np.inf)  # the last bit of one output

    monkeypatch.setattr(loops, kernel, differs)
    out = tmp_path / "t.json"
    assert cli.main([*QUICK, "--ops", op, "--output", str(out)]) == 1
    packed = tuning.load(out, tuning.machine_key())["packed"]
    rungs = [r for r in packed[f"{prefix}_rungs"]["float32"] if r.get("op", op) == op]
    ok = sum(n < first_wrong for n, _, _ in ladder)
    assert [r["status"] for r in rungs] == ["ok"] * ok + ["wrong"] * (len(ladder) - ok)
    assert packed[f"{prefix}_rows"]["float32"] in [0] + [n for n, _, _ in ladder[:ok]]
    assert message in capsys.readouterr().err


def test_the_in_place_limit_is_timed_against_the_in_tile_limit_just_measured(tmp_path,
                                                                            monkeypatch):
    """The forward's in-place rungs compare in place with the way the forward would otherwise
    pack w, which the in-tile limit measured just before decides."""
    monkeypatch.setattr(tuning, "in_tile_rows", lambda dtype, **kw: {"rows": 64, "rungs": []})
    seen = set()
    real = loops.packed_forward

    def record(y, x, w, b, act, *limits):
        if len(limits) == 2:
            seen.add(limits[1])
        real(y, x, w, b, act, *limits)

    monkeypatch.setattr(loops, "packed_forward", record)
    tuning.in_place_rows("float32", repeats=1, min_sample_s=1e-5)  # the built-in in-tile limit
    assert seen == {loops.W_IN_TILE_ROWS}
    seen.clear()
    monkeypatch.setattr(tuning, "crossover", lambda op, dtype, **kw: {"above": 0, "rungs": []})
    monkeypatch.setattr(tuning, "_measure_entries", lambda *a: [])
    tuning.tune(classes=["tiny"], dtypes=["float32"], ops=["forward"], threads=[1],
                output=tmp_path / "t.json")
    assert seen == {64}


@pytest.mark.parametrize("threads", range(1, 65))
def test_every_in_tile_rung_packs_w_in_the_tiles(threads):
    from fastlinear.kernels.packed._driver import b_in_tile_balanced

    for _, cols, _ in tuning.IN_TILE_LADDER:
        wide = tuning.tiled_columns(cols, threads)
        assert b_in_tile_balanced(wide, threads) and wide >= cols
        assert wide == cols or wide % 256 == 0 and not b_in_tile_balanced(wide - 256, threads)
    assert tuning.tiled_columns(1024, 2) == 1024 and tuning.tiled_columns(1024, 3) == 1280


def test_the_limits_a_table_may_hold_are_where_the_packed_products_stop():
    from fastlinear.kernels.packed import _workspace

    assert tuning.IN_PLACE_MAX == tuning.IN_TILE_MAX == _workspace.MC


def test_the_printed_table_shows_why_a_faster_blas_was_not_chosen():
    def entry(cls, loops_s, won, choice):
        return {"op": "forward", "dtype": "float32", "class": cls, "threads": 2, "loops_s": loops_s,
                "blas_s": 1.0, "faster": "blas" if loops_s > 1 else "loops", "choice": choice,
                "rounds": 3, "blas_rounds_won": won, "loops_status": "ok", "blas_status": "ok"}

    text = tune_cli.format_table({
        "prefer_loops_within": 1.03, "repeats": 3,
        "entries": [entry("tiny", 1.41, 2, "loops"), entry("small", 1.41, 3, "blas"),
                    entry("medium", 0.5, 0, "loops")]})
    assert "blas is chosen above 1.03, and only when blas also won by that margin in at least 3 " \
           "of the 3 paired rounds" in text
    row = text.splitlines()[2]
    assert "loops 1.41 (blas won 2/3)" in row and "blas 1.41" in row and "loops 0.50" in row
    assert "(blas won 3/3)" not in row and "(blas won 0/3)" not in row
