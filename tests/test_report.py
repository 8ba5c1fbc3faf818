"""The run report (tl_core/report.py): on a tiny real run (2 epochs, projected snapshots, a checkpoint) the
report holds every section, its classification report agrees with scikit-learn on the same predictions,
Grad-CAM maps have the image's shape and are not constant, user strings are escaped, the command line
writes the file and its JSON line; in Chromium with the network blocked no request leaves the page and
every chart draws; kaleido writes PNGs with /usr/bin/chromium."""

from __future__ import annotations

import html
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from tl_core import report
from tl_core.classification import classification_report
from tl_core.store import RunStore

EVIL = '<script>alert("x")</script></script><img src=x onerror=alert(1)> & \'q\''


def _tiny_run(home: Path, name: str) -> str:
    """A finished 2-epoch DANN run (LeNet, MNIST → MNIST-M, 256 images) whose snapshots are projected
    (PCA) as they arrive: what the dashboard stores, without the projector's worker process."""
    from tests._tiny import tiny_config
    from tl_core.execute import execute_run
    from tl_core.projector import project_snapshot

    cfg = tiny_config("dann", epochs=2)
    cfg.name = name
    cfg.snapshot.projection = "pca"
    store = RunStore(home)
    run_id = store.create_run(cfg, owner="test")
    store.set_status(run_id, "running")
    out = execute_run(store, run_id, cfg, threading.Event(), None, lambda rid, idx: project_snapshot(store, rid, idx))
    assert out.status == "completed", out.message
    return run_id


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("tl_home")
    return home, _tiny_run(home, EVIL)


@pytest.fixture(scope="module")
def built(run) -> report.Report:
    home, run_id = run
    return report.build(RunStore(home), [run_id], n_gradcam=4)


def test_the_report_holds_every_section_and_needs_no_network(built, run):
    page = built.html
    for heading in ("What was run", "Numbers", "Training curves", "Feature space", "Domain distance over training",
                    "Per-class results on the target test set", "Misclassified target images",
                    "What the model looks at (Grad-CAM)", "Machine and versions"):
        assert f"<h3>{heading}</h3>" in page or f"<h2>{heading}</h2>" in page, heading
    # what was run: backbone, frozen stages, method and its settings, device
    for fact in ("LeNet", "Frozen stages", "DANN", "Discriminator width", "/ cpu", "mnist-m"):
        assert fact in page, fact
    assert report.ORACLE in page and "label-free" in page and report.MEASURED in page
    # the figures: curves, the replay (frames), before/now, distances, confusion, per class
    names = set(built.figures)
    _, run_id = run
    for part in ("loss", "accuracy", "features", "features-before", "features-now", "a_distance", "confusion",
                 "per-class"):
        assert f"{run_id}-{part}" in names, part
    assert len(built.figures[f"{run_id}-features"].to_dict()["frames"]) == 3  # before training, epoch 1, epoch 2
    # plotly.js inlined exactly once; nothing is fetched from anywhere
    assert page.count("<script>") == 2 and len(page) > 3_000_000
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()) == 1
    ours = page.replace(get_plotlyjs(), "")  # plotly.js's own strings name its web site; it fetches nothing
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", ours) and "http" not in ours
    # thumbnails of misclassified images and Grad-CAM pairs, as data: URIs
    assert page.count('<figure class=thumb><img src="data:image/png;base64,') >= 1
    assert page.count('<figure class=cam><img src="data:image/png;base64,') == 4


def test_user_strings_are_escaped(built):
    page = built.html
    assert EVIL not in page and "<img src=x" not in page and 'alert("x")</script>' not in page
    assert html.escape(EVIL, quote=True) in page  # shown, as text
    # inside the figures' JSON no '<' survives either (a name with </script> cannot end the element)
    for spec in re.findall(r'<script type="application/json" id="fig-\d+-spec">(.*?)</script>', page, re.S):
        assert "<" not in spec
        json.loads(spec)


def test_classification_report_agrees_with_sklearn():
    from sklearn.metrics import classification_report as sk_report

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, 300))
    pred[pred == 4] = 3  # class 4 is never predicted: precision 0 by zero_division=0
    conf = np.zeros((5, 5), int)
    np.add.at(conf, (y, pred), 1)
    ours = classification_report(conf, list("abcde"))
    theirs = sk_report(y, pred, labels=range(5), target_names=list("abcde"), output_dict=True, zero_division=0)
    for row in ours["classes"]:
        t = theirs[row["class"]]
        assert row["support"] == t["support"]
        for k, tk in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert row[k] == pytest.approx(t[tk], abs=1e-12), (row["class"], k)
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-12)
    for ours_key, their_key in (("macro", "macro avg"), ("weighted", "weighted avg")):
        for k, tk in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert ours[ours_key][k] == pytest.approx(theirs[their_key][tk], abs=1e-12), (ours_key, k)


