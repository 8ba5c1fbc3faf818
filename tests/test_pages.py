"""The dashboard's pages, driven by Streamlit's AppTest (no browser).

Each test opens app.py on a page with TL_HOME in a temporary folder. The job manager is
replaced by a recorder of submitted configs (nothing trains), except in the one test that
runs a tiny real run through a real JobManager.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import streamlit as st
import pytest
from streamlit.testing.v1 import AppTest

from tl_core import jobs
from tl_core.embedding import METRIC_HELP
from tl_core.config import RunConfig, demo_config
from tl_core.jobs import ConfigError, JobManager
from tl_core.store import RunStore
from tl_ui import keys, resources


ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90  # the first run of a process imports torch and builds the backbone list


class RecordingManager:
    """Stands in for the JobManager: records what the pages submit, cancel and resume; trains nothing."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.submitted: list[tuple[str, RunConfig, str | None]] = []
        self.cancelled: list[str] = []
        self.resumed: list[str] = []
        self.active: set[str] = set()

    def submit(self, config: RunConfig, owner: str | None = None) -> str:
        problems = config.validate()
        if problems:
            raise ConfigError(problems)
        run_id = self.store.create_run(config, owner=owner)
        self.submitted.append((run_id, config, owner))
        self.active.add(run_id)
        return run_id

    def cancel(self, run_id: str) -> bool:
        self.cancelled.append(run_id)
        return run_id in self.active

    def stopping(self, run_id: str) -> bool:
        return run_id in getattr(self, "stopping_ids", ())

    def projecting(self) -> bool:
        return False

    def resume(self, run_id: str, owner: str | None = None) -> str:
        self.resumed.append(run_id)
        self.store.set_status(run_id, "queued")
        self.active.add(run_id)
        return run_id

    def is_active(self, run_id: str) -> bool:
        return run_id in self.active

    def active_ids(self) -> list[str]:
        return list(self.active)


def _use_manager(monkeypatch: pytest.MonkeyPatch, manager) -> None:
    monkeypatch.setattr(jobs, "_MANAGER", manager)
    resources.get_manager.clear()


@pytest.fixture
def manager(tl_home: Path, monkeypatch: pytest.MonkeyPatch) -> RecordingManager:
    m = RecordingManager(RunStore(tl_home))
    _use_manager(monkeypatch, m)
    yield m
    resources.get_manager.clear()


def open_app(page: str | None = None) -> AppTest:
    """app.py, run once, then switched to ``page`` (a path such as keys.PAGE_SETUP)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """All text on the page (markdown, captions, alerts), for 'is this said somewhere' checks."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def live_charts(at: AppTest) -> list[dict]:
    """The specs of the Monitor's live charts (tl_ui/live_chart.py: drawn in place, not by st.plotly_chart)."""
    import json

    return [json.loads(json.loads(c.proto.json)["spec"]) for c in at.get("bidi_component")
            if c.proto.component_name == "tl_live_chart"]


def add_run(store: RunStore, status: str, *, owner: str | None = None, error: str | None = None,
            hint: str | None = None, name: str = "") -> str:
    cfg = RunConfig(name=name)
    run_id = store.create_run(cfg, owner=owner)
    if status != "queued":
        store.set_status(run_id, "running")
        if status != "running":
            store.set_status(run_id, status, error=error, hint=hint)
    time.sleep(0.002)  # distinct creation times keep list order stable
    return run_id


# ------------------------------------------------------------------ rules
def _python_files(*parts: str) -> list[Path]:
    files = []
    for part in parts:
        p = ROOT / part
        files += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return files


@pytest.mark.parametrize("page", [keys.PAGE_HOME, keys.PAGE_SETUP, keys.PAGE_MONITOR, keys.PAGE_RUNS])
def test_every_page_runs_inside_the_app_with_the_shared_sidebar(manager, page):
    at = open_app(page)
    assert "#### Active runs" in [m.value for m in at.sidebar.markdown]
    assert at.session_state[keys.OWNER]


def test_sidebar_lists_active_runs_and_opens_them_in_the_monitor(manager):
    add_run(manager.store, "completed", name="finished")
    running = add_run(manager.store, "running", name="training now")
    manager.store.set_progress(running, epoch=1, step=30, total_steps=100, eta_s=42.0, images_per_s=900.0)
    at = open_app()
    sidebar = "\n".join(str(m.value) for m in at.sidebar.markdown)
    assert "training now" in sidebar and "finished" not in sidebar
    assert at.sidebar.get("progress")[0].proto.text.startswith("30 %")
    at.button(key=f"sidebar.open.{running}").click().run()
    assert at.title[0].value == "Monitor"
    assert at.multiselect(key=keys.MONITOR_PICK).value == [running]


