"""Command line: the same runs as the dashboard, without it.

    python -m tl_core run --preset mnist-mnist-m --method dann --backbone lenet --epochs 10
    python -m tl_core list
    python -m tl_core lr-find --preset mnist-mnist-m --method dann --backbone lenet --steps 200
    python -m tl_core export RUN_ID --format bundle|torchscript|onnx [--out PATH]
    python -m tl_core predict --run RUN_ID PATH [PATH...] [--out preds.csv]
    python -m tl_core sweep --set optim.lr=0.01,0.03 --set method.name=finetune,dann --seeds 0 1 [--sampler grid]
    python -m tl_core sweep-worker --storage URL --study NAME
    python -m tl_core report RUN_ID [RUN_ID...] --out report.html [--png DIR]

Exit status of ``run``: 0 when the run completed or was stopped (Ctrl-C), 1 when it failed
or diverged while training, 2 when it could not start because of its input (settings, data
folders, weights, device, checkpoint); the message is on stderr, prefixed by ``error:``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import signal
import sys
import threading
from typing import Any, Sequence

from tl_core.config import RunConfig


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tl_core", description="Transfer Lab from the command line.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="backbones (with offline weight availability), data sets, presets, methods")
    r = sub.add_parser("run", help="train one run; prints a progress bar, then one JSON line of final metrics")
    config_flags(r)
    r.add_argument("--resume", metavar="RUN_ID", help="continue a stopped/interrupted run from its last checkpoint")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--baseline", action="store_true", help="train the run's baseline first (source only for an "
                   "adaptation method, from scratch for a fine-tune of pretrained weights; tl_core/gain.py) unless "
                   "a finished one with the same settings is stored; the JSON line then carries the gain")
    f = sub.add_parser("lr-find", help="learning-rate range test on a run's settings (nothing is stored as a "
                       "run); prints a summary, then one JSON line with the suggested lr and the curve")
    from tl_core.lr_find import add_flags

    add_flags(f)  # first: a method setting of the same name then gets its --<method>-<name> flag
    config_flags(f)
    from tl_core import export, predict

    export.add_flags(sub.add_parser("export", help="a finished run's model as a bundle (safetensors, classes, "
                                    "preprocessing, config), TorchScript or ONNX; prints the written path"))
    predict.add_flags(sub.add_parser("predict", help="top-3 classes of image files with a finished run's "
                                     "model, as CSV (path, top1, p1, top2, p2, top3, p3, error)"))
    from tl_core import report

    report.add_flags(sub.add_parser("report", help="one self-contained HTML report of a run, or of several "
                                    "compared (opens with no network); --png DIR also writes its figures as PNG"))
    from tl_core import sweep_cli

    sweep_cli.add_flags(sub.add_parser("sweep", help="grid, random or TPE search over any settings and seeds "
                                       "(Optuna); prints the table grouped by setting, then one JSON line"), config_flags)
    sweep_cli.add_worker_flags(sub.add_parser("sweep-worker", help="work on an existing sweep (resume it, or "
                                              "share it between processes and machines with --storage URL)"))
    return ap


def config_flags(r: argparse.ArgumentParser) -> None:
    """The flags that describe a run's settings (read by :func:`build_config`): ``run`` and ``lr-find``."""
    r.add_argument("--config", help="a RunConfig JSON file; flags below override it")
    r.add_argument("--preset", help="domain pair, e.g. mnist-mnist-m")
    r.add_argument("--source"), r.add_argument("--target")
    r.add_argument("--source-path"), r.add_argument("--target-path"), r.add_argument("--data-root")
    _method_flags(r)
    r.add_argument("--backbone"), r.add_argument("--freeze", type=int)
    r.add_argument("--no-pretrained", action="store_true")
    r.add_argument("--head", choices=["linear", "mlp"])
    r.add_argument("--epochs", type=int), r.add_argument("--batch-size", type=int)
    r.add_argument("--lr", type=float), r.add_argument("--backbone-lr-mult", type=float)
    r.add_argument("--lr-decay", type=float, help="discriminative learning rates: each backbone stage below the "
                   "top trains at the rate of the one above × this (default 1: all the same; ULMFiT: 0.38)")
    r.add_argument("--weight-decay", type=float), r.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    r.add_argument("--image-size", type=int), r.add_argument("--max-train", type=int)
    r.add_argument("--labels-per-class", type=int, metavar="K", help="train on K labelled images of each class "
                   "(a random subset of the labelled training split, drawn with --seed; default: all)")
    r.add_argument("--seed", type=int), r.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    r.add_argument("--no-amp", action="store_true"), r.add_argument("--no-snapshots", action="store_true")
    r.add_argument("--augment", action="store_true", help="augment training images, each image its own draw "
                   "(default: random resized crop of 80-100 %% of the area; flips except for digits)")
    r.add_argument("--augment-crop", type=float, metavar="SHARE", help="random resized crop: smallest share of the "
                   "area kept (1: no crop; default 0.8); implies --augment")
    r.add_argument("--augment-flip", choices=["auto", "on", "off"], help="horizontal flips (auto: off for digits); "
                   "implies --augment")
    r.add_argument("--augment-jitter", type=float, metavar="STRENGTH", help="colour jitter strength 0-1 "
                   "(brightness, contrast, saturation; hue a quarter of it); implies --augment")
    r.add_argument("--augment-trivial", action="store_true", help="TrivialAugment: one random operation per "
                   "image; implies --augment")
    r.add_argument("--allow-download", action="store_true", help="let data sets and weights download")
    from tl_core.selection import CRITERIA, DEFAULT_CRITERION

    r.add_argument("--criterion", choices=list(CRITERIA), help="label-free score that chooses the checkpoint "
                   f"export and predict use (default {DEFAULT_CRITERION}): " + "; ".join(
                       f"{n}: {c.meaning} ({'higher' if c.higher_is_better else 'lower'} is better)"
                       for n, c in CRITERIA.items()))
    r.add_argument("--patience", type=int, metavar="EPOCHS", help="early stopping: end the run when the criterion "
                   "has not improved for this many epochs (default 0: off)")
    r.add_argument("--name", default="")


