"""Speed of the engine, each as a ratio of two sides measured alternately in one process.

- :func:`overhead`: ``tl_core.trainer.run`` against a bare PyTorch loop (same model, data,
  batch size, optimiser, device), images/s of the training loop.
- :func:`frozen_reuse`: epoch time with the frozen stages' outputs cached against
  recomputed (``tl_core.trainer.CACHE_BUDGET_BYTES = 0`` turns the cache off).
- :func:`snapshot_slowdown`: training with feature snapshots on (the projector thread
  turning them into UMAP coordinates beside it) against snapshots off.

Each function returns a JSON-able dict with the raw numbers and their summary.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F

from bench.common import TimingRecorder, alternate, device_sync, summary
from tl_core import backbones as bb
from tl_core import data as tld
from tl_core import trainer
from tl_core.config import RunConfig
from tl_core.recorder import MemoryRecorder


# ----------------------------------------------------------------- configs
def base_config(backbone: str, image_size: int, *, max_train: int | None, epochs: int = 1, device: str = "cpu",
                amp: bool = False, pretrained: bool = False, freeze: int = 0, batch_size: int = 64,
                max_test: int | None = 200, target: str = "mnist-m") -> RunConfig:
    """A finetune run on MNIST (source labels), snapshots off: the trainer's plainest path."""
    cfg = RunConfig(name=f"bench {backbone}")
    cfg.data.source, cfg.data.target = "mnist", target
    cfg.data.image_size = image_size
    cfg.data.max_train, cfg.data.max_test = max_train, max_test
    cfg.model.backbone, cfg.model.pretrained, cfg.model.freeze = backbone, pretrained, freeze
    cfg.method.name, cfg.method.train_on = "finetune", "source"
    cfg.optim.epochs, cfg.optim.batch_size = epochs, batch_size
    cfg.snapshot.enabled = False
    cfg.device, cfg.amp = device, amp
    return cfg


