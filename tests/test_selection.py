"""Choosing a model without target labels (tl_core/selection.py): each score against a hand computation, no score
reads a target label, the choice follows the criterion (never target accuracy), early stopping ends a real run
cleanly, the selected checkpoint is written and is what export loads, and old configs load."""

from __future__ import annotations

import dataclasses
import json
import math
import threading

import numpy as np
import pytest
import torch

from _tiny import StopInEpoch, tiny_config
from test_export import TINY, cli
from test_pages import manager  # noqa: F401 - the pages' recording job manager (a fixture)
from tl_core import selection
from tl_core.config import RunConfig
from tl_core.recorder import MemoryRecorder

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1]])


# ------------------------------------------------------------------ each score by hand
def test_information_maximisation_is_entropy_of_the_mean_minus_mean_entropy():
    def h(p):
        return -sum(x * math.log(x) for x in p)

    mean = [sum(row[j] for row in P) / 4 for j in range(3)]
    want = h(mean) - sum(h(row) for row in P) / 4
    assert selection.information_maximisation(P) == pytest.approx(want, rel=1e-12)
    assert selection.information_maximisation(np.eye(3)) == pytest.approx(math.log(3))  # confident and diverse
    assert selection.information_maximisation(np.tile([[1.0, 0, 0]], (5, 1))) == pytest.approx(0.0, abs=1e-9)


def test_soft_neighbourhood_density_matches_a_loop_over_pairs():
    tau = 0.05
    f = [row / math.sqrt(sum(x * x for x in row)) for row in P]
    ents = []
    for i in range(4):
        sims = {j: sum(a * b for a, b in zip(f[i], f[j])) / tau for j in range(4) if j != i}
        z = sum(math.exp(s) for s in sims.values())
        ents.append(-sum(math.exp(s) / z * math.log(math.exp(s) / z) for s in sims.values()))
    assert selection.soft_neighbourhood_density(P, temperature=tau) == pytest.approx(sum(ents) / 4, rel=1e-9)


def test_dev_risk_uses_the_control_variate_of_you_et_al():
    loss = np.array([0.5, 1.0, 2.0, 0.1])
    w = np.array([0.5, 1.5, 2.0, 0.0])
    weighted = [a * b for a, b in zip(loss, w)]
    mw, mL = sum(w) / 4, sum(weighted) / 4
    cov = sum((a - mL) * (b - mw) for a, b in zip(weighted, w)) / 3
    var = sum((b - mw) ** 2 for b in w) / 3
    eta = -cov / var
    assert selection.dev_risk(loss, w) == pytest.approx(mL + eta * mw - eta, rel=1e-12)
    # with weights that average exactly 1 and do not vary, DEV is the plain mean loss
    assert selection.dev_risk(loss, np.ones(4)) == pytest.approx(loss.mean())


def test_domain_weights_favour_source_images_that_look_like_the_target():
    rng = np.random.default_rng(0)
    src = np.concatenate([rng.normal(0, 1, (100, 4)), rng.normal(3, 1, (100, 4))])  # half near the target
    tgt = rng.normal(3, 1, (200, 4))
    w = selection.domain_weights(src, tgt)
    assert w.shape == (200,) and (w > 0).all()
    assert w[100:].mean() > 10 * w[:100].mean()


def test_label_free_scores_from_known_arrays():
    src_y = np.array([0, 1, 1, 0])
    s = selection.label_free_scores(P, src_y, np.eye(4), P[::-1], np.eye(4)[::-1])
    assert set(s) == set(selection.CRITERIA)
    assert s["source_val_acc"] == 0.75  # rows 0, 1 and 3 right, row 2 predicted 2
    assert s["target_entropy"] == pytest.approx(selection.entropy_rows(P).mean())
    assert s["target_im"] == pytest.approx(selection.information_maximisation(P))


