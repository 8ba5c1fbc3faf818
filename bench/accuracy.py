"""Target accuracy of source-only, DANN and target-supervised runs over seeds.

    .venv/bin/python -m bench.accuracy --pair mnist-mnist-m --backbone lenet --seeds 0 1 2

Prints a Markdown table (mean ± std over seeds, final checkpoint, never chosen by target
accuracy) and writes the raw numbers as JSON. With feature snapshots on (the default) each
run also reports the proxy A-distance and MMD² between source and target features before
training and after the last epoch (``tl_core.embedding.domain_metrics`` on the run's fixed
500 + 500 image sample), the numbers behind the Monitor's domain-distance curves. Each run uses the dashboard's demo defaults
(`tl_core.config.demo_config`) unless flags override them.

    .venv/bin/python -m bench.accuracy --from-json bench/out/a.json bench/out/b.json

runs nothing and prints the table of saved rows; a run repeated in a later file replaces the earlier one,
and `--drop DANN:0` leaves out runs made under older defaults.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from tl_core import trainer
from tl_core.config import demo_config
from tl_core.recorder import MemoryRecorder

METHODS = {"source only": ("finetune", "source"), "DANN": ("dann", "source"), "target supervised": ("finetune", "target")}

# Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 17 (2016), Table 2, MNIST → MNIST-M
# (the original MNIST-M built from BSDS500 photos, 60,000 MNIST training digits). No published numbers exist
# for our other pairs (UCI digits and our font-rendered synthetic digits are not the paper's sets).
PUBLISHED = {("mnist-mnist-m", "source only"): 52.25, ("mnist-mnist-m", "DANN"): 76.66,
             ("mnist-mnist-m", "target supervised"): 95.96}


def one_run(pair: str, method: str, train_on: str, backbone: str, seed: int, epochs: int | None,
            image_size: int | None, freeze: int | None, snapshots: bool = True) -> dict[str, Any]:
    cfg = demo_config(pair, method, seed=seed)
    cfg.method.train_on = train_on
    cfg.model.backbone = backbone
    if backbone != "lenet":
        from tl_core.backbones import get_info

        # The weights' own size (224) on the GPU the run will use; 64 px on a CPU, where 224 px takes an
        # hour or more per run.
        native = get_info(backbone).input_size
        on_gpu = trainer.pick_device(cfg.device).type == "cuda"
        cfg.data.image_size = image_size or (native if on_gpu else min(native, 64))
        cfg.optim.backbone_lr_mult = 0.1
    elif image_size:
        cfg.data.image_size = image_size
    if epochs:
        cfg.optim.epochs = epochs
    if freeze is not None:
        cfg.model.freeze = freeze
    cfg.snapshot.enabled = snapshots
    cfg.snapshot.every_epochs = cfg.optim.epochs  # only the first and the last are used here
    t0 = time.perf_counter()
    rec = MemoryRecorder()
    res = trainer.run(cfg, rec)
    row = {"pair": pair, "backbone": backbone, "method": method, "train_on": train_on, "seed": seed,
           "target_test_acc": res["target_test_acc"], "source_val_acc": res["source_val_acc"],
           "seconds": time.perf_counter() - t0, "epochs": cfg.optim.epochs, "device": res["device"],
           "image_size": cfg.data.image_size, "freeze": cfg.model.freeze}
    if snapshots and len(rec.snapshots) >= 2:
        from tl_core.embedding import domain_metrics

        domains = rec.sample["domains"]
        for tag, snap in (("before", rec.snapshots[0]), ("end", rec.snapshots[-1])):
            for name, value in domain_metrics(snap["features"], domains).items():
                row[f"{name}_{tag}"] = value
    return row


def label_of(row: dict[str, Any]) -> str:
    return next(label for label, (method, train_on) in METHODS.items()
                if (method, train_on) == (row["method"], row["train_on"]))


def mean_sd(values: list[float], fmt: str = ".2f") -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} ± {sd:{fmt}}"


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| pair | backbone | method | target test acc. (%) mean ± std | A-distance before → end | MMD² end "
           "| seeds | epochs | s per run | published (DANN paper, %) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    keys: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        keys.setdefault((r["pair"], r["backbone"], label_of(r)), []).append(r)
    for (pair, backbone, label), rs in keys.items():
        accs = [100 * r["target_test_acc"] for r in rs]
        secs = statistics.mean(r["seconds"] for r in rs)
        pub = PUBLISHED.get((pair, label))
        before = mean_sd([r["a_distance_before"] for r in rs if "a_distance_before" in r])
        end = mean_sd([r["a_distance_end"] for r in rs if "a_distance_end" in r])
        mmd = mean_sd([r["mmd_end"] for r in rs if "mmd_end" in r], ".3f")
        out.append(f"| {pair} | {backbone} | {label} | {mean_sd(accs)} | {before} → {end} | {mmd} | {len(rs)} "
                   f"| {rs[0]['epochs']} | {secs:.0f} | {'—' if pub is None else f'{pub:.2f}'} |")
    return "\n".join(out)


def rows_from_json(paths: list[str], drop: set[tuple[str, int]] = frozenset()) -> list[dict[str, Any]]:
    """Rows of earlier runs, files read in the order given; a run repeated later (same pair, backbone,
    method, training domain, seed, epochs, image size and freeze) replaces the earlier one, so a rerun
    under new defaults is passed after the file it supersedes. ``drop`` leaves out (method label, seed)
    runs, e.g. ``{("DANN", 0)}`` for runs made under older defaults and not rerun yet."""
    runs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in paths:
        for i, r in enumerate(json.loads(Path(path).read_text())["rows"]):
            if "image_size" not in r or "freeze" not in r:  # a rerun could not be told apart: say so
                raise ValueError(f"{path}, row {i}: no image_size or freeze recorded; add the settings it ran "
                                 "with, so that a rerun of it replaces it")
            key = (r["pair"], r["backbone"], r["method"], r["train_on"], r["seed"], r["epochs"],
                   r["image_size"], r["freeze"])
            runs[key] = r
    kept = [r for r in runs.values() if (label_of(r), r["seed"]) not in drop]
    return sorted(kept, key=lambda r: (r["pair"], r["backbone"], list(METHODS).index(label_of(r)), r["seed"]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", nargs="+", default=["mnist-mnist-m"])
    ap.add_argument("--backbone", nargs="+", default=["lenet"])
    ap.add_argument("--methods", nargs="+", default=["source only", "DANN"], choices=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--freeze", type=int)
    ap.add_argument("--no-snapshots", action="store_true", help="skip the before/end domain distances")
    ap.add_argument("--out", default="bench/out/accuracy.json")
    ap.add_argument("--from-json", nargs="+", metavar="FILE",
                    help="run nothing: print the table of these files' rows (a later file's rerun of a run wins)")
    ap.add_argument("--drop", nargs="+", default=[], metavar="METHOD:SEED",
                    help="with --from-json: leave out these runs, e.g. 'DANN:0' for a run made under older defaults")
    a = ap.parse_args()
    if a.from_json:
        drop = set()
        for d in a.drop:
            label, _, seed = d.rpartition(":")
            if label not in METHODS or not seed.isdigit():
                ap.error(f"--drop {d!r}: write METHOD:SEED with METHOD one of {', '.join(METHODS)}, e.g. 'DANN:0'")
            drop.add((label, int(seed)))
        try:
            print(table(rows_from_json(a.from_json, drop)))
        except ValueError as e:
            ap.error(str(e))
        return
    rows = []
    for pair in a.pair:
        for backbone in a.backbone:
            for label in a.methods:
                method, train_on = METHODS[label]
                for seed in a.seeds:
                    r = one_run(pair, method, train_on, backbone, seed, a.epochs, a.image_size, a.freeze,
                               snapshots=not a.no_snapshots)
                    print(json.dumps(r), flush=True)
                    rows.append(r)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "processor": platform.processor()}
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
