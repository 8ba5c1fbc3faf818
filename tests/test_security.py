"""The dashboard's two security rules (issue 19, points 1 and 2), driven through the real pages.

1. The dashboard reads image folders only inside its one data folder (``TL_DATA_ROOT``, set
   by whoever starts the server): Setup shows it, takes relative names inside it, refuses
   ``/etc``, ``../../etc``, ``/`` and a symlink out of it with Start disabled, and always
   puts it in the config it builds, so the real job manager refuses such a run too.
2. Run names and other user text reach the page as plain text: a name like
   ``![x](http://…)`` never becomes an image (or any Markdown) in an element body.

Pages are driven by Streamlit's AppTest with TL_HOME in a temporary folder (``tl_home``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tl_core import jobs
from tl_core.config import RunConfig
from tl_core.jobs import ConfigError, JobManager
from tl_core.preflight import check
from tl_core.store import RunStore
from tl_ui import keys, resources

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90
k = keys.setup_key
IMAGE_NAME = "![x](http://127.0.0.1:9/x.png)"
BOLD_NAME = "**bold**"


# ---------------------------------------------------------------- helpers
class SubmitRecorder:
    """Stands in for the job manager where a test only needs the pages' calls recorded (nothing trains)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.submitted: list[RunConfig] = []

    def submit(self, config: RunConfig, owner: str | None = None) -> str:
        problems = check(config)
        if problems:
            raise ConfigError(problems)
        self.submitted.append(config)
        return self.store.create_run(config, owner=owner)

    def cancel(self, run_id: str) -> bool:
        return False

    def resume(self, run_id: str, owner: str | None = None) -> str:
        return run_id

    def stopping(self, run_id: str) -> bool:
        return run_id in getattr(self, "stopping_ids", ())

    def projecting(self) -> bool:
        return False

    def is_active(self, run_id: str) -> bool:
        return False

    def active_ids(self) -> list[str]:
        return []