def _amp_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ------------------------------------------------------------ the two sides
def trainer_side(cfg: RunConfig) -> dict[str, Any]:
    """One ``trainer.run``; loop images/s from the recorder's timestamps."""
    rec = TimingRecorder(MemoryRecorder(), sync=device_sync(cfg.device))
    t0 = time.perf_counter()
    res = trainer.run(cfg, rec)
    wall = time.perf_counter() - t0
    loops = rec.epoch_loop_s()
    n_train = _train_images(cfg)  # every epoch goes once through the (possibly capped) training set
    ips = [n_train / s for s in loops]
    step_ips = [r["images_per_s"] for r in rec.inner.steps]
    return {"loop_s": loops, "images_per_s": sum(ips) / len(ips), "setup_s": rec.setup_s(), "wall_s": wall,
            "steps": res["step"], "cached": res.get("cached_frozen_stages"),
            "median_step_images_per_s": sorted(step_ips)[len(step_ips) // 2] if step_ips else None}


_TRAIN_N: dict[tuple, int] = {}


def _train_images(cfg: RunConfig) -> int:
    key = (cfg.data.source, cfg.data.max_train, cfg.seed)
    if key not in _TRAIN_N:
        _TRAIN_N[key] = len(tld.load_split(cfg.data.source, "train", max_samples=cfg.data.max_train,
                                           seed=cfg.seed).labels)
    return _TRAIN_N[key]


class BareLoop:
    """The loop a PyTorch user would write by hand, for the same run.

    Same data (the trainer's loader, resized the same way, normalised once up front as
    float32 on the device: the trainer keeps uint8 and normalises each batch, so this
    baseline is, if anything, a little favoured), same backbone and head built by
    ``tl_core.backbones``, same optimiser (SGD, momentum, Nesterov, weight decay, two
    parameter groups), same batch size, same mixed precision, same device. No lr
    schedule, no metrics, no per-step host sync.
    """

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        info = bb.get_info(cfg.model.backbone)
        imgs = tld.load_split(cfg.data.source, "train", max_samples=cfg.data.max_train, seed=cfg.seed)
        self.x = tld.to_tensor(imgs, cfg.data.image_size, mean=info.mean, std=info.std,
                               scale=info.scale).to(self.device)
        self.y = torch.as_tensor(imgs.labels, dtype=torch.long, device=self.device)
        self.num_classes = len(imgs.classes)

    def __call__(self) -> dict[str, Any]:
        cfg, o, m = self.cfg, self.cfg.optim, self.cfg.model
        torch.manual_seed(cfg.seed)
        backbone = bb.create_backbone(m.backbone, pretrained=m.pretrained)
        bb.freeze_stages(backbone, m.freeze)
        backbone.to(self.device)
        with torch.no_grad():
            feat_dim = backbone.eval()(self.x[:2]).shape[1]
        backbone.train()
        head = bb.make_head(feat_dim, self.num_classes, m.head, m.head_hidden, m.dropout).to(self.device)
        head.train()
        groups = [{"params": [p for p in backbone.parameters() if p.requires_grad], "lr": o.lr * o.backbone_lr_mult},
                  {"params": list(head.parameters()), "lr": o.lr}]
        groups = [g for g in groups if g["params"]]
        opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                              nesterov=o.momentum > 0)
        use_amp = bool(cfg.amp and self.device.type == "cuda")
        dtype = _amp_dtype(self.device) if use_amp else torch.float32
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)
        n = self.x.shape[0]
        steps = math.ceil(n / o.batch_size)
        sync = device_sync(cfg.device)
        loops = []
        for epoch in range(o.epochs):
            if sync:
                sync()
            t0 = time.perf_counter()
            order = torch.randperm(n, device=self.device)
            for i in range(steps):
                idx = order[i * o.batch_size:(i + 1) * o.batch_size]
                with torch.autocast(self.device.type, dtype=dtype, enabled=use_amp):
                    loss = F.cross_entropy(head(backbone(self.x[idx])), self.y[idx])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            if sync:
                sync()
            loops.append(time.perf_counter() - t0)
        ips = [n / s for s in loops]
        return {"loop_s": loops, "images_per_s": sum(ips) / len(ips), "steps": steps * o.epochs}


# ---------------------------------------------------------------- overhead
def warm_up_config(cfg: RunConfig) -> RunConfig:
    """The same run cut to two steps and one epoch: loads data, selects kernels, fills caches."""
    warm = RunConfig.from_dict(cfg.to_dict())
    warm.data.max_train = 2 * cfg.optim.batch_size
    warm.optim.epochs = 1
    return warm


def overhead_case(cfg: RunConfig, pairs: int, label: str, budget_s: float | None = None) -> dict[str, Any]:
    """Trainer vs bare loop, up to ``pairs`` alternating pairs after a short warm-up of each."""
    warm = warm_up_config(cfg)
    trainer_side(warm)
    BareLoop(warm)()
    bare = BareLoop(cfg)
    rows = alternate(pairs, lambda: trainer_side(cfg), bare, budget_s, label)
    ratios = [t["images_per_s"] / b["images_per_s"] for t, b in rows]
    return {
        "case": label, "backbone": cfg.model.backbone, "image_size": cfg.data.image_size,
        "batch_size": cfg.optim.batch_size, "train_images": bare.x.shape[0], "device": cfg.device, "amp": cfg.amp,
        "steps_per_measurement": rows[0][1]["steps"],
        "trainer_images_per_s": summary([t["images_per_s"] for t, _ in rows]),
        "bare_images_per_s": summary([b["images_per_s"] for _, b in rows]),
        "ratio": summary(ratios),
        "trainer_setup_s": summary([t["setup_s"] for t, _ in rows]),
        "trainer_step_images_per_s": summary([t["median_step_images_per_s"] for t, _ in rows]),
        "goal": 0.95,
    }


