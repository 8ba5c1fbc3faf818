"""Small real runs shared by the engine tests (a few seconds each on 2 CPU cores)."""

import threading

from tl_core.config import RunConfig
from tl_core.recorder import MemoryRecorder


def tiny_config(method: str = "dann", **optim) -> RunConfig:
    cfg = RunConfig(seed=1, device="cpu")
    cfg.data.source, cfg.data.target = "mnist", "mnist-m"
    cfg.data.max_train, cfg.data.max_test = 256, 100
    cfg.method.name = method
    if method == "dann":
        cfg.method.params["disc_hidden"] = 64
    cfg.optim.batch_size = 32
    cfg.optim.epochs = 1
    cfg.snapshot.per_domain = 40
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    return cfg


class StopInEpoch(MemoryRecorder):
    """Records in memory (and checkpoints into ``run_dir``) and sets ``stop`` once steps of ``epoch`` arrive."""

    def __init__(self, run_dir, epoch: int, stop: threading.Event) -> None:
        super().__init__(run_dir)
        self.epoch, self.stop = epoch, stop

    def log_steps(self, rows):
        super().log_steps(rows)
        if any(r["epoch"] == self.epoch for r in rows):
            self.stop.set()
