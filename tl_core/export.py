"""A finished run's model, to take away: a bundle, TorchScript or ONNX.

Which weights: the checkpoint of the epoch the run's label-free criterion chose (``selected.pt``, see
:mod:`tl_core.selection`; the last checkpoint ``checkpoint.pt`` for a run that wrote none), loaded with
``weights_only=True``, and
the network a user meets on the *target* domain: ``head(encoder(x))`` with the encoder the run's
method names for the target (``Method.encoder("target", model)``): the backbone for most methods,
the separate target encoder for ADDA-like ones.

Every format takes the same input and gives the same output:

* input ``pixels``: float32 ``(N, 3, S, S)``, RGB pixel values 0..255 (S = the run's
  ``data.image_size``), the normalisation ``(p / scale - mean) / std`` is inside the model;
* output ``logits``: float32 ``(N, classes)``; softmax gives the confidences.

``preprocessing.json`` (in the bundle, and in the ONNX file's metadata) says how an image file
becomes ``pixels``: read as a folder data set reads it (RGB, alpha over white, centre square crop,
bilinear to 64×64: :func:`tl_core.data.folder.read_image`), then resized to S×S (bilinear,
antialiased when shrinking) and rounded to whole pixel values, as the training loop does
(:meth:`tl_core.modality.ImageModality.to_device`).

Formats (``python -m tl_core export RUN_ID --format bundle|torchscript|onnx [--out PATH]``):

* ``bundle``: a folder (or ``.zip``) with ``model.safetensors`` (``backbone.*`` and ``head.*``),
  ``classes.json``, ``preprocessing.json``, ``config.json`` (the RunConfig) and ``model.json``
  (architecture, head, which encoder, epoch). :func:`load_bundle` rebuilds it with
  ``tl_core.backbones`` alone: no run store, no data.
* ``torchscript``: ``torch.jit.trace`` of the network, with the bundle's JSON files as extra files.
* ``onnx``: opset :data:`ONNX_OPSET`, the TorchScript-based exporter (``dynamo=False``: it works
  offline and needs no onnxscript), a dynamic batch axis; class names, preprocessing and the opset
  in the model's metadata.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tl_core.config import RunConfig

FORMATS = ("bundle", "torchscript", "onnx")
#: The ONNX opset of exported models (stated in the file's metadata too).
ONNX_OPSET = 17
BUNDLE_FORMAT = "transfer-lab-bundle/1"
WEIGHTS_NAME = "model.safetensors"
SUFFIX = {"bundle": ".zip", "torchscript": ".pt", "onnx": ".onnx"}
#: How an image file becomes the model's input, in words (preprocessing.json's "resize").
RESIZE_RULE = ("Read as a folder data set reads an image: RGB (grey repeated to 3 channels, alpha composited "
               "over white), centre square crop, bilinear resize to 64x64 (tl_core.data.folder.read_image); "
               "then bilinear resize to image_size x image_size (antialiased when shrinking) and rounding to "
               "whole pixel values 0..255 (tl_core.modality.ImageModality.to_device).")


class ExportError(Exception):
    """The run cannot be exported (or its bundle read); the message says why and what to do."""


@dataclass
class Network:
    """A run's network on the target domain, ready to export or to predict with."""

    net: Any                    # ExportNet (torch.nn.Module), eval mode, on the CPU
    config: RunConfig
    classes: list[str]
    meta: dict[str, Any]        # model.json


def preprocessing(config: RunConfig, info: Any) -> dict[str, Any]:
    """preprocessing.json: what turns an image into the model's input."""
    size = int(config.data.image_size)
    return {"image_size": size, "channels": 3, "color": "RGB", "layout": "NCHW", "dtype": "float32",
            "input": f"pixels: float32 (N, 3, {size}, {size}), RGB values 0..255",
            "output": "logits: float32 (N, classes); softmax gives the confidences",
            "mean": [float(v) for v in info.mean], "std": [float(v) for v in info.std], "scale": float(info.scale),
            "normalisation": "(pixels / scale - mean) / std per channel; inside the TorchScript and ONNX models "
                             "(and ExportNet), so give them raw pixel values",
            "resize": RESIZE_RULE, "work_size": 64}


