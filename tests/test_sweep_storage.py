"""The sweep storage URL (tl_core/sweep.py ``_storage``) without a database server: CI has none."""

from __future__ import annotations

import sys

import pytest

from tl_core import sweep


def test_a_url_whose_database_driver_is_missing_names_the_module_and_how_to_install_it(monkeypatch):
    # SQLAlchemy 2.1's plain postgresql:// means the psycopg (3) driver; docs/SWEEPS.md names psycopg2 in the URL
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as on a machine where psycopg2-binary is not installed
    with pytest.raises(sweep.SweepError) as err:
        sweep._storage("postgresql+psycopg2://tl:secret@db.example.lan:5432/sweeps")
    msg = str(err.value)
    assert "database driver is not installed" in msg and "psycopg2" in msg
    assert "pip install psycopg2-binary" in msg and "postgresql+psycopg2://" in msg
    assert "secret" not in msg and "tl:***@db.example.lan" in msg  # the password is never printed