# ------------------------------------------------------------------ no target label is read
def test_no_score_changes_when_the_target_labels_are_permuted():
    from tl_core.evaluation import evaluate
    from tl_core.prepare import prepare

    cfg = tiny_config("finetune")
    torch.manual_seed(0)
    p = prepare(cfg, torch.device("cpu"))
    before, _ = evaluate(p)
    x, y = p.tgt_test
    permuted = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(3))]
    shuffled = dataclasses.replace(p, tgt_test=(x, permuted))
    after, _ = evaluate(shuffled)
    assert set(selection.CRITERIA) <= set(before)
    for name in selection.CRITERIA:
        assert after[name] == before[name], name
    assert after["target_test_acc"] != before["target_test_acc"]  # the labels did change what is reported


def test_a_run_whose_source_is_its_target_evaluates_one_pass_with_the_same_scores(monkeypatch):
    from tl_core import evaluation
    from tl_core.prepare import prepare

    cfg = tiny_config("finetune")
    cfg.data.target = cfg.data.source  # e.g. the pretraining demo: few MNIST labels, tested on MNIST
    p = prepare(cfg, torch.device("cpu"))
    assert p.src_val[0] is not p.tgt_test[0] and evaluation._same_pass(p)
    passes = []
    real = evaluation.predict
    monkeypatch.setattr(evaluation, "predict", lambda *a, **k: passes.append(a[2]) or real(*a, **k))
    once, extra = evaluation.evaluate(p)
    assert passes == ["source"]
    monkeypatch.setattr(evaluation, "_same_pass", lambda p: False)
    twice, extra2 = evaluation.evaluate(p)
    assert passes == ["source", "source", "target"]
    assert once == twice and extra == extra2
    other = prepare(tiny_config("finetune"), torch.device("cpu"))  # another target: two passes
    assert not evaluation._same_pass(other)


# ------------------------------------------------------------------ the choice
ROWS = [{"epoch": 1, "source_val_acc": 0.80, "dev_risk": 0.9, "target_test_acc": 0.30},
        {"epoch": 2, "source_val_acc": 0.95, "dev_risk": 0.5, "target_test_acc": 0.25},
        {"epoch": 3, "source_val_acc": 0.95, "dev_risk": float("nan"), "target_test_acc": 0.60},
        {"epoch": 4, "source_val_acc": 0.90, "dev_risk": 0.7, "target_test_acc": 0.40}]


def test_choose_follows_the_criterion_not_the_target_accuracy():
    chosen = selection.choose(ROWS, "source_val_acc")
    # epochs 2 and 3 tie: the later, more trained one
    assert chosen == {"criterion": "source_val_acc", "epoch": 3, "score": 0.95, "target_test_acc": 0.60}
    assert selection.choose(ROWS, "dev_risk")["epoch"] == 2  # lower is better; NaN never chosen
    assert selection.oracle(ROWS) == {"epoch": 3, "target_test_acc": 0.60}
    blind = [{k: v for k, v in r.items() if k != "target_test_acc"} for r in ROWS]  # an unlabelled target
    assert selection.choose(blind, "source_val_acc")["epoch"] == 3
    assert selection.choose(blind, "source_val_acc")["target_test_acc"] is None
    assert selection.oracle(blind) == {"epoch": None, "target_test_acc": None}
    with pytest.raises(KeyError, match="known: source_val_acc"):
        selection.choose(ROWS, "target_test_acc")  # target accuracy is not a criterion


# ------------------------------------------------------------------ real runs
def scripted(monkeypatch, scores: list[float], key: str = "source_val_acc") -> None:
    """The trainer's evaluation, real, with the criterion's score replaced by ``scores`` in turn."""
    from tl_core import trainer

    real, it = trainer.evaluate, iter(scores)

    def evaluate(p, outputs=None):
        metrics, extra = real(p, outputs)
        return {**metrics, key: next(it)}, extra

    monkeypatch.setattr(trainer, "evaluate", evaluate)


def test_early_stopping_ends_a_run_cleanly_with_a_note(monkeypatch, tmp_path):
    from tl_core import checkpoint, trainer

    cfg = tiny_config("finetune")
    cfg.optim.epochs = 5
    cfg.snapshot.enabled = False
    cfg.selection.patience = 1
    scripted(monkeypatch, [0.5, 0.6, 0.4, 0.9, 0.9])
    rec = MemoryRecorder(tmp_path)
    out = trainer.run(cfg, rec, threading.Event())
    assert out["status"] == "completed"
    assert out["note"] == "stopped early at epoch 3: source_val_acc did not improve for 1 epoch"
    assert [e["epoch"] for e in rec.epochs] == [1, 2, 3]
    assert rec.selected_epochs == [1, 2]
    state = checkpoint.load_checkpoint_file(checkpoint.selected_path(tmp_path))
    assert state["epoch"] == 2 and state["selection"]["best_epoch"] == 2
    assert checkpoint.load_checkpoint_file(checkpoint.checkpoint_path(tmp_path))["epoch"] == 3  # resume: the last


