"""Own data, larger than memory (issue 16, part 5): a generated folder of JPEGs, trained in a fresh process.

    .venv/bin/python -m bench.own_data [--full] [--out bench/out/own_data.json]   # or: python -m bench --only own_data

Two measurements, each training run in its own process (its peak RSS is the run's, not the bench's):

1. **Bounded memory.** A folder of 256×256 JPEGs in 10 classes (quick: 8,000, one epoch on a stratified
   1,000 of them; full: 20,000, the issue's size, all of them) trains one epoch at 224 px with
   ``TL_DATA_MEMORY_GB`` set below what holding its pixels would take, so the run streams
   (tl_core/data/stream.py); the in-memory path would have decoded the whole folder. Reported: the training process's peak RSS, its
   decoding workers' largest peak RSS, and what holding the images at 224 px would need (pixels × the
   copies a run holds). Backbone: MobileNetV3-Small from scratch (the cheapest 224-px backbone here).
2. **Streaming speed.** On a folder that fits (quick: 1,000 images; full: 4,000), LeNet at 64 px, runs of
   ``SPEED_EPOCHS`` epochs in memory and streamed, alternating (A B, B A, …): training images/s of each
   (from the loop's step rows, after the first step) and their ratio; also the ratio of the whole runs'
   wall times (in-memory ÷ streamed, so that above 1 means the streamed run was quicker), which includes
   what each does before its first step (both decode every image: into memory, or into a file on disk).

Nothing asserts: the numbers go to the JSON and to BENCHMARKS.md's section "Own data".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10
#: Epochs of each streaming-speed run (a streamed run decodes every image into a file on disk before its first step
#: and reads the pixels back from there every epoch, tl_core/data/stream.py).
SPEED_EPOCHS = 3


def _write_class(args: tuple[str, int, int, int]) -> None:
    from PIL import Image

    folder, cls, n, side = args
    rng = np.random.default_rng(cls)
    os.makedirs(folder, exist_ok=True)
    yy, xx = np.mgrid[:side, :side]
    for i in range(n):
        base = rng.integers(0, 90, 3)
        img = np.clip(base + rng.normal(0, 25, (side, side, 3)), 0, 255)
        cx, cy = rng.uniform(0.3, 0.7, 2) * side
        r = side * (0.12 + 0.02 * cls)
        mask = (np.abs(xx - cx) ** (1 + cls % 3) + np.abs(yy - cy) ** (1 + cls % 3)) < r ** (1 + cls % 3)
        img[mask] = (np.array([40 + 20 * cls, 220 - 15 * cls, 128 + (-1) ** cls * 60]) + rng.normal(0, 10, 3))
        Image.fromarray(img.astype(np.uint8)).save(f"{folder}/{i:05d}.jpg", quality=90)


def make_folder(root: Path, n: int, side: int = 256) -> Path:
    """``n`` JPEGs of ``side``×``side`` px in 10 class folders (a learnable shape and colour per class)."""
    per = n // CLASSES
    with ProcessPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        list(pool.map(_write_class, [(str(root / f"class{c}"), c, per, side) for c in range(CLASSES)]))
    return root


def train_once(folder: str, size: int, backbone: str, batch: int, budget_gb: float | None,
               max_train: int | None = None, max_test: int | None = None, epochs: int = 1) -> dict[str, Any]:
    """``epochs`` epochs (source only) on ``folder``, in this process; what it took."""
    if budget_gb is not None:
        os.environ["TL_DATA_MEMORY_GB"] = str(budget_gb)
    import torch

    from tl_core import trainer
    from tl_core.config import RunConfig
    from tl_core.recorder import MemoryRecorder

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = RunConfig(seed=0, device="auto")
    cfg.data.source = cfg.data.target = "folder"
    cfg.data.source_path = cfg.data.target_path = folder
    cfg.data.image_size = size
    cfg.model.backbone, cfg.model.pretrained = backbone, False
    cfg.method.name = "finetune"
    cfg.optim.batch_size, cfg.optim.epochs = batch, epochs
    cfg.data.max_train, cfg.data.max_test = max_train, max_test
    cfg.snapshot.enabled = False
    rec = MemoryRecorder()
    t0 = time.perf_counter()
    out = trainer.run(cfg, rec)
    wall = time.perf_counter() - t0

    def speed(rows: list[dict[str, Any]]) -> float | None:  # from the loop's own rows, after the first step
        rates = [r["images_per_s"] for r in rows[1:]] or [r["images_per_s"] for r in rows]
        steps_s = sum(batch / r for r in rates)
        return round(len(rates) * batch / steps_s, 1) if steps_s else None

    return {"streamed": any(p and p.startswith("streaming") for p in rec.phases), "wall_s": round(wall, 1),
            "images_per_s": speed(rec.steps), "epochs": epochs,
            "images_per_s_by_epoch": [speed([r for r in rec.steps if r["epoch"] == e]) for e in range(1, epochs + 1)],
            "steps": len(rec.steps), "source_val_acc": out.get("source_val_acc"),
            "target_test_acc": out.get("target_test_acc"),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "workers_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "device": out.get("device")}


def _in_process(folder: Path, size: int, backbone: str, batch: int, budget_gb: float | None,
                timeout: float, max_train: int | None = None, max_test: int | None = None,
                epochs: int = 1) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.own_data", "--train", str(folder), "--size", str(size), "--backbone",
           backbone, "--batch", str(batch)] + (["--budget-gb", str(budget_gb)] if budget_gb is not None else []) \
        + (["--max-train", str(max_train)] if max_train else []) + (["--max-test", str(max_test)] if max_test else []) \
        + ["--epochs", str(epochs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TL_DATA_MEMORY_GB", None)
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        return {"error": " / ".join(p.stderr.strip().splitlines()[-3:])[-600:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(full: bool) -> dict[str, Any]:
    # quick: the folder is listed whole (the in-memory path would decode all of it) but one epoch trains on a
    # stratified 1,000 of its training images (a CPU trains MobileNet at 224 px at about 10 images/s)
    n_big, max_train, max_test, n_small, pairs = (20_000, None, None, 4_000, 3) if full else (8_000, 1_000, 200,
                                                                                              1_000, 2)
    res: dict[str, Any] = {"quick": not full}
    with tempfile.TemporaryDirectory(prefix="tl-own-data-") as tmp:
        t0 = time.perf_counter()
        big = make_folder(Path(tmp) / "big", n_big)
        res["generate_s"] = round(time.perf_counter() - t0, 1)
        hold_gb = n_big * 224 * 224 * 3 / 1024**3
        from tl_core.data.folder import COPIES

        budget = round(min(1.0, hold_gb * COPIES / 2), 3)  # below what holding the pixels takes: the run streams
        mem = _in_process(big, 224, "mobilenet_v3_small", 32, budget, timeout=7200 if full else 900,
                          max_train=max_train, max_test=max_test)
        res["memory"] = {"images": n_big, "max_train": max_train, "max_test": max_test, "side": 256, "size": 224,
                         "backbone": "mobilenet_v3_small", "batch": 32,
                         "budget_gb": budget, "pixels_gb": round(hold_gb, 2), "copies": COPIES,
                         "in_memory_would_need_gb": round(hold_gb * COPIES, 2), **mem}
        small = make_folder(Path(tmp) / "small", n_small)
        speed: dict[str, list[float]] = {"in_memory": [], "streamed": []}
        walls: dict[str, list[float]] = {"in_memory": [], "streamed": []}
        by_epoch: dict[str, list[list[float]]] = {"in_memory": [], "streamed": []}
        runs = []
        for i in range(pairs):
            for side in (("in_memory", "streamed") if i % 2 == 0 else ("streamed", "in_memory")):
                r = _in_process(small, 64, "lenet", 64, 0.00001 if side == "streamed" else None, timeout=900,
                                epochs=SPEED_EPOCHS)
                runs.append({"side": side, **r})
                if r.get("images_per_s"):
                    speed[side].append(r["images_per_s"])
                    by_epoch[side].append(r["images_per_s_by_epoch"])
                    walls[side].append(r["wall_s"])

        def ratio(s: list[float], m: list[float]) -> dict[str, Any] | None:
            rs = [a / b for a, b in zip(s, m) if a and b]
            return {"median": statistics.median(rs), "min": min(rs), "max": max(rs), "n": len(rs)} if rs else None

        res["speed"] = {"images": n_small, "size": 64, "backbone": "lenet", "epochs": SPEED_EPOCHS, "runs": runs,
                        "in_memory_images_per_s": speed["in_memory"], "streamed_images_per_s": speed["streamed"],
                        "ratio": ratio(speed["streamed"], speed["in_memory"]),
                        "in_memory_wall_s": walls["in_memory"], "streamed_wall_s": walls["streamed"],
                        "wall_ratio": ratio(walls["in_memory"], walls["streamed"]),
                        "ratio_by_epoch": [ratio([e[k] for e in by_epoch["streamed"]],
                                                 [e[k] for e in by_epoch["in_memory"]]) for k in range(SPEED_EPOCHS)]}
    res["section_s"] = round(time.perf_counter() - t0, 1)
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.own_data")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "own_data.json"))
    ap.add_argument("--train", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=224, help=argparse.SUPPRESS)
    ap.add_argument("--backbone", default="lenet", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--budget-gb", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--max-train", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--max-test", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.train:
        print(json.dumps(train_once(a.train, a.size, a.backbone, a.batch, a.budget_gb, a.max_train, a.max_test, a.epochs)))
        return
    res = run(a.full)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
