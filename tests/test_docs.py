"""The front door stays short and true: README length, generated result tables, relative links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.accuracy import BEGIN, update_md

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ["README.md", "docs/RESULTS.md"]  # files whose tables `bench.accuracy --update-md` rebuilds
LINKED = ["README.md", "BENCHMARKS.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("name", GENERATED)
def test_result_tables_are_what_bench_accuracy_rebuilds_from_bench_out(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # the markers name bench/out/*.json relative to the repository root
    text = (ROOT / name).read_text(encoding="utf-8")
    assert any(BEGIN.match(line) for line in text.splitlines()), f"{name} has no generated table"
    assert update_md(text, name) == text, (
        f"{name} differs from its tables rebuilt from bench/out; run "
        "`.venv/bin/python -m bench.accuracy --update-md README.md docs/RESULTS.md` and commit the result")


def test_readme_is_at_most_120_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 120, f"README.md has {len(lines)} lines; results and details belong in docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", md.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6} +(.+?) *$", text, flags=re.M)}


def _links(md: Path) -> list[str]:
    text = md.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # fenced code
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code
    inline = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    reference = re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, flags=re.M)
    return inline + reference


@pytest.mark.parametrize("name", LINKED)
def test_every_relative_link_points_to_a_file_that_exists(name):
    md = ROOT / name
    broken = []
    for link in _links(md):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, flags=re.I):  # http:, https:, mailto: ...
            continue
        path, _, anchor = link.partition("#")
        target = (md.parent / path).resolve() if path else md
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link} (no heading with that anchor in {target.relative_to(ROOT)})")
    assert not broken, f"{name}: " + "; ".join(broken)


def test_the_link_finder_sees_inline_image_and_reference_links(tmp_path):
    md = tmp_path / "a.md"
    md.write_text("# A title: here\n\nSee [b](b.md#x), ![pic](img/p.png \"t\") and `[not](code.md)`.\n\n"
                  "```\n[no](fenced.md)\n```\n\n[ref]: other.md\n", encoding="utf-8")
    assert _links(md) == ["b.md#x", "img/p.png", "other.md"]
    assert _anchors(md) == {"a-title-here"}
    assert _slug("SYN digits → MNIST (10 epochs, 3 seeds)") == "syn-digits--mnist-10-epochs-3-seeds"


def test_benchmarks_md_is_what_make_bench_wrote_from_bench_out():
    """BENCHMARKS.md holds one whole `make bench` run and nothing else: it is the report rendered from that run's
    raw numbers (bench/out/bench.json). Single-section runs between whole runs go to docs/BENCHMARK_HISTORY.md."""
    import json

    from bench import report

    rendered = report.render(json.loads((ROOT / "bench" / "out" / "bench.json").read_text(encoding="utf-8")))
    assert (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8") == rendered, (
        "BENCHMARKS.md differs from `python -m bench --render-only`; rerun `make bench` (or, after a change to "
        "bench/report.py alone, `.venv/bin/python -m bench --render-only`) and keep hand-written runs in "
        "docs/BENCHMARK_HISTORY.md")
