"""Transfer gain (tl_core/gain.py): which run is the baseline, the gain of real tiny runs and its sign."""

from __future__ import annotations

import json

import pytest

from tl_core import gain
from tl_core.config import RunConfig
from tl_core.jobs import JobManager
from tl_core.store import RunStore


def small(method: str = "finetune", seed: int = 3) -> RunConfig:
    """A run of a few seconds: 64 MNIST training digits, 50 test digits per domain, one epoch."""
    cfg = RunConfig(seed=seed, device="cpu")
    cfg.data.source, cfg.data.target = "mnist", "mnist-m"
    cfg.data.max_train, cfg.data.max_test = 64, 50
    cfg.method.name = method
    if method == "dann":
        cfg.method.params["disc_hidden"] = 32
    cfg.optim.batch_size, cfg.optim.epochs = 32, 1
    cfg.snapshot.enabled = False
    return cfg


def test_baseline_of_an_adaptation_method_is_source_only_with_the_same_settings():
    cfg = small("dann")  # with a DANN setting of its own (disc_hidden)
    base = gain.baseline_config(cfg)
    assert gain.baseline_kind(cfg) == gain.SOURCE_ONLY
    assert base.method.name == "finetune" and base.method.train_on == "source" and base.method.params == {}
    assert (base.data, base.model, base.optim, base.seed) == (cfg.data, cfg.model, cfg.optim, cfg.seed)


def test_baseline_of_a_pretrained_fine_tune_is_training_from_scratch():
    cfg = small("finetune")
    cfg.model.backbone, cfg.model.freeze = "resnet18", 2
    cfg.method.extras = [{"name": "l2sp", "params": {}}]
    cfg.optim.backbone_lr_mult = 0.1
    base = gain.baseline_config(cfg)
    assert gain.baseline_kind(cfg) == gain.FROM_SCRATCH
    assert (base.model.backbone, base.model.pretrained, base.model.freeze) == ("resnet18", False, 0)
    assert base.method.extras == [] and base.optim.backbone_lr_mult == 1.0
    assert base.data == cfg.data and base.seed == cfg.seed


def test_a_from_scratch_source_only_run_is_a_baseline_itself():
    cfg = small("finetune")  # LeNet has no pretrained weights
    assert gain.baseline_kind(cfg) is None and gain.baseline_config(cfg) is None
    target = small("finetune")
    target.method.train_on = "target"
    assert gain.baseline_kind(target) is None


def test_matching_ignores_name_snapshots_device_and_lenets_pretrained_flag():
    a, b = small("finetune"), small("finetune")
    b.name, b.snapshot.enabled, b.device, b.amp, b.model.pretrained = "mine", True, "auto", False, False
    assert gain.config_key(a) == gain.config_key(b)
    b.seed = a.seed + 1
    assert gain.config_key(a) != gain.config_key(b)
    c = small("finetune")
    c.data.labels_per_class = 10
    assert gain.config_key(a) != gain.config_key(c)


def test_gain_text_flags_negative_transfer():
    g = gain.Gain(gain.SOURCE_ONLY, points=-7.5)
    assert g.negative and g.text() == "negative transfer: −7.5 points against source only"
    g = gain.Gain(gain.FROM_SCRATCH, points=3.25)
    assert not g.negative and g.text() == "transfer gain: +3.2 points against training from scratch"


def test_reported_accuracy_prefers_the_label_free_choice():
    assert gain.reported_accuracy({"final_target_test_acc": 0.5}) == 0.5
    assert gain.reported_accuracy({"final_target_test_acc": 0.5, "chosen": {"target_test_acc": 0.6}}) == 0.6
    assert gain.reported_accuracy({"target_labelled": False}) is None
    # MNIST → MNIST: its source validation images are the target test images, so the choice is not used
    same = {"data": {"source": "mnist", "target": "mnist"}}
    assert gain.reported_accuracy({"final_target_test_acc": 0.5, "chosen": {"target_test_acc": 0.6}}, same) == 0.5


@pytest.fixture
def manager(tl_home):
    m = JobManager(RunStore(tl_home), project=False)
    yield m
    m.shutdown()