def test_the_reports_class_table_is_the_runs_last_confusion_matrix(built, run):
    """The table in the report shows what classification_report computes from the stored matrix, and that
    matrix is the run's own predictions (sklearn on predictions rebuilt from it agrees)."""
    from sklearn.metrics import precision_recall_fscore_support

    home, run_id = run
    extra = RunStore(home).epoch_metrics(run_id)["extra"].iloc[-1]
    conf = np.asarray(extra["confusion"])
    y = np.repeat(np.arange(len(conf)), conf.sum(1))
    pred = np.concatenate([np.repeat(np.arange(len(conf)), row) for row in conf])
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="macro", labels=range(len(conf)), zero_division=0)
    ours = classification_report(conf)
    assert (ours["macro"]["precision"], ours["macro"]["recall"], ours["macro"]["f1"]) == pytest.approx((p, r, f))
    assert f"<th>macro average</th><td>{100 * p:.1f} %</td><td>{100 * r:.1f} %</td><td>{100 * f:.1f} %</td>" \
        in built.html


def test_gradcam_maps_have_the_images_shape_and_show_something(run):
    home, run_id = run
    g = report.gradcam_images(RunStore(home), run_id, 4)
    n, s = 4, 28  # LeNet runs at 28x28
    assert g["images"].shape == (n, s, s, 3) and g["maps"].shape == (n, s, s)
    assert g["layer"] == "conv2"  # the last stage that still has height and width
    assert np.isfinite(g["maps"]).all() and g["maps"].min() >= 0 and g["maps"].max() <= 1
    assert all(m.std() > 1e-3 for m in g["maps"])  # not constant
    assert not np.allclose(g["maps"][0], g["maps"][1])  # and not the same picture for every image


def test_gradcam_weighs_the_feature_maps_by_the_explained_classs_gradient():
    """Two feature maps: one fires on the left half of the image, one on the right; class 1's score reads only
    the left one. Grad-CAM for class 1 lights the left half and leaves the right at zero; for class 0 the
    reverse."""
    import torch
    from torch import nn

    from tl_core.backbones._base import Backbone, BackboneInfo
    from tl_core.export import _net
    from tl_core.gradcam import grad_cam

    info = BackboneInfo(name="toy", title="toy", stage_names=["conv", "score"], feature_dim=2, input_size=8,
                        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0, weights="none")
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0], conv.weight[1, 1] = 1.0, 1.0

    class Scores(nn.Module):  # class 0 reads the right-half map, class 1 the left-half map
        def forward(self, h):
            return torch.stack([h[:, 1].sum((1, 2)), h[:, 0].sum((1, 2))], 1)

    net = _net(Backbone(info, [conv, Scores()], pool=nn.Identity()), nn.Identity(), info)
    x = torch.zeros(1, 3, 8, 8)
    x[:, 0, :, :4], x[:, 1, :, 4:] = 1.0, 1.0
    maps, chosen, _ = grad_cam(net, torch.cat([x, x]), classes=[1, 0])
    assert chosen.tolist() == [1, 0]
    assert maps[0][:, :4].min() > 0.99 and maps[0][:, 4:].max() < 1e-6
    assert maps[1][:, 4:].min() > 0.99 and maps[1][:, :4].max() < 1e-6


def test_a_run_without_target_labels_says_so_and_the_summary_extras_show(tmp_path):
    from tl_core.config import RunConfig
    from tl_core.execute import finish_run

    store = RunStore(tmp_path / "home")
    run_id = store.create_run(RunConfig(name="street photos"))
    store.log_epoch(run_id, 1, 10, {"source_val_acc": 0.9, "target_entropy": 0.25}, {"target_labelled": False})
    finish_run(store, run_id, {"status": "completed", "target_labelled": False, "source_val_acc": 0.9,
                               "target_entropy": 0.25})
    page = report.build(store, [run_id], n_gradcam=0).html
    assert report.NO_TARGET_LABELS in page and "Best target" not in page and "90.0 %" in page
    from tl_core.gain import Gain

    gain = Gain("source only", points=-7.5, run_acc=0.5, baseline_acc=0.575, baseline_run="base-1").to_dict()
    summary = {**store.get_run(run_id).summary, "gain": gain,
               "chosen": {"criterion": "source_val_acc", "epoch": 1, "score": 0.9, "target_test_acc": None}}
    store.set_summary(run_id, summary)
    page = report.build(store, [run_id], n_gradcam=0).html
    assert "<b class=neg>negative transfer: −7.5 points against source only</b>" in page
    assert "baseline 57.5 %" in page and "criterion source_val_acc" in page