# ------------------------------------------------------------------- home
def test_home_explains_the_tool_and_offers_the_presets(manager):
    at = open_app()
    assert at.title[0].value == "Transfer Lab"
    body = texts(at)
    for title in ("MNIST → MNIST-M", "MNIST → UCI digits", "Synthetic digits → MNIST", "Your own image folders"):
        assert title in body
    for preset in ("mnist-mnist-m", "mnist-uci-digits", "syn-digits-mnist"):
        assert at.button(key=keys.HOME_RUN_PREFIX + preset).label.startswith("Run demo")
    assert "Traceback" not in body


@pytest.mark.parametrize("preset", ["mnist-mnist-m", "mnist-uci-digits", "syn-digits-mnist"])
def test_one_click_on_a_preset_submits_source_only_and_dann_and_opens_the_monitor(manager, preset):
    at = open_app()
    at.button(key=keys.HOME_RUN_PREFIX + preset).click().run()
    assert not at.exception
    assert [c.to_dict() for _, c, _ in manager.submitted] == [demo_config(preset, "finetune").to_dict(),
                                                              demo_config(preset, "dann").to_dict()]
    owner = at.session_state[keys.OWNER]
    assert [o for _, _, o in manager.submitted] == [owner, owner]
    assert at.title[0].value == "Monitor"
    ids = [run_id for run_id, _, _ in manager.submitted]
    assert at.session_state[keys.MONITOR_PICK] == ids
    assert at.multiselect(key=keys.MONITOR_PICK).value == ids


def test_the_comparison_demo_queues_every_method_in_order_with_the_same_settings(manager):
    from tl_core import demos

    at = open_app()
    assert "Which adaptation method?" in texts(at)
    at.button(key=keys.HOME_COMPARE).click().run()
    assert not at.exception
    sent = [c for _, c, _ in manager.submitted]
    assert [(c.method.name, c.method.train_on) for c in sent] == [
        ("finetune", "source"), ("dann", "source"), ("dan", "source"), ("coral", "source"), ("cdan", "source"),
        ("adda", "source")]
    assert [c.to_dict() for c in sent] == [demo_config("mnist-mnist-m", m).to_dict() for m in demos.COMPARISON.methods]
    assert {(c.seed, c.optim.epochs, c.data.source, c.data.target, c.model.backbone) for c in sent} == {
        (0, 10, "mnist", "mnist-m", sent[0].model.backbone)}
    assert at.title[0].value == "Monitor"
    assert at.multiselect(key=keys.MONITOR_PICK).value == [run_id for run_id, _, _ in manager.submitted]


def test_a_failing_submit_shows_a_message_not_a_traceback(manager, monkeypatch):
    def boom(config, owner=None):
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(manager, "submit", boom)
    at = open_app()
    at.button(key=keys.HOME_RUN_PREFIX + "mnist-mnist-m").click().run()
    assert not at.exception
    assert at.title[0].value == "Transfer Lab"
    assert any("Could not start the demo" in e.value and "the disk is on fire" in e.value for e in at.error)


def test_own_folders_card_opens_setup_with_folder_inputs(manager):
    at = open_app()
    at.button(key=keys.HOME_FOLDER).click().run()
    assert not at.exception
    assert at.title[0].value == "Set up a run"
    assert at.selectbox(key=keys.setup_key("data.source")).value == "folder"
    assert at.selectbox(key=keys.setup_key("data.target")).value == "folder"
    at.text_input(key=keys.setup_key("data.source_path"))  # present only for folders
    at.text_input(key=keys.setup_key("data.target_path"))
    assert manager.submitted == []
    # No folder given yet: Start is disabled and says why, next to the folder inputs.
    assert at.button(key=keys.SETUP_START).disabled
    assert "give the folder" in texts(at).lower()


# ------------------------------------------------------------------ setup
def _setup() -> AppTest:
    return open_app(keys.PAGE_SETUP)


