"""The accuracy table rebuilt from saved runs (`python -m bench.accuracy --from-json ...`) and the Markdown
tables between markers (`--update-md`)."""

import json

import pytest

from bench.accuracy import compact_table, rows_from_json, table, update_md


def _row(method, train_on, seed, acc, **extra):
    return {"pair": "mnist-mnist-m", "backbone": "lenet", "method": method, "train_on": train_on, "seed": seed,
            "target_test_acc": acc, "source_val_acc": 0.9, "seconds": 10.0, "epochs": 10, "device": "cpu",
            "image_size": 28, "freeze": 0, **extra}


def _write(path, rows):
    path.write_text(json.dumps({"meta": {}, "rows": rows}))
    return str(path)


def test_a_later_file_rerun_replaces_the_earlier_run_and_others_stay(tmp_path):
    old = _write(tmp_path / "old.json", [_row("dann", "source", 0, 0.20), _row("finetune", "source", 0, 0.50),
                                         _row("dann", "source", 1, 0.70)])
    new = _write(tmp_path / "new.json", [_row("dann", "source", 0, 0.80)])
    rows = rows_from_json([old, new])
    dann = {r["seed"]: r["target_test_acc"] for r in rows if r["method"] == "dann"}
    assert dann == {0: 0.80, 1: 0.70}
    assert len(rows) == 3
    # source only sorts before DANN whatever the file order
    assert [r["method"] for r in rows] == ["finetune", "dann", "dann"]
    lines = table(rows).splitlines()
    dann_line = next(line for line in lines if "| DANN |" in line)
    assert "75.00 ± 7.07" in dann_line and "| 2 |" in dann_line
    # reversed order: the old seed-0 run wins
    rows = rows_from_json([new, old])
    assert {r["seed"]: r["target_test_acc"] for r in rows if r["method"] == "dann"} == {0: 0.20, 1: 0.70}


def test_runs_at_another_image_size_are_not_replaced(tmp_path):
    a = _write(tmp_path / "a.json", [_row("finetune", "target", 0, 0.60, image_size=64)])
    b = _write(tmp_path / "b.json", [_row("finetune", "target", 0, 0.90, image_size=224)])
    assert sorted(r["target_test_acc"] for r in rows_from_json([a, b])) == [0.60, 0.90]


def test_dropped_runs_are_left_out_of_the_table(tmp_path):
    f = _write(tmp_path / "f.json", [_row("dann", "source", 0, 0.20), _row("dann", "source", 1, 0.70),
                                     _row("finetune", "source", 0, 0.50)])
    rows = rows_from_json([f], {("DANN", 0)})
    assert sorted((r["method"], r["seed"]) for r in rows) == [("dann", 1), ("finetune", 0)]
    dann_line = next(line for line in table(rows).splitlines() if "| DANN |" in line)
    assert "70.00 ± 0.00" in dann_line and "| 1 |" in dann_line


def test_a_row_without_image_size_or_freeze_is_refused(tmp_path):
    old = _row("dann", "source", 0, 0.20)
    del old["image_size"]
    f = _write(tmp_path / "old.json", [old])
    with pytest.raises(ValueError, match="row 0: no image_size or freeze"):
        rows_from_json([f, _write(tmp_path / "new.json", [_row("dann", "source", 0, 0.80)])])


def test_the_compact_table_shows_each_seed_and_refuses_a_second_pair(tmp_path):
    d = {"a_distance_before": 1.3, "a_distance_end": 0.5}
    f = _write(tmp_path / "f.json", [_row("finetune", "source", s, a, **d) for s, a in ((0, 0.50), (1, 0.56))]
               + [_row("dann", "source", s, a, **d) for s, a in ((0, 0.881), (1, 0.889))])
    lines = compact_table(rows_from_json([f])).splitlines()
    assert lines[0] == "| method | target test accuracy (%) mean ± std | per seed (0, 1) | A-distance before → end |"
    assert lines[2] == "| source only (`--method finetune`) | 53.00 ± 4.24 | 50.0, 56.0 | 1.30 → 0.50 |"
    assert lines[3] == "| DANN (`--method dann`) | 88.50 ± 0.57 | 88.1, 88.9 | 1.30 → 0.50 |"
    g = _write(tmp_path / "g.json", [{**_row("dann", "source", 0, 0.5), "pair": "mnist-uci-digits"}])
    with pytest.raises(ValueError, match="one pair and one backbone"):
        compact_table(rows_from_json([f, g]))


