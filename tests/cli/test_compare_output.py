"""What ``fastlinear compare`` writes from a set of results: Markdown tables, the speed-ratio plot,
and the JSON round trip behind ``--from-json`` (on made-up results: nothing is timed here)."""

from __future__ import annotations

import json

import pytest

from fastlinear import cli
from fastlinear.cli import compare, plot, table
from fastlinear.cli.harness import Result


def _result(shape, op, backend, median_s=None, status="ok", dtype="float32", threads=1):
    flops = 2 * shape[0] * shape[1] * shape[2]
    return Result(shape, dtype, op, backend, threads, status, flops, first_call_s=0.1,
                  error=0.1 if status == "ok" else 50.0 if status == "wrong" else None,
                  median_s=median_s, gflops=flops / median_s / 1e9 if median_s else None,
                  samples_s=[median_s] if median_s else [])


RESULTS = [
    _result((2, 3, 4), "forward", "loops", 1e-6),
    _result((2, 3, 4), "forward", "blas", 2e-6),
    _result((2, 3, 4), "forward", "torch", 4e-6),
    _result((2, 3, 4), "forward", "naive", status="wrong"),
    _result((64, 4096, 4096), "forward", "loops", 0.02),
    _result((64, 4096, 4096), "forward", "blas", 0.01),
    _result((64, 4096, 4096), "forward", "torch", 0.04),
    _result((64, 4096, 4096), "forward", "naive", status="skipped"),
]
ENV = {"cpu": "Test CPU", "cpus": 2, "numpy": "2.0", "numba": "0.60", "threading_layer": "omp",
       "blas": ["openblas 0.3"]}


def test_markdown_has_gflops_per_backend_and_ratios_to_blas_and_torch():
    md = table.markdown(RESULTS, ENV)
    lines = md.splitlines()
    assert lines[0].startswith("Measured on Test CPU (2 CPUs)")
    header = ("| batch x in x out | op | loops | blas | torch | naive | loops vs blas | loops vs torch "
              "| naive vs blas | naive vs torch |")
    assert header in lines
    assert "| 2x3x4 | forward | 0.048 | 0.024 | 0.012 | WRONG | 2.00x | 4.00x | - | - |" in lines
    assert "| 64x4096x4096 | forward | 107.4 | 214.7 | 53.7 | - | 0.50x | 2.00x | - | - |" in lines
    assert md.count("float32, 1 thread:") == 1


def test_markdown_has_one_table_per_dtype_and_thread_count():
    more = RESULTS + [_result((2, 3, 4), "forward", "blas", 1e-6, dtype="float64", threads=2)]
    md = table.markdown(more, ENV)
    assert md.count("| batch x in x out |") == 2
    assert "float64, 2 threads: GFLOP/s per backend" in md


def test_speedups_are_blas_time_over_backend_time_and_mark_wrong_and_skipped():
    data = plot.speedups(RESULTS)
    key = ("forward", "float32", 1)
    assert data[key]["loops"] == {(2, 3, 4): 2.0, (64, 4096, 4096): 0.5}
    assert data[key]["torch"] == {(2, 3, 4): 0.5, (64, 4096, 4096): 0.25}
    assert data[key]["naive"] == {(2, 3, 4): "wrong", (64, 4096, 4096): "skip"}
    assert "blas" not in data[key]


def test_plot_writes_a_png_and_needs_blas(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "speed.png"
    plot.plot(RESULTS, str(path), title="Test CPU")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    no_blas = [r for r in RESULTS if r.backend != "blas"]
    with pytest.raises(ValueError, match="relative to blas"):
        plot.plot(no_blas, str(tmp_path / "other.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speed.png"]


def test_json_round_trip_and_rendering_from_it(tmp_path, capsys):
    path = tmp_path / "r.json"
    compare.write_json(str(path), RESULTS, ENV)
    results, env = compare.load_json(str(path))
    assert results == RESULTS and env == ENV
    md = tmp_path / "r.md"
    assert cli.main(["compare", "--from-json", str(path), "--markdown", str(md), "--plain"]) == 1
    assert md.read_text() == table.markdown(RESULTS, ENV)  # 1: the file holds a wrong result
    assert "WRONG" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("not json", "is not JSON"),
        ('{"command": "something else"}', "is not a results file"),
        ('{"command": "fastlinear compare", "results": [{"shape": [1, 2]}]}', "malformed"),
    ],
)
def test_from_json_rejects_other_files_with_exit_2(tmp_path, capsys, content, fragment):
    path = tmp_path / "r.json"
    path.write_text(content)
    assert cli.main(["compare", "--from-json", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_from_json_of_a_missing_file_exits_2(tmp_path, capsys):
    assert cli.main(["compare", "--from-json", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_json_is_valid_json_with_the_environment(tmp_path):
    path = tmp_path / "r.json"
    compare.write_json(str(path), RESULTS, ENV)
    doc = json.loads(path.read_text())
    assert doc["command"] == "fastlinear compare" and doc["environment"] == ENV
    assert doc["results"][0]["shape"] == [2, 3, 4]
