"""Target accuracy of source-only, DANN and target-supervised runs over seeds.

    .venv/bin/python -m bench.accuracy --pair mnist-mnist-m --backbone lenet --seeds 0 1 2

Prints a Markdown table (mean ± std over seeds, final checkpoint, never chosen by target
accuracy) and writes the raw numbers as JSON. With feature snapshots on (the default) each
run also reports the proxy A-distance and MMD² between source and target features before
training and after the last epoch (``tl_core.embedding.domain_metrics`` on the run's fixed
500 + 500 image sample), the numbers behind the Monitor's domain-distance curves. Each run uses the dashboard's demo defaults
(`tl_core.config.demo_config`) unless flags override them.

    .venv/bin/python -m bench.accuracy --from-json bench/out/a.json bench/out/b.json

runs nothing and prints the table of saved rows; a run repeated in a later file replaces the earlier one,
and `--drop DANN:0` leaves out runs made under older defaults. `--compact` prints the short table of one pair
and one backbone (mean ± std, each seed, A-distance), the one in the README.

    .venv/bin/python -m bench.accuracy --update-md README.md docs/RESULTS.md

runs nothing and rewrites, in each file, every table between a marker line
``<!-- bench.accuracy --from-json FILE... [--drop METHOD:SEED...] [--compact] -->`` and the line
``<!-- end bench.accuracy -->`` with the table those arguments print; everything outside the markers is kept
as written, so a second run changes nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

# tl_core (and torch) are imported only where runs are made: rendering tables from saved rows needs neither.

def _bench_label(label: str) -> str:
    """A run label as bench tables write it: 'Source only' -> 'source only', 'DANN' stays."""
    from tl_core.config import label_in_sentence

    return label_in_sentence(label)


def _methods() -> dict[str, tuple[str, str]]:
    """Table label -> (method, labelled domain) for every method choice the registry holds (no torch), in
    table order: the methods that train on source labels (the baseline first), then the upper bounds that
    use target labels."""
    from tl_core.methods import DOMAINS, all_methods

    return {_bench_label(cls.label(domain)): (name, domain)
            for domain in DOMAINS for name, cls in all_methods().items() if domain in cls.trains_on}


METHODS = _methods()

# Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 17 (2016), Table 2, MNIST → MNIST-M
# (the original MNIST-M built from BSDS500 photos, 60,000 MNIST training digits). No published numbers exist
# for our other pairs (UCI digits and our font-rendered synthetic digits are not the paper's sets).
PUBLISHED = {("mnist-mnist-m", "source only"): 52.25, ("mnist-mnist-m", "DANN"): 76.66,
             ("mnist-mnist-m", "target supervised"): 95.96}


def one_run(pair: str, method: str, train_on: str, backbone: str, seed: int, epochs: int | None,
            image_size: int | None, freeze: int | None, snapshots: bool = True) -> dict[str, Any]:
    from tl_core import trainer
    from tl_core.config import demo_config
    from tl_core.device import pick_device
    from tl_core.recorder import MemoryRecorder

    cfg = demo_config(pair, method if train_on == "source" else f"{method}@{train_on}", seed=seed)
    cfg.model.backbone = backbone
    if backbone != "lenet":
        from tl_core.backbones import get_info

        # The weights' own size (224) on the GPU the run will use; 64 px on a CPU, where 224 px takes an
        # hour or more per run.
        native = get_info(backbone).input_size
        on_gpu = pick_device(cfg.device).type == "cuda"
        cfg.data.image_size = image_size or (native if on_gpu else min(native, 64))
        cfg.optim.backbone_lr_mult = 0.1
    elif image_size:
        cfg.data.image_size = image_size
    if epochs:
        cfg.optim.epochs = epochs
    if freeze is not None:
        cfg.model.freeze = freeze
    cfg.snapshot.enabled = snapshots
    cfg.snapshot.every_epochs = cfg.optim.epochs  # only the first and the last are used here
    t0 = time.perf_counter()
    rec = MemoryRecorder()
    res = trainer.run(cfg, rec)
    row = {"pair": pair, "backbone": backbone, "method": method, "train_on": train_on, "seed": seed,
           "target_test_acc": res["target_test_acc"], "source_val_acc": res["source_val_acc"],
           "seconds": time.perf_counter() - t0, "epochs": cfg.optim.epochs, "device": res["device"],
           "image_size": cfg.data.image_size, "freeze": cfg.model.freeze}
    if snapshots and len(rec.snapshots) >= 2:
        from tl_core.embedding import domain_metrics

        domains = rec.sample["domains"]
        for tag, snap in (("before", rec.snapshots[0]), ("end", rec.snapshots[-1])):
            for name, value in domain_metrics(snap["features"], domains).items():
                row[f"{name}_{tag}"] = value
    return row


def label_of(row: dict[str, Any]) -> str:
    """The table label of a result row, from the method registry (tl_core.config.method_label)."""
    from tl_core.config import method_label

    return _bench_label(method_label({"method": {"name": row["method"], "train_on": row["train_on"]}}))


def mean_sd(values: list[float], fmt: str = ".2f") -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} ± {sd:{fmt}}"


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| pair | backbone | method | target test acc. (%) mean ± std | A-distance before → end | MMD² end "
           "| seeds | epochs | s per run | published (DANN paper, %) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    keys: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        keys.setdefault((r["pair"], r["backbone"], label_of(r)), []).append(r)
    for (pair, backbone, label), rs in keys.items():
        accs = [100 * r["target_test_acc"] for r in rs]
        secs = statistics.mean(r["seconds"] for r in rs)
        pub = PUBLISHED.get((pair, label))
        before = mean_sd([r["a_distance_before"] for r in rs if "a_distance_before" in r])
        end = mean_sd([r["a_distance_end"] for r in rs if "a_distance_end" in r])
        mmd = mean_sd([r["mmd_end"] for r in rs if "mmd_end" in r], ".3f")
        out.append(f"| {pair} | {backbone} | {label} | {mean_sd(accs)} | {before} → {end} | {mmd} | {len(rs)} "
                   f"| {rs[0]['epochs']} | {secs:.0f} | {'—' if pub is None else f'{pub:.2f}'} |")
    return "\n".join(out)


def cli_flags(label: str) -> str:
    """The command-line flags of a table label's method choice, from the registry: '--method dann'."""
    method, train_on = METHODS[label]
    return f"--method {method}" + ("" if train_on == "source" else f" --train-on {train_on}")


