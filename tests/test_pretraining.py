"""The "What is pretraining worth?" demo (tl_core/pretraining.py): its plan, labels per class, a real tiny
pretrain → frozen-backbone chain through the job queue, the figure builder, and Home's card."""

from __future__ import annotations

import numpy as np
import pytest

from tl_core import gain
from tl_core import pretraining as pt
from tl_core.config import RunConfig
from tl_core.jobs import JobManager
from tl_core.store import RunStore


def test_plan_pretrains_once_then_every_strategy_labels_per_class_and_seed():
    runs = pt.plan("run:PRE")
    assert len(runs) == pt.N_RUNS == 1 + 4 * 3 * 3
    pre = runs[0]
    assert pre.strategy == "pretrain"
    assert (pre.config.data.source, pre.config.data.labels_per_class, pre.config.data.max_train) == (
        "syn-digits", None, None)  # every labelled synthetic digit
    assert pre.config.model.backbone == "lenet" and pre.config.method.name == "finetune"
    cells = {(r.strategy, r.labels_per_class, r.seed) for r in runs[1:]}
    assert cells == {(s, k, seed) for s in ("scratch", "frozen", "finetune", "l2sp") for k in (10, 30, 100)
                     for seed in (0, 1, 2)}
    for r in runs[1:]:
        c = r.config
        assert (c.data.source, c.data.target, c.data.labels_per_class, c.seed) == (
            "mnist", "mnist", r.labels_per_class, r.seed)
        assert c.method.name == "finetune" and c.method.train_on == "source" and not c.snapshot.enabled
        assert c.validate() == []
        expected = {"scratch": ("lenet", 0, []), "frozen": ("run:PRE", 3, []), "finetune": ("run:PRE", 0, []),
                    "l2sp": ("run:PRE", 0, ["l2sp"])}[r.strategy]
        assert (c.model.backbone, c.model.freeze, [e["name"] for e in c.method.extras]) == expected
    # within a cell, the strategies differ only in what the strategy is: same data, seed, epochs, optimiser
    by = {(r.strategy, r.labels_per_class, r.seed): r.config for r in runs[1:]}
    for k in pt.LABELS_PER_CLASS:
        optims = {str(by[(s.key, k, 0)].optim) for s in pt.STRATEGIES if s.key != "scratch"}
        assert len(optims) == 1
    # from scratch is exactly the transfer-gain baseline of the fine-tunes (one owner of that rule)
    ft = by[("finetune", 10, 1)]
    assert gain.config_key(by[("scratch", 10, 1)]) == gain.config_key(gain.baseline_config(ft, arch="lenet"))


def test_ten_labels_per_class_train_on_exactly_100_labelled_images(tl_home):
    import torch

    from tl_core.prepare import prepare

    cfg = pt.strategy_config("scratch", 10, 2, "run:unused")
    cfg.data.max_test = 50
    prepared = prepare(cfg, torch.device("cpu"))
    counts = np.bincount(prepared.train_y.numpy(), minlength=10)
    assert len(prepared.train_y) == 100 and counts.tolist() == [10] * 10
    other = pt.strategy_config("scratch", 10, 1, "run:unused")
    other.data.max_test = 50
    assert not torch.equal(prepare(other, torch.device("cpu")).train_x, prepared.train_x)  # the seed draws them


def _tiny(cfg: RunConfig) -> RunConfig:
    cfg.device = "cpu"
    cfg.data.max_test = 60
    cfg.optim.epochs = 1
    return cfg


def test_tiny_chain_pretrain_then_frozen_backbone_keeps_its_weights(tl_home):
    from safetensors.numpy import load_file

    manager = JobManager(RunStore(tl_home), project=False)
    try:
        pre_cfg = _tiny(pt.pretrain_config())
        pre_cfg.data.max_train = 128
        pre = manager.submit(pre_cfg)
        # queued while the pretraining run has not saved its backbone yet: the queue runs them in order
        frozen = manager.submit(_tiny(pt.strategy_config("frozen", 10, 0, f"run:{pre}")))
        tuned = manager.submit(_tiny(pt.strategy_config("finetune", 10, 0, f"run:{pre}")))
        for run_id in (pre, frozen, tuned):
            assert manager.wait(run_id, 300)
    finally:
        manager.shutdown()
    store = manager.store
    assert [store.get_run(r).status for r in (pre, frozen, tuned)] == ["completed"] * 3
    saved = load_file(str(store.run_dir(pre) / "backbone.safetensors"))
    after_frozen = load_file(str(store.run_dir(frozen) / "backbone.safetensors"))
    after_tuned = load_file(str(store.run_dir(tuned) / "backbone.safetensors"))
    assert saved.keys() == after_frozen.keys()
    assert all(np.array_equal(saved[k], after_frozen[k]) for k in saved)  # feature extraction: backbone untouched
    assert not all(np.array_equal(saved[k], after_tuned[k]) for k in saved)  # fine-tuning moves it
    assert gain.gain_for(store, store.get_run(frozen)).reason.startswith("transfer gain: no baseline yet")


