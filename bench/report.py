"""Turn the raw benchmark numbers (bench/out/bench.json) into BENCHMARKS.md."""

from __future__ import annotations

import statistics
from typing import Any


MISSED = "**MISSED**"


#: Single-section runs kept by hand between whole runs of `make bench` (this report links to them).
HISTORY = "docs/BENCHMARK_HISTORY.md"


def _dann_warmup() -> float:
    """DANN's default source-only start, from its own parameters (the registry owns it)."""
    from tl_core.methods import make_params

    return float(make_params("dann", {}).source_warmup)


def _f(v: Any, d: int = 2, unit: str = "") -> str:
    return "—" if v is None else f"{v:,.{d}f}{unit}"


PRIORITY_NAMES = {"background": "training first (default)", "live": "keep up"}


def _priorities(sn: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(priority, numbers) of a snapshots section; an older file without priorities counts as "live"."""
    if "priorities" in sn:
        return list(sn["priorities"].items())
    return [("background", sn)]


def _spread(s: dict[str, Any] | None, d: int = 2, unit: str = "", pct: bool = False) -> str:
    """'0.97 (0.93–1.01, n=5)' from a summary dict."""
    if not s or s.get("median") is None:
        return "—"
    k = 100.0 if pct else 1.0
    u = " %" if pct else unit
    return f"{k * s['median']:,.{d}f}{u} ({k * s['min']:,.{d}f}–{k * s['max']:,.{d}f}, n={s['n']})"


def _vals(s: dict[str, Any] | None) -> list[float]:
    return [v for v in (s or {}).get("values", []) if v is not None]


def best_ratio(num: dict[str, Any] | None, den: dict[str, Any] | None, higher_is_better: bool) -> float | None:
    """Best of one side over best of the other: max/max for rates, min/min for times.

    On a machine shared with bursty other work, the best measurement of each side is the
    one least disturbed, so this ratio is steadier than the median of pairs.
    """
    a, b = _vals(num), _vals(den)
    if not a or not b:
        return None
    pick = max if higher_is_better else min
    return pick(a) / pick(b) if pick(b) else None


def _best(v: float | None, d: int = 2, unit: str = "", pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.{d}f} %" if pct else f"{v:.{d}f}{unit}"


def _verdict(value: float | None, goal: float | None, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    if goal is None:
        return "no goal"
    ok = value >= goal if higher_is_better else value <= goal
    return "met" if ok else MISSED


def _err(section: dict[str, Any] | None) -> str | None:
    if section is None:
        return "not run this time"
    return f"failed: {section['error']}" if "error" in section else None


def machine_busy(b: dict[str, Any]) -> tuple[bool, float]:
    """(was other work using a noticeable share of the CPU?, the worst section's other cores)."""
    m = b["meta"]
    ow = m.get("other_work") or {}
    per_section = [(b.get(name) or {}).get("other_work") or {} for name in m.get("sections", [])]
    worst = max((o.get("other_cores", 0.0) for o in per_section), default=0.0)
    return ow.get("other_cores", 0.0) > 0.2 or worst > 0.5 or ow.get("steal_cores", 0.0) > 0.2, worst


def _verdict2(median: float | None, best: float | None, goal: float | None, higher_is_better: bool,
              busy: bool) -> str:
    """The verdict on the median, saying so when the best-of meets the goal on a busy machine."""
    v = _verdict(median, goal, higher_is_better)
    if v == MISSED and busy and _verdict(best, goal, higher_is_better) == "met":
        return f"{MISSED} on the median; best-of meets it — the machine was busy, rerun on a quiet one"
    return v


# ----------------------------------------------------------------- header
def _header(b: dict[str, Any]) -> list[str]:
    m = b["meta"]
    mc = m["machine"]
    quick = m["mode"] == "quick"
    load0, load1 = m.get("loadavg_1min_start"), m.get("loadavg_1min_end")
    ow = m.get("other_work") or {}
    busy, worst = machine_busy(b)
    device = (f"CUDA: {mc['cuda_device']}" if mc["cuda"] else "CPU only (no CUDA device on this machine)")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench{'' if quick else ' FULL=1'}` ({m['mode']} version) on {m['date']}. Every number "
        "below was measured by that run; nothing is copied in by hand. Raw numbers: `bench/out/bench.json` "
        "(one file per section beside it). Benchmarks measure and report; no test asserts a wall-clock limit.",
        "",
    ]
    if quick:
        lines += ["**This is the quick version**: fewer repeats, shorter runs, accuracy for one pair, one backbone, "
                  "one seed and few epochs. `make bench FULL=1` runs the long version.", ""]
    lines += [
        "| | |", "|---|---|",
        f"| date | {m['date']} |",
        f"| version | {m['mode']} |",
        f"| machine | {mc['platform']} |",
        f"| CPU | {mc['cpu']}, {mc['cores']} usable cores, {_f(mc.get('memory_gb'), 1)} GB memory |",
        f"| device | {device} |",
        f"| software | Python {mc['python']}, torch {mc['torch']} ({mc['torch_threads']} CPU threads) |",
        f"| other work on the machine{' (beyond every process the bench started)' if m.get('own_cpu') else ''} "
        f"| {_other(ow)} on average while this ran (worst section: "
        f"{worst:.2f} cores); load average {_f(load0)} at start, {_f(load1)} at end"
        + (" — **the machine was busy with other work while this ran: speed numbers are noisy, read the "
           "spreads**" if busy else "") + " |",
        f"| time taken | {m['total_s'] / 60:.1f} min |",
        "",
        "Ratios are measured side by side in one process, the two sides alternating (A B, B A, A B, …) after one "
        "warm-up of each; we report the median and, in brackets, the smallest and largest value and the number "
        "of pairs. *Best-of* divides the best measurement of one side by the best of the other (fastest rate, "
        "shortest time): on a machine shared with bursty other work it is the steadier guide. Verdicts use the "
        "median.",
        "",
    ]
    return lines


def _other(ow: dict[str, Any]) -> str:
    if not ow:
        return "unknown"
    text = f"{ow['other_cores']:.2f} cores busy with other processes"
    if ow.get("steal_cores"):
        text += f", {ow['steal_cores']:.2f} cores taken by the hypervisor"
    return text


# ------------------------------------------------------------ at a glance
def _glance(b: dict[str, Any]) -> list[str]:
    busy, _ = machine_busy(b)
    rows = ["## Goals at a glance", "", "| # | measurement | goal | measured: median (min–max, n) | verdict |",
            "|---|---|---|---|---|"]

    ov = b.get("overhead")
    if ov and "error" not in ov:
        for c in ov["cases"]:
            r = c["ratio"]
            best = best_ratio(c["trainer_images_per_s"], c["bare_images_per_s"], True)
            rows.append(f"| 1 | trainer ÷ bare PyTorch loop, images/s, {c['case']} | ≥ {c['goal']} "
                        f"| {_spread(r)}; best-of {_best(best)} | {_verdict2(r['median'], best, c['goal'], True, busy)} |")
    else:
        rows.append(f"| 1 | trainer ÷ bare PyTorch loop | ≥ 0.95 | {_err(ov)} | not measured |")

    fr = b.get("frozen")
    if fr and "error" not in fr:
        for c in fr["cases"]:
            s = c["speedup"]
            goal = f"≥ {c['goal']:.0f}×" if c["goal"] else "none"
            best = best_ratio(c["epoch_s_recomputed"], c["epoch_s_cached"], False)
            rows.append(f"| 2 | epoch time recomputed ÷ cached, {c['case']} | {goal} | {_spread(s, 1, '×')}; "
                        f"best-of {_best(best, 1, '×')} | {_verdict2(s['median'], best, c['goal'], True, busy)} |")
    else:
        rows.append(f"| 2 | frozen-stage reuse | ≥ 10× | {_err(fr)} | not measured |")

    pr = b.get("projection")
    if pr and "error" not in pr:
        g = pr["goal"]
        rows.append(f"| 3 | UMAP, 1,000 points, warm (slower of first / later snapshot) | ≤ {g['umap_warm_1000_s_max']} s "
                    f"| {_f(g['umap_warm_1000_s'])} s (median of repeats) "
                    f"| {_verdict(g['umap_warm_1000_s'], g['umap_warm_1000_s_max'], False)} |")
    else:
        rows.append(f"| 3 | UMAP, 1,000 points, warm | ≤ 2 s | {_err(pr)} | not measured |")

    sn = b.get("snapshots")
    if sn and "error" not in sn:
        for priority, p in _priorities(sn):
            s = p["slowdown"]
            best = best_ratio(p["train_s_on"], p["train_s_off"], False)
            rows.append(f"| 3 | training slowdown, snapshots on vs off, lenet, {PRIORITY_NAMES[priority]} | ≤ 5 % "
                        f"| {_spread(s, 1, pct=True)}; best-of {_best(None if best is None else best - 1, 1, pct=True)} "
                        f"| {_verdict2(s['median'], None if best is None else best - 1, sn['goal'], False, busy)} |")
    else:
        rows.append(f"| 3 | training slowdown with snapshots on | ≤ 5 % | {_err(sn)} | not measured |")

    rd = b.get("render")
    if rd and "error" not in rd:
        s = rd["live_part_s"]
        med = s["median"]
        rows.append(f"| 4 | server-side render of the Monitor's live part while a run trains | ≤ 200 ms "
                    f"| {_spread(_ms(s), 0, ' ms')} | {_verdict(med, rd['goal_s'], False)} |")
    else:
        rows.append(f"| 4 | Monitor live-part render | ≤ 200 ms | {_err(rd)} | not measured |")

    br = b.get("browser")
    if br and "error" not in br:
        rows += _browser_glance(br, busy)
    else:
        why = _err(br)
        if br is None:
            why = "not in this run (see section 4)"
        rows.append(f"| 4 | training slowdown while browser tabs watch it | ≤ 15 % (one tab), ≤ 25 % (two) | {why} "
                    "| not measured |")

    cu = b.get("cuda")
    if cu and "error" not in cu and cu.get("available"):
        for c in cu["throughput"]["cases"]:
            rows.append(f"| 5 | GPU images/s, {c['case']} ({cu['device_name']}), trainer | — "
                        f"| {_spread(c['trainer_images_per_s'], 0)} | no goal |")
    elif cu and "error" not in cu:
        rows.append("| 5 | CUDA | — | no CUDA device on this machine | not measured |")
    else:
        rows.append(f"| 5 | CUDA | — | {_err(cu)} | not measured |")
    rows += _own_data_glance(b.get("own_data"))
    return rows + [""]


OWN_DATA_RSS_GOAL_MB = 2048
OWN_DATA_SPEED_GOAL = 0.8


def _own_data_glance(od: dict[str, Any] | None) -> list[str]:
    """Goal rows of the own-data section (issue 16): a streamed folder's peak RSS, streaming vs in-memory speed."""
    if not od:
        why = "not in the quick version (`make bench FULL=1`; earlier full runs: docs/BENCHMARK_HISTORY.md)"
        return [f"| 6 | own folder larger than memory, peak RSS of the training process | ≤ 2 GB | {why} | not measured |",
                f"| 6 | streamed ÷ in-memory images/s, lenet 64 px | ≥ {OWN_DATA_SPEED_GOAL} | {why} | not measured |"]
    rows = []
    m = od.get("memory") or {}
    if "peak_rss_mb" in m:
        rss = m["peak_rss_mb"]
        rows.append(f"| 6 | peak RSS of the training process, {m['images']:,} JPEGs {m['side']}×{m['side']} streamed at "
                    f"{m['size']} px (held in memory they would need {m['in_memory_would_need_gb']} GB) | ≤ 2 GB "
                    f"| {rss / 1024:.2f} GB | {_verdict(rss, OWN_DATA_RSS_GOAL_MB, False)} |")
    else:
        rows.append(f"| 6 | own folder larger than memory, peak RSS | ≤ 2 GB | {m.get('error', _err(od))} | not measured |")
    sp = (od.get("speed") or {}).get("ratio")
    if sp:
        runs = f", {od['speed']['epochs']}-epoch runs" if od["speed"].get("epochs", 1) > 1 else ""
        rows.append(f"| 6 | streamed ÷ in-memory images/s, lenet 64 px, {od['speed']['images']:,} images{runs} "
                    f"| ≥ {OWN_DATA_SPEED_GOAL} | {_spread(sp)} | {_verdict(sp['median'], OWN_DATA_SPEED_GOAL, True)} |")
    else:
        rows.append(f"| 6 | streamed ÷ in-memory images/s | ≥ {OWN_DATA_SPEED_GOAL} | {_err(od) or 'no ratio'} "
                    "| not measured |")
    return rows


def _own_data(b: dict[str, Any]) -> list[str]:
    od = b.get("own_data")
    if not od:
        return ["## 6. Own data larger than memory", "",
                "Not part of this run: the quick version leaves it out (about 7 minutes more on 2 cores). "
                "`make bench FULL=1` runs it, or `python -m bench --only own_data --full` alone. The full runs made "
                f"so far, with their commands and raw numbers, are in [{HISTORY}]({HISTORY}#section-6-own-data-larger-"
                "than-memory-issue-16).", ""]
    lines = ["## 6. Own data larger than memory", "",
             "`python -m bench --only own_data` (bench/own_data.py). A generated folder of 256×256 JPEGs in 10 classes; "
             "each training run in a fresh process, its peak RSS read there (`ru_maxrss`). The memory budget "
             "(`TL_DATA_MEMORY_GB`) is set below what holding the folder's pixels would take, so the run streams "
             "(tl_core/data/stream.py); the in-memory path would decode the whole folder first. Earlier runs: "
             f"[{HISTORY}]({HISTORY}#section-6-own-data-larger-than-memory-issue-16)."
             + (f" Measured {od['date']} ({'quick' if od.get('quick') else 'full'} version), on the machine above unless "
                "this run of `make bench` did not include it." if od.get("date") else ""), ""]
    m = od.get("memory") or {}
    if "error" in m:
        lines += [f"Streamed run: failed ({m['error']}).", ""]
    elif m:
        subset = (f"; one epoch on a stratified {m['max_train']:,} of its training images (a CPU trains MobileNetV3 "
                  "at 224 px at about 10 images/s)" if m.get("max_train") else "; one epoch on all of it")
        lines += ["| | |", "|---|---|",
                  f"| folder | {m['images']:,} JPEGs, {m['side']}×{m['side']}, listed whole{subset} |",
                  f"| run | {m['backbone']} from scratch, {m['size']} px, batch {m['batch']}, on {m.get('device')} |",
                  f"| holding the images at {m['size']} px | {m['pixels_gb']} GB of pixels, about {m['in_memory_would_need_gb']} "
                  f"GB with the {m['copies']} copies a run holds |",
                  f"| memory budget set | {m['budget_gb']} GB (`TL_DATA_MEMORY_GB`): streamed = {m.get('streamed')} |",
                  f"| peak RSS, training process | {m['peak_rss_mb'] / 1024:.2f} GB |",
                  f"| peak RSS, largest child process (a decoding worker, or the device check) | {m['workers_peak_rss_mb'] / 1024:.2f} GB |",
                  f"| training images/s | {_f(m.get('images_per_s'), 1)} |", f"| wall time | {_f(m.get('wall_s'), 0)} s |", ""]
    sp = od.get("speed") or {}
    if sp:
        epochs = sp.get("epochs", 1)
        lines += [f"Streaming speed: {sp['images']:,} JPEGs that fit in memory, {sp['backbone']} at {sp['size']} px, "
                  + (f"runs of {epochs} epochs" if epochs > 1 else "one epoch per run")
                  + ", in-memory and streamed runs alternating; training images/s from the loop's step rows "
                  "(after each run's first step). A streamed run decodes every image into a file on disk before its "
                  "first step, as an in-memory run decodes every image into memory; the wall times (whole run, in a "
                  "fresh process) include that.", "",
                  f"| in memory, images/s | {', '.join(_f(v, 0) for v in sp.get('in_memory_images_per_s', []))} |",
                  "|---|---|",
                  f"| streamed, images/s | {', '.join(_f(v, 0) for v in sp.get('streamed_images_per_s', []))} |",
                  f"| streamed ÷ in memory{', whole run' if epochs > 1 else ''} | {_spread(sp.get('ratio'))} |"]
        if epochs > 1:
            lines += [f"| streamed ÷ in memory, epoch {k + 1} | {_spread(r)} |"
                      for k, r in enumerate(sp.get("ratio_by_epoch") or [])]
        if sp.get("wall_ratio"):
            lines += [f"| wall time, s: in memory / streamed | {', '.join(_f(v, 1) for v in sp['in_memory_wall_s'])} / "
                      f"{', '.join(_f(v, 1) for v in sp['streamed_wall_s'])} |",
                      f"| in-memory ÷ streamed wall time (above 1: streamed quicker) | {_spread(sp['wall_ratio'])} |"]
        lines += [""]
    return lines


def _ms(s: dict[str, Any]) -> dict[str, Any]:
    return {k: (v * 1000 if isinstance(v, float) else v) for k, v in s.items() if k != "values"}


# --------------------------------------------------------------- sections
def _overhead(b: dict[str, Any], heading: str = "## 1. Trainer overhead", explain: bool = True) -> list[str]:
    ov = b.get("overhead")
    lines = [heading, ""]
    if explain:
        lines += [
             "`tl_core.trainer.run` (finetune on MNIST, `MemoryRecorder`, snapshots off, one epoch) against a bare "
             "PyTorch loop written in `bench/speed.py`: the same backbone and head from `tl_core.backbones` "
             "(`create_backbone` + `make_head`, same seed), the same training images, batch size 64, SGD with "
             "momentum 0.9, Nesterov and weight decay 5e-4, the same device. **What is timed**: for the trainer, "
             "its training loop only — a wrapper around the recorder notes when the trainer calls it; the loop "
             "runs from the `progress` call made right after preparation to the last `log_steps`/`progress` call "
             "before the epoch's evaluation. That includes everything the trainer does per step (shuffling, lr "
             "schedule, uint8→float normalisation of each batch, the method, the loss check that syncs with the "
             "device, backward, optimiser, metric rows, flushes every 0.5 s) and leaves out data loading, model "
             "building, evaluation and checkpoints, which the bare loop does not do either. For the bare loop, "
             "the same epoch (shuffle + steps) by `time.perf_counter`. The bare loop gets its images already "
             "normalised as float32, so if anything it is favoured.", ""]
    if _err(ov):
        return lines + [_err(ov) or "", ""]
    lines += ["| case | train images | trainer images/s | bare loop images/s | ratio | best-of ratio | goal | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for c in ov["cases"]:
        best = best_ratio(c["trainer_images_per_s"], c["bare_images_per_s"], True)
        lines.append(f"| {c['case']} ({c['device']}) | {c['train_images']} ({c['steps_per_measurement']} steps) "
                     f"| {_spread(c['trainer_images_per_s'], 0)} | {_spread(c['bare_images_per_s'], 0)} "
                     f"| {_spread(c['ratio'])} | {_best(best)} | ≥ {c['goal']} "
                     f"| {_verdict(c['ratio']['median'], c['goal'], True)} |")
    return lines + [""]


def _frozen(b: dict[str, Any], heading: str = "## 2. Frozen-stage reuse", explain: bool = True) -> list[str]:
    fr = b.get("frozen")
    lines = [heading, ""]
    if explain:
        lines += [
             "When the first k stages are frozen and nothing random touches the input, the trainer computes "
             "their outputs once and trains from there. Measured: the training-loop time of one epoch (as in "
             "section 1; the better of the run's two epochs) with the cache against recomputing the frozen "
             "stages every step (`tl_core.trainer.CACHE_BUDGET_BYTES = 0`), resnet18 at 64×64 without pretrained "
             "weights (the weights do not change the cost), finetune on MNIST. Building the cache is a one-off "
             "cost paid before the first epoch; it is shown separately, and *first epoch* compares recomputing "
             "against cache building plus one cached epoch.", ""]
    if _err(fr):
        return lines + [_err(fr) or "", ""]
    lines += ["| case | epoch s, cached | epoch s, recomputed | speed-up | best-of | cache build s "
              "| first epoch speed-up | goal | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in fr["cases"]:
        goal = f"≥ {c['goal']:.0f}×" if c["goal"] else "—"
        note = "" if all(c["cache_used"]) and not any(c["cache_used_when_off"]) else " (cache use not as intended!)"
        lines.append(f"| {c['case']}, {c['train_images']} images{note} | {_spread(c['epoch_s_cached'], 3)} "
                     f"| {_spread(c['epoch_s_recomputed'], 2)} | {_spread(c['speedup'], 1, '×')} "
                     f"| {_best(best_ratio(c['epoch_s_recomputed'], c['epoch_s_cached'], False), 1, '×')} "
                     f"| {_spread(c['cache_build_s'], 2)} | {_spread(c['first_epoch_speedup'], 1, '×')} | {goal} "
                     f"| {_verdict(c['speedup']['median'], c['goal'], True)} |")
    return lines + [""]


def _projection(b: dict[str, Any]) -> list[str]:
    pr, sn = b.get("projection"), b.get("snapshots")
    lines = ["## 3. Projection", "",
             "Time from a feature snapshot (D=128, half source, half target) to aligned 2-D coordinates, from "
             "`bench/bench_projection.py`: *cold process* is a fresh Python process from `import "
             "tl_core.embedding` to coordinates with numba's on-disk cache filled (a server restart); *cold, "
             "empty JIT cache* the very first run on a machine; *warm first* a first snapshot in a warmed-up "
             "process, *warm next* a later snapshot aligned to the previous picture (the cost paid every epoch). "
             "Warm numbers are medians of repeats.", ""]
    if _err(pr):
        lines += [_err(pr) or "", ""]
    else:
        lines += ["| method | points | cold process s | cold, empty JIT cache s | warm first s | warm next s | domain metrics s |",
                  "|---|---|---|---|---|---|---|"]
        for r in pr["results"]:
            lines.append(f"| {r['method'].upper()} | {r['n']:,} | {_f(r.get('cold_process_s'))} "
                         f"| {_f(r.get('cold_nocache_s'))} | {_f(r.get('warm_first_s'))} | {_f(r.get('warm_next_s'))} "
                         f"| {_f(r.get('metrics_s'))} |")
        g = pr["goal"]
        lines += ["", f"Goal: UMAP warm for 1,000 points ≤ {g['umap_warm_1000_s_max']} s — measured "
                      f"{_f(g['umap_warm_1000_s'])} s: {_verdict(g['umap_warm_1000_s'], g['umap_warm_1000_s_max'], False)}.",
                  ""]
    lines += ["**Training slowdown with snapshots on.** lenet, finetune MNIST→MNIST-M, "
              + (f"{sn['epochs']} epochs" if sn and "error" not in sn else "a few epochs")
              + ", through a `StoreRecorder` on a scratch run store. *On*: `snapshot.enabled` with the default "
              "sample (500 images per domain, every epoch, plus one before training) and a "
              "`tl_core.projector.SnapshotProjector` turning each snapshot into UMAP coordinates and domain metrics "
              "in its worker process (single-threaded, `SCHED_IDLE`/nice 19: it runs only on cycles training leaves "
              "idle); an end-of-epoch snapshot reuses the evaluation's features, so the training thread does one "
              "extra forward pass per run (the picture before training). *Off*: the same run without snapshots. "
              "Timed: everything after preparation until `run` returns (steps, evaluation, checkpoints, snapshot "
              "features). Snapshots still waiting when training ends are projected afterwards, outside the timing: "
              "*projection tail* is how long that took.", ""]
    if _err(sn):
        return lines + [_err(sn) or "", ""]
    lines += ["| projector priority | training s, snapshots on | training s, off | slowdown | best-of "
              "| slowdown of the step loop alone | projected during training (of each run's) | projection tail s "
              "| goal | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for priority, p in _priorities(sn):
        best = best_ratio(p["train_s_on"], p["train_s_off"], False)
        during = p.get("projected_during_training")
        lines.append(f"| {PRIORITY_NAMES[priority]} | {_spread(p['train_s_on'])} | {_spread(p['train_s_off'])} "
                     f"| {_spread(p['slowdown'], 1, pct=True)} | {_best(None if best is None else best - 1, 1, pct=True)} "
                     f"| {_spread(p['loop_slowdown'], 1, pct=True)} "
                     f"| {during if during is not None else '—'} of {p['snapshots_projected']} "
                     f"| {_spread(p.get('projection_tail_s'))} | ≤ 5 % "
                     f"| {_verdict(p['slowdown']['median'], sn['goal'], False)} |")
    lines += ["", "*Training first* (the default, `snapshot.priority = \"background\"`) runs the projector at "
              "`SCHED_IDLE`: it gets only cycles nothing else wants, so training is not slowed, but while training "
              "keeps both cores busy the pictures wait (*projection tail*: how long the snapshots still waiting at "
              "the end of training took; the Monitor says how many are waiting). *Keep up* (`\"live\"`) runs it at "
              "normal priority: the pictures follow training, which pays for them.", ""]
    return lines


def _dashboard(b: dict[str, Any]) -> list[str]:
    rd, br = b.get("render"), b.get("browser")
    lines = ["## 4. Dashboard", "",
             "**How the Monitor refreshes** (`tl_ui/monitor_refresh.py`): while runs train, the run cards (status, "
             "progress, ETA) are redrawn every 2 s; the charts (accuracy, loss, the method's step charts, learning "
             "rate) every 6 s, each step curve thinned to at most 1,000 points (each bucket's lowest and highest "
             "value kept); what changes per epoch or per projected snapshot (the accuracy chart, the feature "
             "space) by one rerun of the page at the first 2-s refresh that finds a new epoch or snapshot (before "
             "that refresh draws the cards: the rerun draws them), which draws the step curves built less than 6 s "
             "before instead of new ones. While the runs log epochs faster than every 6 s (as the run watched here "
             "does), the charts have no timer of their own: those reruns draw them, new step curves once due. The "
             "sidebar's run list refreshes every 30 s on the Monitor. The before/now pair, the "
             "domain-distance curves and the per-class results are drawn only while their section is open "
             "(closed by default). The training charts and each run's feature-space animation are drawn in place "
             "(`tl_ui/live_chart.py`: one element per chart whose JavaScript hands a new spec to `Plotly.react`; a "
             "spec equal to the one drawn is skipped), not mounted anew; the feature-space animation sends each "
             "frame's coordinates only; on the Monitor, "
             "elements are not faded while a refresh replaces them; and the server does not force a full "
             "garbage collection after each rerun (`runner.postScriptGC = false` in `.streamlit/config.toml`). How "
             "it got here, with the single-section runs that measured each change (what a watching tab spends, part "
             f"by part; torch's threads; the load a training run tolerates): [{HISTORY}]({HISTORY}#section-4-the-"
             "monitor-while-a-run-trains-issue-18).", "",
             "**Render time.** The real pages, driven by Streamlit's `AppTest` in the benchmark's process, while "
             "a real `JobManager` trains the MNIST→MNIST-M DANN demo (lenet, snapshots on) in a training "
             "process of its own, as in the server. `st.fragment` is wrapped so that each call of the Monitor's "
             "two live fragments (the cards; the charts) is timed: that is what the page's refreshes run on the "
             "server (store reads, run card, Plotly charts, encoding them for the browser). Renders start once the "
             "run has an evaluated epoch and a projected snapshot, half a second apart. A whole rerun of the page "
             "(navigation, sidebar and the feature space too, plus AppTest's own bookkeeping) is shown beside it.",
             ""]
    if _err(rd):
        lines += [_err(rd) or "", ""]
    else:
        lines += ["| | median (min–max, n) | goal | verdict |", "|---|---|---|---|",
                  f"| Monitor live part (fragments), server side | {_spread(_ms(rd['live_part_s']), 0, ' ms')} "
                  f"| ≤ 200 ms | {_verdict(rd['live_part_s']['median'], rd['goal_s'], False)} |"]
        for key, label in (("cards_s", "of which: run cards (every 2 s)"), ("charts_s", "of which: charts (every 6 s)")):
            if rd.get(key):
                lines.append(f"| {label} | {_spread(_ms(rd[key]), 0, ' ms')} | — | — |")
        lines += [f"| whole page rerun via AppTest | {_spread(_ms(rd['whole_page_rerun_s']), 0, ' ms')} | — | — |", "",
                  f"The run was {'still training' if rd['run_was_training'] else 'no longer training (!)'} at the "
                  f"end, with {rd['step_rows_at_end']} step rows; {rd['plotly_charts_on_page']} Plotly charts on "
                  "the page.", ""]
    lines += ["**Browser tabs on the same machine.** `bench/_serve.py` starts `streamlit run app.py` in a process "
              "whose job manager is already training a long lenet DANN run (as after a click on Start, in a training "
              "process of its own; snapshots projected at normal priority so the feature space moves). Headless "
              "Chromium (Playwright, `/usr/bin/chromium`) then runs rounds of three windows, with no tab, one tab and "
              "two tabs on the Monitor (order 0 1 2, 2 1 0, 1 2 0, …; tabs opened and drawn before a window starts; "
              "before the first round, one tab draws the Monitor once, unmeasured, so that no window pays the "
              "server's and the browser's first load of the page); "
              "the training images/s of each window come from the run's step count, polled from the store every "
              "0.1 s, and each watched window is compared with the no-tab window of its round. The browser runs on "
              "the same machine, as on a laptop, so its own drawing competes with training too. In each open tab "
              "the page is read every 0.1 s (the latest epoch on the accuracy chart, the latest snapshot in the "
              "feature-space animation): *appears within one refresh* is the delay from an epoch's row (or a "
              "snapshot's coordinates) reaching the store to the tab showing it, against one refresh (2 s) plus "
              "2 s to draw.", ""]
    if br is None:
        lines += ["Not measured in this run (`python -m bench --only browser` runs it alone).", ""]
    elif _err(br):
        lines += [_err(br) or "", ""]
    else:
        own_cpu = bool(b["meta"].get("own_cpu"))
        lines += _browser_table(br, own_cpu_counted=own_cpu)
        fewer = br.get("one_thread_fewer")
        if fewer and "error" not in fewer:
            lines += [f"**One torch thread fewer** (the same windows with `OMP_NUM_THREADS={fewer['train_threads']}` "
                      "for the training process):", ""] + _browser_table(fewer, where=False, own_cpu_counted=own_cpu)
            with_two = br.get("images_per_s_two_tabs", {}).get("median")
            with_fewer = fewer.get("images_per_s_two_tabs", {}).get("median")
            idle, idle_fewer = br["images_per_s_no_tab"]["median"], fewer["images_per_s_no_tab"]["median"]
            if None not in (with_two, with_fewer, idle, idle_fewer):
                lines += [f"With two tabs watching, training ran at {with_fewer:,.0f} images/s on one thread fewer "
                          f"against {with_two:,.0f} on the default; with no tab, {idle_fewer:,.0f} against "
                          f"{idle:,.0f}. " + ("One thread fewer is faster while a browser on the same machine draws."
                                              if with_fewer > with_two else
                                              "The default thread count stays faster even while a browser draws."), ""]
        elif fewer:
            lines += [f"One torch thread fewer: {fewer['error']}", ""]
        else:
            lines += ["The training process keeps torch's default thread count (one per core). Whether it should use "
                      "one fewer while a browser on the same machine draws is measured by the full version "
                      "(`make bench FULL=1`, or `TL_BENCH_TRAIN_THREADS=1 python -m bench --only browser` for the "
                      "one-thread side alone).", ""]
    return lines


def _browser_table(br: dict[str, Any], where: bool = True, own_cpu_counted: bool = False) -> list[str]:
    """The rates, slowdowns, server times and freshness of one set of browser windows (and, with
    ``where``, which process used the CPU). ``own_cpu_counted``: the run counted every process the
    bench started as its own (``bench.common.ProcessTreeCPU``), so Chromium is not "other work"."""
    lines = ["| | median (min–max, n) | goal | verdict |", "|---|---|---|---|",
             f"| training images/s, no tab | {_spread(br['images_per_s_no_tab'], 0)} | | |"]
    for tabs, rate, key in ((1, "images_per_s_one_tab", "slowdown_one_tab"), (2, "images_per_s_two_tabs", "slowdown")):
        if not br.get(key):
            continue
        goal = _tab_goal(br, tabs)
        lines += [f"| training images/s, {'one tab' if tabs == 1 else 'two tabs'} on the Monitor "
                  f"| {_spread(br[rate], 0)} | | |",
                  f"| slowdown, {'one tab' if tabs == 1 else 'two tabs'} (best-of: "
                  f"{_best(_one_minus(best_ratio(br[rate], br['images_per_s_no_tab'], True)), 1, pct=True)}) "
                  f"| {_spread(br[key], 1, pct=True)} | ≤ {100 * goal:.0f} % "
                  f"| {_verdict(br[key]['median'], goal, False)} |"]
    lines.append(f"| server-side live part, two tabs | {_spread(_ms(br['server_live_part_s_two_tabs']), 0, ' ms')} "
                 f"| ≤ 200 ms | {_verdict(br['server_live_part_s_two_tabs']['median'], 0.2, False)} |")
    shown, verdict = _fresh_text(br)
    lines += [f"| new epoch or snapshot shown in the open tabs | {shown} | ≤ {br.get('goal_fresh_s', 4):.0f} s "
              f"| {verdict} |", "",
              f"Windows of {br['window_s']:.0f} s, {br.get('rounds', br.get('pairs'))} rounds; live-part renders "
              f"per two-tab window: {br['fragment_runs_per_window_two_tabs']}; training threads: "
              f"{br.get('train_threads', 'default')}."
              + ("" if own_cpu_counted else " Chromium's own CPU time may show up as \"other work\" in "
                 "the machine table above."), ""]
    if where and "training_cores_two_tabs" in br:
        lines += ["**Where the CPU goes** (cores busy on average over a window, from `/proc`): the server process "
                  "(Streamlit, the pages), the run's training process, the snapshot projector, and this benchmark's "
                  "Chromium with all its processes (the machine's cores: see the table at the top).", "",
                  "| | server | training | projector | Chromium |", "|---|---|---|---|---|"]
        for label, key in (("no tab", "no_tab"), ("one tab", "one_tab"), ("two tabs", "two_tabs")):
            if f"server_cores_{key}" in br:
                lines.append(f"| {label} | " + " | ".join(_spread(br[f"{role}_cores_{key}"]) for role in
                                                          ("server", "training", "projector", "browser")) + " |")
        lines.append("")
        eff = (br.get("images_per_training_core_s_no_tab"), br.get("images_per_training_core_s_two_tabs"))
        if all(e and e.get("median") for e in eff):
            lines += [f"Training images per CPU-second of the training process: {_spread(eff[0], 0)} with no tab, "
                      f"{_spread(eff[1], 0)} with two tabs (torch's intra-op threads wait for each other when one "
                      "is descheduled, so a CPU-second under contention yields fewer images).", ""]
    return lines


def _tab_goal(br: dict[str, Any], tabs: int) -> float:
    """The slowdown goal for this many tabs (older result files carry only the two-tab goal)."""
    return br.get("goal_one_tab", 0.15) if tabs == 1 else br["goal"]


def _fresh_text(br: dict[str, Any]) -> tuple[str, str]:
    """(measured, verdict) of "each new epoch and projected snapshot appears within one refresh"."""
    n, late = br.get("fresh_events"), br.get("fresh_late")
    if n is None:
        return "not measured by this version", "not measured"
    if not n:
        return "no new epoch or snapshot during the watched windows", "not measured"
    f = br["fresh_s"]
    shown = f"{n - late} of {n} within {br['goal_fresh_s']:.0f} s; delay {_spread(f, 1, ' s')}"
    return shown, ("met" if late == 0 else "**MISSED**")


def _browser_glance(br: dict[str, Any], busy: bool) -> list[str]:
    rows = []
    for tabs, key, rate in ((1, "slowdown_one_tab", "images_per_s_one_tab"), (2, "slowdown", "images_per_s_two_tabs")):
        s = br.get(key)
        if not s:
            continue
        best = best_ratio(br[rate], br["images_per_s_no_tab"], True)
        goal = _tab_goal(br, tabs)
        rows.append(f"| 4 | training slowdown while {'one browser tab watches' if tabs == 1 else 'two browser tabs watch'}"
                    f" the Monitor | ≤ {100 * goal:.0f} % | {_spread(s, 1, pct=True)}; "
                    f"best-of {_best(None if best is None else 1 - best, 1, pct=True)} "
                    f"| {_verdict2(s['median'], _one_minus(best), goal, False, busy)} |")
    s = br["server_live_part_s_two_tabs"]
    rows.append(f"| 4 | server-side render of the live part in the real server, two tabs open | ≤ 200 ms "
                f"| {_spread(_ms(s), 0, ' ms')} | {_verdict(s['median'], 0.2, False)} |")
    shown, verdict = _fresh_text(br)
    rows.append(f"| 4 | each new epoch and projected snapshot appears on the open Monitor within one refresh "
                f"(Chromium) | ≤ {br.get('goal_fresh_s', 4):.0f} s | {shown} | {verdict} |")
    return rows


def _one_minus(v: float | None) -> float | None:
    return None if v is None else 1 - v


def _cuda(b: dict[str, Any]) -> list[str]:
    cu = b.get("cuda")
    lines = ["## 5. On a CUDA GPU", ""]
    if cu is None:
        return lines + ["Not run this time.", ""]
    if _err(cu):
        return lines + [_err(cu) or "", ""]
    if not cu.get("available"):
        return lines + ["No CUDA device on this machine: nothing measured here. On a machine with one, "
                        "`make bench` repeats sections 1–3 on the GPU and measures images/s of resnet18 and "
                        "efficientnet_lite0 at 224×224 with mixed precision. This section alone, run once on a lent "
                        f"NVIDIA H200: [{HISTORY}]({HISTORY}#section-5-on-a-cuda-gpu).", ""]
    lines += [f"Device: **{cu['device_name']}**. The same measurements as above with `device='cuda'` "
              "(mixed precision off for sections 1–2, as on the CPU), then 224×224 with mixed precision "
              "(bf16 where supported, else fp16 with a gradient scaler), trainer against the bare loop.", ""]
    sub = {"overhead": cu["overhead"], "frozen": cu["frozen"]}
    lines += _overhead(sub, "### 1. Trainer overhead on the GPU", explain=False)
    lines += _frozen(sub, "### 2. Frozen-stage reuse on the GPU", explain=False)
    sn = cu["snapshots"]
    lines += ["### 3. Snapshots on vs off", ""]
    for priority, p in _priorities(sn):
        lines += [f"{PRIORITY_NAMES[priority]}: slowdown {_spread(p['slowdown'], 1, pct=True)} — goal ≤ 5 %: "
                  f"{_verdict(p['slowdown']['median'], sn['goal'], False)}.", ""]
    lines += ["### GPU images/s at 224×224, mixed precision", "",
              "| backbone | trainer images/s | bare loop images/s | ratio |", "|---|---|---|---|"]
    for c in cu["throughput"]["cases"]:
        lines.append(f"| {c['case']} | {_spread(c['trainer_images_per_s'], 0)} | {_spread(c['bare_images_per_s'], 0)} "
                     f"| {_spread(c['ratio'])} |")
    return lines + [""]


def _accuracy(b: dict[str, Any]) -> list[str]:
    from bench.accuracy import PUBLISHED, label_of

    ac = b.get("accuracy")
    lines = ["## Accuracy", ""]
    if ac is None:
        return lines + ["Not run this time.", ""]
    quick = ac.get("quick", True)
    epochs = ", ".join(f"{k}: {v} epochs" for k, v in ac["epochs"].items())
    lines += [("**Quick version — not comparable to the papers**: " if quick else "")
              + f"target test accuracy after the final epoch ({epochs}; the checkpoint is never chosen by "
              "target accuracy) of source only (fine-tune on source labels), DANN, and target supervised "
              "(fine-tune on target labels: the upper bound), over "
              f"{len(ac['seeds'])} seed{'s' if len(ac['seeds']) > 1 else ''}, mean ± standard deviation. Each run "
              "uses the dashboard's demo defaults (`tl_core.config.demo_config`: SGD lr 0.01, momentum 0.9, batch "
              f"64, DANN's annealed lr, λ 0 for the first {_dann_warmup() * 100:.0f} % then the paper's "
              "warm-up; LeNet with GroupNorm); "
              "efficientnet_lite0 uses its ImageNet weights, all stages "
              "trained with backbone lr × 0.1, at 224×224 on a GPU and 64×64 on a CPU (224 px takes an hour or "
              "more per run there; at 64 px ImageNet features are weak, so CPU rows of efficientnet_lite0 are low). "
              "Rerun one cell with "
              "`.venv/bin/python -m bench.accuracy --pair mnist-mnist-m --seeds 0 1 2 --epochs 30`.", ""]
    if ac.get("error"):
        lines += [f"Some runs failed: {ac['error']}", ""]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in ac["rows"]:
        groups.setdefault((r["pair"], r["backbone"], label_of(r)), []).append(r)
    if groups:
        lines += ["| pair | backbone | method | target accuracy % | seeds | epochs | image px | device | s per run "
                  "| published (DANN paper) % |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for (pair, backbone, label), rs in groups.items():
            accs = [100 * r["target_test_acc"] for r in rs]
            sd = statistics.stdev(accs) if len(accs) > 1 else None
            pub = PUBLISHED.get((pair, label))
            lines.append(f"| {pair} | {backbone} | {label} | {statistics.mean(accs):.2f}"
                         + (f" ± {sd:.2f}" if sd is not None else "") + f" | {len(rs)} | {rs[0]['epochs']} "
                         f"| {rs[0].get('image_size', '—')} | {rs[0].get('device', '—')} "
                         f"| {statistics.mean(r['seconds'] for r in rs):.0f} | {_f(pub)} |")
        lines.append("")
    lines += ["Published numbers, for scale only: Ganin et al., *Domain-Adversarial Training of Neural Networks*, "
              "JMLR 2016, MNIST→MNIST-M with the original MNIST-M (BSDS500 photos) and 60,000 MNIST training "
              "digits: 52.25 % source only, 76.66 % DANN, 95.96 % trained on the target. Ours trains on 4,000 "
              "MNIST digits and recreates MNIST-M from scikit-image's photos, so the numbers are near, not "
              "equal, by construction. The paper has no MNIST→UCI digits or synthetic-digits→MNIST results "
              "(its SYN NUMBERS set is not our font-rendered digits).", ""]
    if quick:
        lines += ["Three seeds on all three pairs, for LeNet from scratch and ImageNet-pretrained EfficientNet-Lite0, "
                  "10 epochs each: the sections [All three demo pairs with LeNet]"
                  "(docs/RESULTS.md#all-three-demo-pairs-with-lenet-10-epochs-3-seeds) and [EfficientNet-Lite0 on a "
                  "CPU](docs/RESULTS.md#efficientnet-lite0-imagenet-weights-on-a-cpu-three-seeds) of docs/RESULTS.md, "
                  "measured by "
                  "`bench.accuracy` (this section's code; `make bench FULL=1` makes all these runs in one go, LeNet "
                  "for 30 epochs) "
                  "with the raw rows in `bench/out/accuracy-*.json`; each section gives its commands and says "
                  "when and on what machine it ran.", ""]
    return lines


def _selection(b: dict[str, Any]) -> list[str]:
    """Each label-free criterion's gap to the oracle checkpoint (bench/selection.py; Musgrave et al. 2021)."""
    from bench.selection import table

    se = b.get("selection")
    if not se:
        return []
    lines = ["## Choosing a checkpoint without target labels", ""]
    if _err(se):
        return lines + [f"FAILED: {_err(se)}", ""]
    return lines + [f"`{se['command']}`: for each criterion, the gap in points between the target accuracy of the "
                    "epoch it chooses and the best epoch's (the oracle, which uses target labels), over "
                    f"{len(se['rows'])} runs.", "", table(se["rows"]), ""]


def render(b: dict[str, Any]) -> str:
    parts = _header(b) + _glance(b) + _overhead(b) + _frozen(b) + _projection(b) + _dashboard(b) + _cuda(b) \
        + _own_data(b) + _accuracy(b) + _selection(b)
    return "\n".join(parts).rstrip() + "\n"
