"""Shared pytest fixtures: keep every test's run store in its own temporary folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # app.py, pages/ and tl_ui/ import from the repository root
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def tl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TL_HOME (run store, checkpoints) under the test's temporary folder."""
    home = tmp_path / "tl_home"
    home.mkdir()
    monkeypatch.setenv("TL_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where app.py lives)."""
    return ROOT
