"""The learning-rate range test (tl_core/lr_find.py) and its place on the Setup page.

On tiny real data (MNIST → MNIST-M, 256 images): the swept rates grow geometrically, the smoothed loss
falls and then rises or stops at divergence, the suggestion lies inside the sweep below that point, a
run's saved weights and the store are left as they were, the command line ends with its JSON line,
and the Setup page draws a finished test's curve and puts the suggestion into the lr widget.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tl_core import lr_find
from tl_core.execute import execute_run
from tl_core.lr_find import lr_range_test, lr_schedule, smooth, suggest
from tl_core.store import RunStore
from tl_ui import keys, lr_finder_view

from _tiny import tiny_config
from test_pages import TIMEOUT, manager, open_app, texts  # noqa: F401  (manager: a fixture)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the sweep
def test_learning_rates_grow_geometrically_from_start_to_end():
    lrs = lr_schedule(1e-6, 1.0, 200)
    assert len(lrs) == 200 and lrs[0] == 1e-6 and lrs[-1] == 1.0
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios)) and ratios[0] == pytest.approx(1e6 ** (1 / 199))
    with pytest.raises(ValueError):
        lr_schedule(1.0, 1e-6, 10)


def test_smoothing_is_a_debiased_moving_average_and_the_suggestion_a_tenth_of_the_minimum():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # debiased: no pull towards 0
    s = smooth([3.0, 1.0], beta=0.5)
    assert s == pytest.approx([3.0, (0.25 * 3 + 0.5 * 1) / 0.75])
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert suggest(lrs, [2.0, 1.5, 0.5, 0.9, 3.0]) == (pytest.approx(1e-3), 1e-2)
    assert suggest(lrs, [0.1, 1.5, 2.5, 3.0, 9.0]) == (1e-4, 1e-4)  # never below the sweep's start


def test_the_loss_falls_then_rises_and_the_suggestion_lies_below_the_divergence():
    cfg = tiny_config("finetune")
    seen: list[dict] = []
    result = lr_range_test(cfg, 1e-3, 10.0, 40, report=lambda state: seen.append(dict(state)))
    n = len(result.lrs)
    assert result.lrs == pytest.approx(lr_schedule(1e-3, 10.0, 40)[:n])
    assert result.losses == pytest.approx(smooth(result.raw_losses))
    i_min = min(range(n), key=result.losses.__getitem__)
    # It falls: the lowest smoothed loss is well below the first one (2.3 = ln 10 for ten classes).
    assert result.losses[i_min] < 0.8 * result.losses[0]
    # Then it rises: the sweep stopped at divergence, or the end is well above the lowest loss.
    assert result.stopped or result.losses[-1] > 1.5 * result.losses[i_min]
    if result.stopped:
        assert n < 40 and ("lowest value" in result.stopped or "not finite" in result.stopped)
        assert result.losses[-1] > lr_find.DIVERGE_FACTOR * result.losses[i_min] or not math.isfinite(
            result.raw_losses[-1])
    # The suggestion: inside the sweep, a tenth of the rate at the lowest loss, below where it blew up.
    assert result.min_loss_lr == result.lrs[i_min]
    assert result.suggested_lr == pytest.approx(max(result.lrs[i_min] / 10, 1e-3))
    assert 1e-3 <= result.suggested_lr < result.min_loss_lr < result.lrs[-1] <= 10.0
    # Progress reached the reporter: preparing first, then every step with an ETA.
    assert seen[0]["status"] == "preparing" and seen[-1]["done"] == n and seen[-1]["total"] == 40
    assert all(s["eta_s"] >= 0 for s in seen if s["status"] == "running")


def _tree(home: Path) -> dict[str, str]:
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file()}


def test_importing_the_finder_loads_no_torch():
    code = "import sys, tl_core.lr_find; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------- command line
def test_cli_sweeps_a_runs_saved_backbone_ends_with_the_json_line_and_leaves_the_store_as_it_was(tl_home, tmp_path):
    store = RunStore(tl_home)
    cfg = tiny_config("finetune")
    cfg.snapshot.enabled = False
    run_id = store.create_run(cfg)
    assert execute_run(store, run_id, cfg, threading.Event(), None, None).result is not None
    store.close()
    before = _tree(tl_home)
    assert f"runs/{run_id}/backbone.safetensors" in before and f"runs/{run_id}/checkpoint.pt" in before
    out_file = tmp_path / "result.json"
    # The same process the Setup page starts, on that run's fine-tuned backbone (its own copy of it).
    cmd = [sys.executable, "-m", "tl_core", "lr-find", "--preset", "mnist-mnist-m", "--method", "finetune",
           "--backbone", f"run:{run_id}", "--max-train", "256", "--batch-size", "32", "--device", "cpu",
           "--seed", "1", "--start", "1e-4", "--end", "3", "--steps", "20", "--json-out", str(out_file), "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(line) >= {"suggested_lr", "lrs", "losses"}
    assert 0 < len(line["lrs"]) == len(line["losses"]) <= 20
    assert line["lrs"][0] == pytest.approx(1e-4) and 1e-4 <= line["suggested_lr"] <= 3
    assert "suggested lr:" in out.stdout and "lowest smoothed loss" in out.stdout
    state = json.loads(out_file.read_text())
    assert state["status"] == "done" and state["suggested_lr"] == line["suggested_lr"]
    # The run's weights, checkpoint and records are as they were, and no run was added.
    after = _tree(tl_home)
    assert {p for p in before.keys() | after.keys()
            if before.get(p) != after.get(p) and not p.startswith("runs.db")} == set()  # SQLite's WAL may move
    assert [r.id for r in RunStore(tl_home).list_runs()] == [run_id]
    # Settings that cannot make a run: exit 2, the reason on stderr and in the result file.
    bad = subprocess.run(cmd[:4] + ["--batch-size", "0", "--json-out", str(out_file)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "optim.batch_size" in bad.stderr
    assert json.loads(out_file.read_text())["status"] == "failed"


# ----------------------------------------------------------------- Setup page
def _finished(tmp_path: Path) -> dict:
    """A finished test's result file, as the command line writes it."""
    lrs = lr_schedule(1e-6, 1.0, 50)
    losses = [2.3 - 1.5 * math.exp(-((math.log10(lr) + 1.5) ** 2)) + (3 * lr if lr > 0.1 else 0) for lr in lrs]
    suggested, at_min = suggest(lrs, losses)
    out = tmp_path / "result.json"
    lr_find.write_state(out, {"status": "done", "done": 50, "total": 50, "lrs": lrs, "losses": losses,
                              "raw_losses": losses, "suggested_lr": suggested, "min_loss_lr": at_min,
                              "stopped": "", "start": 1e-6, "end": 1.0, "device": "cpu", "warnings": []})
    return {"out": str(out), "proc": None, "label": "Fine-tune · LeNet"}