def _method_flags(r: argparse.ArgumentParser) -> None:
    """--method, --train-on, --extra and one flag per method or extra parameter, all from the registry."""
    from tl_core.methods import DOMAINS, all_extras, all_methods, param_specs

    methods, extras = all_methods(), all_extras()
    r.add_argument("--method", choices=list(methods),
                   help="; ".join(f"{n}: {c.description}" for n, c in methods.items()))
    r.add_argument("--train-on", choices=list(DOMAINS), help="whose labels to train on: " + "; ".join(
        f"{n}: {', '.join(c.trains_on)}" for n, c in methods.items()))
    r.add_argument("--extra", action="append", choices=list(extras) or None, metavar="EXTRA",
                   help="add a regulariser or fine-tuning schedule to any method (repeat for several): "
                   + ("; ".join(f"{n}: {c.description}" for n, c in extras.items()) or "none registered"))
    g = r.add_argument_group("method settings (each applies to the methods and extras named in its help)")
    seen: dict[str, list[str]] = {}
    specs: dict[str, object] = {}
    defaults: dict[str, dict[str, object]] = {}
    for name, cls in {**methods, **extras}.items():
        for spec in param_specs(cls.Params):
            seen.setdefault(spec.name, []).append(name)
            specs.setdefault(spec.name, spec)
            defaults.setdefault(spec.name, {})[name] = spec.default
    for pname, owners in seen.items():
        spec = specs[pname]
        kw: dict[str, object] = {"dest": f"mp_{pname}", "default": None}
        if spec.choices:
            kw["choices"] = list(spec.choices)
        else:
            kw["metavar"] = pname.upper()
            if spec.type is bool:
                kw["type"] = lambda v: v.lower() in ("1", "true", "yes", "on")
            elif spec.type in (int, float):
                kw["type"] = spec.type
        flag = f"--{pname.replace('_', '-')}"
        if flag in r._option_string_actions:  # a run flag already has this name: spell out whose setting it is
            flag = f"--{owners[0]}-{pname.replace('_', '-')}"
        own = defaults[pname]
        default = (f"default {spec.default}" if len(set(map(repr, own.values()))) == 1
                   else "defaults: " + ", ".join(f"{n} {v}" for n, v in own.items()))
        g.add_argument(flag, help=f"{', '.join(owners)}: {spec.label}. {spec.help} ({default})", **kw)