def test_setup_has_every_setting_and_defaults_from_the_preset(manager):
    at = _setup()
    k = keys.setup_key
    cfg = demo_config("mnist-mnist-m", "dann")
    assert at.selectbox(key=k("data.source")).value == cfg.data.source
    assert at.selectbox(key=k("data.target")).value == cfg.data.target
    assert at.selectbox(key=k("model.backbone")).value == cfg.model.backbone
    assert at.slider(key=k("model.freeze")).value == cfg.model.freeze
    assert at.number_input(key=k("optim.lr")).value == pytest.approx(cfg.optim.lr)
    assert at.number_input(key=k("optim.batch_size")).value == cfg.optim.batch_size
    assert at.number_input(key=k("optim.epochs")).value == cfg.optim.epochs
    for key in ("data.image_size", "data.max_train", "optim.backbone_lr_mult", "optim.weight_decay", "seed",
                "method.dann.lambda_max", "method.dann.disc_hidden"):
        at.number_input(key=k(key))
    at.radio(key=k("model.head"))
    at.radio(key=keys.SETUP_METHOD)
    at.radio(key=k("device"))
    at.selectbox(key=k("optim.optimizer"))
    at.checkbox(key=k("amp"))
    with pytest.raises(KeyError):  # folder paths only for 'folder'
        at.text_input(key=k("data.source_path"))
    assert not at.button(key=keys.SETUP_START).disabled
    # Backbones say whether their weights are here, their size and feature width.
    assert "params" in at.selectbox(key=k("model.backbone")).format_func(cfg.model.backbone)


def test_setup_shows_dann_settings_only_for_dann(manager):
    at = _setup()
    at.number_input(key=keys.setup_key("method.dann.lambda_max"))
    at.radio(key=keys.SETUP_METHOD).set_value("finetune").run()
    with pytest.raises(KeyError):
        at.number_input(key=keys.setup_key("method.dann.lambda_max"))
    at.radio(key=keys.SETUP_METHOD).set_value("dann").run()
    at.number_input(key=keys.setup_key("method.dann.lambda_max"))


def test_setup_freeze_slider_updates_the_parameter_counts(manager):
    at = _setup()
    metrics = {m.label: m.value for m in at.metric}
    at.slider(key=keys.setup_key("model.freeze")).set_value(1).run()
    after = {m.label: m.value for m in at.metric}
    assert after["Frozen backbone parameters"] != metrics["Frozen backbone parameters"] or metrics[
        "Backbone stages frozen"] == after["Backbone stages frozen"]
    assert after["Backbone stages frozen"].startswith("1 of")


@pytest.mark.parametrize("path, value, expected", [
    ("optim.lr", 0.0, "learning rate must be above 0"),
    ("optim.batch_size", 1_000_000, "larger than the training set"),
    ("model.freeze", 5, "cannot freeze 5"),
    ("optim.epochs", 0, "at least one epoch"),
])
def test_setup_invalid_values_show_their_message_and_disable_start(manager, path, value, expected):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(keys.PAGE_SETUP).run()
    key = keys.setup_key(path)
    if path == "model.freeze":  # the slider cannot go past its end; a bigger backbone's value can be left over
        at.selectbox(key=keys.setup_key("model.backbone")).set_value("efficientnet_lite0").run()
        at.slider(key=key).set_value(5).run()
        assert not at.error, [e.value for e in at.error]
        at.selectbox(key=keys.setup_key("model.backbone")).set_value("lenet").run()
    else:
        at.number_input(key=key).set_value(value).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any(expected in e for e in errors), errors
    start = at.button(key=keys.SETUP_START)
    assert start.disabled
    assert "Start is disabled" in texts(at)
    assert manager.submitted == []


def test_setup_start_submits_the_config_the_form_describes(manager):
    at = _setup()
    k = keys.setup_key
    at.radio(key=keys.SETUP_METHOD).set_value("finetune").run()
    at.number_input(key=k("optim.lr")).set_value(0.05)
    at.number_input(key=k("optim.epochs")).set_value(3)
    at.number_input(key=k("optim.batch_size")).set_value(32)
    at.number_input(key=k("data.max_train")).set_value(500)
    at.slider(key=k("model.freeze")).set_value(1)
    at.radio(key=k("model.head")).set_value("mlp")
    at.radio(key=k("device")).set_value("cpu")
    at.text_input(key=k("name")).set_value("my baseline")
    at.run()
    assert not at.button(key=keys.SETUP_START).disabled, [e.value for e in at.error]
    at.button(key=keys.SETUP_START).click().run()
    assert not at.exception
    assert len(manager.submitted) == 1
    run_id, cfg, owner = manager.submitted[0]
    assert (cfg.method.name, cfg.method.train_on) == ("finetune", "source")
    assert cfg.optim.lr == pytest.approx(0.05)
    assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.data.max_train, cfg.data.max_test) == (3, 32, 500, None)
    assert (cfg.model.freeze, cfg.model.head, cfg.device, cfg.name) == (1, "mlp", "cpu", "my baseline")
    assert (cfg.data.source, cfg.data.target) == ("mnist", "mnist-m")
    assert owner == at.session_state[keys.OWNER]
    assert at.title[0].value == "Monitor"
    assert at.session_state[keys.MONITOR_PICK] == [run_id]


