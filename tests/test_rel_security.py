"""Security of the engine (issue 5), docs/WHAT_HAPPENS_WHEN.md "Security": the dashboard listens
on localhost only, nothing a user types is evaluated, a pickle posing as a saved backbone never runs,
and a run writes only under TL_HOME. (The malicious checkpoint on resume is in
``test_rel_bad_input.py``.) Shared helpers are in ``_reliability.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tl_core import trainer
from tl_core.config import RunConfig
from tl_core.jobs import ConfigError

from _reliability import home, manager  # noqa: F401  (pytest fixtures, used by name)
from _reliability import ROOT, _Marker, small, wait_status


# ========================================================================= security
def test_dashboard_listens_on_localhost_only():
    conf = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = conf["server"]
    assert server["address"] in ("localhost", "127.0.0.1")
    assert server.get("enableXsrfProtection", True) and server.get("enableCORS", True)
    assert 0 < server.get("maxUploadSize", 200) <= 200


def test_saved_backbone_that_is_a_pickle_is_refused_and_never_executed(home, tmp_path, manager):
    marker = tmp_path / "pwned"
    d = home / "runs" / "20260101-000000-evil00"
    d.mkdir(parents=True)
    (d / "backbone.json").write_text(json.dumps({"backbone": "lenet"}))
    (d / "backbone.safetensors").write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(trainer.bb.BackboneError, match="cannot load"):
        trainer.bb.create_backbone("run:20260101-000000-evil00")
    cfg = small()
    cfg.model.backbone = "run:20260101-000000-evil00"
    run_id = manager.submit(cfg)
    rec = wait_status(manager.store, run_id, ("failed",))
    assert "cannot load" in rec.error
    for name in ("run:../../etc", "run:..", "run:/etc/passwd"):
        with pytest.raises(trainer.bb.BackboneError):
            trainer.bb.create_backbone(name)
    assert not marker.exists()


def test_a_run_writes_nothing_outside_tl_home(tmp_path):
    dirs = {name: tmp_path / name for name in ("home", "tl_home", "tmp", "cwd")}
    for d in dirs.values():
        d.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TL_", "TORCH", "XDG_", "NUMBA", "MPL", "HF_", "PYTHONPYCACHE"))}
    env.update(HOME=str(dirs["home"]), TL_HOME=str(dirs["tl_home"]), TMPDIR=str(dirs["tmp"]),
               PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    cfg = small("dann")
    cfg.data.max_train, cfg.data.max_test = 64, 50
    (tmp_path / "run.json").write_text(cfg.to_json())
    proc = subprocess.run([sys.executable, "-m", "tl_core", "run", "--config", str(tmp_path / "run.json"), "--quiet"],
                          cwd=dirs["cwd"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    for name in ("home", "tmp", "cwd"):
        assert sorted(str(p.relative_to(dirs[name])) for p in dirs[name].rglob("*")) == [], name
    written = {str(p.relative_to(dirs["tl_home"])) for p in dirs["tl_home"].rglob("*") if p.is_file()}
    assert {"runs.db", f"runs/{run_id}/checkpoint.pt", f"runs/{run_id}/config.json"} <= written


def test_nothing_a_user_types_is_evaluated(home, tmp_path, manager):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    text = json.dumps({"name": payload, "device": payload, "model": {"backbone": payload},
                       "data": {"source": payload, "target": "{{7*7}}", "source_path": "$(touch x)"},
                       "optim": {"optimizer": payload, "lr": "1e-3"}})
    cfg = RunConfig.from_json(text)
    assert cfg.name == payload and cfg.model.backbone == payload and cfg.optim.lr == "1e-3"  # kept as text
    with pytest.raises(ConfigError) as info:
        manager.submit(cfg)
    text_of_problems = " ".join(info.value.problems)
    assert "optim.lr: must be a finite number, got '1e-3'" in text_of_problems and "device:" in text_of_problems
    for bad in ('{"__class__": "os.system"}', '{"optim": "__import__(\'os\')"}', '["not", "an", "object"]'):
        with pytest.raises(ValueError):
            RunConfig.from_json(bad)
    # Names and ids reach SQL and paths only as data.
    store = manager.store
    evil = "x'); DROP TABLE runs; --"
    run_id = store.create_run(RunConfig(name=evil))
    store.rename(run_id, evil + " again")
    assert store.get_run(run_id).name == evil + " again" and len(store.list_runs()) == 1
    for bad_id in ("../../etc", "..", "/etc", ".hidden"):
        with pytest.raises(ValueError):
            store.run_dir(bad_id)
    assert not marker.exists() and not (Path.cwd() / "x").exists()
