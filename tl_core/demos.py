"""The one-click demos on Home: which runs each one queues (the only list of them).

A pair demo queues source only and DANN on one preset; the comparison demo queues several
methods on MNIST → MNIST-M with the same demo settings (``config.demo_config``: LeNet, 10
epochs, seed 0), so the Monitor compares them side by side. The "What is pretraining worth?" demo is a
chain (a pretraining run whose saved backbone the other runs use), so its plan lives in
``tl_core/pretraining.py``. Torch-free (Home imports it).
"""

from __future__ import annotations

from dataclasses import dataclass

from tl_core.config import RunConfig, demo_config
from tl_core.methods import all_methods


@dataclass(frozen=True)
class Demo:
    key: str
    title: str
    preset: str
    methods: tuple[str, ...]  # method choice keys (config.method_key), in queue order
    description: str = ""


#: The pair demo each preset card starts: the baseline, then DANN.
PAIR_METHODS = ("finetune", "dann")
#: Presets whose card compares other methods: where re-weighting should help, source only vs KMM vs KLIEP.
PAIR_METHODS_FOR = {"mnist-mix-mnist-m": ("finetune", "kmm", "kliep")}

COMPARISON = Demo(
    key="which-method",
    title="Which adaptation method?",
    preset="mnist-mnist-m",
    methods=("finetune", "dann", "dan", "coral", "cdan", "adda"),
    description="Source only and five domain-adaptation methods — DANN, DAN (multi-kernel MMD), Deep CORAL, "
                "CDAN and ADDA — trained one after the other on MNIST → MNIST-M with the same settings and seed. "
                "The Monitor compares their target accuracy and shows how each one moves the two domains' "
                "features together (or does not).",
)


def pair_demo(preset: str) -> Demo:
    """The preset card's demo: source only vs DANN (or the preset's methods in ``PAIR_METHODS_FOR``)."""
    return Demo(key=preset, title="", preset=preset, methods=PAIR_METHODS_FOR.get(preset, PAIR_METHODS))


def configs(demo: Demo) -> list[RunConfig]:
    """The demo's run configs, in queue order; a method the registry does not hold is an error."""
    known = all_methods()
    missing = [m for m in demo.methods if m.split("@", 1)[0] not in known]
    if missing:
        raise KeyError(f"demo {demo.key!r}: unknown methods {missing}")
    return [demo_config(demo.preset, method) for method in demo.methods]
