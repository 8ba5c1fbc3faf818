"""RunStore: runs and metrics survive reopening; a reader never blocks the writer."""

import threading

import numpy as np

from tl_core.config import RunConfig
from tl_core.store import RunStore


def test_store_survives_close_and_reopen(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(RunConfig(name="keep me"))
    store.set_status(run_id, "running")
    store.log_steps(run_id, [{"step": 1, "epoch": 1, "loss": 2.0}, {"step": 2, "epoch": 1, "loss": 1.5}])
    store.log_epoch(run_id, 1, 2, {"target_test_acc": 0.5}, {"per_class": [0.1, 0.9]})
    store.close()

    again = RunStore(tmp_path)
    rec = again.get_run(run_id)
    assert rec.name == "keep me" and rec.status == "running"
    assert again.step_metrics(run_id)["loss"].tolist() == [2.0, 1.5]
    ep = again.epoch_metrics(run_id)
    assert ep["target_test_acc"].tolist() == [0.5] and ep["extra"][0]["per_class"] == [0.1, 0.9]
    assert RunConfig.from_dict(rec.config).name == "keep me"


def test_active_runs_become_interrupted_on_restart(tmp_path):
    store = RunStore(tmp_path)
    a = store.create_run(RunConfig())
    b = store.create_run(RunConfig())
    store.set_status(a, "running")
    store.set_status(b, "completed")
    assert RunStore(tmp_path).mark_interrupted() == [a]
    assert store.get_run(a).status == "interrupted" and store.get_run(b).status == "completed"


def test_reader_reads_while_writer_writes(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(RunConfig())
    done = threading.Event()
    seen = []

    def writer():
        for i in range(200):
            store.log_steps(run_id, [{"step": i, "epoch": 0, "loss": float(i)}])
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    while not done.is_set():
        seen.append(len(store.step_metrics(run_id)))
    t.join()
    assert seen == sorted(seen)  # reads see a growing, consistent prefix
    assert len(store.step_metrics(run_id)) == 200


def test_rename_delete_and_csv(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(RunConfig())
    store.log_steps(run_id, [{"step": 1, "epoch": 1, "loss": 1.0}])
    store.log_epoch(run_id, 1, 1, {"target_test_acc": 0.25}, {})
    store.set_status(run_id, "completed")
    store.rename(run_id, "renamed")
    assert store.get_run(run_id).name == "renamed"
    csv = store.export_metrics_csv(run_id)
    assert "loss" in csv.splitlines()[0] and "target_test_acc" in csv.splitlines()[0]
    store.delete(run_id)
    assert store.get_run(run_id) is None and not store.run_dir(run_id).exists()


def test_snapshots_round_trip(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(RunConfig())
    store.save_snapshot_sample(run_id, labels=np.arange(4), domains=np.array([0, 0, 1, 1]))
    feats = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    store.save_snapshot(run_id, 0, 0, 0, feats, {"target_acc": 0.1})
    store.save_coords(run_id, 0, feats[:, :2])
    snaps = store.list_snapshots(run_id)
    assert snaps["projected"].tolist() == [True] and snaps["target_acc"].tolist() == [0.1]
    assert np.allclose(store.load_snapshot(run_id, 0), feats, atol=1e-2)
    assert store.snapshot_sample(run_id)["domains"].tolist() == [0, 0, 1, 1]


def test_nan_metrics_are_stored_as_missing(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(RunConfig())
    store.log_steps(run_id, [{"step": 1, "epoch": 1, "loss": float("nan")}])
    assert store.step_metrics(run_id)["loss"].isna().all()