def overhead(full: bool, device: str = "cpu") -> dict[str, Any]:
    """lenet on 28x28 digits and resnet18 (random init) at 64x64; quick keeps to a time budget."""
    cpu = device == "cpu"
    lenet_n = None if full or not cpu else 2000
    r18_n = (1280 if full else 384) if cpu else 3200
    cases = [overhead_case(base_config("lenet", 28, max_train=lenet_n, device=device), 9 if full else 6,
                           "lenet 28x28", None if full else 60),
             overhead_case(base_config("resnet18", 64, max_train=r18_n, device=device), 7 if full else 4,
                           "resnet18 64x64", None if full else 75)]
    return {"cases": cases}


# ----------------------------------------------------------- frozen reuse
def frozen_case(cfg: RunConfig, pairs: int, label: str, budget_s: float | None = None) -> dict[str, Any]:
    budget = trainer.CACHE_BUDGET_BYTES

    def cached() -> dict[str, Any]:
        trainer.CACHE_BUDGET_BYTES = budget
        return trainer_side(cfg)

    def recomputed() -> dict[str, Any]:
        trainer.CACHE_BUDGET_BYTES = 0
        try:
            return trainer_side(cfg)
        finally:
            trainer.CACHE_BUDGET_BYTES = budget

    warm = warm_up_config(cfg)
    for budget_now in (budget, 0):
        trainer.CACHE_BUDGET_BYTES = budget_now
        trainer_side(warm)
    trainer.CACHE_BUDGET_BYTES = budget
    rows = alternate(pairs, cached, recomputed, budget_s, label)
    epoch_c = [min(c["loop_s"]) for c, _ in rows]
    epoch_r = [min(r["loop_s"]) for _, r in rows]
    setup_extra = [c["setup_s"] - r["setup_s"] for c, r in rows]
    return {
        "case": label, "backbone": cfg.model.backbone, "image_size": cfg.data.image_size,
        "freeze": cfg.model.freeze, "stages": bb.get_info(cfg.model.backbone).stage_names,
        "train_images": _train_images(cfg), "epochs_per_run": cfg.optim.epochs, "device": cfg.device,
        "cache_used": [c["cached"] for c, _ in rows], "cache_used_when_off": [r["cached"] for _, r in rows],
        "epoch_s_cached": summary(epoch_c), "epoch_s_recomputed": summary(epoch_r),
        "speedup": summary([r / c for c, r in zip(epoch_c, epoch_r)]),
        "cache_build_s": summary(setup_extra),
        "first_epoch_speedup": summary([r / (c + max(0.0, e)) for c, r, e in zip(epoch_c, epoch_r, setup_extra)]),
        "goal": 10.0 if cfg.model.freeze == len(bb.get_info(cfg.model.backbone).stage_names) else None,
    }