def _cell_groups(rows: list[dict[str, Any]]) -> tuple[list[str], dict[tuple[str, str], list[dict[str, Any]]]]:
    """The pairs in first-seen order, and the rows of each (method label, pair)."""
    pairs: list[str] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["pair"] not in pairs:
            pairs.append(r["pair"])
        groups.setdefault((label_of(r), r["pair"]), []).append(r)
    return pairs, groups


def matrix_table(rows: list[dict[str, Any]]) -> str:
    """Methods down, pairs across (one backbone): each cell the target accuracy mean ± std over seeds, the
    A-distance before → end and the mean seconds per run."""
    backbones = {r["backbone"] for r in rows}
    if len(backbones) != 1:
        raise ValueError(f"--matrix shows one backbone; these rows have {len(backbones)}: {sorted(backbones)}")
    pairs, groups = _cell_groups(rows)
    labels = [m for m in METHODS if any((m, p) in groups for p in pairs)]
    out = ["| method | " + " | ".join(pairs) + " |", "|---|" + "---|" * len(pairs)]
    for label in labels:
        cells = []
        for pair in pairs:
            rs = groups.get((label, pair), [])
            if not rs:
                cells.append("—")
                continue
            accs = [100 * r["target_test_acc"] for r in rs]
            before = [r["a_distance_before"] for r in rs if "a_distance_before" in r]
            end = [r["a_distance_end"] for r in rs if "a_distance_end" in r]
            dist = f"A {statistics.mean(before):.2f} → {statistics.mean(end):.2f}" if before and end else "A —"
            secs = statistics.mean(r["seconds"] for r in rs)
            cells.append(f"**{mean_sd(accs, '.1f')}**<br>{dist} · {secs:.0f} s · {len(rs)} seed{'s' if len(rs) != 1 else ''}")
        out.append(f"| {label} (`{cli_flags(label)}`) | " + " | ".join(cells) + " |")
    return "\n".join(out)


#: The aims the methods issue set, checked on the table's own rows: (pair, method, baseline, points ahead
#: at least). "Above" with 0 points means strictly above; every comparison is of means over the seeds.
AIMS: tuple[tuple[str, str, str, float], ...] = (
    *((("mnist-mnist-m", m, "source only", 10.0)) for m in ("DANN", "DAN", "Deep CORAL", "CDAN", "CDAN+E", "ADDA")),
    ("mnist-mnist-m", "CDAN", "DANN", 0.0),
    ("mnist-mix-mnist-m", "KMM", "source only", 0.0),
    ("mnist-mix-mnist-m", "KLIEP", "source only", 0.0),
)