def _export_net_class() -> type:
    import torch
    from torch import nn

    class ExportNet(nn.Module):
        """pixels (N, 3, S, S) float 0..255 -> logits: normalise, backbone (or target encoder), head."""

        def __init__(self, backbone: nn.Module, head: nn.Module, mean: Sequence[float], std: Sequence[float],
                     scale: float) -> None:
            super().__init__()
            self.backbone, self.head, self.scale = backbone, head, float(scale)
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            # The same operations as tl_core.modality.ImageModality.normaliser, so top-1 matches the run's own.
            return self.head(self.backbone((pixels.float() / self.scale - self.mean) / self.std))

    return ExportNet


def _net(backbone: Any, head: Any, info: Any) -> Any:
    net = _export_net_class()(backbone, head, info.mean, info.std, info.scale)
    return net.eval()


# ------------------------------------------------------------------ from a run
def finished_run(store: Any, run_id: str) -> tuple[Any, RunConfig, Path]:
    """The run's record, config and checkpoint, or ExportError saying why there is nothing to export."""
    from tl_core.checkpoint import WHEN_WRITTEN, checkpoint_path, weights_path

    rec = store.get_run(run_id)
    if rec is None:
        raise ExportError(f"no run with id '{run_id}' in {store.home}; `python -m tl_core run ...` makes one, "
                          "and the Runs page lists them with their ids.")
    if rec.active:
        raise ExportError(f"run {run_id} is still {rec.status}: export it when it has finished (or stop it first).")
    ckpt = checkpoint_path(store.run_dir(run_id))
    if not ckpt.exists():
        raise ExportError(f"run {run_id} ({rec.status}) has no checkpoint to export: one is written {WHEN_WRITTEN}.")
    return rec, RunConfig.from_dict(rec.config), weights_path(store.run_dir(run_id))


def _classes(store: Any, run_id: str, k: int) -> list[str]:
    """Class names as the run's evaluation recorded them (else '0'..'k-1')."""
    epochs = store.epoch_metrics(run_id)
    for extra in reversed(list(epochs.get("extra", []))):
        names = (extra or {}).get("classes")
        if names and len(names) == k:
            return [str(c) for c in names]
    return [str(i) for i in range(k)]


def _num_classes(head_state: dict[str, Any]) -> int:
    last = [v for k, v in head_state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2][-1]
    return int(last.shape[0])


def _target_encoder(method: Any, model: Any, probe: Any) -> tuple[Any, str]:
    """The module that encodes the target domain, and its name in words.

    The method's ``encoder("target", model)`` is the backbone for most methods; otherwise it must be one of
    the method's parts that is a Backbone and gives the same features on a probe (ADDA's target encoder).
    """
    import torch

    from tl_core.backbones import Backbone

    enc = method.encoder("target", model)
    if enc == model.features_eval:
        return model.backbone, "backbone"
    with torch.no_grad():
        want = enc(probe)
        for name, part in method.modules().items():
            if isinstance(part, Backbone) and torch.allclose(part(model.normalise(probe)), want, atol=1e-5):
                return part, f"{name} of {method.title}"
        if torch.allclose(model.features_eval(probe), want, atol=1e-5):
            return model.backbone, "backbone"
    raise ExportError(f"method {method.name} encodes the target domain with something other than a backbone; "
                      "it cannot be exported yet.")


