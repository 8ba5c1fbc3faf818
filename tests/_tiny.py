"""Small real runs shared by the engine tests (a few seconds each on 2 CPU cores)."""

from tl_core.config import RunConfig


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