@pytest.mark.parametrize("cuda", [False, True])
def test_setup_offers_cuda_only_when_this_machine_has_it(manager, monkeypatch, cuda):
    from tl_core import device

    avail = {"auto": (True, "picks cpu here"), "cpu": (True, "always available"),
             "cuda": (cuda, "NVIDIA H100" if cuda else "torch found no CUDA GPU on this machine"),
             "mps": (False, "no Apple GPU on this machine")}
    monkeypatch.setattr(device, "device_availability", lambda: avail)
    resources.devices.clear()
    try:
        at = _setup()
        options = at.radio(key=keys.setup_key("device")).options
        if cuda:
            assert options == ["auto", "cpu", "cuda"]
        else:
            assert options == ["auto", "cpu"]
            assert "cuda — not available: torch found no CUDA GPU on this machine" in texts(at)
    finally:
        resources.devices.clear()


def test_setup_preset_choice_refills_the_form(manager):
    at = _setup()
    at.selectbox(key=keys.SETUP_PRESET).set_value("syn-digits-mnist").run()
    assert at.selectbox(key=keys.setup_key("data.source")).value == "syn-digits"
    assert at.selectbox(key=keys.setup_key("data.target")).value == "mnist"


# ---------------------------------------------------------------- monitor
def test_monitor_without_runs_points_to_home(manager):
    at = open_app(keys.PAGE_MONITOR)
    assert "No runs yet" in texts(at)


def test_monitor_shows_a_failed_runs_error_and_hint_without_traceback(manager):
    add_run(manager.store, "failed", error="The loss exploded in the discriminator (in dann.py:42, forward)",
            hint="Lower the learning rate.")
    at = open_app(keys.PAGE_MONITOR)
    errors = [e.value for e in at.error]
    assert any("The run failed" in e and "exploded in the discriminator" in e for e in errors), errors
    assert any("Lower the learning rate." in w.value for w in at.warning)
    assert "Traceback" not in texts(at)
    assert len(live_charts(at)) == 4


def test_monitor_shows_a_diverged_run_as_a_warning(manager):
    add_run(manager.store, "diverged", error="The loss became nan at step 12 (epoch 1).", hint="Lower the lr.")
    at = open_app(keys.PAGE_MONITOR)
    assert any("diverged" in w.value and "nan at step 12" in w.value for w in at.warning)


def test_monitor_interrupted_run_offers_resume(manager):
    run_id = add_run(manager.store, "interrupted", error="The server stopped while this run was active.")
    (manager.store.run_dir(run_id) / "checkpoint.pt").write_bytes(b"x")
    at = open_app(keys.PAGE_MONITOR)
    assert any("Interrupted" in w.value for w in at.warning)
    resume = at.button(key=keys.MONITOR_RESUME_PREFIX + run_id)
    assert not resume.disabled
    resume.click().run()
    assert manager.resumed == [run_id]


def test_monitor_failed_run_with_a_checkpoint_offers_resume_and_one_without_does_not(manager):
    killed = add_run(manager.store, "failed", error="The training process was killed (signal 9).",
                     hint="resume it from its last checkpoint.", name="killed")
    (manager.store.run_dir(killed) / "checkpoint.pt").write_bytes(b"x")
    early = add_run(manager.store, "failed", error="ValueError: bad", hint="A bug.", name="early")
    at = open_app(keys.PAGE_MONITOR)
    at.multiselect(key=keys.MONITOR_PICK).set_value([killed, early]).run()
    resume = at.button(key=keys.MONITOR_RESUME_PREFIX + killed)
    assert not resume.disabled
    with pytest.raises(KeyError):
        at.button(key=keys.MONITOR_RESUME_PREFIX + early)
    resume.click().run()
    assert manager.resumed == [killed]


def test_monitor_stop_of_own_run_and_confirmation_for_someone_elses(manager):
    at = open_app(keys.PAGE_MONITOR)  # first run: this session gets its owner id
    owner = at.session_state[keys.OWNER]
    mine = add_run(manager.store, "running", owner=owner, name="mine")
    theirs = add_run(manager.store, "running", owner="0123456789ab", name="theirs")
    manager.active |= {mine, theirs}
    at.session_state[keys.MONITOR_REQUEST] = [mine, theirs]
    at.run()
    assert "someone else's run" in texts(at)
    their_stop = at.button(key=keys.MONITOR_STOP_PREFIX + theirs)
    assert their_stop.disabled
    at.button(key=keys.MONITOR_STOP_PREFIX + mine).click().run()
    assert manager.cancelled == [mine]
    at.checkbox(key=keys.MONITOR_CONFIRM_PREFIX + theirs).check().run()
    assert not at.button(key=keys.MONITOR_STOP_PREFIX + theirs).disabled
    at.button(key=keys.MONITOR_STOP_PREFIX + theirs).click().run()
    assert manager.cancelled == [mine, theirs]


