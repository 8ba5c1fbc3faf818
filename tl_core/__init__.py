"""Transfer Lab engine: data, backbones, methods, trainer, run store and job manager.

Importable and usable without Streamlit. Heavy modules (torch) are imported by the
submodules that need them, so ``import tl_core`` stays cheap for the pages.
"""

__version__ = "0.1.0"


def _keep_torch_caches_under_home() -> None:
    """torch makes ``<tmp>/torchinductor_<user>`` when torchvision is imported; keep it under TL_HOME.

    A fixed name in a shared temporary folder is one another local user could create first;
    and Transfer Lab writes only under TL_HOME and the data root. An explicit setting wins.
    """
    import os
    from pathlib import Path

    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        home = Path(os.environ.get("TL_HOME") or Path.home() / ".transfer-lab").expanduser()  # = store.default_home
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(home / "cache" / "torchinductor")


_keep_torch_caches_under_home()