def frozen_reuse(full: bool, device: str = "cpu") -> dict[str, Any]:
    n_stages = len(bb.get_info("resnet18").stage_names)
    n = (2000 if full else 640) if device == "cpu" else 4000
    pairs = 5 if full else 4
    budget = None if full else 60
    cases = []
    for k, label in ((n_stages, "all stages frozen"), (n_stages // 2, "half frozen")):
        cfg = base_config("resnet18", 64, max_train=n, epochs=2, device=device, freeze=k, max_test=100)
        cases.append(frozen_case(cfg, pairs, f"resnet18 64x64, {label} ({k} of {n_stages})", budget))
    if full:
        e_stages = len(bb.get_info("efficientnet_lite0").stage_names)
        for k, label in ((e_stages, "all stages frozen"), (e_stages // 2, "half frozen")):
            cfg = base_config("efficientnet_lite0", 64, max_train=n, epochs=2, device=device, freeze=k,
                              pretrained=True, max_test=100)
            cases.append(frozen_case(cfg, pairs, f"efficientnet_lite0 64x64, {label} ({k} of {e_stages})",
                                     budget))
    return {"cases": cases}


# ------------------------------------------------------- snapshot slowdown
def snapshot_slowdown(full: bool, device: str = "cpu") -> dict[str, Any]:
    """lenet finetune on MNIST→MNIST-M, StoreRecorder on a scratch store, snapshots on/off.

    "on": ``snapshot.enabled`` with the default sample (500 per domain, every epoch) and a
    :class:`tl_core.projector.SnapshotProjector` (its low-priority worker process) projecting
    each snapshot with UMAP while training goes on; "off": the same run without snapshots. Training time is
    everything after preparation (steps, evaluation, checkpoints, snapshots) until
    ``run`` returns; the projection of the last snapshot, which finishes after training,
    is waited for outside the timing before the next measurement starts.
    """
    from tl_core import embedding
    from tl_core.jobs import SnapshotProjector
    from tl_core.recorder import StoreRecorder
    from tl_core.store import RunStore

    warm_up_s = embedding.warm_up()
    epochs = 10 if full else 5  # the demo's 10 epochs in the full version
    pairs = 5 if full else 3
    home = tempfile.mkdtemp(prefix="tl-bench-snap-")
    store = RunStore(home)
    projector = SnapshotProjector(store)

    def one(enabled: bool, max_train: int | None = None, priority: str = "background") -> dict[str, Any]:
        cfg = base_config("lenet", 28, max_train=max_train, epochs=epochs, device=device, max_test=None)
        cfg.snapshot.enabled = enabled
        cfg.snapshot.priority = priority
        run_id = store.create_run(cfg)
        store.set_status(run_id, "running")
        rec = TimingRecorder(StoreRecorder(store, run_id, on_snapshot=projector.submit), sync=device_sync(device))
        res = trainer.run(cfg, rec)
        t_end = time.perf_counter()
        first = next(t for kind, t, _ in rec.events if kind == "progress")
        during = int(store.list_snapshots(run_id)["projected"].sum()) if enabled else 0
        store.set_status(run_id, "completed")
        t_wait = time.perf_counter()
        projector.wait_idle(timeout=120)
        n_proj = int(store.list_snapshots(run_id)["projected"].sum()) if enabled else 0
        return {"train_s": t_end - first, "loop_s": sum(rec.epoch_loop_s()), "steps": res["step"],
                "snapshots_projected": n_proj, "projected_during_training": during,
                "projection_tail_s": time.perf_counter() - t_wait}

    one(True, 256)  # warm-up: data, kernels, the projectors' first fits
    one(True, 256, "live")
    one(False, 256)
    out: dict[str, Any] = {"backbone": "lenet", "image_size": 28, "epochs": epochs, "per_domain": 500,
                           "device": device, "umap_warm_up_s": warm_up_s, "goal": 0.05, "priorities": {}}
    for priority in ("background", "live"):
        rows = alternate(pairs, lambda: one(True, priority=priority), lambda: one(False), None if full else 100,
                         f"snapshots ({priority})")
        out["priorities"][priority] = {
            "train_s_on": summary([a["train_s"] for a, _ in rows]),
            "train_s_off": summary([b["train_s"] for _, b in rows]),
            "slowdown": summary([a["train_s"] / b["train_s"] - 1 for a, b in rows]),
            "loop_slowdown": summary([a["loop_s"] / b["loop_s"] - 1 for a, b in rows]),
            "snapshots_projected": [a["snapshots_projected"] for a, _ in rows],
            "projected_during_training": [a["projected_during_training"] for a, _ in rows],
            "projection_tail_s": summary([a["projection_tail_s"] for a, _ in rows]),
        }
    projector.close()
    return out


# ----------------------------------------------------------- GPU images/s
def gpu_throughput(full: bool) -> dict[str, Any]:
    """Trainer and bare-loop images/s at 224x224 with mixed precision on the GPU."""
    cases = []
    pairs = 5 if full else 3
    for name, pretrained in (("resnet18", False), ("efficientnet_lite0", True)):
        cfg = base_config(name, 224, max_train=64 * 60, device="cuda", amp=True, pretrained=pretrained,
                          max_test=256)
        cases.append(overhead_case(cfg, pairs, f"{name} 224x224 AMP", None if full else 120))
    return {"device_name": torch.cuda.get_device_name(0), "cases": cases}