def _apply_setting_flags(a: argparse.Namespace, cfg: RunConfig) -> None:
    """Put each setting given as a flag into the chosen method's params and those of its extras that
    have it; a setting none of them has is refused."""
    from tl_core.methods import all_extras, all_methods, param_specs

    given = {k[3:]: v for k, v in vars(a).items() if k.startswith("mp_") and v is not None}
    if not given:
        return
    cfg.method.params = dict(cfg.method.params)
    targets = [(all_methods().get(cfg.method.name), cfg.method.params)]
    for entry in cfg.method.extras:
        entry["params"] = dict(entry.get("params") or {})
        targets.append((all_extras().get(entry["name"]), entry["params"]))
    taken = set()
    for cls, params in targets:
        for spec in param_specs(cls.Params) if cls is not None else []:
            if spec.name in given:
                params[spec.name] = given[spec.name]
                taken.add(spec.name)
    foreign = sorted(set(given) - taken)
    if foreign:
        whose = cfg.method.name + (" and its extras" if cfg.method.extras else "")
        raise InputError(f"method {whose} has no setting {', '.join('--' + f.replace('_', '-') for f in foreign)}")


class InputError(Exception):
    """The command line's input cannot make a run (exit status 2)."""


def build_config(a: argparse.Namespace) -> RunConfig:
    """Turn parsed flags into a RunConfig (a preset first, then explicit flags).

    Raises:
        InputError: an unreadable --config file or an unknown preset.
    """
    cfg = RunConfig()
    if a.config:
        try:
            with open(a.config, encoding="utf-8") as f:
                cfg = RunConfig.from_json(f.read())
        except (OSError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise InputError(f"cannot read the config file {a.config}: {e}") from e
    if a.preset:
        from tl_core.data import PRESETS

        if a.preset not in PRESETS:
            raise InputError(f"unknown preset '{a.preset}'; known: {', '.join(PRESETS)}")
        cfg.data.source, cfg.data.target = PRESETS[a.preset].source, PRESETS[a.preset].target
    sets: list[tuple[Any, str, Any]] = [
        (cfg.data, "source", a.source), (cfg.data, "target", a.target), (cfg.data, "source_path", a.source_path),
        (cfg.data, "target_path", a.target_path), (cfg.data, "data_root", a.data_root),
        (cfg.data, "image_size", a.image_size), (cfg.data, "max_train", a.max_train),
        (cfg.data, "labels_per_class", a.labels_per_class),
        (cfg.method, "train_on", a.train_on),
        (cfg.model, "backbone", a.backbone), (cfg.model, "freeze", a.freeze), (cfg.model, "head", a.head),
        (cfg.optim, "epochs", a.epochs), (cfg.optim, "batch_size", a.batch_size), (cfg.optim, "lr", a.lr),
        (cfg.optim, "backbone_lr_mult", a.backbone_lr_mult), (cfg.optim, "lr_decay", a.lr_decay),
        (cfg.optim, "weight_decay", a.weight_decay),
        (cfg.optim, "optimizer", a.optimizer), (cfg, "seed", a.seed), (cfg, "device", a.device),
        (cfg.selection, "criterion", a.criterion), (cfg.selection, "patience", a.patience),
    ]
    if a.method is not None and a.method != cfg.method.name:
        cfg.method.name, cfg.method.params = a.method, {}
    for obj, attr, value in sets:
        if value is not None:
            setattr(obj, attr, value)
    for name in a.extra or []:
        if name not in [e.get("name") for e in cfg.method.extras]:
            cfg.method.extras = [*cfg.method.extras, {"name": name, "params": {}}]
    _apply_setting_flags(a, cfg)
    if a.backbone and a.image_size is None:
        from tl_core.backbones import default_image_size

        try:
            cfg.data.image_size = default_image_size(a.backbone)
        except KeyError:
            pass
    if a.no_pretrained:
        cfg.model.pretrained = False
    if a.no_amp:
        cfg.amp = False
    if a.no_snapshots:
        cfg.snapshot.enabled = False
    for attr, value in (("augment_crop", a.augment_crop), ("augment_flip", a.augment_flip),
                        ("augment_jitter", a.augment_jitter), ("augment_trivial", a.augment_trivial or None)):
        if value is not None:
            setattr(cfg.optim, attr, value)
            cfg.optim.augment = True
    if a.augment:
        cfg.optim.augment = True
    if a.allow_download:
        cfg.data.allow_download = True
    if a.name:
        cfg.name = a.name
    return cfg


def cmd_list() -> int:
    from tl_core import backbones, data
    from tl_core.methods import list_methods

    print("Backbones:")
    for info in backbones.list_backbones():
        ok, why = backbones.weights_available(info.name)
        print(f"  {info.name:20s} {info.params / 1e6:6.2f} M params  features {info.feature_dim:5d}  "
              f"stages {len(info.stage_names)}  weights: {'available' if ok else 'NOT available offline'} ({why})")
    print("Data sets:")
    for d in data.list_datasets():
        print(f"  {d.name:12s} {'offline' if d.offline else 'needs download or local files':30s} {d.description}")
    print("Presets:")
    for key, p in data.PRESETS.items():
        print(f"  {key:20s} {p.title}")
    print("Methods:")
    for name, desc in list_methods().items():
        print(f"  {name:10s} {desc}")
    return 0


class _ProgressRecorder:
    """Wraps a StoreRecorder and drives a tqdm bar on stderr."""

    def __init__(self, inner: Any, quiet: bool) -> None:
        self.inner, self.quiet, self.bar = inner, quiet, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def progress(self, **kw: Any) -> None:
        self.inner.progress(**kw)
        if self.quiet:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=kw["total_steps"], unit="step", file=sys.stderr, dynamic_ncols=True)
        self.bar.n = kw["step"]
        post = {"epoch": kw["epoch"]}
        if kw.get("images_per_s"):
            post["img/s"] = f"{kw['images_per_s']:.0f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def warn(self, message: str) -> None:
        self.inner.warn(message)
        print(f"warning: {message}", file=sys.stderr)

    def phase(self, text: str | None) -> None:
        """What the run does besides steps (scanning, decoding or streaming a folder: images done of total),
        on one line of stderr that each report overwrites, before the step bar starts."""
        self.inner.phase(text)
        if self.quiet or self.bar is not None:
            return
        if text:
            print(f"\r\033[K{text[:200]}", end="", file=sys.stderr, flush=True)
        else:
            print(file=sys.stderr)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], extra: dict[str, Any]) -> None:
        self.inner.log_epoch(epoch, step, metrics, extra)
        if self.bar is not None:
            self.bar.write(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                           + ("" if "target_test_acc" in metrics else f"  {NO_TARGET_LABELS}"),
                           file=sys.stderr)  # stdout carries only the final JSON line