def load_run(store: Any, run_id: str) -> Network:
    """The run's network on the target domain from its chosen checkpoint (else its last; CPU, eval mode).

    Raises:
        ExportError: no such run, still running, no checkpoint, or a checkpoint that does not fit.
    """
    import torch

    from tl_core import backbones as bb
    from tl_core.checkpoint import SELECTED_NAME, load_checkpoint_file
    from tl_core.failures import RunError
    from tl_core.methods import RunContext, create_method
    from tl_core.modality import modality_for
    from tl_core.model import Model

    rec, cfg, path = finished_run(store, run_id)
    try:
        ckpt = load_checkpoint_file(path)
    except RunError as e:
        raise ExportError(f"run {run_id}: {e}" + (f" {e.hint}" if e.hint else "")) from e
    device = torch.device("cpu")
    m, modality = cfg.model, modality_for(cfg)
    try:
        backbone = bb.create_backbone(m.backbone, pretrained=False)
        backbone.load_state_dict(ckpt["backbone"])
        backbone.eval()
        with torch.no_grad():
            feat_dim = backbone(modality.probe(cfg, device)).shape[1]
        k = _num_classes(ckpt["head"])
        head = bb.make_head(feat_dim, k, m.head, m.head_hidden, m.dropout)
        head.load_state_dict(ckpt["head"])
        model = Model(backbone, head.eval(), modality.normaliser(backbone.info, device))
        method = create_method(cfg, feat_dim, k, device)
        have = set(method.modules())
        if any(key.split(".", 1)[0] not in have for key in ckpt["method"] if not key.startswith("_")):
            # parts its start hook adds (ADDA's target encoder): that hook needs only the model here
            empty = torch.zeros((0, 3, cfg.data.image_size, cfg.data.image_size), dtype=torch.uint8)
            method.start(RunContext(model=model, labelled_x=empty, labelled_y=torch.zeros(0, dtype=torch.long),
                                    target_x=empty, device=device, seed=cfg.seed))
        method.load_state_dict(ckpt["method"])
        method.train(False)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        raise ExportError(f"run {run_id}: its checkpoint does not fit its settings ({str(e).splitlines()[0][:200]})"
                          ) from e
    probe = torch.randint(0, 256, (2, 3, cfg.data.image_size, cfg.data.image_size), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    encoder, which = _target_encoder(method, model, probe)
    info = backbone.info
    net = _net(encoder, head, info)
    classes = _classes(store, run_id, k)
    summary = rec.summary or {}
    meta = {"format": BUNDLE_FORMAT, "run_id": run_id, "run_name": rec.name, "status": rec.status,
            "method": cfg.method.name, "arch": info.arch, "backbone": m.backbone, "feature_dim": int(feat_dim),
            "num_classes": k, "head": m.head, "head_hidden": m.head_hidden, "dropout": m.dropout,
            "encoder": which, "epoch": int(ckpt["epoch"]), "step": int(ckpt["step"]),
            "checkpoint": path.name, "criterion": cfg.selection.criterion,
            "target_test_acc": (summary.get("chosen") or {}).get("target_test_acc")
            if path.name == SELECTED_NAME else summary.get("final_target_test_acc"), "exported": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "torch": torch.__version__, "onnx_opset": ONNX_OPSET}
    return Network(net=net, config=cfg, classes=classes, meta=meta)


# ------------------------------------------------------------------ writing
def _json_files(nw: Network) -> dict[str, str]:
    from tl_core.backbones import get_info

    return {"classes.json": json.dumps(nw.classes, indent=2),
            "preprocessing.json": json.dumps(preprocessing(nw.config, get_info(nw.meta["arch"])), indent=2),
            "config.json": nw.config.to_json(),
            "model.json": json.dumps(nw.meta, indent=2)}


def _bundle_files(nw: Network) -> dict[str, bytes]:
    from safetensors.torch import save

    state = {f"backbone.{k}": v for k, v in nw.net.backbone.state_dict().items()}
    state.update({f"head.{k}": v for k, v in nw.net.head.state_dict().items()})
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    files = {WEIGHTS_NAME: save(state, metadata={"format": BUNDLE_FORMAT, "run_id": nw.meta["run_id"]})}
    files.update({name: text.encode() for name, text in _json_files(nw).items()})
    return files


def _example(nw: Network, n: int = 2) -> Any:
    import torch

    s = nw.config.data.image_size
    return torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(0)) * 255


def write(nw: Network, fmt: str, out: str | os.PathLike) -> Path:
    """Write ``nw`` in ``fmt`` to ``out`` (a bundle: a folder, or a zip when ``out`` ends in .zip)."""
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "bundle":
        files = _bundle_files(nw)
        if out.suffix.lower() == ".zip":
            tmp = out.with_name(out.name + ".tmp")
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for name, data in files.items():
                    z.writestr(name, data)
            os.replace(tmp, out)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (out / name).write_bytes(data)
        return out
    import warnings

    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit announces its deprecation; the file loads everywhere
            traced = torch.jit.trace(nw.net, _example(nw), check_trace=False)
            torch.jit.save(traced, str(out), _extra_files=_json_files(nw))
        return out
    if fmt == "onnx":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
            torch.onnx.export(nw.net, (_example(nw),), str(out), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["pixels"], output_names=["logits"],
                              dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})
        import onnx

        model = onnx.load(str(out))
        for key, value in {**_json_files(nw), "opset": str(ONNX_OPSET)}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key.removesuffix(".json"), value
        model.producer_name = "Transfer Lab"
        onnx.save(model, str(out))
        return out
    raise ExportError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}.")


