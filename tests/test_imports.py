"""The import contract that keeps the layers apart (docs/ARCHITECTURE.md, "Enforced rules").

- app.py, pages/ and tl_ui/ import neither torch nor the training loop and its parts;
- tl_core never imports streamlit or tl_ui;
- what the pages read of methods, configs, checkpoints and devices imports no torch when loaded.

Every ``import`` and ``from … import`` statement is read from the source (AST), wherever it
stands in a file (a function-level import counts too).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The training loop and the modules only it uses (torch at import time, and training state).
LOOP = {"tl_core.trainer", "tl_core.prepare", "tl_core.evaluation", "tl_core.snapshots", "tl_core.optim",
        "tl_core.model", "tl_core.modality", "tl_core.execute", "tl_core.runner", "tl_core.methods.parts",
        "tl_core.methods.grl"}


def _files(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        p = ROOT / part
        out += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return out


def _imports(path: Path) -> set[str]:
    """Every module a file imports, with ``from a import b`` also giving ``a.b`` (b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _hits(files: list[Path], banned: set[str], prefixes: tuple[str, ...] = ()) -> list[str]:
    out = []
    for f in files:
        for name in sorted(_imports(f)):
            if name in banned or any(name == p or name.startswith(p + ".") for p in prefixes):
                out.append(f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}: {name}")
    return out


def test_pages_and_tl_ui_import_neither_torch_nor_the_training_loop():
    ui = _files("app.py", "pages", "tl_ui")
    assert len(ui) > 5
    assert _hits(ui, LOOP, ("torch", "torchvision", "timm")) == []


def test_tl_core_never_imports_streamlit_or_tl_ui():
    core = _files("tl_core")
    assert len(core) > 20
    assert _hits(core, set(), ("streamlit", "tl_ui", "pages")) == []


def test_the_contract_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tl_core import trainer\n    import torch.nn as nn\n")
    assert _hits([bad], LOOP, ("torch",)) == [f"{bad}: tl_core.trainer", f"{bad}: torch.nn"]


def test_what_the_pages_read_loads_without_torch():
    code = ("import sys; import tl_core.config, tl_core.methods, tl_core.checkpoint, tl_core.device, "
            "tl_core.failures, tl_core.store; from tl_core.config import RunConfig, method_choices; "
            "RunConfig().validate(); method_choices(); "
            "print(sorted(m for m in ('torch', 'streamlit', 'tl_core.trainer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