#: What the command line says instead of a target accuracy when the target folder has no class folders.
NO_TARGET_LABELS = "target accuracy: not available (no labels)"


def _error(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_run(a: argparse.Namespace) -> int:
    from tl_core.preflight import check
    from tl_core.store import RunStore

    store = RunStore()
    store.mark_interrupted()  # runs of processes that are gone; live ones are left alone
    resume = None
    if a.resume:
        from tl_core.checkpoint import prepare_resume

        try:
            cfg, resume = prepare_resume(store, a.resume)
        except (KeyError, ValueError) as e:
            return _error(str(e.args[0] if e.args else e))
        run_id = a.resume
    else:
        try:
            cfg = build_config(a)
        except InputError as e:
            return _error(str(e))
        problems = check(cfg)
        if problems:
            return _error("the run cannot start:\n  " + "\n  ".join(problems))
        if getattr(a, "baseline", False):
            code = _run_baseline(store, cfg, a.quiet)
            if code:
                return code
        run_id = store.create_run(cfg, owner="cli")
        store.claim(run_id)
    from tl_core.execute import execute_run
    from tl_core.projector import SnapshotProjector

    projector = SnapshotProjector(store) if cfg.snapshot.enabled else None
    bars: list[_ProgressRecorder] = []

    def wrap(inner: Any) -> _ProgressRecorder:
        bars.append(_ProgressRecorder(inner, a.quiet))
        return bars[0]

    stop = threading.Event()
    # The command line says how a run failed itself (the "error:" line below): the log's warning of the
    # same failure would print it twice. Errors of the store itself still reach stderr.
    logging.getLogger("tl_core.execute").setLevel(logging.ERROR)
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C stops cleanly after this step
    store.set_status(run_id, "running")
    try:
        outcome = execute_run(store, run_id, cfg, stop, resume, projector.submit if projector else None, wrap=wrap,
                              before_finish=(lambda: projector.wait_idle(timeout=120)) if projector else None)
    finally:
        signal.signal(signal.SIGINT, previous)
        store.release(run_id)
        if bars and bars[0].bar is not None:
            bars[0].bar.close()
    if outcome.result is None:
        print(f"error: {outcome.message}" + (f"\nhint: {outcome.hint}" if outcome.hint else ""), file=sys.stderr)
        print(json.dumps({"run_id": run_id, "status": outcome.status, "error": outcome.message}))
        # 2: the input could not make a run (settings, data, weights, checkpoint); 1: the run failed.
        return 2 if outcome.input_error else 1
    if outcome.result.get("target_labelled") is False:
        print(f"{NO_TARGET_LABELS}; source validation accuracy {outcome.result.get('source_val_acc', float('nan')):.4f}, "
              f"target prediction entropy {outcome.result.get('target_entropy', float('nan')):.4f}", file=sys.stderr)
    from tl_core import gain

    rec = store.get_run(run_id)
    g = gain.gain_for(store, rec) if rec is not None else None
    if g is not None and g.against is not None:
        print(g.text(), file=sys.stderr)
        outcome.result["gain"] = g.to_dict()
    print(json.dumps({"run_id": run_id, **outcome.result}))
    return 0


def _run_baseline(store: Any, cfg: RunConfig, quiet: bool) -> int:
    """Train ``cfg``'s baseline (tl_core/gain.py) unless a finished or queued one is stored; its JSON line goes
    to stderr, so stdout's last line stays the run's. Returns 0, or the baseline's failing exit status."""
    import contextlib
    import os
    import tempfile

    from tl_core import gain

    base = gain.baseline_to_queue(store, cfg)
    if base is None:
        kind = gain.baseline_kind(cfg)
        print(f"baseline ({kind}): already stored" if kind else "this run is a baseline itself (no gain to "
              "compute)", file=sys.stderr)
        return 0
    print(f"training the baseline first: {base.name}", file=sys.stderr)
    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(base.to_json())
        with contextlib.redirect_stdout(sys.stderr):
            code = cmd_run(_parser().parse_args(["run", "--config", path] + (["--quiet"] if quiet else [])))
    finally:
        os.unlink(path)
    return code


def cmd_lr_find(a: argparse.Namespace) -> int:
    """The learning-rate range test on the settings the flags describe (tl_core/lr_find.py); no run is made."""
    from tl_core import lr_find

    try:
        cfg = build_config(a)
    except InputError as e:
        return lr_find.fail(a, str(e))
    return lr_find.cli(cfg, a)


def main(argv: Sequence[str] | None = None) -> int:
    from tl_core.store import StoreError

    a = _parser().parse_args(argv)
    try:
        if a.cmd == "list":
            return cmd_list()
        if a.cmd == "lr-find":
            return cmd_lr_find(a)
        if a.cmd in ("sweep", "sweep-worker"):
            from tl_core import sweep_cli

            return sweep_cli.cli(a, build_config, InputError)
        if a.cmd in ("export", "predict"):
            from tl_core import export, predict

            return (export if a.cmd == "export" else predict).cli(a)
        if a.cmd == "report":
            from tl_core import report

            return report.cli(a)
        return cmd_run(a)
    except StoreError as e:  # a damaged runs.db or an unwritable TL_HOME: what to do, not a traceback
        return _error(str(e))
    except (OSError, sqlite3.OperationalError) as e:
        from tl_core.failures import is_disk_full

        if not is_disk_full(e):
            raise
        import shutil

        from tl_core.store import default_home

        free = shutil.disk_usage(default_home()).free / 2**20 if default_home().exists() else 0.0
        return _error(f"disk full: {e} ({free:.0f} MB free under TL_HOME {default_home()}). Free some space, "
                      "then run again (a run that had started resumes with --resume RUN_ID).")


if __name__ == "__main__":
    sys.exit(main())
