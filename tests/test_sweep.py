"""Sweeps (tl_core/sweep.py, the `sweep` / `sweep-worker` commands) with real one-epoch tiny trials.

Each trial trains LeNet for one epoch on 64 source images (32 test images): about a second on an idle core.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests._tiny import tiny_config
from tl_core import sweep
from tl_core.jobs import JobManager
from tl_core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def base() -> dict:
    cfg = tiny_config("finetune")
    cfg.data.max_train, cfg.data.max_test = 64, 32
    cfg.snapshot.enabled = False
    return cfg.to_dict()


def spec(*sets: str, seeds=(0, 1), **kw) -> sweep.SweepSpec:
    return sweep.SweepSpec(params=[sweep.parse_set(s) for s in sets], base=base(), seeds=list(seeds), **kw)


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    from tl_core.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("TL_HOME", str(home))
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def sweep_runs(store: RunStore) -> list[tuple[str, int]]:
    """(setting, seed) of every run in the store, from the run's own config."""
    out = []
    for rec in store.list_runs():
        c = rec.config
        out.append((f"lr={c['optim']['lr']} method={c['method']['name']}", c["seed"]))
    return out


# ------------------------------------------------------------------ the spec
def test_set_syntax_is_typed_by_runconfig_and_every_mistake_is_named():
    assert sweep.parse_set("optim.lr=0.01,0.03").values == [0.01, 0.03]
    assert sweep.parse_set("optim.batch_size=16,32").values == [16, 32]
    assert sweep.parse_set("method.name=finetune,dann").values == ["finetune", "dann"]
    assert sweep.parse_set("data.max_train=100,200").values == [100, 200]  # int | None
    rng = sweep.parse_set("optim.lr=1e-4:1e-1:log")
    assert (rng.low, rng.high, rng.log, rng.is_range) == (1e-4, 1e-1, True, True)
    assert isinstance(sweep.parse_set("model.freeze=0:3").low, int)
    for bad, words in [("optim.lrr=0.1", "optim has no field 'lrr'"), ("optim=1,2", "is a section"),
                       ("optim.lr=fast", "'fast' is not a float"), ("optim.lr=0.1:0.01", "LOW must be below"),
                       ("optim.lr", "PATH=V1,V2"), ("optim.lr=0:1:log", "log range needs LOW above 0"),
                       ("method.params.nope=1", "no registered method")]:
        with pytest.raises(sweep.SweepError, match=words):
            sweep.parse_set(bad)
    # every grid combination is checked by RunConfig.validate(), each message naming its setting
    errs = spec("optim.lr=0.01,-1", "method.name=finetune,nosuch").problems()
    assert any(e.startswith("optim.lr=-1 ") and "optim.lr:" in e for e in errs)
    assert any("method.name=nosuch" in e and "method.name:" in e for e in errs)
    assert "sampler: grid needs a list of values" in " ".join(spec("optim.lr=1e-3:1e-1").problems())
    assert "need a budget" in " ".join(spec("optim.lr=1e-3:1e-1", sampler="tpe").problems())
    # the objective is a label-free criterion; target accuracy is refused
    errs = spec("optim.lr=0.01", objective="target_test_acc").problems()
    assert len(errs) == 1 and "not a label-free criterion" in errs[0]
    assert spec("optim.lr=0.01,0.03", "method.name=finetune,dann").problems() == []
    cfg = sweep.apply(base(), {"optim.lr": 0.03, "method.name": "dann", "method.params.disc_hidden": 32}, 5)
    assert (cfg.optim.lr, cfg.method.name, cfg.method.params, cfg.seed) == (0.03, "dann", {"disc_hidden": 32}, 5)
    from tl_core.backbones import default_image_size

    big = sweep.apply(base(), {"model.backbone": "resnet18"})
    assert big.data.image_size == default_image_size("resnet18") != base()["data"]["image_size"]


