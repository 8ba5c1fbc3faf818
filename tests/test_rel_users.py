"""Reliability of the engine (issue 5), docs/WHAT_HAPPENS_WHEN.md "Several users at once": two
sessions submitting at the same moment each get their own run, and stopping one run stops only that
run. Shared helpers are in ``_reliability.py``.
"""

from __future__ import annotations

import threading

import pytest

from tl_core import trainer
from tl_core.recorder import MemoryRecorder

from _reliability import home, manager  # noqa: F401  (pytest fixtures, used by name)
from _reliability import small, wait_progress, wait_status


# ================================================================ several users
def test_two_users_submitting_at_the_same_moment_get_their_own_runs(manager):
    configs = {"alice": small("finetune"), "bob": small("dann")}
    configs["bob"].seed = 2
    ids: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def user(name: str) -> None:
        barrier.wait()
        ids[name] = manager.submit(configs[name], owner=name)

    threads = [threading.Thread(target=user, args=(n,)) for n in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids.values())) == 2
    for run_id in ids.values():
        assert manager.wait(run_id, 120)
    for name, run_id in ids.items():  # (the solo runs below must not overlap a queued one: one RNG per process)
        rec = manager.store.get_run(run_id)
        assert rec.status == "completed" and rec.owner == name
        steps = manager.store.step_metrics(run_id)
        assert steps["step"].tolist() == list(range(1, 9))  # one series each, never interleaved
        solo = MemoryRecorder()
        trainer.run(configs[name], solo)  # the same run alone gives the same numbers
        assert steps["loss"].tolist() == pytest.approx([r["loss"] for r in solo.steps], rel=1e-5)
    assert "loss_domain" in manager.store.step_metrics(ids["bob"])
    assert "loss_domain" not in manager.store.step_metrics(ids["alice"])


def test_cancelling_one_users_run_stops_only_that_run(manager):
    long = small("finetune", epochs=50)
    a = manager.submit(long, owner="alice")
    b = manager.submit(small("finetune"), owner="bob")
    step = wait_progress(manager.store, a, 1)
    assert manager.cancel(b)  # bob stops his queued run: at once, not after alice's run
    rec_b = wait_status(manager.store, b, ("stopped",), timeout=5)
    assert rec_b.error == "Stopped before it started." and not manager.is_active(b)
    wait_progress(manager.store, a, step + 1)  # alice's run goes on
    assert manager.store.get_run(a).status == "running" and manager.is_active(a)
    assert manager.cancel(a)
    assert wait_status(manager.store, a, ("stopped",)).error == "Stopped by the user."