def aims_list(rows: list[dict[str, Any]]) -> str:
    """One line per aim with its verdict (met / missed by how much / not measured), from the rows."""
    _, groups = _cell_groups(rows)
    out = []
    for pair, label, base, points in AIMS:
        a, b = groups.get((label, pair)), groups.get((base, pair))
        want = f"at least {points:g} points above {base}" if points else f"above {base}" if base == "source only" \
            else f"at least as good as {base}"
        if not a or not b:
            out.append(f"- {pair}: {label} {want} — not measured")
            continue
        ma = statistics.mean(100 * r["target_test_acc"] for r in a)
        mb = statistics.mean(100 * r["target_test_acc"] for r in b)
        gap = ma - mb
        ok = gap >= points if points or base != "source only" else gap > 0
        out.append(f"- {pair}: {label} {want}: {ma:.1f} vs {mb:.1f} % ({gap:+.1f} points) — "
                   + ("**met**" if ok else f"**missed** by {points - gap if points else -gap:.1f} points"))
    return "\n".join(out)


def compact_table(rows: list[dict[str, Any]]) -> str:
    """The short table of one pair and one backbone: mean ± std, each seed's accuracy, mean A-distance."""
    cells = {(r["pair"], r["backbone"]) for r in rows}
    if len(cells) != 1:
        raise ValueError(f"--compact shows one pair and one backbone; these rows have {len(cells)}: "
                         + ", ".join(f"{p} / {b}" for p, b in sorted(cells)))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(label_of(r), []).append(r)
    seeds = ", ".join(str(r["seed"]) for r in next(iter(groups.values())))
    out = [f"| method | target test accuracy (%) mean ± std | per seed ({seeds}) | A-distance before → end |",
           "|---|---|---|---|"]
    for label, rs in groups.items():
        accs = [100 * r["target_test_acc"] for r in rs]
        per_seed = ", ".join(f"{a:.1f}" for a in accs)
        before = [r["a_distance_before"] for r in rs if "a_distance_before" in r]
        end = [r["a_distance_end"] for r in rs if "a_distance_end" in r]
        dist = f"{statistics.mean(before):.2f} → {statistics.mean(end):.2f}" if before and end else "—"
        out.append(f"| {label} (`{cli_flags(label)}`) | {mean_sd(accs)} | {per_seed} | {dist} |")
    return "\n".join(out)


def rows_from_json(paths: list[str], drop: set[tuple[str, int]] = frozenset()) -> list[dict[str, Any]]:
    """Rows of earlier runs, files read in the order given; a run repeated later (same pair, backbone,
    method, training domain, seed, epochs, image size and freeze) replaces the earlier one, so a rerun
    under new defaults is passed after the file it supersedes. ``drop`` leaves out (method label, seed)
    runs, e.g. ``{("DANN", 0)}`` for runs made under older defaults and not rerun yet."""
    runs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in paths:
        for i, r in enumerate(json.loads(Path(path).read_text())["rows"]):
            if "image_size" not in r or "freeze" not in r:  # a rerun could not be told apart: say so
                raise ValueError(f"{path}, row {i}: no image_size or freeze recorded; add the settings it ran "
                                 "with, so that a rerun of it replaces it")
            key = (r["pair"], r["backbone"], r["method"], r["train_on"], r["seed"], r["epochs"],
                   r["image_size"], r["freeze"])
            runs[key] = r
    kept = [r for r in runs.values() if (label_of(r), r["seed"]) not in drop]
    return sorted(kept, key=lambda r: (r["pair"], r["backbone"], list(METHODS).index(label_of(r)), r["seed"]))


BEGIN = re.compile(r"^<!-- bench\.accuracy (?P<args>.*) -->$")
END = "<!-- end bench.accuracy -->"


def _drop_set(items: list[str]) -> set[tuple[str, int]]:
    drop = set()
    for d in items:
        label, _, seed = d.rpartition(":")
        if label not in METHODS or not seed.isdigit():
            raise ValueError(f"--drop {d!r}: write METHOD:SEED with METHOD one of {', '.join(METHODS)}, "
                             "e.g. 'DANN:0'")
        drop.add((label, int(seed)))
    return drop


class _MarkerParser(argparse.ArgumentParser):
    def error(self, message: str):  # raise instead of printing usage and exiting
        raise ValueError(message)