def export_run(store: Any, run_id: str, fmt: str, out: str | os.PathLike | None = None) -> Path:
    """Export a run's model; ``out`` defaults to ``<run_id>-model<suffix>`` in the current folder."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    nw = load_run(store, run_id)
    return write(nw, fmt, out or Path(f"{run_id}-model{SUFFIX[fmt]}"))


# ------------------------------------------------------------------ reading a bundle
class Predictor:
    """A network with its class names and preprocessing: images in, confidences out (CPU)."""

    def __init__(self, net: Any, config: RunConfig, classes: list[str], meta: dict[str, Any]) -> None:
        self.net, self.config, self.classes, self.meta = net, config, list(classes), meta

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits of uint8 images (N, H, W, C), C 1 or 3, prepared as the run's evaluation prepares them."""
        import torch

        from tl_core.data import ImageSet
        from tl_core.modality import modality_for

        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        out = []
        with torch.no_grad():
            for i in range(0, len(images), 256):
                part = ImageSet(images=images[i:i + 256], labels=np.zeros(len(images[i:i + 256]), np.int64),
                                classes=self.classes, name="predict")
                x = modality_for(self.config).to_device(part, self.config, torch.device("cpu"))
                out.append(self.net(x.float()).numpy())
        k = len(self.classes)
        return np.concatenate(out) if out else np.zeros((0, k), np.float32)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        z = self.logits(images).astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Top-1 class indices."""
        return self.logits(images).argmax(axis=1)


def network_predictor(nw: Network) -> Predictor:
    return Predictor(nw.net, nw.config, nw.classes, nw.meta)


def _read_bundle(path: Path) -> dict[str, bytes]:
    names = (WEIGHTS_NAME, "classes.json", "preprocessing.json", "config.json", "model.json")
    try:
        if path.is_dir():
            return {n: (path / n).read_bytes() for n in names}
        with zipfile.ZipFile(path) as z:
            return {n: z.read(n) for n in names}
    except FileNotFoundError as e:
        raise ExportError(f"{path} is not a Transfer Lab model bundle (missing {Path(e.filename or '').name or e}).")
    except KeyError as e:
        raise ExportError(f"{path} is not a Transfer Lab model bundle (missing {e.args[0]}).") from e
    except (OSError, zipfile.BadZipFile) as e:
        raise ExportError(f"{path} cannot be read as a model bundle ({e}).") from e


def load_bundle(path: str | os.PathLike) -> Predictor:
    """A bundle (folder or zip) as a :class:`Predictor`: the architecture from ``tl_core.backbones``
    (no pretrained weights), the head, the saved weights loaded strictly.

    Raises:
        ExportError: not a bundle, or weights that do not fit.
    """
    from safetensors.torch import load

    from tl_core import backbones as bb

    files = _read_bundle(Path(path))
    try:
        meta = json.loads(files["model.json"])
        if meta.get("format") != BUNDLE_FORMAT:
            raise ExportError(f"{path}: format {meta.get('format')!r}, expected {BUNDLE_FORMAT}.")
        config = RunConfig.from_json(files["config.json"].decode())
        classes = json.loads(files["classes.json"])
        state = load(files[WEIGHTS_NAME])
        backbone = bb.create_backbone(meta["arch"], pretrained=False)
        head = bb.make_head(meta["feature_dim"], meta["num_classes"], meta["head"], meta["head_hidden"],
                            meta["dropout"])
        net = _net(backbone, head, backbone.info)
        net.backbone.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("backbone.")}, strict=True)
        net.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")}, strict=True)
    except ExportError:
        raise
    except Exception as e:  # JSON, safetensors header, missing or extra keys, shapes
        raise ExportError(f"{path}: the bundle cannot be loaded ({str(e).splitlines()[0][:200]}).") from e
    return Predictor(net.eval(), config, classes, meta)


def cli(a: Any) -> int:
    """``python -m tl_core export RUN_ID --format F [--out PATH]``: prints the written path."""
    import sys

    from tl_core.store import RunStore

    try:
        out = export_run(RunStore(), a.run_id, a.format, a.out)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"run_id": a.run_id, "format": a.format, "path": str(out),
                      **({"onnx_opset": ONNX_OPSET} if a.format == "onnx" else {})}))
    return 0


def add_flags(p: Any) -> None:
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--format", choices=FORMATS, default="bundle",
                   help=f"bundle (zip or folder: safetensors, classes, preprocessing, config), torchscript, "
                        f"onnx (opset {ONNX_OPSET}, dynamic batch)")
    p.add_argument("--out", help="where to write (default RUN_ID-model.zip|.pt|.onnx; a bundle path without "
                                 ".zip is written as a folder)")


__all__ = ["ExportError", "FORMATS", "ONNX_OPSET", "Network", "Predictor", "export_run", "load_bundle",
           "load_run", "write"]
