"""The run report: one self-contained HTML file for a run or a comparison of runs, to send or to present.

    python -m tl_core report RUN_ID [RUN_ID ...] --out report.html [--png DIR] [--gradcam N] [--data-root DIR]

What it holds, read from the run store (:mod:`tl_core.store`) and the run folders: what was run (config,
data, backbone, frozen stages, method and its parameters, device, and the machine and versions that built
the report), the curves (the dashboard's own figure builders, :mod:`tl_core.charts`), the feature space
before and after with its replay (a Plotly animation over the snapshots), domain distances over time, the
target confusion matrix, a classification report (:mod:`tl_core.classification`), per-class accuracy,
misclassified target images and Grad-CAM heat maps on a few target images (:mod:`tl_core.gradcam`, on the
network :func:`tl_core.export.load_run` loads with ``weights_only=True``: the checkpoint the run's label-free
criterion chose, else the last, as export and predict use), thumbnails inlined as ``data:`` URIs; label-free numbers
and target-label numbers each labelled, the oracle as "oracle: uses target labels", and the transfer gain
and label-free checkpoint choice when the run summary has them (``summary["gain"]``, ``summary["chosen"]``,
``summary["oracle"]``). With more than one run, an overview table and overlaid curves come first.

The file needs no network: Plotly's JavaScript is inlined once, every figure is a JSON spec drawn by it, every
image is a ``data:`` URI, and every string from a user (run names, folder paths, class names) is escaped.
``--png DIR`` also writes every figure as a PNG with kaleido, which drives a Chrome/Chromium
(``/usr/bin/chromium`` when there is one; ``BROWSER_PATH`` names another).

Exit status: 0 when the report was written, 2 when it could not be (no such run, no browser for PNGs); the
message is on stderr, prefixed by ``error:``. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from tl_core import charts, theme
from tl_core.classification import classification_report, report_rows
from tl_core.config import RunConfig, method_label

#: Target test images with a Grad-CAM map per run (default of ``--gradcam``).
GRADCAM_IMAGES = 6
#: Misclassified target test images shown per run (the evaluation keeps up to 24).
MISCLASSIFIED_IMAGES = 16
#: How the report says a number uses target labels to choose (the oracle).
ORACLE = "oracle: uses target labels"
#: How it says a number uses target labels only to measure the run.
MEASURED = "uses target labels, for reporting only"
NO_TARGET_LABELS = "target accuracy: not available (no labels)"
#: Figures (width, height) in pixels when written as PNG for slides.
PNG_SIZE = (1280, 720)
#: Where kaleido looks for a browser first (Debian's chromium package).
DEFAULT_BROWSER = "/usr/bin/chromium"


class ReportError(Exception):
    """The report cannot be built or written; the message says why and what to do."""


def esc(value: Any) -> str:
    """A user-provided value as HTML text (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


@dataclass
class Report:
    """A built report: its HTML and its figures by name (for PNGs)."""

    html: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ small pieces
def _png_uri(image: np.ndarray) -> str:
    from PIL import Image

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %" if isinstance(x, (int, float)) and math.isfinite(float(x)) else "–"


def _num(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool) or x is None:
        return "–" if x is None else str(x)
    if isinstance(x, (int, float)) and math.isfinite(float(x)):
        return f"{float(x):.{digits}g}" if isinstance(x, float) else str(x)
    return esc(x)


def _table(rows: Sequence[tuple[str, str]], cls: str = "kv") -> str:
    """Two-column table; both cells are HTML already (escape before)."""
    return f'<table class="{cls}">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s" if s < 3600 else \
        f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "–"


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survives as such (a run name holding
    '</script>' cannot end the element)."""
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _Figures:
    """The figures of the report, each drawn into its own div by the one inlined plotly.js."""

    CONFIG = {"displaylogo": False, "responsive": True}

    def __init__(self) -> None:
        self.figs: dict[str, Any] = {}

    def add(self, name: str, fig: Any, height: int | None = None) -> str:
        import plotly.io as pio

        key = name
        i = 2
        while key in self.figs:
            key, i = f"{name}-{i}", i + 1
        self.figs[key] = fig
        text = pio.to_json(fig, validate=False)
        spec = _script_json(text)
        div = f"fig-{len(self.figs)}"
        h = height or int(json.loads(text).get("layout", {}).get("height") or theme.CHART_HEIGHT)
        return (f'<div class="chart"><div id="{div}" class="plot" style="height:{h}px"></div>'
                f'<script type="application/json" id="{div}-spec">{spec}</script></div>')


# ------------------------------------------------------------------ what was run
def _what_was_run(rec: Any, cfg: RunConfig, epochs: pd.DataFrame) -> str:
    from tl_core import backbones
    from tl_core.methods import all_extras, all_methods, param_specs

    d, m, o = cfg.data, cfg.model, cfg.optim
    try:
        info = backbones.get_info(m.backbone)
        stage_names, bb_title, weights = list(info.stage_names), info.title, getattr(info, "weights", "")
    except Exception:  # noqa: BLE001 - a backbone no longer registered: the report still says what is known
        stage_names, bb_title, weights = [], m.backbone, ""
    k = int(m.freeze or 0)
    frozen = ("none (every stage trains)" if k == 0 else
              f"{k} of {len(stage_names) or '?'}: {', '.join(stage_names[:k])}" if stage_names else str(k))
    if stage_names and k < len(stage_names):
        frozen += f"; training: {', '.join(stage_names[k:])} and the head"
    elif stage_names:
        frozen += "; only the head trains"

    def params_of(cls: Any, given: dict[str, Any]) -> str:
        if cls is None:
            return esc(json.dumps(given))
        bits = []
        for spec in param_specs(cls.Params):
            value = given.get(spec.name, spec.default)
            note = "" if spec.name in given else " (default)"
            bits.append(f"{esc(spec.label)} = <code>{esc(value)}</code>{note}")
        return "<br>".join(bits) or "no settings"

    method_cls = all_methods().get(cfg.method.name)
    method_rows = [("Method", f"{esc(method_label(cfg.to_dict()))} <span class=muted>({esc(cfg.method.name)}"
                              f"{'; ' + esc(method_cls.citation) if method_cls is not None and getattr(method_cls, 'citation', '') else ''})</span>"),
                   ("Trains on the labels of", esc(cfg.method.train_on)),
                   ("Method settings", params_of(method_cls, dict(cfg.method.params or {})))]
    for entry in cfg.method.extras or []:
        cls = all_extras().get(entry.get("name"))
        method_rows.append((f"Extra: {esc(getattr(cls, 'title', entry.get('name')))}",
                            params_of(cls, dict(entry.get("params") or {}))))

    def domain(name: str, path: str | None) -> str:
        return esc(name) + (f" <span class=muted>({esc(path)})</span>" if path else "")

    summary = rec.summary or {}
    rows = [
        ("Run", f"{esc(rec.name or rec.id)} <span class=muted>id {esc(rec.id)}</span>"),
        ("Status", esc(rec.status) + (f": {esc(rec.error)}" if rec.error else "")),
        ("Created / started / finished", f"{_when(rec.created)} / {_when(rec.started)} / {_when(rec.finished)}"),
        ("Duration", _duration(rec.duration_s if rec.started else None)),
        ("Source (labelled)", domain(d.source, d.source_path)),
        ("Target", domain(d.target, d.target_path)),
        ("Images", f"{d.image_size}×{d.image_size} px; at most {esc(d.max_train) if d.max_train else 'all'} training "
                   f"and {esc(d.max_test) if d.max_test else 'all'} test images per domain"),
        ("Backbone", f"{esc(bb_title)} <span class=muted>({esc(m.backbone)}; "
                     f"{'pretrained: ' + esc(weights) if m.pretrained else 'from scratch'})</span>"),
        ("Frozen stages", esc(frozen)),
        ("Head", esc(m.head) + (f" (hidden {m.head_hidden})" if m.head == "mlp" else "")),
        *method_rows,
        ("Optimisation", esc(f"{o.optimizer}, lr {o.lr:g} (backbone × {o.backbone_lr_mult:g}"
                             f"{f', × {o.lr_decay:g} per stage below the top' if o.lr_decay != 1 else ''}), "
                             f"weight decay {o.weight_decay:g}, batch {o.batch_size}, {o.epochs} epochs"
                             f"{', augmented' if o.augment else ''}")),
        ("Seed / device", esc(f"{cfg.seed} / {summary.get('device', cfg.device)}")),
    ]
    cfg_json = esc(cfg.to_json())
    return _table(rows) + (f"<details><summary>The whole configuration (RunConfig JSON: "
                           f"<code>python -m tl_core run --config FILE</code> runs it again)</summary>"
                           f"<pre>{cfg_json}</pre></details>")


# ------------------------------------------------------------------ numbers
def _numbers(rec: Any, epochs: pd.DataFrame) -> list[tuple[str, str]]:
    """The run's headline numbers, each saying what it uses: label-free, measured with target labels, oracle."""
    s = rec.summary or {}

    def last(col: str) -> Any:
        if col in epochs and not epochs[col].dropna().empty:
            return float(epochs[col].dropna().iloc[-1])
        return None

    labelled = s.get("target_labelled") is not False and "target_test_acc" in epochs
    src = s.get("final_source_val_acc", last("source_val_acc"))
    ent = s.get("final_target_entropy", last("target_entropy"))
    rows = [("Source validation accuracy, last epoch <span class=tag>label-free</span>", _pct(src)),
            ("Target prediction entropy, last epoch (nats; lower: more confident) <span class=tag>label-free</span>",
             _num(ent))]
    chosen = s.get("chosen")
    if isinstance(chosen, dict):
        crit = esc(chosen.get("criterion", "?"))
        rows.append((f"Checkpoint chosen without target labels (criterion {crit}) <span class=tag>label-free</span>",
                     f"epoch {_num(chosen.get('epoch'))}, score {_num(chosen.get('score'))}"))
        if chosen.get("target_test_acc") is not None:
            rows.append((f"Target test accuracy at the chosen epoch <span class=tag>{MEASURED}</span>",
                         _pct(chosen.get("target_test_acc"))))
    if labelled:
        rows.append((f"Target test accuracy, last epoch <span class=tag>{MEASURED}</span>",
                     _pct(s.get("final_target_test_acc", last("target_test_acc")))))
        oracle = s.get("oracle")
        if isinstance(oracle, dict) and oracle.get("target_test_acc") is not None:
            rows.append((f"Best target test accuracy (epoch {_num(oracle.get('epoch'))}) "
                         f"<span class='tag oracle'>{ORACLE}</span>", _pct(oracle.get("target_test_acc"))))
        else:
            best = s.get("best_target_test_acc")
            if best is None and "target_test_acc" in epochs and not epochs["target_test_acc"].dropna().empty:
                best = float(epochs["target_test_acc"].max())
            rows.append((f"Best target test accuracy over epochs <span class='tag oracle'>{ORACLE}</span>",
                         _pct(best)))
    else:
        rows.append(("Target accuracy", esc(NO_TARGET_LABELS)))
    gain = s.get("gain")
    if gain is not None:
        rows.append(("Transfer gain", _gain_text(gain)))
    return rows


def _gain_text(gain: Any, short: bool = False) -> str:
    """summary["gain"] (written by :mod:`tl_core.gain`, which owns its wording) as HTML; a negative one flagged."""
    if isinstance(gain, (int, float)):
        pts = float(gain)
        return f"{pts:+.1f} points" + (" <b class=neg>negative transfer</b>" if pts < 0 else "")
    if not isinstance(gain, dict):
        return esc(gain)
    text = gain.get("text") or (f"{float(gain['points']):+.1f} points" if isinstance(gain.get("points"), (int, float))
                                else gain.get("reason") or "")
    negative = bool(gain.get("negative")) or (isinstance(gain.get("points"), (int, float)) and gain["points"] < 0)
    out = f"<b class=neg>{esc(text)}</b>" if negative else esc(text)
    if not short and isinstance(gain.get("run_acc"), (int, float)) and isinstance(gain.get("baseline_acc"), (int, float)):
        out += (f" <span class=muted>(target accuracy compared: this run {_pct(gain['run_acc'])}, baseline "
                f"{_pct(gain['baseline_acc'])}"
                + (f", run {esc(gain['baseline_run'])}" if gain.get("baseline_run") else "")
                + f")</span> <span class=tag>{MEASURED}</span>")
    return out


# ------------------------------------------------------------------ images
def _target_set(cfg: RunConfig, data_root: str | None) -> Any:
    from tl_core import data

    d = cfg.data
    root = d.data_root
    if data_root is not None and str(d.target).strip().lower() == "folder":
        root = data_root  # the dashboard's data folder, whatever the run's config says
    return data.load_split(d.target, "test", path=d.target_path, data_root=root, allow_download=False,
                           max_samples=d.max_test, seed=cfg.seed)


def _misclassified_html(imgs: Any, extra: dict[str, Any], classes: list[str], epoch: int) -> str:
    from tl_core import data

    picks = [(int(i), int(p)) for i, p in (extra.get("misclassified") or [])[:MISCLASSIFIED_IMAGES]]
    if not picks:
        return f"<p class=muted>No misclassified target test images at epoch {epoch}.</p>"
    if imgs is None:
        return "<p class=muted>The target images could not be read, so the misclassified ones are not shown.</p>"

    def name(c: int) -> str:
        return classes[c] if 0 <= c < len(classes) else str(c)

    cells = []
    for i, p in picks:
        if not 0 <= i < len(imgs.labels):
            continue
        uri = _png_uri(data.thumbnail(imgs, i, size=64))
        cap = f"{esc(name(int(imgs.labels[i])))} → {esc(name(p))}"
        cells.append(f'<figure class=thumb><img src="{uri}" alt="{cap}"><figcaption>{cap}</figcaption></figure>')
    return (f"<p>Target test images the model got wrong at epoch {epoch} (true → predicted; the first "
            f"{len(cells)} in test-set order).</p><div class=gallery>{''.join(cells)}</div>")


def gradcam_images(store: Any, run_id: str, n: int = GRADCAM_IMAGES, imgs: Any = None,
                   data_root: str | None = None) -> dict[str, Any]:
    """Grad-CAM of the first ``n`` target test images with the network export uses (the chosen checkpoint, else
    the last; see tl_core.gradcam).

    Returns ``{"images": uint8 (n, S, S, 3) as the model saw them, "maps": (n, S, S) in [0, 1], "pred": (n,),
    "prob": (n,), "labels": (n,) true classes or -1, "classes": names, "layer": stage name}``.

    Raises:
        tl_core.export.ExportError: no checkpoint or a run still active; tl_core.data.DataError: no target images.
    """
    import torch

    from tl_core.data import ImageSet
    from tl_core.export import load_run
    from tl_core.gradcam import grad_cam, last_conv_stage
    from tl_core.modality import modality_for

    nw = load_run(store, run_id)
    cfg = nw.config
    if imgs is None:
        imgs = _target_set(cfg, data_root)
    n = min(n, len(imgs.labels))
    part = ImageSet(images=np.asarray(imgs.images[:n]), labels=np.asarray(imgs.labels[:n]), classes=nw.classes,
                    name="report")
    pixels = modality_for(cfg).to_device(part, cfg, torch.device("cpu")).float()
    maps, pred, probs = grad_cam(nw.net, pixels)
    layer = nw.net.backbone.info.stage_names[last_conv_stage(nw.net.backbone, int(pixels.shape[-1]))]
    labelled = getattr(imgs, "labelled", True)
    return {"images": pixels.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy(), "maps": maps,
            "pred": pred, "prob": probs[np.arange(len(pred)), pred], "classes": nw.classes, "layer": layer,
            "epoch": nw.meta.get("epoch"),
            "labels": np.asarray(imgs.labels[:n]) if labelled else np.full(n, -1)}


def _gradcam_html(g: dict[str, Any]) -> str:
    from tl_core.gradcam import overlay

    classes = g["classes"]

    def name(c: int) -> str:
        return classes[c] if 0 <= c < len(classes) else str(c)

    cells = []
    for i in range(len(g["maps"])):
        img, cam = g["images"][i], g["maps"][i]
        true = int(g["labels"][i])
        cap = f"predicted {esc(name(int(g['pred'][i])))} ({100 * float(g['prob'][i]):.0f} %)"
        if true >= 0:
            cap += f"; true {esc(name(true))}"
        cells.append(f'<figure class=cam><img src="{_png_uri(img)}" alt="target image {i}">'
                     f'<img src="{_png_uri(overlay(img, cam))}" alt="Grad-CAM of target image {i}">'
                     f"<figcaption>{cap}</figcaption></figure>")
    return (f"<p>Where the network looks for the class it predicts on the first {len(cells)} target test images: "
            f"Grad-CAM (Selvaraju et al., ICCV 2017) on the output of the backbone's last convolutional stage "
            f"(<code>{esc(g['layer'])}</code>), with the weights of epoch {_num(g.get('epoch'))}: the checkpoint "
            f"export and predict use (the epoch chosen without target labels, else the last). Left: the image as "
            f"the model sees "
            f"it ({g['images'].shape[1]}×{g['images'].shape[2]} px); right: red where the evidence for the "
            f"predicted class is strongest, blue where there is none.</p><div class=gallery>{''.join(cells)}</div>")


# ------------------------------------------------------------------ one run
def _class_report_html(extra: dict[str, Any], classes: list[str], epoch: int) -> str:
    rep = classification_report(extra["confusion"], classes)
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    body = []
    for r in report_rows(rep):
        cls = " class=avg" if r["class"] in ("accuracy", "macro average", "weighted average") else ""
        cells = "".join(f"<td>{'' if r[k] is None else f'{r[k]:.1f} %'}</td>" for k in ("precision", "recall", "F1"))
        body.append(f"<tr{cls}><th>{esc(r['class'])}</th>{cells}<td>{r['support']}</td></tr>")
    return (f"<p>Classification report on the target test set, epoch {epoch} <span class=tag>{MEASURED}</span>: "
            f"precision (of the images predicted as a class, the share that are), recall (of a class's images, the "
            f"share found), F1 (their harmonic mean); macro: the mean over classes, weighted: by support.</p>"
            f'<table class="num">{head}{"".join(body)}</table>')


def _run_section(store: Any, rec: Any, figs: _Figures, *, n_gradcam: int, data_root: str | None,
                 color: str, dash: str, note: Callable[[str], None]) -> str:
    cfg = RunConfig.from_dict(rec.config)
    title = rec.name or rec.id
    steps, epochs = store.step_metrics(rec.id), store.epoch_metrics(rec.id)
    out = [f'<section class=run id="run-{esc(rec.id)}"><h2>{esc(title)}</h2>',
           "<h3>What was run</h3>", _what_was_run(rec, cfg, epochs),
           "<h3>Numbers</h3>", _table(_numbers(rec, epochs))]
    series = [charts.Series(esc(title), steps, epochs, color, dash)]
    out.append("<h3>Training curves</h3><div class=grid2>")
    out.append(figs.add(f"{rec.id}-loss", charts.loss_figure(series, revision=f"loss-{rec.id}")))
    out.append(figs.add(f"{rec.id}-accuracy", charts.accuracy_figure(series, revision=f"acc-{rec.id}")))
    out.append("</div>")

    from tl_core.figures import SNAPSHOT_CURVES, feature_figures, run_classes

    classes = run_classes(epochs)
    out.append("<h3>Feature space</h3>")
    projection = str(cfg.snapshot.projection).upper()
    ff = feature_figures(store, rec.id, "domain", projection, [esc(c) for c in classes] if classes else None) \
        if cfg.snapshot.enabled else None
    if ff is None:
        out.append("<p class=muted>" + ("Feature snapshots were off for this run." if not cfg.snapshot.enabled
                                        else "This run has no projected feature snapshot.") + "</p>")
    else:
        anim, before, now, latest = ff
        out.append("<p>Each dot is an image's backbone features projected to 2-D: blue source, orange target, "
                   "marker by class. When adaptation works the colours mix while the classes stay apart. "
                   "Press ▶ or drag the slider to replay training.</p>")
        out.append(figs.add(f"{rec.id}-features", anim))
        if before is not None:
            out.append('<div class=grid2>' + figs.add(f"{rec.id}-features-before", before)
                       + figs.add(f"{rec.id}-features-now", now) + "</div>")
        snaps = store.list_snapshots(rec.id)
        if not snaps.empty:
            from tl_core.embedding import METRIC_HELP

            out.append("<h3>Domain distance over training</h3><div class=grid3>")
            for metric, ctitle, y_title, scale, y_range in SNAPSHOT_CURVES:
                if metric not in snaps or snaps[metric].dropna().empty:
                    continue
                fig = charts.snapshot_metric_figure([(esc(title), snaps, color, dash)], metric, ctitle, y_title,
                                                    scale=scale, y_range=y_range, revision=f"snap-{metric}")
                out.append(f"<div>{figs.add(f'{rec.id}-{metric}', fig)}"
                           f"<p class=caption>{esc(METRIC_HELP.get(metric, ''))}</p></div>")
            out.append("</div>")

    out.append("<h3>Per-class results on the target test set</h3>")
    with_conf = epochs[[isinstance(x, dict) and bool(x.get("confusion")) for x in epochs["extra"]]] \
        if not epochs.empty and "extra" in epochs else epochs.iloc[0:0]
    imgs = None
    need_images = (not with_conf.empty) or n_gradcam > 0
    if need_images:
        try:
            imgs = _target_set(cfg, data_root)
        except Exception as e:  # noqa: BLE001 - data gone or moved: say so, the rest of the report stands
            note(f"{title}: the target images could not be read ({str(e).splitlines()[0][:200]})")
    if with_conf.empty:
        unlabelled = (rec.summary or {}).get("target_labelled") is False or (
            "target_entropy" in epochs and "target_test_acc" not in epochs)
        out.append(f"<p class=muted>{'Per-class results need target labels: ' + NO_TARGET_LABELS + '.' if unlabelled else 'No epoch has finished, so there are no per-class results.'}</p>")
    else:
        row = with_conf.iloc[-1]
        epoch, extra = int(row["epoch"]), row["extra"]
        names = [str(c) for c in extra.get("classes") or range(len(extra["confusion"]))]
        shown = [esc(c) for c in names]
        out.append(f"<p>At the last evaluated epoch ({epoch}) <span class=tag>{MEASURED}</span>.</p><div class=grid2>")
        out.append(figs.add(f"{rec.id}-confusion", charts.confusion_figure(
            extra["confusion"], shown, f"Target confusion matrix, epoch {epoch}", f"confusion-{rec.id}")))
        out.append(figs.add(f"{rec.id}-per-class", charts.per_class_figure(
            extra.get("per_class") or [], shown, f"Target accuracy per class (%), epoch {epoch}",
            f"per-class-{rec.id}")))
        out.append("</div>")
        out.append(_class_report_html(extra, names, epoch))
        out.append("<h3>Misclassified target images</h3>")
        out.append(_misclassified_html(imgs, extra, names, epoch))
    out.append("<h3>What the model looks at (Grad-CAM)</h3>")
    if n_gradcam <= 0:
        out.append("<p class=muted>Grad-CAM was not asked for (--gradcam 0).</p>")
    elif imgs is None:
        out.append("<p class=muted>The target images could not be read, so there is no Grad-CAM.</p>")
    else:
        try:
            out.append(_gradcam_html(gradcam_images(store, rec.id, n_gradcam, imgs=imgs, data_root=data_root)))
        except Exception as e:  # noqa: BLE001 - no checkpoint, a run still active, a backbone without maps
            msg = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            note(f"{title}: no Grad-CAM ({msg})")
            out.append(f"<p class=muted>No Grad-CAM: {esc(msg)}</p>")
    out.append("</section>")
    return "".join(out)


# ------------------------------------------------------------------ the whole report
def _overview(store: Any, recs: list[Any], figs: _Figures, styles: dict[str, tuple[str, str]]) -> str:
    head = ("<tr><th>run</th><th>method</th><th>data</th>"
            f"<th>target acc., last epoch<br><span class=tag>{MEASURED}</span></th>"
            f"<th>best target acc.<br><span class='tag oracle'>{ORACLE}</span></th>"
            f"<th>target acc. at the epoch chosen without labels<br><span class=tag>{MEASURED}</span></th>"
            "<th>source val. acc.<br><span class=tag>label-free</span></th><th>transfer gain</th></tr>")
    body, series = [], []
    for r in recs:
        e = store.epoch_metrics(r.id)
        nums = dict(_numbers(r, e))
        s = r.summary or {}
        final = next((v for k, v in nums.items() if k.startswith("Target test accuracy, last")), esc(NO_TARGET_LABELS))
        best = next((v for k, v in nums.items() if k.startswith("Best target")), "–")
        chosen = s.get("chosen") if isinstance(s.get("chosen"), dict) else {}
        picked = (f"{_pct(chosen['target_test_acc'])} <span class=muted>(epoch {_num(chosen.get('epoch'))}, "
                  f"{esc(chosen.get('criterion', '?'))})</span>" if chosen.get("target_test_acc") is not None else "–")
        d = r.config.get("data", {})
        body.append(f'<tr><th><a href="#run-{esc(r.id)}">{esc(r.name or r.id)}</a>'
                    f"{'' if r.status == 'completed' else f' <span class=muted>({esc(r.status)})</span>'}</th>"
                    f"<td class=t>{esc(method_label(r.config))}</td><td class=t>{esc(d.get('source', '?'))} → "
                    f"{esc(d.get('target', '?'))}</td><td>{final}</td><td>{best}</td><td>{picked}</td>"
                    f"<td>{_pct(s.get('final_source_val_acc'))}</td>"
                    f"<td class=t>{_gain_text(s['gain'], short=True) if s.get('gain') is not None else '–'}</td></tr>")
        series.append(charts.Series(esc(r.name or r.id), store.step_metrics(r.id), e, *styles[r.id]))
    out = [f'<section><h2>Runs compared</h2><table class="num">{head}{"".join(body)}</table><div class=grid2>',
           figs.add("compare-accuracy", charts.compare_accuracy_figure(series)),
           figs.add("compare-loss", charts.compare_loss_figure(series, x="epoch")), "</div>"]
    from tl_core.figures import SNAPSHOT_CURVES

    runs = [(esc(r.name or r.id), store.list_snapshots(r.id), *styles[r.id]) for r in recs]
    if any(not s.empty for _, s, _, _ in runs):
        out.append("<h3>Domain distance over training</h3><div class=grid3>")
        for metric, ctitle, y_title, scale, y_range in SNAPSHOT_CURVES:
            out.append(figs.add(f"compare-{metric}", charts.snapshot_metric_figure(
                runs, metric, ctitle, y_title, scale=scale, y_range=y_range, revision=f"cmp-{metric}")))
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


def _machine() -> list[tuple[str, str]]:
    import plotly

    rows = [("Report built", esc(_when(time.time()))),
            ("Machine", esc(f"{platform.platform()} · {platform.machine()} · {os.cpu_count()} CPUs")),
            ("Python", esc(platform.python_version()))]
    try:
        from tl_core import __version__ as tl_version
    except ImportError:
        tl_version = "?"
    versions = [f"Transfer Lab {tl_version}", f"plotly {plotly.__version__}"]
    if "torch" in sys.modules:
        import torch

        versions.insert(1, f"torch {torch.__version__}")
        if torch.cuda.is_available():
            rows.insert(2, ("GPU", esc(torch.cuda.get_device_name(0))))
    rows.append(("Versions", esc(" · ".join(versions))))
    return rows


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1240px;padding:16px 24px;
color:#1f2328;line-height:1.4}
h1{font-size:28px;margin:8px 0}h2{font-size:24px;border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:36px}
h3{font-size:19px;margin:22px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border-bottom:1px solid #e5e7eb;padding:4px 10px;text-align:left;
vertical-align:top}table.kv th{width:330px;color:#57606a;font-weight:600}table.num td{text-align:right}table.num td.t{text-align:left}table.num tr>th:first-child{min-width:170px}table.num td.t{min-width:110px}
tr.avg th,tr.avg td{background:#f6f8fa;font-weight:600}
.tag{display:inline-block;font-size:12px;font-weight:600;padding:0 6px;border-radius:8px;background:#ddf4ff;color:#0969da}
.tag.oracle{background:#fff1e5;color:#bc4c00}.neg{color:#cf222e}.muted{color:#6e7781}.caption{color:#57606a;font-size:13px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:12px}.grid3{display:grid;grid-template-columns:1fr 1fr 1fr;gap:12px}
.chart{min-width:0}.plot{width:100%}
.gallery{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;text-align:center;font-size:13px}
figure.thumb img{width:80px;height:80px;image-rendering:pixelated;border:1px solid #d0d7de}
figure.cam img{width:112px;height:112px;image-rendering:pixelated;border:1px solid #d0d7de;margin:1px}
figcaption{max-width:230px}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
nav a{margin-right:12px}
@media (max-width:900px){.grid2,.grid3{grid-template-columns:1fr}}
"""

#: Draws every figure from its JSON spec (animation frames added after), once plotly.js has loaded.
DRAW = """
document.querySelectorAll('script[type="application/json"][id$="-spec"]').forEach(function (s) {
  var div = document.getElementById(s.id.slice(0, -5));
  var fig = JSON.parse(s.textContent);
  var layout = fig.layout || {};
  delete layout.height; layout.autosize = true;
  Plotly.newPlot(div, fig.data || [], layout, %s).then(function () {
    if (fig.frames && fig.frames.length) { return Plotly.addFrames(div, fig.frames); }
  });
});
"""


def build(store: Any, run_ids: Sequence[str], *, n_gradcam: int = GRADCAM_IMAGES, data_root: str | None = None,
          progress: Callable[[str], None] = lambda msg: None) -> Report:
    """The report of ``run_ids`` (one, or several compared) as HTML with its figures.

    Raises:
        ReportError: no run ids, or an id the store does not know.
    """
    from plotly.offline import get_plotlyjs

    if not run_ids:
        raise ReportError("name at least one run id (`python -m tl_core list` does not list runs; the Runs page "
                          "and `python -m tl_core run` print them).")
    recs = []
    for rid in dict.fromkeys(run_ids):  # each once, in the order given
        rec = store.get_run(rid)
        if rec is None:
            raise ReportError(f"no run with id '{rid}' in {store.home}; the Runs page lists the runs with their ids.")
        recs.append(rec)
    figs = _Figures()
    notes: list[str] = []
    styles = theme.run_styles(recs)
    title = (f"Transfer Lab report: {recs[0].name or recs[0].id}" if len(recs) == 1
             else f"Transfer Lab report: {len(recs)} runs compared")
    parts = [f"<h1>{esc(title)}</h1>"]
    if len(recs) > 1:
        parts.append("<nav>" + "".join(f'<a href="#run-{esc(r.id)}">{esc(r.name or r.id)}</a>' for r in recs)
                     + "</nav>")
        progress("overview")
        parts.append(_overview(store, recs, figs, styles))
    for i, rec in enumerate(recs, 1):
        progress(f"run {i} of {len(recs)}: {rec.name or rec.id}")
        parts.append(_run_section(store, rec, figs, n_gradcam=n_gradcam, data_root=data_root,
                                  color=styles[rec.id][0] if len(recs) > 1 else theme.TARGET,
                                  dash="solid", note=notes.append))
    parts.append("<section><h2>Machine and versions</h2>" + _table(_machine()) +
                 "<p class=muted>Runs record the device they trained on (under each run's Seed / device); the "
                 "machine and versions above are those that built this report.</p></section>")
    if notes:
        parts.append("<section><h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul></section>")
    page = ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>{''.join(parts)}"
            f"<script>{DRAW % json.dumps(_Figures.CONFIG)}</script></body></html>")
    return Report(html=page, figures=figs.figs, notes=notes)


# ------------------------------------------------------------------ PNG
def browser_path() -> str | None:
    """The Chrome/Chromium kaleido will drive: ``BROWSER_PATH`` when set, else /usr/bin/chromium, else None
    (kaleido then looks for one itself)."""
    given = os.environ.get("BROWSER_PATH")
    if given:
        return given if Path(given).exists() else None
    return DEFAULT_BROWSER if Path(DEFAULT_BROWSER).exists() else None


def write_pngs(figures: dict[str, Any], folder: str | os.PathLike, size: tuple[int, int] = PNG_SIZE,
               timeout_s: float = 120.0) -> list[Path]:
    """Every figure as ``folder/<name>.png``, ``size[0]`` pixels wide (the figure's own height, at most ``size[1]``),
    with kaleido.

    Raises:
        ReportError: kaleido missing, no browser, or the browser did not answer within ``timeout_s``.
    """
    try:
        import kaleido
    except ImportError as e:
        raise ReportError("PNG export needs kaleido (pip install -r requirements.txt).") from e
    path = browser_path()
    if path is None:
        raise ReportError("PNG export needs Chrome or Chromium and none was found (looked at BROWSER_PATH and "
                          f"{DEFAULT_BROWSER}); install chromium (scripts/ensure_chromium.sh) or set BROWSER_PATH. "
                          "The HTML report needs no browser.")
    os.environ["BROWSER_PATH"] = path  # where choreographer (kaleido's browser driver) looks first
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    import re

    import plotly.io as pio

    jobs, paths = [], []
    for name, fig in figures.items():
        p = out / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
        spec = json.loads(pio.to_json(fig, validate=False))
        spec.setdefault("layout", {}).update(width=size[0], height=min(size[1], spec["layout"].get("height") or size[1]))
        spec.pop("frames", None)  # a still of the shown frame: no play button or slider on a slide
        spec["layout"].pop("updatemenus", None)
        spec["layout"].pop("sliders", None)
        jobs.append({"fig": spec, "path": str(p), "opts": {"format": "png", "width": size[0],
                                                         "height": spec["layout"]["height"], "scale": 1}})
        paths.append(p)
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1)
    # mathjax off: kaleido would fetch it from a CDN (no network here, and no figure uses LaTeX)
    future = pool.submit(kaleido.write_fig_from_object_sync, jobs, kopts={"mathjax": False, "timeout": timeout_s})
    try:
        future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError as e:
        raise ReportError(f"the browser ({path}) did not render the figures within {timeout_s:.0f} s; "
                          "the HTML report was written, the PNGs were not.") from e
    except Exception as e:  # noqa: BLE001 - choreographer's errors when the browser cannot start
        raise ReportError(f"the browser ({path}) could not render the figures: "
                          f"{(str(e) or type(e).__name__).splitlines()[0][:300]}") from e
    finally:
        pool.shutdown(wait=False)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ReportError(f"kaleido wrote {len(paths) - len(missing)} of {len(paths)} PNGs (missing {missing[0].name}).")
    return paths


# ------------------------------------------------------------------ command line
def add_flags(p: Any) -> None:
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="one run, or several to compare")
    p.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--png", metavar="DIR", help="also write every figure as a PNG into DIR (kaleido; needs "
                   "Chrome/Chromium: /usr/bin/chromium or BROWSER_PATH)")
    p.add_argument("--gradcam", type=int, default=GRADCAM_IMAGES, metavar="N",
                   help=f"Grad-CAM heat maps on the first N target test images of each run (default "
                        f"{GRADCAM_IMAGES}; 0: none)")
    p.add_argument("--data-root", help="read image-folder targets from this folder (the dashboard passes its own)")


def cli(a: Any) -> int:
    """``python -m tl_core report RUN_ID ... --out FILE [--png DIR]``: progress on stderr, one JSON line."""
    from tl_core.store import RunStore

    t0 = time.perf_counter()
    try:
        rep = build(RunStore(), a.run_ids, n_gradcam=max(0, a.gradcam), data_root=a.data_root,
                    progress=lambda msg: print(f"report: {msg}", file=sys.stderr, flush=True))
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(rep.html, encoding="utf-8")
        os.replace(tmp, out)
        pngs = write_pngs(rep.figures, a.png) if a.png else []
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for n in rep.notes:
        print(f"note: {n}", file=sys.stderr)
    print(json.dumps({"run_ids": list(dict.fromkeys(a.run_ids)), "path": str(out), "bytes": out.stat().st_size,
                      "figures": len(rep.figures), "png": [str(p) for p in pngs], "notes": rep.notes,
                      "seconds": round(time.perf_counter() - t0, 2)}))
    return 0
