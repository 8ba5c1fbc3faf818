"""Predict (tl_core/predict.py, pages/predict.py): the command line on a tiny real run writes top-3 CSV rows that
agree with the exported model; the page refuses a non-image, an oversized upload and a folder outside the data
folder with messages naming them, and shows real predictions in its grid (AppTest, the model in a child process).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tl_core.store import RunStore
from tl_ui import keys, predict_view

from test_export import TINY, cli
from test_pages import ROOT, TIMEOUT, RecordingManager, _use_manager

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str, Path]:
    """(TL_HOME, run id, data folder with 12 real MNIST-M test images and a text file named .png)."""
    home = tmp_path_factory.mktemp("tl_home")
    proc = cli(home, "run", *TINY)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]
    from tl_core import data

    images = tmp_path_factory.mktemp("data_root") / "digits"
    images.mkdir()
    s = data.load_split("mnist-m", "test", max_samples=100, seed=1)
    for i in range(12):
        Image.fromarray(s.images[i]).save(images / f"{i:02d}_label{s.labels[i]}.png")
    (images / "zz-notes.png").write_text("not an image")
    return home, run_id, images


def png_bytes(seed: int, size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# ------------------------------------------------------------------ command line
def test_the_csv_has_sensible_top3_rows_and_the_exported_models_top1(run, tmp_path):
    from tl_core import export

    home, run_id, folder = run
    out = tmp_path / "preds.csv"
    proc = cli(home, "predict", "--run", run_id, str(folder), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "top1", "p1", "top2", "p2", "top3", "p3", "error"]
    good = [r for r in rows if not r["error"]]
    bad = [r for r in rows if r["error"]]
    assert len(good) == 12 and [Path(r["path"]).name for r in bad] == ["zz-notes.png"]
    assert "not a readable image" in bad[0]["error"] and "skipped: " in proc.stderr
    for r in good:
        p = [float(r["p1"]), float(r["p2"]), float(r["p3"])]
        assert 0.1 <= p[0] <= 1 and p[0] >= p[1] >= p[2] > 0 and sum(p) <= 1 + 1e-6  # 10 classes: p1 ≥ 1/10
        assert len({r["top1"], r["top2"], r["top3"]}) == 3 and r["top1"] in [str(i) for i in range(10)]
    # The exported bundle, loaded on its own, names the same top-1 for the same files.
    bundle = export.export_run(RunStore(home), run_id, "bundle", tmp_path / "m.zip")
    from tl_core.predict import read_images

    files = sorted(folder.glob("[0-9]*.png"))
    images, ok, _ = read_images(files)
    top1 = [export.load_bundle(bundle).classes[i] for i in export.load_bundle(bundle).predict(images)]
    assert top1 == [r["top1"] for r in good]
    assert len(set(top1)) > 1  # a model that answers one class for everything would prove little


def test_the_cli_refuses_a_folder_outside_the_data_root_and_an_unknown_run(run, tmp_path):
    home, run_id, folder = run
    inside = tmp_path / "root"
    inside.mkdir()
    proc = cli(home, "predict", "--run", run_id, str(folder), "--data-root", str(inside))
    assert proc.returncode == 2 and f"Folder '{folder}' is outside the data folder" in proc.stderr
    proc = cli(home, "predict", "--run", "nope", str(folder))
    assert proc.returncode == 2 and "no run with id 'nope'" in proc.stderr


# ------------------------------------------------------------------ the page
@pytest.fixture
def page(run, monkeypatch):
    """The Predict page on the real run's store, with TL_DATA_ROOT the folder above the images."""
    home, run_id, folder = run
    monkeypatch.setenv("TL_HOME", str(home))
    monkeypatch.setenv("TL_DATA_ROOT", str(folder.parent))
    _use_manager(monkeypatch, RecordingManager(RunStore(home)))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(keys.PAGE_PREDICT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Predict" and at.selectbox(key=keys.PREDICT_RUN).value == run_id
    return at


def test_a_non_image_and_an_oversized_upload_are_refused_by_name(page, monkeypatch):
    calls = []
    monkeypatch.setattr(predict_view, "predict", lambda *a, **k: calls.append(a))
    page.file_uploader(key=keys.PREDICT_UPLOAD).set_value([
        ("holiday.png", b"%PDF-1.4 this is a document", "image/png"),
        ("huge.png", png_bytes(0) + bytes((predict_view.MAX_FILE_MB + 1) * 2**20), "image/png")]).run()
    page.button(key=keys.PREDICT_BUTTON).click().run()
    assert not page.exception
    errors = [e.value for e in page.error]
    assert any("holiday.png" in e and "not an image" in e and "refused" in e for e in errors), errors
    assert any("huge.png" in e and f"over the limit of {predict_view.MAX_FILE_MB} MB per image" in e
               for e in errors), errors
    assert calls == []  # nothing was left to predict: no child process started


def test_a_folder_outside_the_data_root_is_refused_with_its_message(page, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    page.segmented_control(key=keys.PREDICT_SOURCE).set_value("A folder in the data folder").run()
    page.text_input(key=keys.PREDICT_FOLDER).input(str(outside)).run()
    page.button(key=keys.PREDICT_BUTTON).click().run()
    assert not page.exception
    assert any("is outside the data folder" in e.value and "elsewhere" in e.value for e in page.error)


def test_uploaded_images_are_shown_with_their_top3_from_the_runs_model(page, run):
    _, _, folder = run
    files = sorted(folder.glob("[0-9]*.png"))[:3]
    page.file_uploader(key=keys.PREDICT_UPLOAD).set_value(
        [(f.name, f.read_bytes(), "image/png") for f in files] + [("notes.png", b"hello", "image/png")]).run()
    page.button(key=keys.PREDICT_BUTTON).click().run()
    assert not page.exception, [e.value for e in page.exception]
    assert any("notes.png" in e.value and "not an image" in e.value for e in page.error)
    assert "Top-3 classes of 3 images" in [s.value for s in page.subheader]
    shown = [m.value for m in page.markdown if " %" in m.value and "·" in m.value]
    assert len(shown) == 3 and all(m.count("%") == 3 for m in shown), shown
    assert len(page.get("image")) == 3  # each image beside its classes


def test_the_runs_page_exports_the_model_for_download(run, monkeypatch):
    """Runs: select the finished run, Export model (ONNX), and a download button with the file appears."""
    from test_pages import _select_rows

    home, run_id, _ = run
    monkeypatch.setenv("TL_HOME", str(home))
    _use_manager(monkeypatch, RecordingManager(RunStore(home)))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(keys.PAGE_RUNS).run()
    _select_rows(at, [0])
    at.selectbox(key=keys.RUNS_EXPORT_FORMAT).set_value("onnx").run()
    at.button(key=keys.RUNS_EXPORT_BUTTON).click().run()
    assert not at.exception, [e.value for e in at.exception]
    got_id, fmt, data, name = at.session_state[keys.RUNS_EXPORT_FILE]
    assert (got_id, fmt, name) == (run_id, "onnx", f"{run_id}-model.onnx")
    assert isinstance(data, bytes) and len(data) > 10_000
    import onnx

    model = onnx.load_from_string(data)
    assert {p.key for p in model.metadata_props} >= {"classes", "preprocessing", "opset", "config"}
    assert at.download_button[-1].proto.label.startswith(f"Download {run_id}-model.onnx")