def test_the_cli_chooses_by_criterion_and_export_loads_the_selected_checkpoint(monkeypatch, tmp_path):
    from tl_core import export
    from tl_core.checkpoint import checkpoint_path, load_checkpoint_file, selected_path
    from tl_core.store import RunStore

    scripted(monkeypatch, [0.9, 0.5, 0.4])
    args = [a if a != "1" or i == 0 or TINY[i - 1] != "--epochs" else "3" for i, a in enumerate(TINY)]
    proc = cli(tmp_path, "run", *args, "--criterion", "source_val_acc")
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["chosen"]["criterion"] == "source_val_acc" and line["chosen"]["epoch"] == 1
    assert line["chosen"]["score"] == 0.9
    assert line["oracle"]["epoch"] in (1, 2, 3) and 0 <= line["oracle"]["target_test_acc"] <= 1
    store = RunStore(tmp_path)
    summary = store.get_run(line["run_id"]).summary
    assert summary["chosen"] == line["chosen"] and summary["oracle"] == line["oracle"]
    run_dir = store.run_dir(line["run_id"])
    chosen, last = load_checkpoint_file(selected_path(run_dir)), load_checkpoint_file(checkpoint_path(run_dir))
    assert (chosen["epoch"], last["epoch"]) == (1, 3)
    nw = export.load_run(store, line["run_id"])
    assert nw.meta["epoch"] == 1 and nw.meta["checkpoint"] == "selected.pt"
    assert nw.meta["target_test_acc"] == line["chosen"]["target_test_acc"]
    exported = nw.net.head.state_dict()
    for name, value in chosen["head"].items():
        assert torch.equal(exported[name], value)
    assert any(not torch.equal(exported[n], v) for n, v in last["head"].items())


def test_a_resumed_run_keeps_counting_from_its_checkpoint(monkeypatch, tmp_path):
    from tl_core import checkpoint, trainer

    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)  # the stop lands inside epoch 3
    cfg = tiny_config("finetune")
    cfg.optim.epochs = 4
    cfg.snapshot.enabled = False
    cfg.selection.patience = 2
    scripted(monkeypatch, [0.7, 0.6, 0.5, 0.9])  # epoch 1 best; 2 and 3 do not improve: stop after 3
    stop = threading.Event()
    first = trainer.run(cfg, StopInEpoch(tmp_path, 3, stop), stop)
    assert first["status"] == "stopped"  # the user stopped it in epoch 3; two epochs are done
    rec = MemoryRecorder(tmp_path)
    out = trainer.run(cfg, rec, threading.Event(), resume=checkpoint.checkpoint_path(tmp_path))
    assert out["note"] == "stopped early at epoch 3: source_val_acc did not improve for 2 epochs"
    assert rec.selected_epochs == []  # epoch 3 did not beat epoch 1's score, kept across the resume
    assert checkpoint.load_checkpoint_file(checkpoint.selected_path(tmp_path))["epoch"] == 1


# ------------------------------------------------------------------ config
def test_old_config_json_without_selection_loads_with_the_defaults():
    old = RunConfig().to_dict()
    del old["selection"]
    cfg = RunConfig.from_json(json.dumps(old))
    assert cfg.selection.criterion == selection.DEFAULT_CRITERION and cfg.selection.patience == 0
    assert cfg.validate() == []
    cfg.selection.criterion, cfg.selection.patience = "target_test_acc", -1
    problems = cfg.validate()
    assert any(p.startswith("selection.criterion:") for p in problems)
    assert any(p.startswith("selection.patience:") for p in problems)