def test_monitor_defaults_to_the_latest_run(manager):
    add_run(manager.store, "completed", name="older")
    newest = add_run(manager.store, "completed", name="newest")
    at = open_app(keys.PAGE_MONITOR)
    assert at.multiselect(key=keys.MONITOR_PICK).value == [newest]


def test_monitor_draws_a_real_tiny_run_from_the_store(tl_home, monkeypatch):
    real = JobManager(RunStore(tl_home), project=False)
    _use_manager(monkeypatch, real)
    try:
        cfg = RunConfig(name="tiny", seed=1, device="cpu")
        cfg.data.max_train, cfg.data.max_test = 200, 100
        cfg.method.params["disc_hidden"] = 32
        cfg.optim.batch_size, cfg.optim.epochs = 32, 1
        cfg.snapshot.enabled = False
        run_id = real.submit(cfg, owner="someone")
        assert real.wait(run_id, 120)
        at = open_app(keys.PAGE_MONITOR)
        assert "Completed" in texts(at)
        assert len(live_charts(at)) == 4  # the training charts
        assert not at.get("plotly_chart")  # per-class results are closed
        at.session_state[keys.MONITOR_DETAILS_OPEN] = True
        at.run()
        assert len(live_charts(at)) == 4
        assert len(at.get("plotly_chart")) == 2  # confusion matrix and per-class accuracy
        assert "target accuracy" in texts(at)
        assert "Feature snapshots are off" in texts(at)
    finally:
        real.shutdown()
        resources.get_manager.clear()


def add_run_with_snapshots(store: RunStore, name: str, n_snaps: int = 3, per_domain: int = 20) -> str:
    """A completed run with projected snapshots (source and target drifting together) and epoch extras."""
    cfg = RunConfig(name=name)
    cfg.data.source, cfg.data.target, cfg.data.max_test = "uci-digits", "uci-digits", 60
    run_id = add_run(store, "completed", name=name)
    store.rename(run_id, name)
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(10), 2 * per_domain // 10)
    domains = np.repeat([0, 1], per_domain).astype(np.int8)
    store.save_snapshot_sample(run_id, labels=labels, domains=domains, source_index=np.arange(per_domain),
                               target_index=np.arange(per_domain))
    for idx in range(n_snaps):
        coords = rng.normal(size=(2 * per_domain, 2)) + np.c_[labels * 2.0, 6.0 * domains / (idx + 1)]
        store.save_snapshot(run_id, idx, step=10 * idx, epoch=idx, features=rng.normal(size=(2 * per_domain, 8)),
                            metrics={"target_acc": 0.3 + 0.2 * idx, "source_acc": 0.9})
        store.save_coords(run_id, idx, coords)
        store.update_snapshot_metrics(run_id, idx, {"a_distance": 1.9 - 0.5 * idx, "mmd": 0.4 / (idx + 1)})
        if idx:
            conf = np.eye(10, dtype=int) * 5 + 1
            store.log_epoch(run_id, idx, 10 * idx, {"source_val_acc": 0.9, "target_test_acc": 0.5},
                            {"per_class": [0.5] * 10, "confusion": conf.tolist(), "classes": [str(c) for c in range(10)],
                             "misclassified": [[1, 7], [2, 3], [3, 0]]})
    return run_id


def test_monitor_feature_space_shows_snapshots_metrics_and_epoch_details(manager):
    first = add_run_with_snapshots(manager.store, "source only")
    second = add_run_with_snapshots(manager.store, "dann", n_snaps=2)
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [first, second]
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    # closed by default: the sections are there, their charts are not drawn (issue 18: no cost while closed)
    labels = [e.label for e in at.expander]
    for label in ("Before and now, side by side", "Domain distance over training",
                  "Per-class results on the target test set"):
        assert label in labels, labels
    assert len(live_charts(at)) == 4 + 2  # training, 2 animations
    assert not at.get("plotly_chart"), [c.proto.id for c in at.get("plotly_chart")]
    assert "true → predicted" not in texts(at)
    for key in (keys.MONITOR_FS_PAIR_PREFIX + first, keys.MONITOR_FS_PAIR_PREFIX + second, keys.MONITOR_DISTANCE_OPEN,
                keys.MONITOR_DETAILS_OPEN):
        at.session_state[key] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = texts(at)
    assert "Feature space" in text
    for metric in ("a_distance", "mmd", "target_acc"):
        assert METRIC_HELP[metric] in text
    chart_keys = {c.proto.id for c in at.get("plotly_chart")}
    assert len(live_charts(at)) == 4 + 2  # training, 2 animations
    assert len(at.get("plotly_chart")) >= 2 * 2 + 3 + 2, chart_keys  # 2 × (before, now), curves, per class
    assert "true → predicted" in text
    at.select_slider(key=keys.monitor_fs_epoch_widget(2)).set_value(1).run()
    assert not at.exception
    assert "epoch 1" in texts(at)
    at.segmented_control(key=keys.MONITOR_FS_COLOR).set_value("class").run()
    assert not at.exception


