"""Benchmark: time from a feature snapshot to aligned 2-D coordinates (UMAP and PCA).

Measures, for 1,000 and 2,000 points of D=128 clustered features (two domains):

- ``cold_process_s``: a fresh Python process, from ``import tl_core.embedding`` to the
  first coordinates, with numba's on-disk cache already filled (a server restart);
- ``cold_nocache_s`` (UMAP, first size only): the same with an empty numba cache (the
  first run ever on a machine: all of umap's JIT);
- ``warm_first_s``: in a warmed-up process, a first snapshot (no ``previous``);
- ``warm_next_s``: in a warmed-up process, a later snapshot (``previous`` given), the
  cost paid every epoch;
- ``metrics_s``: :func:`tl_core.embedding.domain_metrics` on the same snapshot.

Warm numbers are medians over ``--repeats``. Prints one JSON line. Goal: UMAP warm
for 1,000 points <= 2 s on 2 CPU cores.

Usage::

    .venv/bin/python bench/bench_projection.py [--sizes 1000 2000] [--repeats 3] [--skip-nocache]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_UMAP_WARM_1000_S = 2.0
DIM = 128


def snapshot(n: int, dim: int = DIM, seed: int = 0, drift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` feature rows (half source, half shifted target) in 10 classes; float16 like stored snapshots.

    ``drift`` moves every point a little, as one more training epoch would.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim)) * 3.0
    shift = rng.normal(size=dim) * 1.5
    domains = (np.arange(n) >= n // 2).astype(np.int8)
    feats = centres[np.arange(n) % 10] + rng.normal(size=(n, dim)) + domains[:, None] * shift
    if drift:
        feats = feats + drift * np.random.default_rng(seed + 1).normal(size=feats.shape)
    return np.maximum(feats, 0).astype(np.float16), domains  # ReLU-like, as a backbone gives


_COLD = """
import sys, time, json
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from bench_projection import snapshot
feats, _ = snapshot({n})
t0 = time.perf_counter()
from tl_core.embedding import project
coords = project(feats, {method!r})
print(json.dumps({{"seconds": time.perf_counter() - t0, "shape": list(coords.shape)}}))
"""


def cold(n: int, method: str, numba_cache_dir: str | None = None) -> float:
    """Seconds from import to coordinates in a fresh process."""
    env = dict(os.environ)
    if numba_cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = numba_cache_dir
    code = _COLD.format(root=str(ROOT), bench=str(Path(__file__).resolve().parent), n=n, method=method)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True, timeout=600)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> dict:
    import numba
    import sklearn
    import umap

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": usable, "python": platform.python_version(), "umap": umap.__version__,
            "numba": numba.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-nocache", action="store_true", help="skip the empty-JIT-cache run (~25 s)")
    args = parser.parse_args(argv)

    from tl_core import embedding

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    warm_up_s = embedding.warm_up()  # fills the on-disk cache too, so cold_process_s is a restart
    results = []
    for n in args.sizes:
        feats, domains = snapshot(n)
        later, _ = snapshot(n, drift=0.3)
        for method in ("umap", "pca"):
            row: dict = {"method": method, "n": n, "cold_process_s": round(cold(n, method), 3)}
            if method == "umap" and n == args.sizes[0] and not args.skip_nocache:
                with tempfile.TemporaryDirectory(prefix="tl-bench-numba-") as empty:
                    row["cold_nocache_s"] = round(cold(n, method, empty), 3)
            first = embedding.project(feats, method)
            row["warm_first_s"] = round(timed(lambda: embedding.project(feats, method), args.repeats), 3)
            row["warm_next_s"] = round(
                timed(lambda: embedding.project(later, method, previous=first), args.repeats), 3)
            results.append(row)
        metrics_s = timed(lambda: embedding.domain_metrics(feats, domains), args.repeats)
        for row in results[-2:]:
            row["metrics_s"] = round(metrics_s, 3)

    warm_1000 = [max(r["warm_first_s"], r["warm_next_s"]) for r in results if r["method"] == "umap" and r["n"] == 1000]
    report = {
        "bench": "projection",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "dim": DIM,
        "loadavg_1min": {"before": load_before, "after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "warm_up_s": round(warm_up_s, 3),
        "results": results,
        "goal": {"umap_warm_1000_s_max": GOAL_UMAP_WARM_1000_S,
                 "umap_warm_1000_s": warm_1000[0] if warm_1000 else None,
                 "met": bool(warm_1000) and warm_1000[0] <= GOAL_UMAP_WARM_1000_S},
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
