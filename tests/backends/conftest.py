"""Fixtures shared by the backend tests."""

from __future__ import annotations

import pytest

from fastlinear import tuning
from fastlinear.backends import auto


@pytest.fixture
def table_file(tmp_path, monkeypatch):
    """A path FASTLINEAR_TUNING points at (nothing written yet), with the cache directory moved
    into tmp_path; auto forgets its table before and after the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "table.json"
    monkeypatch.setenv(tuning.ENV, str(path))
    auto.reload()
    yield path
    auto.reload()
