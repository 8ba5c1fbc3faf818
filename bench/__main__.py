"""`make bench`: run the benchmarks and write BENCHMARKS.md plus raw JSON.

Quick by default (minutes on 2 CPU cores); `--full` runs 3 seeds for every pair.
Numbers are measured when this runs; nothing is copied in by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("bench/out")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    proj = subprocess.run([py, "bench/bench_projection.py"], capture_output=True, text=True, check=True)
    projection = json.loads(proj.stdout.strip().splitlines()[-1])
    seeds = ["0", "1", "2"] if a.full else ["0"]
    pairs = ["mnist-mnist-m", "mnist-uci-digits", "syn-digits-mnist"] if a.full else ["mnist-mnist-m"]
    acc = subprocess.run([py, "-m", "bench.accuracy", "--pair", *pairs, "--seeds", *seeds,
                          "--methods", "source only", "DANN", "target supervised",
                          "--out", str(OUT / "accuracy.json")], capture_output=True, text=True, check=True)
    table = acc.stdout.strip().split("\n| pair", 1)
    table_md = "| pair" + table[1] if len(table) > 1 else acc.stdout
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
            "processor": platform.processor() or platform.machine(), "full": a.full}
    (OUT / "bench.json").write_text(json.dumps({"meta": meta, "projection": projection}, indent=1))
    Path("BENCHMARKS.md").write_text(
        "# Benchmarks\n\nWritten by `make bench` on " + meta["date"] + f" ({meta['machine']}, {meta['processor']}).\n"
        "Raw numbers: `bench/out/bench.json`, `bench/out/accuracy.json`.\n\n"
        "## Projection (snapshot → 2-D coordinates)\n\n```json\n" + json.dumps(projection, indent=1) + "\n```\n\n"
        "Goal: at most 2 s warm for 1,000 points.\n\n"
        "## Target accuracy (final checkpoint, never chosen by target accuracy)\n\n" + table_md + "\n\n"
        "For scale, the DANN paper (original MNIST-M): 52.25% source only, 76.66% DANN.\n")
    print(Path("BENCHMARKS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