def test_cli_writes_a_comparison_and_ends_with_a_json_line(run, tmp_path):
    from tests.test_export import cli

    from tests.test_pages import add_run_with_snapshots

    home, run_id = run
    other = add_run_with_snapshots(RunStore(home), "second run", n_snaps=2)  # stored metrics, no checkpoint
    out = tmp_path / "sub" / "report.html"
    proc = cli(home, "report", run_id, other, "--out", str(out), "--gradcam", "2")
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["path"] == str(out) and line["run_ids"] == [run_id, other] and line["bytes"] == out.stat().st_size
    page = out.read_text(encoding="utf-8")
    assert "Runs compared" in page and line["figures"] > 10
    assert page.count('<section class=run id="run-') == 2 and f'href="#run-{other}"' in page
    bad = cli(home, "report", "no-such-run", "--out", str(tmp_path / "x.html"))
    assert bad.returncode == 2 and "no run with id 'no-such-run'" in bad.stderr and not (tmp_path / "x.html").exists()


@pytest.mark.browser
def test_the_report_draws_every_chart_in_chromium_with_the_network_blocked(built, tmp_path):
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    path.write_text(built.html, encoding="utf-8")
    url = path.as_uri()
    seen: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})

            def route(r):
                seen.append(r.request.url)
                r.continue_() if r.request.url == url else r.abort()

            page.route("**/*", route)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            # a chart that drew has its svg and at least one trace in it (lines, markers, bars, a heat map)
            drawn_js = ("Array.from(document.querySelectorAll('.js-plotly-plot')).map(e => "
                        "!!e.querySelector('svg.main-svg') && e.querySelectorAll('g.trace, g.hm').length > 0)")
            page.wait_for_function(f"(d => d.length === {len(built.figures)} && d.every(Boolean))({drawn_js})",
                                   timeout=60_000)
            drawn = page.evaluate(drawn_js)
            frames = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot')).map("
                                   "e => ((e._transitionData || {})._frames || []).length)")
        finally:
            browser.close()
    assert errors == []
    assert seen == [url]  # the file itself, nothing else
    assert len(drawn) == len(built.figures) and all(drawn)
    assert max(frames) == 3  # the replay: before training, epoch 1, epoch 2


def test_pngs_with_kaleido_and_chromium(built, tmp_path):
    if report.browser_path() is None:
        pytest.skip("no Chromium (CI installs it with scripts/ensure_chromium.sh)")
    some = dict(list(built.figures.items())[:3])
    paths = report.write_pngs(some, tmp_path / "png")
    from PIL import Image

    assert [p.name for p in paths] == [re.sub(r"[^A-Za-z0-9_.-]+", "_", k) + ".png" for k in some]
    for p in paths:
        with Image.open(p) as im:
            assert im.size[0] == report.PNG_SIZE[0] and np.asarray(im.convert("L")).std() > 5  # drawn, not blank


def test_no_browser_gives_a_clear_message(monkeypatch, tmp_path, built):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chrome"))
    with pytest.raises(report.ReportError, match="needs Chrome or Chromium and none was found"):
        report.write_pngs(dict(list(built.figures.items())[:1]), tmp_path / "png")


# ------------------------------------------------------------------ dashboard
from tests.test_pages import manager  # noqa: E402,F401 - the pages' fixture: a store and a recording job manager
def test_monitor_shows_the_classification_report_beside_the_per_class_results(manager):
    from tests.test_pages import add_run_with_snapshots, open_app
    from tl_ui import keys

    run_id = add_run_with_snapshots(manager.store, "dann", n_snaps=3)
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.session_state[keys.MONITOR_DETAILS_OPEN] = True  # the per-class section, open
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Classification report, epoch 2" in m.value for m in at.markdown)
    table = at.table[0].value
    conf = manager.store.epoch_metrics(run_id)["extra"].iloc[-1]["confusion"]
    rep = classification_report(conf)
    assert list(table.index)[-3:] == ["accuracy", "macro average", "weighted average"] and len(table) == 13
    assert table.loc["macro average", "F1"] == f"{100 * rep['macro']['f1']:.1f} %"
    assert table.loc["3", "Precision"] == f"{100 * rep['classes'][3]['precision']:.1f} %"
    assert at.button(key=f"{keys.REPORT_BUTTON}.monitor").label == "Build report"


def test_runs_page_builds_the_selected_runs_report_in_a_child_process_and_offers_it(manager):
    from tests.test_pages import _select_rows, add_run_with_snapshots, open_app
    from tl_ui import keys

    a = add_run_with_snapshots(manager.store, "alpha <b>", n_snaps=2)
    b = add_run_with_snapshots(manager.store, "beta", n_snaps=2)
    at = open_app(keys.PAGE_RUNS)
    _select_rows(at, [0, 1])
    at.button(key=f"{keys.REPORT_BUTTON}.runs").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    ids, data, name = at.session_state[f"{keys.REPORT_FILE}.runs"]
    assert set(ids) == {a, b} and name == "report-2-runs.html"
    page = data.decode()
    assert "Runs compared" in page and "alpha &lt;b&gt;" in page and "No Grad-CAM" in page  # no checkpoint here
    assert any(d.label.startswith("Download report (") for d in at.get("download_button"))