def test_real_runs_gain_is_recorded_with_its_sign_and_missing_without_baseline(manager):
    store = manager.store
    dann = small("dann")
    alone = manager.submit(dann)  # no source-only run yet
    assert manager.wait(alone, 240)
    rec = store.get_run(alone)
    assert rec.status == "completed"
    g = gain.gain_for(store, rec)
    assert g.against == gain.SOURCE_ONLY and g.points is None and "no baseline" in g.reason
    assert "gain" not in rec.summary

    base_cfg = gain.baseline_to_queue(store, dann)
    assert base_cfg is not None and base_cfg.method.name == "finetune"
    base = manager.submit(base_cfg)
    assert gain.baseline_to_queue(store, dann) is None  # queued: not queued twice
    assert manager.wait(base, 240)
    dann_rec, base_rec = store.get_run(alone), store.get_run(base)
    assert base_rec.status == "completed"
    recorded = dann_rec.summary["gain"]  # written when the baseline finished
    expected = round(100 * (gain.reported_accuracy(dann_rec.summary) - gain.reported_accuracy(base_rec.summary)), 2)
    assert recorded["points"] == pytest.approx(expected) and recorded["baseline_run"] == base
    assert recorded["negative"] == (expected < 0)
    assert recorded["text"].startswith("negative transfer: −" if expected < 0 else "transfer gain: +")
    assert gain.gains(store.list_runs())[base].against is None  # the baseline has no gain of its own


def test_cli_baseline_flag_trains_the_baseline_and_reports_the_gain(tl_home, capsys):
    from tl_core.__main__ import main

    args = ["run", "--preset", "mnist-mnist-m", "--method", "dann", "--max-train", "64", "--batch-size", "32",
            "--epochs", "1", "--no-snapshots", "--device", "cpu", "--seed", "5", "--quiet", "--baseline"]
    assert main(args) == 0
    out = capsys.readouterr()
    last = json.loads(out.out.strip().splitlines()[-1])
    assert last["gain"]["against"] == gain.SOURCE_ONLY and last["gain"]["points"] is not None
    assert "training the baseline first" in out.err
    runs = RunStore(tl_home).list_runs()
    assert sorted(RunConfig.from_dict(r.config).method.name for r in runs) == ["dann", "finetune"]
    assert main(args) == 0  # the second time the stored baseline is used: one more run, not two
    assert len(RunStore(tl_home).list_runs()) == 3


def test_unlabelled_target_says_the_gain_is_not_available():
    class Rec:
        id, summary = "r", {"target_labelled": False, "final_source_val_acc": 0.9}

    g = gain.compare(Rec(), Rec(), gain.SOURCE_ONLY)
    assert g.points is None and g.text() == gain.NO_LABELS


def _stored(store: RunStore, cfg: RunConfig, acc: float) -> str:
    run_id = store.create_run(cfg)
    store.set_status(run_id, "running")
    store.set_summary(run_id, {"final_target_test_acc": acc, "best_target_test_acc": acc})
    store.set_status(run_id, "completed")
    return run_id


def test_runs_table_and_monitor_flag_negative_transfer(tl_home, monkeypatch):
    from test_pages import RecordingManager, _use_manager, open_app, texts

    from tl_ui import keys, resources

    manager = RecordingManager(RunStore(tl_home))
    _use_manager(monkeypatch, manager)
    try:
        _stored(manager.store, small("finetune"), 0.600)
        dann = _stored(manager.store, small("dann"), 0.525)
        at = open_app(keys.PAGE_RUNS)
        table = at.dataframe[0].value
        assert table.loc[table["Name"].str.startswith("DANN"), "Gain"].tolist() == ["−7.5 ⚠"]
        at.session_state[keys.MONITOR_REQUEST] = [dann]
        at.switch_page(keys.PAGE_MONITOR).run()
        assert not at.exception, [e.value for e in at.exception]
        shown = [w.value.replace("\\", "") for w in at.warning]  # plain(): markdown characters escaped
        assert any("Negative transfer: −7.5 points against source only" in w for w in shown), texts(at)
    finally:
        resources.get_manager.clear()


def test_setup_also_runs_the_baseline_first(tl_home, monkeypatch):
    from test_pages import RecordingManager, _use_manager, open_app

    from tl_ui import keys, resources

    manager = RecordingManager(RunStore(tl_home))
    _use_manager(monkeypatch, manager)
    try:
        at = open_app(keys.PAGE_SETUP)
        box = at.checkbox(key=keys.SETUP_BASELINE)
        assert box.label == "Also run its baseline (source only)"  # the default method is DANN
        box.check().run()
        at.button(key=keys.SETUP_START).click().run()
        assert not at.exception, [e.value for e in at.exception]
        sent = [c for _, c, _ in manager.submitted]
        assert [c.method.name for c in sent] == ["finetune", "dann"]
        assert gain.config_key(sent[0]) == gain.config_key(gain.baseline_config(sent[1]))
    finally:
        resources.get_manager.clear()