def test_setup_draws_a_finished_test_and_use_sets_the_lr_widget(manager, tmp_path):
    at = open_app(keys.PAGE_SETUP)
    job = _finished(tmp_path)
    at.session_state[lr_finder_view.JOB] = job
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curve = next(c for c in charts if "learning rate" in json.dumps(c["layout"].get("title", "")).lower())
    assert curve["layout"]["xaxis"]["type"] == "log"
    assert any(str(t.get("name", "")).startswith("suggested lr") for t in curve["data"])
    state = lr_find.read_state(job["out"])
    value = lr_finder_view.rounded(state["suggested_lr"])
    use = at.button(key=lr_finder_view.USE)
    assert use.label == f"Use lr = {value:g}"
    assert at.number_input(key=keys.setup_key("optim.lr")).value != pytest.approx(value)
    use.click().run()
    assert not at.exception
    assert at.number_input(key=keys.setup_key("optim.lr")).value == pytest.approx(value)
    at.button(key=keys.SETUP_START).click().run()  # the run starts with it
    assert manager.submitted[-1][1].optim.lr == pytest.approx(value)


def test_setup_find_starts_the_test_and_shows_its_progress(manager, tmp_path, monkeypatch):
    launched = []

    def fake_launch(config, *a, **kw):
        launched.append((config, kw.get("steps")))
        out = tmp_path / "running.json"
        lr_find.write_state(out, {"status": "running", "done": 37, "total": 200, "eta_s": 65.0,
                                  "lrs": lr_schedule(1e-6, 1.0, 200)[:37], "losses": [2.3] * 37})
        return None, out

    monkeypatch.setattr(lr_find, "launch", fake_launch)
    at = open_app(keys.PAGE_SETUP)
    at.number_input(key=keys.setup_key("optim.batch_size")).set_value(48).run()
    at.number_input(key=lr_finder_view.STEPS).set_value(120).run()
    at.button(key=lr_finder_view.FIND).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(launched) == 1 and launched[0][0].optim.batch_size == 48 and launched[0][1] == 120  # the form's
    assert any("37 of 200 steps" in str(p.proto.text) and "1 min 05 s" in str(p.proto.text)
               for p in at.get("progress"))
    assert at.button(key=lr_finder_view.FIND).disabled  # one test at a time
    at.button(key=lr_finder_view.CANCEL).click().run()
    assert lr_finder_view.JOB not in at.session_state and not at.button(key=lr_finder_view.FIND).disabled


def test_setup_read_only_sessions_cannot_start_the_test(manager, monkeypatch):
    from streamlit import config as st_config

    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    try:
        at = open_app(keys.PAGE_SETUP)
        assert at.button(key=lr_finder_view.FIND).disabled
    finally:
        st_config.set_option("server.address", before)


def test_a_failed_test_says_why(manager, tmp_path):
    out = tmp_path / "failed.json"
    lr_find.write_state(out, {"status": "failed", "error": "optim.lr: the sky fell", "hint": "Look up."})
    at = open_app(keys.PAGE_SETUP)
    at.session_state[lr_finder_view.JOB] = {"out": str(out), "proc": None, "label": ""}
    at.run()
    assert "the sky fell" in texts(at) and "Look up." in texts(at)
