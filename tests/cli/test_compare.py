"""``fastlinear compare``: argument errors, a tiny real run with JSON and PNG output, and that a
wrong kernel is reported and never timed (no timing assertions)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fastlinear import cli
from fastlinear.cli import harness, table
from fastlinear.backends import BLAS


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--shapes", "3x5"], "BATCHxINxOUT"),
        (["--shapes", "huge"], "shape class"),
        (["--shapes", "0x4x4"], "must be >= 1"),
        (["--ops", "forward,backward"], "invalid op 'backward'"),
        (["--dtype", "int8"], "invalid dtype 'int8'"),
        (["--threads", "two"], "comma-separated integers"),
        (["--threads", "0"], "must be >= 1"),
        (["--inputs", "pages"], "invalid choice: 'pages'"),
    ],
)
def test_argument_errors_exit_2_with_a_message(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", *argv])
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--backends", "loops,fortran"], "unknown backend 'fortran'"),
        (["--threads", "999"], "number of threads must be between 1 and"),
        (["--repeats", "0"], "--repeats must be >= 1"),
    ],
)
def test_bad_values_exit_2_before_anything_runs(argv, fragment, capsys):
    assert cli.main(["compare", "--quick", *argv]) == 2
    assert fragment in capsys.readouterr().err


def test_quick_run_writes_valid_json_markdown_and_png(tmp_path, capsys, restore_threads):
    pytest.importorskip("matplotlib")
    out_json, out_png, out_md = tmp_path / "r.json", tmp_path / "r.png", tmp_path / "r.md"
    code = cli.main(["compare", "--quick", "--dtype", "both", "--threads", "1", "--plain",
                     "--json", str(out_json), "--plot", str(out_png), "--markdown", str(out_md)])
    text = capsys.readouterr().out
    assert code == 0, text
    doc = json.loads(out_json.read_text())
    rows = doc["results"]
    expected = set(harness.available_contenders())
    assert {r["backend"] for r in rows} == expected
    assert {r["op"] for r in rows} == set(harness.OPS)
    assert {r["dtype"] for r in rows} == {"float32", "float64"}
    assert {tuple(r["shape"]) for r in rows} == {(1, 16, 16), (3, 5, 7)}
    assert all(r["status"] == "ok" and r["median_s"] > 0 and r["gflops"] > 0 for r in rows)
    assert doc["environment"]["numpy"] == np.__version__
    assert doc["environment"]["inputs"] == "lines" and "arrays on 64-byte lines" in text
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vs blas" in text and "vs torch" in text
    md = out_md.read_text()
    assert md.count("| batch x in x out | op |") == 2  # one table per dtype
    assert "| 3x5x7 | grad_input |" in md

    # The same tables again from the JSON file alone, without measuring.
    again = tmp_path / "again.md"
    assert cli.main(["compare", "--from-json", str(out_json), "--markdown", str(again),
                     "--plain"]) == 0
    assert again.read_text() == md


def _wrong_forward(y, x, w, b, *act):
    BLAS.forward(y, x, w, b, *act)
    y[0, 0] += 1


def test_a_wrong_kernel_is_reported_and_not_timed(monkeypatch):
    wrong = dataclasses.replace(BLAS, name="wrong", forward=_wrong_forward)
    monkeypatch.setattr(harness, "get_backend", lambda name: wrong if name == "wrong" else BLAS)
    results = harness.run([(4, 6, 5)], ["float64"], ["blas", "wrong"], ("forward",), repeats=1,
                          settle=False)
    by_name = {r.backend: r for r in results}
    assert by_name["blas"].status == "ok" and by_name["blas"].median_s > 0
    bad = by_name["wrong"]
    assert bad.status == "wrong" and bad.median_s is None and bad.samples_s == []
    assert bad.error > 1  # in multiples of the tolerance
    assert "WRONG" in table.plain(results)


def test_unwritten_output_fails_validation(monkeypatch):
    lazy = dataclasses.replace(BLAS, name="lazy", forward=lambda y, x, w, b, *act: None)
    monkeypatch.setattr(harness, "get_backend", lambda name: lazy)
    [row] = harness.run([(2, 3, 4)], ["float32"], ["lazy"], ("forward",), repeats=1,
                        settle=False)
    assert row.status == "wrong"


def test_naive_is_skipped_where_too_slow():
    prob = harness.Problem(64, 4096, 4096, np.dtype("float32"))
    rows = harness._validate(prob, "grad_bias", ["naive"], 1)
    assert rows[0][0].status == "skipped" and rows[0][1] is None


def test_shape_classes_resolve_with_underscore_or_hyphen():
    from fastlinear.cli.compare import parse_shapes

    assert parse_shapes("tiny,wide, 2x3x4") == [(1, 16, 16), (64, 4096, 4096), (2, 3, 4)]
    assert parse_shapes("skinny_out,skinny-out,Skinny-In") == [(4096, 256, 10)] * 2 + [(8, 784, 128)]


@pytest.mark.parametrize("pool_installed, expected", [
    # loops and blas on Numba's pool: one pause, before the first sample; torch on its own pool:
    # a pause at every switch to or from it
    (True, [1, 0, 1, 1, 0, 1, 1, 0, 1]),
    # OpenBLAS on its own threads: a pause before every sample
    (False, [1] * 9),
])
def test_pauses_only_where_the_previous_sample_ran_on_another_pool(pool_installed, expected,
                                                                     monkeypatch):
    from fastlinear import _blas_pool

    monkeypatch.setattr(_blas_pool, "installed", lambda: ["openblas"] if pool_installed else [])
    assert harness.thread_pool("loops") == "numba" and harness.thread_pool("torch") == "torch"
    assert harness.thread_pool("blas") == ("numba" if pool_installed else "blas")
    events = []
    monkeypatch.setattr(harness.time, "sleep", lambda s: events.append("pause"))
    rows = [(harness.Result((1, 1, 1), "float32", "forward", name, 2, "ok", 1),
             lambda name=name: events.append(name)) for name in ("loops", "blas", "torch")]
    harness._time(rows, repeats=3, min_sample_s=0.0, settle_s=0.2)
    paused = []  # for each sample, whether a pause came before its first call
    for i, e in enumerate(events):
        if e != "pause" and (i == 0 or events[i - 1] != e):
            paused.append(i > 0 and events[i - 1] == "pause")
    # the calibration calls come first (no pause), then 9 samples
    assert paused[-9:] == [bool(p) for p in expected]
    assert all(r.median_s is not None and len(r.samples_s) == 3 for r, _ in rows)


def test_inputs_numpy_times_numpys_own_buffers_with_the_same_values(tmp_path, capsys,
                                                                     restore_threads):
    for dtype in (np.float32, np.float64):
        lined = harness.Problem(33, 17, 9, np.dtype(dtype))
        plain = harness.Problem(33, 17, 9, np.dtype(dtype), "numpy")
        pairs = zip((lined.x, lined.w, lined.b, lined.dy), (plain.x, plain.w, plain.b, plain.dy))
        for a, b in pairs:
            assert np.array_equal(a, b) and a.dtype == b.dtype
            assert a.base is not None and b.base is None  # a view on a line / numpy's own
        assert plain.outputs((3, 4)).base is None and lined.outputs((3, 4)).base is not None
        assert np.isnan(plain.outputs((3, 4))).all() and np.isnan(lined.outputs((3, 4))).all()
    with pytest.raises(ValueError, match="inputs must be one of lines, numpy, got 'pages'"):
        harness.Problem(2, 2, 2, np.dtype(np.float32), "pages")
    out_json = tmp_path / "r.json"
    assert cli.main(["compare", "--quick", "--inputs", "numpy", "--backends", "loops,blas",
                     "--threads", "1", "--plain", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "arrays in numpy's own buffers" in text
    assert json.loads(out_json.read_text())["environment"]["inputs"] == "numpy"
    assert cli.main(["compare", "--from-json", str(out_json), "--plain"]) == 0
    assert "arrays in numpy's own buffers" in capsys.readouterr().out
