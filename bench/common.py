"""Shared pieces of the benchmarks: timing hooks on the trainer's recorder, statistics,
alternation, machine facts. Nothing here asserts: benchmarks measure and report.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable


# ------------------------------------------------------------------ statistics
def summary(values: list[float]) -> dict[str, Any]:
    """Median, min, max and count of a list of numbers (the spread we report)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals),
            "values": [round(v, 6) for v in vals]}


def alternate(pairs: int, first: Callable[[], Any], second: Callable[[], Any],
              budget_s: float | None = None, label: str = "") -> list[tuple[Any, Any]]:
    """Measure two sides up to ``pairs`` times, in the order A B, B A, A B, ... (drift cancels out).

    With ``budget_s``, stops starting new pairs once that many seconds have passed (after
    at least two pairs), so a slow or busy machine gets fewer pairs rather than a timeout;
    the number of pairs is reported with every result.

    Returns one (first result, second result) tuple per pair, whatever order they ran in.
    """
    out = []
    t0 = time.perf_counter()
    for i in range(pairs):
        if budget_s is not None and i >= 2 and time.perf_counter() - t0 > budget_s:
            break
        if i % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        out.append((a, b))
        if label:
            print(f"  {label}: pair {i + 1}/{pairs} after {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                  flush=True)
    return out


# -------------------------------------------------------------- machine facts
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc)."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


class ProcessTreeCPU:
    """CPU seconds used by every process this one started, directly or not, sampled from /proc.

    ``RUSAGE_CHILDREN`` counts a child only once it is waited for, and a grandchild only if its own
    parent waited for it: a benchmark's Chromium (under Playwright's driver) and the server's projector and
    training processes are killed without that, and their CPU time would show up as other work on the
    machine. A thread samples the process tree every ``interval`` seconds and keeps each process's latest
    CPU time (a process keeps being read after its parent exits); a process loses at most its last interval.
    """

    def __init__(self, interval: float = 1.0) -> None:
        import threading

        self._interval = interval
        self._seen: dict[tuple[int, int], float] = {}  # (pid, start time): CPU seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)

    def start(self) -> ProcessTreeCPU:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        with self._lock:
            ours = set(descendants(os.getpid())[1:])  # under this process now
            for pid in ours | {pid for pid, _ in self._seen}:  # and those seen before, whose parent may be gone
                try:
                    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    key, cpu = (pid, int(f[19])), (int(f[11]) + int(f[12])) / tick
                except (OSError, IndexError, ValueError):
                    continue
                if pid in ours or key in self._seen:  # a seen pid now used by another process is not ours
                    self._seen[key] = max(self._seen.get(key, 0.0), cpu)

    def cpu_s(self) -> float:
        """CPU seconds of all the processes seen so far (sampled once more now)."""
        self.sample()
        with self._lock:
            return sum(self._seen.values())


def cpu_counters(tree: ProcessTreeCPU | None = None) -> dict[str, float] | None:
    """Machine-wide busy and steal CPU seconds (/proc/stat), our own CPU seconds (this process and its
    children: with ``tree``, every process started under it, finished or not; else the finished
    children it waited for), and the time, for :func:`other_work`. None where /proc is missing."""
    import resource

    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    v = [int(x) for x in fields]
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    usage = [resource.getrusage(resource.RUSAGE_SELF)] + ([] if tree else [resource.getrusage(resource.RUSAGE_CHILDREN)])
    ours = sum(u.ru_utime + u.ru_stime for u in usage) + (tree.cpu_s() if tree else 0.0)
    return {"busy_s": (user + nice + system + irq + softirq) / hz, "steal_s": steal / hz, "ours_s": ours,
            "t": time.monotonic()}


def other_work(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    """How many cores, on average, other work kept busy between two :func:`cpu_counters` readings.

    ``other_cores``: machine-wide busy CPU time not spent by the benchmark's processes;
    ``steal_cores``: time the hypervisor gave to other machines. Both per second of wall time.
    """
    if not before or not after or after["t"] <= before["t"]:
        return None
    wall = after["t"] - before["t"]
    other = (after["busy_s"] - before["busy_s"]) - (after["ours_s"] - before["ours_s"])
    return {"other_cores": round(max(0.0, other) / wall, 2),
            "steal_cores": round((after["steal_s"] - before["steal_s"]) / wall, 2)}


def machine_facts() -> dict[str, Any]:
    """CPU, cores, memory, torch build, CUDA device (if any)."""
    import torch

    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }


# ------------------------------------------------------- timing the trainer
class TimingRecorder:
    """Wraps a recorder and notes when the trainer calls it, to time its training loop.

    The trainer calls ``progress`` once after preparing data, model and optimiser (and,
    for frozen stages, after caching their outputs), ``log_steps``/``progress`` at least
    every 0.5 s inside the step loop and right after its last step, then ``log_epoch``
    after evaluating. So one epoch's *loop time* runs from the last recorder call before
    the epoch's first step rows (the post-prepare ``progress`` for epoch 1, the end-of-
    epoch ``progress`` for later epochs) to the last ``log_steps``/``progress`` call
    before its ``log_epoch``. It includes everything the trainer does per step
    (shuffling, lr schedule, indexing, normalising, method, loss check, backward,
    optimiser, metric rows, flushes) and excludes preparation, evaluation, checkpoints
    and snapshots.

    Args:
        inner: the recorder that does the real work (MemoryRecorder, StoreRecorder).
        sync: called before each timestamp (``torch.cuda.synchronize`` on a GPU).
    """

    def __init__(self, inner: Any, sync: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.sync = sync
        self.t_created = time.perf_counter()
        self.events: list[tuple[str, float, int | None]] = []

    def __getattr__(self, name: str) -> Any:  # everything not timed goes straight through
        return getattr(self.inner, name)

    def _now(self) -> float:
        if self.sync is not None:
            self.sync()
        return time.perf_counter()

    def progress(self, **kw: Any) -> None:
        self.events.append(("progress", self._now(), kw.get("step")))
        self.inner.progress(**kw)

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        self.events.append(("steps", self._now(), int(rows[-1]["step"]) if rows else None))
        self.inner.log_steps(rows)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], extra: dict[str, Any]) -> None:
        self.events.append(("epoch", time.perf_counter(), epoch))
        self.inner.log_epoch(epoch, step, metrics, extra)

    def save_snapshot(self, idx: int, step: int, epoch: int, features: Any, metrics: dict[str, Any]) -> None:
        self.inner.save_snapshot(idx, step, epoch, features, metrics)
        self.events.append(("snapshot", time.perf_counter(), idx))

    # ------------------------------------------------------------- results
    def setup_s(self) -> float:
        """Seconds from creating this recorder (just before ``run``) to the first ``progress``."""
        first = next(t for kind, t, _ in self.events if kind == "progress")
        return first - self.t_created

    def epoch_loop_s(self) -> list[float]:
        """Loop time of each completed epoch (see the class docstring)."""
        out: list[float] = []
        start: float | None = None
        last: float | None = None
        in_epoch = False
        for kind, t, _ in self.events:
            if kind == "epoch":
                if in_epoch and start is not None and last is not None:
                    out.append(last - start)
                in_epoch, start, last = False, None, None
            elif kind == "steps":
                in_epoch = True
                last = t
            elif in_epoch:  # progress during the loop
                last = t
            else:  # before the first step rows of an epoch: the loop starts after this
                start = t
        return out


def device_sync(device: str) -> Callable[[], None] | None:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return None


def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"