def render_block(args: str) -> str:
    """The table a marker's arguments (``--from-json FILE... [--drop ...] [--compact]``) stand for."""
    ap = _MarkerParser(prog="<!-- bench.accuracy", add_help=False)
    ap.add_argument("--from-json", nargs="+", required=True)
    ap.add_argument("--drop", nargs="+", default=[])
    ap.add_argument("--compact", action="store_true")
    ap.add_argument("--matrix", action="store_true")
    ap.add_argument("--aims", action="store_true")
    try:
        a = ap.parse_args(shlex.split(args))
    except ValueError as e:
        raise ValueError(f"marker arguments {args!r}: {e}") from None
    return render(rows_from_json(a.from_json, _drop_set(a.drop)), a)


def render(rows: list[dict[str, Any]], a: argparse.Namespace) -> str:
    """The view the flags name: --compact, --matrix, --aims, or the long table."""
    if a.compact:
        return compact_table(rows)
    if a.matrix:
        return matrix_table(rows)
    if a.aims:
        return aims_list(rows)
    return table(rows)


def update_md(text: str, where: str = "<text>", begin: re.Pattern[str] = BEGIN, end: str = END,
              render_block: Any = render_block) -> str:
    """``text`` with every table between ``<!-- bench.accuracy ARGS -->`` and ``<!-- end bench.accuracy -->``
    rebuilt from ARGS; every other line is kept as it is. Another bench's tables use their own ``begin`` marker
    (with an ``args`` group), ``end`` line and ``render_block(args)`` (``bench.selection``)."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        out.append(lines[i])
        m = begin.match(lines[i])
        i += 1
        if not m:
            continue
        try:
            j = lines.index(end, i)
        except ValueError:
            raise ValueError(f"{where}, line {i}: no {end!r} after this marker") from None
        nested = [k + 1 for k in range(i, j) if begin.match(lines[k])]
        if nested:
            raise ValueError(f"{where}, line {nested[0]}: a marker inside the block opened on line {i}")
        out += render_block(m["args"]).split("\n")
        out.append(end)
        i = j + 1
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", nargs="+", default=["mnist-mnist-m"])
    ap.add_argument("--backbone", nargs="+", default=["lenet"])
    ap.add_argument("--methods", nargs="+", default=["source only", "DANN"], choices=["all", *METHODS],
                    help="table labels of method choices; 'all': every method that trains on source labels")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--freeze", type=int)
    ap.add_argument("--no-snapshots", action="store_true", help="skip the before/end domain distances")
    ap.add_argument("--out", default="bench/out/accuracy.json")
    ap.add_argument("--from-json", nargs="+", metavar="FILE",
                    help="run nothing: print the table of these files' rows (a later file's rerun of a run wins)")
    ap.add_argument("--drop", nargs="+", default=[], metavar="METHOD:SEED",
                    help="with --from-json: leave out these runs, e.g. 'DANN:0' for a run made under older defaults")
    ap.add_argument("--compact", action="store_true",
                    help="with --from-json: the short table of one pair and one backbone, each seed's accuracy shown")
    ap.add_argument("--matrix", action="store_true",
                    help="with --from-json: methods down, pairs across (one backbone)")
    ap.add_argument("--aims", action="store_true",
                    help="with --from-json: the methods issue's aims, each with its verdict")
    ap.add_argument("--update-md", nargs="+", metavar="MD",
                    help="run nothing: rebuild every '<!-- bench.accuracy ARGS -->' ... '<!-- end bench.accuracy -->' "
                         "table in these Markdown files from its ARGS (--from-json FILE... [--drop ...] [--compact])")
    a = ap.parse_args()
    if a.update_md:
        for md in a.update_md:
            path = Path(md)
            try:
                old = path.read_text(encoding="utf-8")
                new = update_md(old, md)
            except (OSError, ValueError) as e:
                ap.error(str(e))
            if new != old:
                path.write_text(new, encoding="utf-8")
            print(f"{md}: {'rewritten' if new != old else 'unchanged'}")
        return
    if a.from_json:
        try:
            print(render(rows_from_json(a.from_json, _drop_set(a.drop)), a))
        except ValueError as e:
            ap.error(str(e))
        return
    rows = []
    for pair in a.pair:
        for backbone in a.backbone:
            labels = [m for m, (_, dom) in METHODS.items() if dom == "source"] if a.methods == ["all"] \
                else a.methods
            for label in labels:
                method, train_on = METHODS[label]
                for seed in a.seeds:
                    r = one_run(pair, method, train_on, backbone, seed, a.epochs, a.image_size, a.freeze,
                               snapshots=not a.no_snapshots)
                    print(json.dumps(r), flush=True)
                    rows.append(r)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "processor": platform.processor()}
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