# ------------------------------------------------------------------ grid, stop, resume
def test_a_2x2_grid_with_2_seeds_stopped_after_3_trials_resumes_and_runs_only_the_rest(tl_home):
    sp = spec("optim.lr=0.01,0.03", "method.name=finetune,dann")
    storage = sweep.default_storage()
    study = sweep.create_study(sp, storage, "grid")
    store = RunStore()
    manager = JobManager(store, isolate=False, project=False)
    stop = threading.Event()
    finished = []

    def hook(trial):  # the stop hook: like Ctrl-C (or the page's Stop) after the third trial
        finished.append(trial.number)
        if len(finished) == 3:
            stop.set()

    try:
        assert sweep.run_worker(study, sp, sweep.ManagerExecutor(manager, "test"), stop, on_trial=hook) == 3
    finally:
        manager.shutdown()
    first = sweep_runs(store)
    assert len(first) == 6 and len(set(first)) == 6
    # resumed from the command line: only the fourth setting runs; the table and the JSON line cover all 8 runs
    code, out, err = cli(tl_home, "sweep-worker", "--study", "grid")
    assert code == 0, err
    runs = sweep_runs(store)
    assert len(runs) == 8 and len(set(runs)) == 8, runs  # no setting and seed ran twice
    new = set(runs) - set(first)
    assert len({s for s, _ in new}) == 1 and {seed for _, seed in new} == {0, 1}  # the fourth setting, both seeds
    assert not {s for s, _ in new} & {s for s, _ in first}
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["runs"] == 8 and summary["trials_complete"] == 4 and len(summary["groups"]) == 4
    assert all(len(g["run_ids"]) == 2 for g in summary["groups"])
    # each group's mean ± std is over its two seeds' runs, read back from the store
    for g in summary["groups"]:
        scores = [float(store.epoch_metrics(r)["source_val_acc"].iloc[-1]) for r in g["run_ids"]]
        accs = [float(store.epoch_metrics(r)["target_test_acc"].iloc[-1]) for r in g["run_ids"]]
        assert g["score_mean"] == pytest.approx(sum(scores) / 2)
        assert g["score_std"] == pytest.approx(abs(scores[0] - scores[1]) / math.sqrt(2))
        assert g["target_test_acc_mean"] == pytest.approx(sum(accs) / 2)
        assert {store.get_run(r).config["seed"] for r in g["run_ids"]} == {0, 1}
    # (tiny test sets tie often: the choice is a setting with the best mean, whichever of the tied ones)
    assert summary["chosen"]["score_mean"] == max(g["score_mean"] for g in summary["groups"])
    assert summary["chosen"]["setting"] in [g["setting"] for g in summary["groups"]]
    assert summary["oracle"]["target_test_acc_mean"] == max(g["target_test_acc_mean"] for g in summary["groups"])
    assert summary["oracle"]["note"] == "oracle: uses target labels"
    assert "oracle: uses target labels" in out and "± " in out
    lines = out.splitlines()
    assert sum(1 for line in lines if line.startswith("optim.lr=")) == 4


