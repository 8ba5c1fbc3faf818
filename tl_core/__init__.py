"""Transfer Lab engine: data, backbones, methods, trainer, run store and job manager.

Importable and usable without Streamlit. Heavy modules (torch) are imported by the
submodules that need them, so ``import tl_core`` stays cheap for the pages.
"""

__version__ = "0.1.0"