def test_monitor_per_class_results_follow_the_latest_epoch_until_one_is_picked(manager):
    run_id = add_run_with_snapshots(manager.store, "dann", n_snaps=3)  # epochs 1 and 2 logged
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.session_state[keys.MONITOR_DETAILS_OPEN] = True
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Misclassified target test images, epoch 2" in texts(at)
    conf = (np.eye(10, dtype=int) * 5 + 1).tolist()
    manager.store.log_epoch(run_id, 3, 30, {"source_val_acc": 0.9, "target_test_acc": 0.6},
                            {"per_class": [0.6] * 10, "confusion": conf, "classes": [str(c) for c in range(10)],
                             "misclassified": [[1, 7]]})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Misclassified target test images, epoch 3" in texts(at)  # followed the new epoch
    at.select_slider(key=keys.monitor_fs_epoch_widget(3)).set_value(1).run()
    assert "Misclassified target test images, epoch 1" in texts(at)
    manager.store.log_epoch(run_id, 4, 40, {"source_val_acc": 0.9, "target_test_acc": 0.6},
                            {"per_class": [0.6] * 10, "confusion": conf, "classes": [str(c) for c in range(10)],
                             "misclassified": [[1, 7]]})
    at.run()
    text = texts(at)
    assert "Misclassified target test images, epoch 1" in text and "epoch 4" not in text.split("Per-class")[-1]


def test_a_long_runs_animation_keeps_at_most_max_frames_with_the_first_and_the_latest(manager):
    import json

    from tl_ui.feature_space import MAX_FRAMES

    run_id = add_run_with_snapshots(manager.store, "dann", n_snaps=MAX_FRAMES + 15)
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    animated = [spec for spec in live_charts(at) if spec.get("frames")]
    assert len(animated) == 1
    names = [f["name"] for f in animated[0]["frames"]]
    assert len(names) == MAX_FRAMES and len(set(names)) == MAX_FRAMES
    assert names[0] == "before training" and names[-1] == f"epoch {MAX_FRAMES + 14}"
    # each frame names its own snapshot in the title, so the title follows ▶ and the slider
    frame_titles = [f["layout"]["title"]["text"].replace("<br>", " ") for f in animated[0]["frames"]]
    assert all(t.endswith(n) for t, n in zip(frame_titles, names)), frame_titles
    at.session_state[keys.MONITOR_FS_PAIR_PREFIX + run_id] = True  # open "Before and now"
    at.run()
    titles = [json.dumps(json.loads(c.proto.spec)["layout"].get("title", "")) for c in at.get("plotly_chart")]
    assert any(f"Now: epoch {MAX_FRAMES + 14}" in t for t in titles), titles  # the latest, beside the first


def test_monitor_says_snapshots_wait_and_keeps_refreshing_while_the_projector_works(manager, monkeypatch):
    run_id = add_run_with_snapshots(manager.store, "dann", n_snaps=2)
    manager.store.save_snapshot(run_id, 2, step=20, epoch=2, features=np.zeros((40, 8)))  # not projected yet
    fragments = []
    real_fragment = st.fragment

    def spy(func=None, *, run_every=None, **kw):
        fragments.append(run_every)
        return real_fragment(func, run_every=run_every, **kw) if func is not None \
            else real_fragment(run_every=run_every, **kw)

    monkeypatch.setattr(st, "fragment", spy)
    monkeypatch.setattr(manager, "projecting", lambda: True, raising=False)
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "1 newer snapshot waiting to be projected" in texts(at)
    assert fragments and fragments[-1] is not None  # the live part refreshes: the picture will update
    monkeypatch.setattr(manager, "projecting", lambda: False, raising=False)
    fragments.clear()
    at.run()
    assert fragments and fragments[-1] is None  # nothing trains or waits: no timer