def test_a_trial_whose_process_died_runs_again_keeping_the_seeds_it_finished(tl_home):
    sp = spec("optim.lr=0.01,0.03")
    storage = sweep.default_storage()
    study = sweep.create_study(sp, storage, "killed")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process of this host that no longer runs
    trial = study.ask()
    setting = sweep._suggest(trial, sp)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}:1")
    trial.set_user_attr("runs", {"0": {"run_id": "earlier", "status": "completed", "score": 0.5,
                                       "target_test_acc": 0.2, "duration_s": 1.0, "error": None}})
    # a running trial of a live process (this one) is left alone
    other = sweep.create_study(sp, storage, "alive")
    live = other.ask()
    sweep._suggest(live, sp)
    live.set_user_attr("worker", sweep._token())
    assert sweep.recover_stale(other) == 0
    assert sweep.recover_stale(study) == 1
    assert sweep.recover_stale(study) == 0  # failed once, enqueued once
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]
    store = RunStore()
    manager = JobManager(store, isolate=False, project=False)
    try:  # the retry takes trial number 1, which was grid point 1's: that point must still run
        sweep.run_worker(study, sp, sweep.ManagerExecutor(manager, "test"))
    finally:
        manager.shutdown()
    by_setting: dict[float, list[int]] = {}
    for rec in store.list_runs():
        by_setting.setdefault(rec.config["optim"]["lr"], []).append(rec.config["seed"])
    other_lr = ({0.01, 0.03} - {setting["optim.lr"]}).pop()
    # the retried setting ran seed 1 only (seed 0 had finished before its process died); the other both seeds
    assert {k: sorted(v) for k, v in by_setting.items()} == {setting["optim.lr"]: [1], other_lr: [0, 1]}
    res = sweep.results(study, sp)
    assert res.n_complete == 2 and res.n_failed == 0 and [g.state for g in res.groups] == ["complete"] * 2
    grp = next(g for g in res.groups if g.setting == setting)
    assert set(grp.runs) == {"0", "1"} and grp.runs["0"]["run_id"] == "earlier"
    assert sweep.progress(study, sp)["finished"]


def test_a_run_that_finished_after_its_sweep_process_died_is_not_run_again(tl_home):
    # the server stopped while a trial waited for its seed-0 run; the run's last step was under way and it
    # completed anyway. On resume that run is the seed's result: only seed 1 of the setting trains.
    sp = spec("optim.lr=0.01,0.03")
    study = sweep.create_study(sp, sweep.default_storage(), "late")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    trial = study.ask()
    setting = sweep._suggest(trial, sp)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}:1")
    store = RunStore()
    manager = JobManager(store, isolate=False, project=False)
    try:
        late = manager.submit(sweep.apply(sp.base, setting, 0))
        assert manager.wait(late, timeout=120)
        assert store.get_run(late).status == "completed"
        trial.set_user_attr("runs", {"0": {"run_id": late, "status": "running", "score": None,
                                           "target_test_acc": None, "duration_s": None, "error": None}})
        assert sweep.recover_stale(study) == 1
        sweep.run_worker(study, sp, sweep.ManagerExecutor(manager, "test"))
    finally:
        manager.shutdown()
    seeds = sorted(rec.config["seed"] for rec in store.list_runs() if rec.config["optim"]["lr"] == setting["optim.lr"])
    assert seeds == [0, 1]  # seed 0 once (the late run), seed 1 once
    grp = next(g for g in sweep.results(study, sp).groups if g.setting == setting)
    assert grp.state == "complete" and grp.runs["0"]["run_id"] == late and grp.runs["0"]["status"] == "completed"
    assert grp.runs["0"]["score"] is not None
    assert sweep.progress(study, sp)["finished"]


