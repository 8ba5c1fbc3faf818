"""The accuracy table rebuilt from saved runs (`python -m bench.accuracy --from-json ...`)."""

import json

import pytest

from bench.accuracy import rows_from_json, table


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