# ------------------------------------------------------------------- runs
def _select_rows(at: AppTest, rows: list[int]) -> None:
    key = keys.RUNS_TABLE_PREFIX + str(at.session_state[keys.RUNS_TABLE_GEN])
    at.session_state[key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()


def test_runs_page_lists_the_runs_of_the_store(manager):
    a = add_run(manager.store, "completed", name="alpha")
    manager.store.set_summary(a, {"final_target_test_acc": 0.5, "best_target_test_acc": 0.625})
    add_run(manager.store, "failed", name="beta", error="boom")
    at = open_app(keys.PAGE_RUNS)
    df = at.dataframe[0].value
    assert list(df["Name"]) == ["beta", "alpha"]
    assert df.loc[df["Name"] == "alpha", "Best target acc"].item() == pytest.approx(62.5)
    assert {"Status", "Method", "Backbone", "Frozen stages", "Data", "Final target acc", "Duration"} <= set(df)
    # what a reader compares comes first, so it fits a 1280-px window; the details follow
    assert list(df)[:10] == ["Name", "Final target acc", "Best target acc", "Chosen target acc", "Gain", "Status",
                             "Method", "Data", "Duration", "Created"]


def test_runs_page_compares_renames_and_deletes(manager):
    a = add_run(manager.store, "completed", name="alpha")
    b = add_run(manager.store, "completed", name="beta")
    for run_id in (a, b):
        manager.store.log_steps(run_id, [{"step": s, "epoch": 1, "loss_task": 1.0 / s} for s in range(1, 6)])
        manager.store.log_epoch(run_id, 1, 5, {"source_val_acc": 0.9, "target_test_acc": 0.4})
    at = open_app(keys.PAGE_RUNS)
    _select_rows(at, [0, 1])
    assert len(at.get("plotly_chart")) == 2
    # rename the run chosen for actions
    at.selectbox(key=keys.RUNS_ACT_ON).set_value(a).run()
    at.text_input(key=f"{keys.RUNS_RENAME}.{a}").set_value("alpha renamed").run()
    at.button(key=keys.RUNS_RENAME_BUTTON).click().run()
    assert manager.store.get_run(a).name == "alpha renamed"
    # delete both, only after confirming
    _select_rows(at, [0, 1])
    assert at.button(key=keys.RUNS_DELETE_BUTTON).disabled
    at.checkbox(key=keys.RUNS_CONFIRM_DELETE).check().run()
    at.button(key=keys.RUNS_DELETE_BUTTON).click().run()
    assert not at.exception
    assert manager.store.list_runs() == []
    assert any("Deleted 2 runs" in s.value for s in at.success)


def test_runs_page_offers_config_metrics_and_checkpoint_downloads(manager):
    a = add_run(manager.store, "completed", name="alpha")
    (manager.store.run_dir(a) / "checkpoint.pt").write_bytes(b"weights")
    at = open_app(keys.PAGE_RUNS)
    _select_rows(at, [0])
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Config (JSON)", "Metrics (CSV)", "Checkpoint"]


def test_setup_groups_backbones_of_earlier_runs_under_one_entry(manager):
    """A hundred finished runs must not make a hundred backbone entries: one entry per architecture opens a
    second list of the runs (newest first); the config gets the run's backbone."""
    from tl_core import backbones as bb

    lenet = bb.create_backbone("lenet", pretrained=False)
    ids = []
    for i in range(3):
        run_id = add_run(manager.store, "completed", name=f"run {i}")
        manager.store.rename(run_id, f"run {i}")
        bb.save_backbone(lenet, manager.store.run_dir(run_id))
        ids.append(run_id)
    at = _setup()
    k = keys.setup_key
    box = at.selectbox(key=k("model.backbone"))
    groups = [o for o in box.options if "fine-tuned by an earlier run" in o]
    assert groups == ["LeNet (DANN digits CNN) fine-tuned by an earlier run (3 runs)"], box.options
    assert not any("from run" in o for o in box.options)
    box.set_value("saved-from:lenet").run()
    pick = at.selectbox(key=keys.SETUP_SAVED_BACKBONE)
    assert [o.split(" · ")[0] for o in pick.options] == ["run 2", "run 1", "run 0"]
    pick.set_value(f"run:{ids[0]}").run()
    assert not at.exception and not at.button(key=keys.SETUP_START).disabled, [e.value for e in at.error]
    assert f'"backbone": "run:{ids[0]}"' in at.code[0].value


def test_monitor_resume_says_where_the_run_goes_on(manager):
    import json as _json

    run_id = add_run(manager.store, "interrupted", error="The server stopped while this run was active.")
    run_dir = manager.store.run_dir(run_id)
    (run_dir / "checkpoint.pt").write_bytes(b"x")
    (run_dir / "checkpoint.json").write_text(_json.dumps({"step": 10, "epoch": 1, "in_epoch": 2, "t": 0}))
    at = open_app(keys.PAGE_MONITOR)
    resume = at.button(key=keys.MONITOR_RESUME_PREFIX + run_id)
    assert "step 10, inside epoch 2" in resume.help and "trained again" in resume.help
    assert any("from step 10" in c.value for c in at.caption)


def test_monitor_card_says_the_phase_and_that_stop_waits_for_the_step(manager):
    run_id = add_run(manager.store, "running", name="long one")
    manager.store.set_phase(run_id, "loading and decoding the data")
    at = open_app(keys.PAGE_MONITOR)
    assert any("Loading and decoding the data…" in c.value for c in at.caption), [c.value for c in at.caption]
    manager.store.set_phase(run_id, None)
    manager.store.set_progress(run_id, epoch=1, step=3, total_steps=100, images_per_s=2.0)  # 64 / 2 = 32 s a step
    manager.stopping_ids = {run_id}
    at = open_app(keys.PAGE_MONITOR)
    captions = [c.value for c in at.caption]
    assert not any("Loading" in c for c in captions)
    assert any("Stopping: the current step finishes first (a step takes about 32 s)" in c for c in captions), captions


def test_setup_backbone_change_sets_its_image_size_and_lr_multiplier_with_the_reason(manager):
    at = open_app(keys.PAGE_SETUP)
    assert at.session_state[keys.setup_key("data.image_size")] == 28  # the digits preset with LeNet
    at.selectbox(key=keys.setup_key("model.backbone")).set_value("efficientnet_lite0").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[keys.setup_key("data.image_size")] == 224
    assert at.session_state[keys.setup_key("optim.backbone_lr_mult")] == pytest.approx(0.1)
    assert at.number_input(key=keys.setup_key("data.image_size")).value == 224
    assert "set to 224 px, the size EfficientNet-Lite0's weights were trained at" in texts(at)
    at.selectbox(key=keys.setup_key("model.backbone")).set_value("lenet").run()
    assert at.session_state[keys.setup_key("data.image_size")] == 28
    assert at.session_state[keys.setup_key("optim.backbone_lr_mult")] == pytest.approx(1.0)
    assert "set to 28 px" in texts(at)


def test_chart_titles_wrap_to_the_width_of_a_chart_in_two_columns():
    from tl_ui import charts

    assert charts.wrap_title("short title") == "short title"
    text = charts.wrap_title("Accuracy (%) per epoch: source validation vs target test")
    assert all(len(line) <= charts.TITLE_CHARS for line in text.split("<br>")) and text.count("<br>") == 1
    fig = charts.accuracy_figure([]).to_dict()
    assert fig["layout"]["title"]["text"] == text
    assert fig["layout"]["margin"]["t"] > charts._layout(
        "x", revision="r", x_title="", y_title="")["margin"]["t"]  # room for the second line


def test_feature_scatter_interleaves_source_and_target_so_neither_covers_the_other():
    from tl_ui import charts, theme

    n = 60
    domains, labels = np.repeat([0, 1], n), np.tile(np.arange(10), 2 * n // 10)
    coords = np.random.default_rng(0).normal(size=(2 * n, 2))
    traces = charts.feature_traces(coords, domains, labels, [str(c) for c in range(10)])
    order = [t["name"] for t in traces]
    assert order == ["source", "target"] * theme.FEATURE_LAYERS  # drawn in turns, not target over source
    assert [t["name"] for t in traces if t["showlegend"]] == ["source", "target"]  # one legend entry each
    assert sum(len(t["x"]) for t in traces) == 2 * n
    assert sorted(np.concatenate([t["customdata"][:, 2] for t in traces]).astype(int).tolist()) == \
        list(range(2 * n))  # every point once
    assert all(t["marker"]["opacity"] < 0.75 for t in traces)
    by_class = charts.feature_traces(coords, domains, labels, None, color_by="class")
    first = by_class[0]  # one class: its source and target points alternate in drawing order
    assert first["marker"]["symbol"][:2] in (["circle", "x"], ["x", "circle"])


def test_feature_scatters_lay_out_once_without_automatic_axis_margins():
    """The feature scatters show no tick labels or axis titles: plotly's automatic axis margins would only
    make the browser lay each draw out twice (docs/ARCHITECTURE.md, "Monitor refresh")."""
    from tl_ui import charts

    coords = np.random.default_rng(0).normal(size=(40, 2))
    domains, labels = np.repeat([0, 1], 20), np.arange(40) % 4
    anim = charts.feature_animation([("epoch 1", coords), ("epoch 2", coords * 2)], domains, labels, None,
                                    "Features {frame}", "r").to_dict()
    one = charts.feature_scatter(coords, domains, labels, None, "Features", "r").to_dict()
    line = charts.loss_figure([]).to_dict()
    for fig in (anim, one):
        for axis in ("xaxis", "yaxis"):
            assert fig["layout"][axis]["showticklabels"] is False and fig["layout"][axis]["automargin"] is False
    assert line["layout"]["yaxis"]["automargin"] is True  # charts with tick labels keep them
