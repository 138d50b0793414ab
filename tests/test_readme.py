"""The Python examples in README.md run as written and do what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    """Blocks fenced as `python` run here; those fenced as `py` need torch or an MPI launcher and
    are run by their own tests (tests/torch_api/test_torch_linear.py) or only shown."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    layer, x, fl = namespace["layer"], namespace["x"], namespace["fl"]
    assert namespace["y"].shape == (64, 128) and namespace["dx"].shape == x.shape
    np.testing.assert_allclose(namespace["y"], x @ layer.weight.T + layer.bias, rtol=1e-4, atol=1e-4)
    assert fl.available_backends() == ("loops", "naive", "blas", "auto")


def test_readme_error_message_example_is_current():
    import fastlinear as fl

    text = " ".join(README.read_text().split())
    try:
        fl.Linear(5, 2)(np.ones((4, 3), np.float32))
    except ValueError as exc:
        message = str(exc)
    assert f"`{message}`" in text


def test_readme_headings_are_unique():
    headings = re.findall(r"^#+ .*$", README.read_text(), flags=re.M)
    repeated = sorted({h for h in headings if headings.count(h) > 1})
    assert not repeated, f"repeated headings: {repeated}"


def test_readme_paths_exist():
    """Every repository path the README names (in backticks) exists."""
    root = README.parent
    paths = re.findall(r"`((?:fastlinear|tests|asv_benchmarks)/[\w./-]*)`", README.read_text())
    assert paths
    missing = sorted({p for p in paths if not (root / p.rstrip("/")).exists()})
    assert not missing, f"README names paths that do not exist: {missing}"
