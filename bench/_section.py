"""Run one benchmark section in its own process and write its JSON result.

    python -m bench._section overhead [--full] --out bench/out/overhead.json

Sections run in separate processes so that one's threads, caches and monkeypatches
(``CACHE_BUDGET_BYTES``, ``st.fragment``) never touch another's numbers, and so that a
section that fails leaves the others standing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable


def _sections() -> dict[str, Callable[[bool], dict[str, Any]]]:
    def overhead(full: bool) -> dict[str, Any]:
        from bench import speed
        return speed.overhead(full, "cpu")

    def frozen(full: bool) -> dict[str, Any]:
        from bench import speed
        return speed.frozen_reuse(full, "cpu")

    def snapshots(full: bool) -> dict[str, Any]:
        from bench import speed
        return speed.snapshot_slowdown(full, "cpu")

    def render(full: bool) -> dict[str, Any]:
        from bench import dashboard
        return dashboard.render_time(full)

    def browser(full: bool) -> dict[str, Any]:
        from bench import dashboard
        return dashboard.browser_slowdown(full)

    def cuda(full: bool) -> dict[str, Any]:
        import torch

        from bench import speed
        if not torch.cuda.is_available():
            return {"available": False}
        return {"available": True, "device_name": torch.cuda.get_device_name(0),
                "overhead": speed.overhead(full, "cuda"), "frozen": speed.frozen_reuse(full, "cuda"),
                "snapshots": speed.snapshot_slowdown(full, "cuda"), "throughput": speed.gpu_throughput(full)}

    def own_data(full: bool) -> dict[str, Any]:
        from bench import own_data as od
        return od.run(full)

    return {"overhead": overhead, "frozen": frozen, "snapshots": snapshots, "render": render,
            "browser": browser, "cuda": cuda, "own_data": own_data}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(_sections()))
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from bench.common import load_average

    load_before = load_average()
    t0 = time.perf_counter()
    result = _sections()[a.name](a.full)
    result["section_s"] = round(time.perf_counter() - t0, 1)
    result["loadavg_1min"] = {"before": load_before, "after": load_average()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