def test_figure_draws_a_line_and_a_band_per_strategy_on_a_log_axis():
    summary = [{"strategy": s, "labels_per_class": k, "mean": m, "std": sd, "n": 3}
               for s, vals in {"scratch": [(10, 60.0, 4.0), (30, 75.0, 2.0), (100, 88.0, 1.0)],
                               "frozen": [(10, 72.0, 1.0), (30, 76.0, 1.0), (100, 80.0, 0.5)],
                               "finetune": [(10, 78.0, 2.0), (30, 85.0, 1.0), (100, 90.0, 0.5)],
                               "l2sp": [(10, 79.0, 2.0), (30, 86.0, 1.0), (100, 90.5, 0.5)]}.items()
               for k, m, sd in vals]
    fig = pt.figure(summary)
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [10, 30, 100]
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == [s.title for s in pt.STRATEGIES]
    assert list(lines[0].y) == [60.0, 75.0, 88.0]
    band = fig.data[0]  # scratch's band: mean + std forwards, mean - std backwards
    assert list(band.y) == [64.0, 77.0, 89.0, 87.0, 73.0, 56.0] and band.fill == "toself"
    text = pt.verdict(summary)
    assert text.startswith("Pretraining helps most with 10 labels per class (+19.0 points")
    assert "frozen pretrained backbone + new head with 100 labels per class is 8.0 points below" in text


def test_aggregate_and_status_from_the_store(tl_home):
    store = RunStore(tl_home)
    ids = [store.create_run(pt.strategy_config("finetune", 10, s, "run:x")) for s in (0, 1)]
    for run_id, acc in zip(ids, (0.8, 0.9)):
        store.set_status(run_id, "running")
        store.set_summary(run_id, {"final_target_test_acc": acc})
        store.set_status(run_id, "completed")
    queued = store.create_run(pt.strategy_config("finetune", 10, 2, "run:x"))
    record = {"started": 0, "runs": [{"id": i, "strategy": "finetune", "labels_per_class": 10, "seed": s}
                                     for s, i in enumerate(ids + [queued])]}
    rows = pt.results(store, record)
    assert [r["accuracy"] for r in rows] == [0.8, 0.9]
    agg = pt.aggregate(rows)
    assert agg == [{"strategy": "finetune", "labels_per_class": 10, "mean": pytest.approx(85.0),
                    "std": pytest.approx(5.0), "n": 2}]
    st = pt.status(store, record)
    assert (st.total, st.done, st.active, st.failed) == (3, 2, True, 0)
    assert st.fraction == pytest.approx(2 / 3)  # three runs of the same size, two done


def test_home_card_starts_the_demo_and_records_it(tl_home, monkeypatch):
    from test_pages import RecordingManager, _use_manager, open_app, texts

    from tl_ui import keys, resources

    manager = RecordingManager(RunStore(tl_home))
    _use_manager(monkeypatch, manager)
    try:
        at = open_app()
        assert pt.TITLE in texts(at)
        at.button(key=keys.HOME_PRETRAINING).click().run()
        assert not at.exception, [e.value for e in at.exception]
        sent = [c for _, c, _ in manager.submitted]
        assert len(sent) == pt.N_RUNS and sent[0].data.source == "syn-digits"
        pre_id = manager.submitted[0][0]
        assert {c.model.backbone for c in sent[1:]} == {f"run:{pre_id}", "lenet"}
        record = pt.load(tl_home)
        assert [e["id"] for e in record["runs"]] == [i for i, _, _ in manager.submitted]
        assert at.button(key=keys.HOME_PRETRAINING_STOP).label == "Stop demo"  # it is running: Stop is offered
        assert len(at.get("progress")) == 1  # the whole demo's progress bar
        at.button(key=keys.HOME_PRETRAINING_STOP).click().run()
        assert sorted(manager.cancelled) == sorted(e["id"] for e in record["runs"])
    finally:
        resources.get_manager.clear()


def test_setup_refuses_a_batch_larger_than_the_few_labels(tl_home):
    from tl_ui import validation

    cfg = RunConfig()
    cfg.data.source, cfg.data.labels_per_class, cfg.optim.batch_size = "mnist", 2, 64
    assert any(m.startswith("optim.batch_size: 64 is larger than the training set (20 images of mnist)")
               for m in validation.problems(cfg))
    cfg.optim.batch_size = 16
    assert not any(m.startswith("optim.batch_size") for m in validation.problems(cfg))