# ------------------------------------------------------------------ pages
def _finished_run(store, criterion: str = "target_snd") -> str:
    """A completed run whose summary holds what execute.finish_run writes (epochs logged, chosen and oracle)."""
    from test_pages import add_run
    from tl_core.execute import finish_run

    run_id = add_run(store, "completed", name="chosen-run")
    for e, (snd, acc) in enumerate([(5.0, 0.30), (6.0, 0.42), (5.5, 0.55)], start=1):
        store.log_epoch(run_id, e, 10 * e, {"source_val_acc": 0.9, "target_test_acc": acc, "target_snd": snd})
    cfg = RunConfig(name="chosen-run")
    cfg.selection.criterion = criterion
    finish_run(store, run_id, {"status": "completed"}, config=cfg)
    return run_id


def test_monitor_and_runs_show_the_chosen_epoch_and_the_labelled_oracle(manager):
    from test_pages import open_app, texts
    from tl_ui import keys

    _finished_run(manager.store)
    at = open_app(keys.PAGE_MONITOR)
    said = texts(at)
    assert "Chosen by Soft neighbourhood density (SND): epoch 2, target accuracy 42.0 %" in said
    assert "Best epoch 3, target accuracy 55.0 % (oracle: uses target labels)" in said
    at.switch_page(keys.PAGE_RUNS).run()
    table = at.dataframe[0].value
    assert table.loc[0, "Chosen target acc"] == pytest.approx(42.0)
    assert table.loc[0, "Chosen by"] == "target_snd · epoch 2"
    assert table.loc[0, "Best target acc"] == pytest.approx(55.0)


def test_setup_names_the_default_criterion_and_its_choice_reaches_the_run(manager):
    from test_pages import open_app
    from tl_ui import keys

    at = open_app(keys.PAGE_SETUP)
    box = at.selectbox(key=keys.setup_key("selection.criterion"))
    assert box.value == selection.DEFAULT_CRITERION
    assert f"{selection.CRITERIA[selection.DEFAULT_CRITERION].label} (default)" in box.options
    box.set_value("dev_risk").run()
    at.number_input(key=keys.setup_key("selection.patience")).set_value(2).run()
    at.button(key=keys.SETUP_START).click().run()
    assert not at.exception, [e.value for e in at.exception]
    ((_, cfg, _),) = manager.submitted
    assert (cfg.selection.criterion, cfg.selection.patience) == ("dev_risk", 2)


def test_the_results_table_of_the_criteria_is_current(repo_root):
    from bench import selection as bench_selection
    from bench.accuracy import update_md

    text = (repo_root / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    assert any(bench_selection.BEGIN.match(line) for line in text.split("\n")), "no bench.selection table"
    assert update_md(text, "docs/RESULTS.md", begin=bench_selection.BEGIN, end=bench_selection.END,
                     render_block=bench_selection.render_block) == text, (
        "docs/RESULTS.md: rebuild with .venv/bin/python -m bench.selection --update-md docs/RESULTS.md")


def test_the_bench_table_by_pair_gives_each_criterions_mean_gap_and_runs_within_2_points():
    from bench import selection as bench_selection

    def run(pair, accs, src):  # source validation accuracy per epoch picks the epoch; accs are target accuracies
        return {"pair": pair, "method": "dann", "seed": 0, "per_epoch": [
            {"epoch": i + 1, "target_test_acc": a, "source_val_acc": s, **{k: 0.0 for k in selection.CRITERIA
                                                                           if k != "source_val_acc"}}
            for i, (a, s) in enumerate(zip(accs, src))]}

    rows = [run("a-b", [0.50, 0.60, 0.55], [0.9, 0.8, 0.7]),   # chooses epoch 1: 10 points below the oracle
            run("a-b", [0.50, 0.60, 0.59], [0.7, 0.8, 0.9]),   # chooses epoch 3: 1 point
            run("c-d", [0.70, 0.70, 0.70], [0.7, 0.8, 0.9])]   # 0 points
    table = bench_selection.by_group_table(rows, "pair").splitlines()
    assert table[0] == "| criterion | a-b | c-d |"
    assert "| `source_val_acc` | 5.5 (1/2) | 0.0 (1/1) |" in table
    assert "| last epoch | 3.0 (1/2) | 0.0 (1/1) |" in table  # 5 and 1 points