@pytest.fixture
def manager(tl_home: Path, monkeypatch: pytest.MonkeyPatch) -> SubmitRecorder:
    m = SubmitRecorder(RunStore(tl_home))
    monkeypatch.setattr(jobs, "_MANAGER", m)
    resources.get_manager.clear()
    yield m
    resources.get_manager.clear()


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TL_DATA_ROOT in a fresh folder, as `make run DATA_ROOT=...` would set it."""
    root = tmp_path / "data root"
    root.mkdir()
    monkeypatch.setenv("TL_DATA_ROOT", str(root))
    return root.resolve()


def make_image_folder(parent: Path, name: str = "pets", per_class: int = 3) -> Path:
    """parent/name/{cats,dogs}/*.png: a real folder of class sub-folders."""
    rng = np.random.default_rng(0)
    folder = parent / name
    for cls in ("cats", "dogs"):
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / cls / f"{i}.png")
    return folder


def unescape(text: str) -> str:
    """Markdown source as it reads on screen: backslash escapes and invisible word joiners removed."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def open_setup_with_own_folders() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(keys.PAGE_SETUP).run()
    at.selectbox(key=keys.SETUP_PRESET).set_value("folder").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def type_folders(at: AppTest, source: str, target: str) -> AppTest:
    at.text_input(key=k("data.source_path")).set_value(source)
    at.text_input(key=k("data.target_path")).set_value(target)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_config(at: AppTest) -> RunConfig:
    """The config the Setup page built, read from its JSON expander."""
    return RunConfig.from_json(next(c.value for c in at.code if '"data_root"' in c.value))


def errors_next_to(at: AppTest, widget_key: str) -> list[str]:
    """Error texts in the innermost column that holds the widget ``widget_key`` (its own column)."""
    best = None
    for col in at.columns:
        if any(t.key == widget_key for t in col.text_input):
            if best is None or len(col.text_input) <= len(best.text_input):
                best = col
    assert best is not None, f"no column holds {widget_key}"
    return [e.value for e in best.error]


def rendered_bodies(at: AppTest) -> list[str]:
    """Every Markdown body the page sends: text elements, alerts, and the labels and help of widgets."""
    bodies = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success"):
        bodies += [str(e.value) for e in getattr(at, kind)]
    for kind in ("checkbox", "button", "text_input", "selectbox", "multiselect", "radio"):
        for w in getattr(at, kind):
            bodies.append(str(w.label))
            bodies.append(str(getattr(w, "help", "") or ""))
    return bodies


def add_run(store: RunStore, name: str, status: str, error: str | None = None, hint: str | None = None) -> str:
    run_id = store.create_run(RunConfig(name=name))
    if status != "queued":
        store.set_status(run_id, "running")
        if status != "running":
            store.set_status(run_id, status, error=error, hint=hint)
    time.sleep(0.002)
    return run_id


# ------------------------------------------------- 1. one data folder
def test_setup_shows_the_data_root_set_by_the_server(manager, data_root):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(keys.PAGE_SETUP).run()
    shown = [unescape(c.value) for c in at.caption]
    assert any(f"Image folders are read only from: {data_root}" in c and "DATA_ROOT" in c for c in shown), shown
    # ...and the config it builds carries it, whatever the preset said
    assert page_config(at).data.data_root == str(data_root)


def test_data_root_defaults_to_tl_home_data(manager, tl_home, monkeypatch):
    monkeypatch.delenv("TL_DATA_ROOT", raising=False)
    monkeypatch.delenv("TL_DATA", raising=False)
    from tl_core.data.folder import dashboard_data_root

    assert dashboard_data_root() == (tl_home / "data").resolve()
    assert (tl_home / "data").is_dir()  # created when missing


@pytest.mark.parametrize("typed", ["/etc", "../../etc", "/", "link-out"])
def test_setup_refuses_folders_outside_the_data_root_and_disables_start(manager, data_root, tmp_path, typed):
    outside = make_image_folder(tmp_path, "outside")  # a folder that would be fine inside the root
    (data_root / "link-out").symlink_to(outside, target_is_directory=True)
    make_image_folder(data_root, "pets")
    at = open_setup_with_own_folders()
    type_folders(at, typed, "pets")
    near = errors_next_to(at, k("data.source_path"))
    assert any("outside the data folder" in e for e in near), near
    assert not any("outside" in e for e in errors_next_to(at, k("data.target_path")))
    assert at.button(key=keys.SETUP_START).disabled
    assert manager.submitted == []


def test_setup_accepts_a_folder_inside_the_data_root_by_its_relative_name(manager, data_root):
    pets = make_image_folder(data_root, "pets")
    at = open_setup_with_own_folders()
    type_folders(at, "pets", "pets/")
    assert not at.button(key=keys.SETUP_START).disabled, [e.value for e in at.error]
    cfg = page_config(at)
    assert cfg.data.data_root == str(data_root)
    assert Path(cfg.data.source_path).resolve() == pets.resolve()
    at.button(key=keys.SETUP_START).click().run()
    assert not at.exception
    assert len(manager.submitted) == 1 and manager.submitted[0].data.data_root == str(data_root)


def test_the_real_job_manager_refuses_the_config_setup_builds_for_a_folder_outside(manager, data_root, tl_home):
    pets = make_image_folder(data_root, "pets")
    at = open_setup_with_own_folders()
    type_folders(at, "/etc", str(pets))
    cfg = page_config(at)  # what Start would submit, were it enabled
    real = JobManager(RunStore(tl_home), project=False)
    try:
        with pytest.raises(ConfigError) as err:
            real.submit(cfg, owner="someone")
        assert any(p.startswith("data.source_path:") and "outside the data folder" in p for p in err.value.problems)
        assert real.store.list_runs() == []
    finally:
        real.shutdown()


def test_preflight_refuses_a_folder_or_a_symlink_outside_data_root_and_says_what_to_do(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = make_image_folder(tmp_path, "outside")
    (root / "link").symlink_to(outside, target_is_directory=True)
    make_image_folder(root, "inside")
    for given in (str(outside), str(root / "link"), str(root / ".." / "outside")):
        cfg = RunConfig()
        cfg.data.source = cfg.data.target = "folder"
        cfg.data.source_path, cfg.data.target_path = given, str(root / "inside")
        cfg.data.data_root = str(root)
        problems = [p for p in check(cfg) if p.startswith("data.")]
        assert len(problems) == 1 and problems[0].startswith("data.source_path:"), problems
        msg = problems[0]
        assert "outside the data folder" in msg and str(outside) in msg  # names where it really leads
        assert "symbolic links are followed" in msg and "TL_DATA_ROOT" in msg
        assert "link the images" not in msg  # a link out is refused: never advise one
    cfg.data.source_path = str(root / "inside")
    assert [p for p in check(cfg) if p.startswith("data.")] == []


def test_the_dashboard_manager_refuses_to_resume_a_command_line_run_reading_outside(tmp_path, tl_home):
    """A run the command line made on a folder outside the dashboard's data folder cannot be resumed
    from the dashboard (its manager is confined to the data folder); inside, resume goes on as usual."""
    root = tmp_path / "root"
    root.mkdir()
    outside = make_image_folder(tmp_path, "outside")
    store = RunStore(tl_home)
    cfg = RunConfig()
    cfg.data.source = cfg.data.target = "folder"
    cfg.data.source_path = cfg.data.target_path = str(outside)
    run_id = store.create_run(cfg, owner="cli")
    store.set_status(run_id, "stopped")
    confined = JobManager(store, project=False, confine_to=root)
    try:
        with pytest.raises(ValueError, match="not readable from the dashboard.*outside the data folder"):
            confined.resume(run_id)
    finally:
        confined.shutdown()
    free = JobManager(RunStore(tl_home), project=False)  # the command line's own manager is not confined
    try:
        with pytest.raises(ValueError, match="no checkpoint yet"):
            free.resume(run_id)
    finally:
        free.shutdown()


# ------------------------------------------- 2. user text is plain text
def _assert_plain(bodies: list[str]) -> None:
    assert not [b for b in bodies if "![" in b or BOLD_NAME in b or "](http" in b], bodies


def test_run_names_and_errors_show_as_plain_text_on_the_monitor(manager):
    a = add_run(manager.store, IMAGE_NAME, "failed", error=f"Folder '{IMAGE_NAME}' has a class **cats**",
                hint=f"Rename {BOLD_NAME}.")
    b = add_run(manager.store, BOLD_NAME, "running")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(keys.PAGE_MONITOR).run()
    at.session_state[keys.MONITOR_REQUEST] = [a, b]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    bodies = rendered_bodies(at) + [str(m.value) for m in at.sidebar.markdown]
    _assert_plain(bodies)
    shown = "\n".join(unescape(x) for x in bodies)
    assert f"**{IMAGE_NAME}**" in shown and f"**{BOLD_NAME}**" in shown  # the names, literally, in bold
    assert f"Folder '{IMAGE_NAME}' has a class **cats**" in shown


def test_run_names_show_as_plain_text_on_the_runs_page(manager):
    add_run(manager.store, BOLD_NAME, "completed")
    add_run(manager.store, IMAGE_NAME, "completed")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(keys.PAGE_RUNS).run()
    key = keys.RUNS_TABLE_PREFIX + str(at.session_state[keys.RUNS_TABLE_GEN])
    for rows in ([0], [1], [0, 1]):  # one run (its name in the delete label), then both
        at.session_state[key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        _assert_plain(rendered_bodies(at))
    at.session_state[key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    label = at.checkbox(key=keys.RUNS_CONFIRM_DELETE).label
    assert unescape(label).startswith(f"Yes, delete '{IMAGE_NAME}'")


def test_a_rename_error_quoting_user_text_is_plain(manager, monkeypatch):
    run_id = add_run(manager.store, "plain", "completed")

    def refuse(rid: str, name: str) -> None:
        raise ValueError(f"'{name}' is not allowed")

    monkeypatch.setattr(manager.store, "rename", refuse)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(keys.PAGE_RUNS).run()
    key = keys.RUNS_TABLE_PREFIX + str(at.session_state[keys.RUNS_TABLE_GEN])
    at.session_state[key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.text_input(key=f"{keys.RUNS_RENAME}.{run_id}").set_value(IMAGE_NAME).run()
    at.button(key=keys.RUNS_RENAME_BUTTON).click().run()
    errors = [e.value for e in at.error]
    assert any("Could not rename" in e for e in errors), errors
    _assert_plain(errors)


def test_plain_escapes_every_markdown_construct():
    from tl_ui.widgets import plain

    for text in (IMAGE_NAME, BOLD_NAME, "<img src=http://h/x>", "# heading", "1. list", "- item", "`code`",
                 ":red[colour]", "$x^2$", "a | b", "~~gone~~", "[link](http://h)", "&lt;b&gt;"):
        out = plain(text)
        assert unescape(out) == text
        assert out != text  # something was escaped
    assert plain("a\n\n    indented\n===") == "a  \nindented  \n\\==="
    assert plain("Lower the learning rate.") == "Lower the learning rate."
    for address in ("http://h/x", "HTTPS://h", "www.example.com", "me@example.com"):  # GFM would link them
        out = plain(f"see {address}")
        assert unescape(out) == f"see {address}"
        assert not re.search(r"(?i)(https?://|www\.|\w@)", out.replace("\\", ""))
