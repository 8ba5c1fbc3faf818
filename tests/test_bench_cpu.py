"""The benchmark's own CPU time counts every process it started, so that its servers, browsers and projectors
are not reported as other work on the machine (bench.common.ProcessTreeCPU)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

from bench.common import ProcessTreeCPU, cpu_counters, other_work

# A child that starts a grandchild burning 0.8 s of CPU and exits without waiting for it (as Playwright's
# driver leaves Chromium, or a stopped server its projector): the grandchild goes on as an orphan.
_CHILD = ("import subprocess, sys, time\n"
          "subprocess.Popen([sys.executable, '-c', 'import time\\nt = time.process_time()\\n"
          "while time.process_time() - t < 0.8: pass'])\n"
          "time.sleep(0.4)\n")


def _orphan_burn() -> None:
    subprocess.run([sys.executable, "-c", _CHILD], check=True)  # waited for; its grandchild is not


def test_an_orphaned_grandchild_counts_as_ours_not_as_other_work():
    tree = ProcessTreeCPU(interval=0.1).start()
    try:
        before = cpu_counters(tree)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        _orphan_burn()
        time.sleep(1.2)  # the grandchild finishes after its parent has gone
        after = cpu_counters(tree)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        tree.stop()
    waited = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    ours = after["ours_s"] - before["ours_s"]
    assert waited < 0.5, "the grandchild is not in RUSAGE_CHILDREN: its parent never waited for it"
    assert ours >= 0.7, f"the grandchild's CPU is ours: {ours:.2f} s counted"
    # other work is what the machine did beyond that (not asserted: the machine may be busy while this runs)
    assert set(other_work(before, after)) == {"other_cores", "steal_cores"}