def test_update_md_rebuilds_only_the_tables_between_markers_and_is_stable(tmp_path):
    f = _write(tmp_path / "f.json", [_row("dann", "source", 0, 0.80), _row("dann", "source", 1, 0.70)])
    text = (f"# Title\n\nProse | with a pipe.\n\n<!-- bench.accuracy --from-json {f} --compact -->\n"
            "| stale table |\n<!-- end bench.accuracy -->\n\nMore prose.\n\n"
            f"<!-- bench.accuracy --from-json {f} --drop DANN:1 -->\n<!-- end bench.accuracy -->\n")
    new = update_md(text)
    assert "stale" not in new
    assert new.startswith("# Title\n\nProse | with a pipe.\n\n<!-- bench.accuracy ")
    assert new.endswith("<!-- end bench.accuracy -->\n")
    assert "\nMore prose.\n" in new
    assert "| DANN (`--method dann`) | 75.00 ± 7.07 | 80.0, 70.0 | — |" in new
    full = next(line for line in new.splitlines() if line.startswith("| mnist-mnist-m | lenet | DANN |"))
    assert "80.00 ± 0.00" in full and "| 1 |" in full
    assert update_md(new) == new  # a rerun changes nothing


def test_update_md_names_a_marker_without_its_end_or_with_bad_arguments(tmp_path):
    f = _write(tmp_path / "f.json", [_row("dann", "source", 0, 0.80)])
    with pytest.raises(ValueError, match="README.md, line 2: no '<!-- end bench.accuracy -->'"):
        update_md(f"x\n<!-- bench.accuracy --from-json {f} -->\n| table |\n", "README.md")
    with pytest.raises(ValueError, match="marker arguments"):
        update_md(f"<!-- bench.accuracy --from-json {f} --colour red -->\n<!-- end bench.accuracy -->\n")
    with pytest.raises(ValueError, match="--drop 'DANN'"):
        update_md(f"<!-- bench.accuracy --from-json {f} --drop DANN -->\n<!-- end bench.accuracy -->\n")


def test_the_matrix_puts_methods_down_and_pairs_across_with_flags_from_the_registry(tmp_path):
    f = _write(tmp_path / "m.json", [
        _row("finetune", "source", 0, 0.50, a_distance_before=1.3, a_distance_end=1.2),
        _row("finetune", "source", 1, 0.60, a_distance_before=1.3, a_distance_end=1.4),
        _row("dann", "source", 0, 0.80, pair="mnist-uci-digits", seconds=30.0)])
    from bench.accuracy import matrix_table

    lines = matrix_table(rows_from_json([f])).splitlines()
    assert lines[0] == "| method | mnist-mnist-m | mnist-uci-digits |"
    assert lines[2] == ("| source only (`--method finetune`) | **55.0 ± 7.1**<br>A 1.30 → 1.30 · 10 s · 2 seeds "
                        "| — |")
    assert lines[3] == "| DANN (`--method dann`) | — | **80.0 ± 0.0**<br>A — · 30 s · 1 seed |"


def test_aims_are_judged_on_the_rows_means(tmp_path):
    from bench.accuracy import aims_list

    f = _write(tmp_path / "a.json", [_row("finetune", "source", 0, 0.50), _row("finetune", "source", 1, 0.54),
                                     _row("dann", "source", 0, 0.70), _row("dann", "source", 1, 0.60)])
    text = aims_list(rows_from_json([f]))
    assert ("- mnist-mnist-m: DANN at least 10 points above source only: 65.0 vs 52.0 % (+13.0 points) — **met**"
            in text.splitlines())
    f2 = _write(tmp_path / "b.json", [_row("dann", "source", 0, 0.58)])
    text = aims_list(rows_from_json([f, f2]))  # seed 0 rerun: DANN mean 59 %, 7 points ahead
    assert "(+7.0 points) — **missed** by 3.0 points" in text
    assert "KMM above source only — not measured" in text