# ------------------------------------------------------------------ two worker processes
def test_two_worker_processes_share_one_sqlite_study_without_running_a_trial_twice(tl_home):
    sp = spec("optim.lr=0.01,0.02", "optim.momentum=0.8,0.9", seeds=(0,))
    sweep.create_study(sp, sweep.default_storage(), "shared")
    env = {**os.environ, "TL_HOME": str(tl_home), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "tl_core", "sweep-worker", "--study", "shared"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    store = RunStore()
    runs = [(r.config["optim"]["lr"], r.config["optim"]["momentum"]) for r in store.list_runs()]
    assert sorted(runs) == [(0.01, 0.8), (0.01, 0.9), (0.02, 0.8), (0.02, 0.9)]  # each setting once
    study, _ = sweep.load_study(sweep.default_storage(), "shared")
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 4
    workers = {t.user_attrs["worker"].rsplit(":", 2)[1] for t in done}
    assert workers == {str(p.pid) for p in procs}, "both processes took trials"
    for _, err in outs:
        assert err.count("trial ") >= 1


def test_tpe_over_a_log_range_and_a_choice_runs_its_trial_budget_within_the_range(tl_home):
    code, out, err = cli(tl_home, "sweep", "--config", str(_base_file(tl_home)), "--sampler", "tpe", "--trials", "2",
                         "--set", "optim.lr=0.005:0.05:log", "--set", "optim.optimizer=sgd,adam", "--seeds", "3",
                         "--study", "tpe", "--quiet")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["sampler"] == "tpe" and summary["trials_complete"] == 2 and summary["runs"] == 2
    store = RunStore()
    for rec in store.list_runs():
        assert 0.005 <= rec.config["optim"]["lr"] <= 0.05 and rec.config["optim"]["optimizer"] in ("sgd", "adam")
        assert rec.config["seed"] == 3 and rec.status == "completed"
    # a spec that cannot run is refused before anything trains, each problem named
    code, _, err = cli(tl_home, "sweep", "--set", "optim.lr=1e-3:1e-1", "--study", "bad")
    assert code == 2 and "grid needs a list of values" in err and len(store.list_runs()) == 2


def _base_file(home: Path) -> Path:
    path = home / "base.json"
    path.write_text(json.dumps(base()))
    return path


def test_stop_stops_the_running_run_queues_no_more_and_enqueues_the_setting_again(tl_home):
    import time

    sp = spec("optim.lr=0.01,0.03", seeds=(0, 1))
    sp.base["optim"]["epochs"] = 50  # long enough to be stopped while it trains
    storage = sweep.default_storage()
    sweep.create_study(sp, storage, "stopme", origin="dashboard")
    store = RunStore()
    manager = JobManager(store, isolate=False, project=False)
    try:
        d = sweep.drive(manager, storage, "stopme")
        deadline = time.monotonic() + 300
        while not any(r.status == "running" for r in store.list_runs()):
            assert time.monotonic() < deadline and d.alive()
            time.sleep(0.2)
        sweep.stop(storage, "stopme")
        d.thread.join(timeout=120)
        assert not d.alive() and sweep.driver(storage, "stopme") is None
        assert [r.status for r in store.list_runs()] == ["stopped"]  # the next seed was never queued
        study, _ = sweep.load_study(storage, "stopme")
        assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]  # enqueued again
        prog = sweep.progress(study, sp)
        assert prog["stopped"] and not prog["finished"] and prog["done"] == 0 and prog["total"] == 4
        # a stopped sweep is not resumed by a restart; the user's Resume is what goes on
        assert sweep.resume_interrupted(manager, storage) == []
    finally:
        manager.shutdown()


def test_the_sweep_page_names_each_mistake_under_its_form_and_starts_nothing(tl_home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tl_ui import keys

    monkeypatch.setenv("TL_TRAIN_IN_PROCESS", "1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page(keys.PAGE_SWEEP).run()
    assert not at.exception and "No sweep yet" in at.info[0].value
    at.multiselect(key=keys.SWEEP_FIELDS).set_value(["optim.lr", "method.name"]).run()
    at.text_input(key=keys.SWEEP_VALUES_PREFIX + "optim.lr").set_value("1e-3:1e-1").run()
    at.multiselect(key=keys.SWEEP_VALUES_PREFIX + "method.name").set_value(["finetune"]).run()
    at.text_area(key=keys.SWEEP_MORE).set_value("optim.lrr=0.1").run()
    at.text_input(key=keys.SWEEP_SEEDS).set_value("0, x").run()
    at.button(key=keys.SWEEP_START).click().run()
    errors = [e.value.replace("\\", "") for e in at.error]  # shown as plain text (Markdown escaped)
    assert any("optim has no field 'lrr'" in e for e in errors), errors
    assert any(e.startswith("Seeds:") for e in errors), errors
    at.text_area(key=keys.SWEEP_MORE).set_value("").run()
    at.text_input(key=keys.SWEEP_SEEDS).set_value("0").run()
    at.button(key=keys.SWEEP_START).click().run()
    assert any("grid needs a list of values" in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    assert sweep.list_studies(sweep.default_storage()) == [] and RunStore().list_runs() == []
    assert not at.exception
