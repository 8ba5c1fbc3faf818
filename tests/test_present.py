"""The Present page (tl_ui/present_view.py) through Streamlit's AppTest, and its figures as data: which runs it
shows (a Home demo's, the Monitor's selection, its own pick), target accuracy per run in the run colours (the
label-free entropy for an unlabelled target), and the before/now feature small multiples. The 1280x720 fit is
checked in Chromium by tests/test_browser_present.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_pages import _select_rows, add_run, add_run_with_snapshots, manager, open_app  # noqa: F401 (fixture)

from tl_core.config import demo_config
from tl_core.store import RunRecord
from tl_ui import keys, present_view, theme


def _charts(at) -> list[dict]:
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def _record(run_id: str, created: float, name: str, summary: dict | None = None) -> RunRecord:
    return RunRecord(id=run_id, name=name, status="completed", config={}, created=created, summary=summary or {})


def test_home_demo_with_open_in_present_lands_on_present_showing_just_its_runs(manager):  # noqa: F811
    older = add_run_with_snapshots(manager.store, "an older run")
    at = open_app()
    at.toggle(key=keys.HOME_PRESENT).set_value(True).run()
    at.button(key=keys.HOME_RUN_PREFIX + "mnist-mnist-m").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ids = [run_id for run_id, _, _ in manager.submitted]
    assert [c.to_dict() for _, c, _ in manager.submitted] == [demo_config("mnist-mnist-m", "finetune").to_dict(),
                                                              demo_config("mnist-mnist-m", "dann").to_dict()]
    assert at.session_state[keys.PRESENT_PICK] == ids and older not in ids
    assert not at.title or at.title[0].value != "Monitor"
    assert any(m.value == "## MNIST → MNIST-M" for m in at.markdown)
    acc, feats = _charts(at)
    assert acc["layout"]["title"]["text"].startswith("Target accuracy")
    assert "The first evaluation comes at the end of epoch 1" in json.dumps(acc["layout"]["annotations"])
    assert "waiting for the first projected snapshot" in json.dumps(feats["layout"]["annotations"])


def test_present_starts_from_the_monitor_selection_keeps_its_own_pick_and_follows_a_new_monitor_pick(manager):  # noqa: F811,E501
    a = add_run_with_snapshots(manager.store, "source only")
    b = add_run_with_snapshots(manager.store, "dann", n_snaps=2)
    c = add_run(manager.store, "completed", name="third")
    at = open_app(keys.PAGE_MONITOR)
    at.multiselect(key=keys.MONITOR_PICK).set_value([a]).run()
    at.switch_page(keys.PAGE_PRESENT).run()
    assert at.session_state[keys.PRESENT_PICK] == [a]
    at.multiselect(key=keys.PRESENT_PICK).set_value([a, b]).run()
    assert not at.exception
    _, feats = _charts(at)
    names = [n["text"] for n in feats["layout"]["annotations"]]
    assert any("source only" in n for n in names) and any("dann" in n for n in names)
    at.switch_page(keys.PAGE_MONITOR).run()
    at.switch_page(keys.PAGE_PRESENT).run()
    assert at.session_state[keys.PRESENT_PICK] == [a, b]  # the Monitor's pick did not change: Present's stays
    at.switch_page(keys.PAGE_MONITOR).run()
    at.multiselect(key=keys.MONITOR_PICK).set_value([b, c]).run()
    at.switch_page(keys.PAGE_PRESENT).run()
    assert at.session_state[keys.PRESENT_PICK] == [b, c]
    assert not at.exception, [e.value for e in at.exception]


def test_more_runs_than_fit_one_screen_are_cut_to_four_and_the_page_says_so(manager):  # noqa: F811
    ids = [add_run_with_snapshots(manager.store, f"run {i}", n_snaps=2) for i in range(6)]
    at = open_app(keys.PAGE_RUNS)
    _select_rows(at, list(range(6)))
    at.button(key=keys.RUNS_PRESENT).click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = at.session_state[keys.PRESENT_PICK]
    assert len(shown) == present_view.MAX_RUNS == 4 and set(shown) <= set(ids)
    assert any("showing the first 4 of 6 runs" in c.value for c in at.caption)


def test_runs_page_present_button_opens_present_on_the_selected_runs(manager):  # noqa: F811
    a = add_run_with_snapshots(manager.store, "source only")
    add_run(manager.store, "completed", name="not chosen")
    c = add_run_with_snapshots(manager.store, "dann", n_snaps=2)
    at = open_app(keys.PAGE_RUNS)
    _select_rows(at, [0, 2])  # newest first: dann, then source only
    at.button(key=keys.RUNS_PRESENT).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert sorted(at.session_state[keys.PRESENT_PICK]) == sorted([a, c])
    _, feats = _charts(at)
    assert any("dann" in n["text"] for n in feats["layout"]["annotations"])


def test_accuracy_figure_one_line_per_run_in_run_colours_with_its_final_value():
    first, second = _record("a", 1.0, "source only · MNIST → MNIST-M"), _record("b", 2.0, "DANN · MNIST → MNIST-M")
    epochs = {"a": pd.DataFrame({"epoch": [1, 2, 3], "target_test_acc": [0.3, 0.4, 0.45]}),
              "b": pd.DataFrame({"epoch": [1, 2, 3], "target_test_acc": [0.35, 0.6, 0.7]})}
    fig = present_view.accuracy_figure([second, first], epochs, 560).to_dict()  # colours follow creation order
    colours = theme.run_styles([first, second])
    by_name = {t["name"]: t for t in fig["data"]}
    assert set(by_name) == {"source only: 45.0 %", "DANN: 70.0 %"}  # the pair they share is the headline
    assert by_name["source only: 45.0 %"]["line"]["color"] == colours["a"][0] == theme.RUN_COLORS[0]
    assert by_name["DANN: 70.0 %"]["line"]["color"] == colours["b"][0] == theme.RUN_COLORS[1]
    assert fig["layout"]["title"]["text"] == "Target accuracy (%)" and fig["layout"]["height"] == 560
    assert fig["layout"]["title"]["font"]["size"] == theme.PRESENT_TITLE_SIZE > theme.CHART_TITLE_SIZE


def test_an_unlabelled_target_shows_the_label_free_entropy_instead_of_accuracy():
    labelled, unlabelled = _record("a", 1.0, "labelled"), _record("b", 2.0, "own folder",
                                                                   {"target_labelled": False})
    epochs = {"a": pd.DataFrame({"epoch": [1, 2], "target_test_acc": [0.5, 0.6]}),
              "b": pd.DataFrame({"epoch": [1, 2], "target_entropy": [1.2, 0.8]})}
    alone = present_view.accuracy_figure([unlabelled], epochs, 560).to_dict()
    assert alone["layout"]["title"]["text"].startswith("Target prediction entropy")
    assert [t["name"] for t in alone["data"]] == ["own folder: 0.800"]
    assert "range" not in alone["layout"]["yaxis"]  # entropy is not a percentage
    mixed = present_view.accuracy_figure([labelled, unlabelled], epochs, 560).to_dict()
    axes = {t["name"]: t.get("yaxis", "y") for t in mixed["data"]}
    assert axes == {"labelled: 60.0 %": "y", "own folder: 0.800": "y2"}
    assert mixed["layout"]["yaxis2"]["title"]["text"] == "entropy"


def test_feature_small_multiples_before_and_now_per_run(manager):  # noqa: F811
    a = add_run_with_snapshots(manager.store, "source only", n_snaps=3, per_domain=20)
    off = add_run(manager.store, "completed", name="no pictures")
    manager.store.rename(off, "no pictures")
    recs = [manager.store.get_run(a), manager.store.get_run(off)]
    recs[1].config.setdefault("snapshot", {})["enabled"] = False
    fig = present_view.features_figure(present_view._feature_rows(recs), 560)._raw  # arrays as built
    points = [t for t in fig["data"] if t.get("mode") == "markers"]
    assert {t["xaxis"] for t in points} == {"x", "x2"}  # before and now of the first run; none for the second
    before = np.concatenate([np.asarray(t["x"]) for t in points if t["xaxis"] == "x"]) if points else []
    assert len(before) == 40  # every point of the sample, source and target
    texts = [n["text"] for n in fig["layout"]["annotations"]]
    assert any("source only" in t and "now: epoch 2" in t for t in texts)
    assert "feature snapshots are off for this run" in texts
    run_label = next(n for n in fig["layout"]["annotations"] if "source only" in n["text"])
    assert run_label["font"]["color"] == theme.RUN_COLORS[0]
