"""Target accuracy of source-only, DANN and target-supervised runs over seeds.

    .venv/bin/python -m bench.accuracy --pair mnist-mnist-m --backbone lenet --seeds 0 1 2

Prints a Markdown table (mean ± std over seeds, final checkpoint, never chosen by target
accuracy) and writes the raw numbers as JSON. Each run uses the dashboard's demo defaults
(`tl_core.config.demo_config`) unless flags override them.
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
            image_size: int | None, freeze: int | None) -> dict[str, Any]:
    cfg = demo_config(pair, method, seed=seed)
    cfg.method.train_on = train_on
    cfg.model.backbone = backbone
    if backbone != "lenet":
        from tl_core.backbones import get_info

        cfg.data.image_size = image_size or min(get_info(backbone).input_size, 64)
        cfg.optim.backbone_lr_mult = 0.1
    elif image_size:
        cfg.data.image_size = image_size
    if epochs:
        cfg.optim.epochs = epochs
    if freeze is not None:
        cfg.model.freeze = freeze
    cfg.snapshot.enabled = False
    t0 = time.perf_counter()
    res = trainer.run(cfg, MemoryRecorder())
    return {"pair": pair, "backbone": backbone, "method": method, "train_on": train_on, "seed": seed,
            "target_test_acc": res["target_test_acc"], "source_val_acc": res["source_val_acc"],
            "seconds": time.perf_counter() - t0, "epochs": cfg.optim.epochs, "device": res["device"]}


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| pair | backbone | method | target test acc. (%) mean ± std | seeds | epochs | s per run "
           "| published (DANN paper, %) |",
           "|---|---|---|---|---|---|---|---|"]
    keys: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        label = "DANN" if r["method"] == "dann" else ("target supervised" if r["train_on"] == "target" else "source only")
        keys.setdefault((r["pair"], r["backbone"], label), []).append(r)
    for (pair, backbone, label), rs in keys.items():
        accs = [100 * r["target_test_acc"] for r in rs]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        secs = statistics.mean(r["seconds"] for r in rs)
        pub = PUBLISHED.get((pair, label))
        out.append(f"| {pair} | {backbone} | {label} | {statistics.mean(accs):.2f} ± {sd:.2f} | {len(rs)} "
                   f"| {rs[0]['epochs']} | {secs:.0f} | {'—' if pub is None else f'{pub:.2f}'} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", nargs="+", default=["mnist-mnist-m"])
    ap.add_argument("--backbone", nargs="+", default=["lenet"])
    ap.add_argument("--methods", nargs="+", default=["source only", "DANN"], choices=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--freeze", type=int)
    ap.add_argument("--out", default="bench/out/accuracy.json")
    a = ap.parse_args()
    rows = []
    for pair in a.pair:
        for backbone in a.backbone:
            for label in a.methods:
                method, train_on = METHODS[label]
                for seed in a.seeds:
                    r = one_run(pair, method, train_on, backbone, seed, a.epochs, a.image_size, a.freeze)
                    print(json.dumps(r), flush=True)
                    rows.append(r)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "processor": platform.processor()}
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
