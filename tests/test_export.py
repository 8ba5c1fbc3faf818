"""Export (tl_core/export.py): a tiny real run, made by the command line into a temporary TL_HOME, exported as a
bundle, TorchScript and ONNX. ONNX Runtime agrees with torch on real target test images; the bundle predicts in
a fresh process that imports only tl_core, with the run's own evaluation's top-1; bad ids and unfinished runs
get a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tl_core import export
from tl_core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--source", "mnist", "--target", "mnist-m", "--backbone", "lenet", "--max-train", "256", "--batch-size", "32",
        "--epochs", "1", "--seed", "1", "--device", "cpu", "--no-snapshots", "--quiet", "--method", "finetune"]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m tl_core ARGS`` with TL_HOME=home, in this process (its exit status, stdout, stderr)."""
    import contextlib
    import io

    from tl_core.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("TL_HOME", str(home))
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    """(TL_HOME, run id) of a finished tiny fine-tune run, made by `python -m tl_core run`."""
    home = tmp_path_factory.mktemp("tl_home")
    proc = cli(home, "run", *TINY)
    assert proc.returncode == 0, proc.stderr
    return home, json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]


def target_test(config) -> tuple[np.ndarray, np.ndarray]:
    from tl_core import data

    d = config.data
    s = data.load_split(d.target, "test", path=d.target_path, data_root=d.data_root, max_samples=d.max_test,
                        seed=config.seed)
    return s.images, s.labels


def test_onnx_runtime_and_torchscript_agree_with_torch_on_real_target_images(run, tmp_path):
    import onnx
    import onnxruntime as ort
    import torch

    home, run_id = run
    nw = export.load_run(RunStore(home), run_id)
    assert nw.meta["encoder"] == "backbone" and nw.classes == [str(i) for i in range(10)]
    images, _ = target_test(nw.config)
    from tl_core.data import ImageSet
    from tl_core.modality import modality_for

    x = modality_for(nw.config).to_device(ImageSet(images[:64], np.zeros(64, np.int64), nw.classes, "t"), nw.config,
                                          torch.device("cpu")).float()
    with torch.no_grad():
        want = nw.net(x).numpy()
    onnx_path = export.write(nw, "onnx", tmp_path / "m.onnx")
    model = onnx.load(str(onnx_path))
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == export.ONNX_OPSET
    props = {p.key: p.value for p in model.metadata_props}
    assert props["opset"] == str(export.ONNX_OPSET) and json.loads(props["classes"]) == nw.classes
    assert json.loads(props["preprocessing"])["image_size"] == nw.config.data.image_size
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (x[:1], x[:7], x):  # the batch axis is dynamic
        got = sess.run(["logits"], {"pixels": batch.numpy()})[0]
        np.testing.assert_allclose(got, want[:len(batch)], atol=1e-4, rtol=0)
    ts = torch.jit.load(str(export.write(nw, "torchscript", tmp_path / "m.pt")))
    with torch.no_grad():
        np.testing.assert_allclose(ts(x).numpy(), want, atol=1e-5, rtol=0)
    assert want.argmax(1).tolist() != [want.argmax(1)[0]] * len(want)  # a model that says one class only proves little


def test_the_bundle_predicts_in_a_fresh_process_like_the_runs_own_evaluation(run, tmp_path):
    home, run_id = run
    out = tmp_path / "model.zip"
    proc = cli(home, "export", run_id, "--format", "bundle", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["path"] == str(out)
    import zipfile

    names = set(zipfile.ZipFile(out).namelist())
    assert names == {"model.safetensors", "classes.json", "preprocessing.json", "config.json", "model.json"}
    pre = json.loads(zipfile.ZipFile(out).read("preprocessing.json"))
    assert pre["image_size"] == 28 and pre["channels"] == 3 and pre["scale"] == 255.0 and len(pre["mean"]) == 3
    # A fresh interpreter with nothing of the tests: load the bundle, predict the target test split.
    script = (
        "import json, sys\n"
        "from tl_core.export import load_bundle\n"
        "from tl_core import data\n"
        "p = load_bundle(sys.argv[1]); d = p.config.data\n"
        "s = data.load_split(d.target, 'test', path=d.target_path, data_root=d.data_root, max_samples=d.max_test, "
        "seed=p.config.seed)\n"
        "print(json.dumps({'pred': p.predict(s.images).tolist(), 'labels': s.labels.tolist(),\n"
        "                  'foreign': sorted(m for m in sys.modules if m.split('.')[0] in ('tests', 'pytest', '_tiny'))}))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(out)], cwd=str(tmp_path), capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TL_HOME": str(tmp_path / "elsewhere")},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["foreign"] == []
    pred, labels = np.array(got["pred"]), np.array(got["labels"])
    last = RunStore(home).epoch_metrics(run_id).iloc[-1]
    conf = np.zeros((10, 10), np.int64)
    np.add.at(conf, (labels, pred), 1)
    assert conf.tolist() == last["extra"]["confusion"]  # the same top-1 per image class by class
    assert (pred == labels).mean() == pytest.approx(last["target_test_acc"])
    wrong = np.nonzero(pred != labels)[0][:24]
    assert [[int(i), int(pred[i])] for i in wrong] == last["extra"]["misclassified"]


def test_a_bundle_folder_round_trips_and_a_broken_one_is_refused(run, tmp_path):
    home, run_id = run
    nw = export.load_run(RunStore(home), run_id)
    folder = export.write(nw, "bundle", tmp_path / "bundle")
    images, _ = target_test(nw.config)
    p = export.load_bundle(folder)
    assert p.predict(images[:50]).tolist() == export.network_predictor(nw).predict(images[:50]).tolist()
    probs = p.probabilities(images[:5])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    (folder / "model.safetensors").write_bytes(b"not tensors")
    with pytest.raises(export.ExportError, match="cannot be loaded"):
        export.load_bundle(folder)
    with pytest.raises(export.ExportError, match="not a Transfer Lab model bundle"):
        export.load_bundle(tmp_path)


def test_a_bad_run_id_or_an_unfinished_run_gets_a_clear_message(run):
    from tl_core.config import RunConfig

    home, _ = run
    proc = cli(home, "export", "no-such-run", "--format", "onnx")
    assert proc.returncode == 2 and "error: no run with id 'no-such-run'" in proc.stderr
    assert "Traceback" not in proc.stderr
    store = RunStore(home)
    queued = store.create_run(RunConfig())
    with pytest.raises(export.ExportError, match=f"run {queued} is still queued: export it when it has finished"):
        export.export_run(store, queued, "bundle")
    store.set_status(queued, "running")
    store.set_status(queued, "failed", error="boom")
    proc = cli(home, "export", queued)
    assert proc.returncode == 2 and f"run {queued} (failed) has no checkpoint to export" in proc.stderr
