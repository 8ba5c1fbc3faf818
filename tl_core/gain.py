"""Transfer gain: how many points of target accuracy a run wins (or loses) against its baseline.

The one owner of the baseline rule; Runs, Monitor, the command line, the report and the
"What is pretraining worth?" demo all ask here.

**Which run is the baseline** (:func:`baseline_config`), everything else identical (data, labels per
class, seed, optimiser, epochs, head, ...):

- an adaptation method (any method other than ``finetune``): **source only**: the same run with
  method ``finetune`` on the source labels and its default settings (extras kept);
- a fine-tune of pretrained weights (``finetune`` on source labels with a backbone saved by a run,
  ``run:<id>``, or a registered backbone that has pretrained weights and ``pretrained`` on):
  **training from scratch**: the backbone's architecture without weights, no frozen stage, no extras
  (L2-SP, gradual unfreezing mean nothing without weights), backbone learning-rate multiplier 1 and no
  layer-wise decay;
- anything else (a from-scratch source-only run, a fine-tune on target labels): none, it is a baseline.

**Which stored run matches** (:func:`config_key`): a *completed* run whose configuration equals the
baseline's once the run's name, snapshot settings, device, AMP, data folder and download permission
are left out (they do not change what is learnt) and ``pretrained`` is read as False for backbones
that have no weights. The newest match wins.

**The accuracy compared** (:func:`reported_accuracy`): the target test accuracy of the checkpoint the
run chose without target labels (``summary["chosen"]``) when the run chose one, else of its last epoch;
the last epoch's when source and target are one data set (their validation and test images are the same
then); the same rule for both runs. A target without labels gives no gain (said so, never a made-up number).
Torch-free: the pages import it.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from tl_core.config import RunConfig

SOURCE_ONLY = "source only"
FROM_SCRATCH = "training from scratch"
#: Settings that do not change what a run learns; left out when runs are matched.
_IGNORED_TOP = ("name", "snapshot", "device", "amp")
_IGNORED_DATA = ("data_root", "allow_download")
#: What Runs, Monitor and the CLI say when a run's target has no labels.
NO_LABELS = "transfer gain: not available (the target has no labels)"


def _has_weights(backbone: str) -> bool:
    """True when ``backbone`` brings pretrained weights: a run's saved backbone, or a registered one with weights."""
    from tl_core.backbones import RUN_PREFIX, has_pretrained_weights

    return backbone.startswith(RUN_PREFIX) or has_pretrained_weights(backbone)


def _architecture(backbone: str) -> str:
    """The registered architecture of ``backbone`` (``run:<id>`` -> what that run saved, or what it trains)."""
    from tl_core.backbones import RUN_PREFIX, BackboneError, get_info

    if not backbone.startswith(RUN_PREFIX):
        return backbone
    try:
        return get_info(backbone).arch
    except (KeyError, BackboneError):
        from tl_core.backbones import pending_architecture

        arch = pending_architecture(backbone)  # a run that is still queued or running: what it trains
        if arch is None:
            raise
        return arch


def baseline_kind(config: RunConfig) -> str | None:
    """'source only', 'training from scratch', or None when ``config`` is itself a baseline."""
    me = config.method
    if me.name != "finetune":
        return SOURCE_ONLY
    if me.train_on == "source" and config.model.pretrained and _has_weights(config.model.backbone):
        return FROM_SCRATCH
    return None


def baseline_config(config: RunConfig, arch: str | None = None) -> RunConfig | None:
    """The configuration of ``config``'s baseline (see the module docstring), or None when it has none.

    ``arch``: the architecture of the backbone when the caller knows it (a ``run:<id>`` not saved yet)."""
    kind = baseline_kind(config)
    if kind is None:
        return None
    base = copy.deepcopy(config)
    if kind == SOURCE_ONLY:
        base.method.name, base.method.train_on, base.method.params = "finetune", "source", {}
        base.name = f"Source only (baseline of {config.label()})"
    else:
        base.model.backbone = arch or _architecture(config.model.backbone)
        base.model.pretrained, base.model.freeze = False, 0
        base.method.extras = []
        base.optim.backbone_lr_mult, base.optim.lr_decay = 1.0, 1.0
        base.name = f"From scratch (baseline of {config.label()})"
    return base


def config_key(config: RunConfig | dict[str, Any]) -> str:
    """What two runs must share to be compared (JSON); see the module docstring."""
    import json

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    d = cfg.to_dict()
    for k in _IGNORED_TOP:
        d.pop(k, None)
    for k in _IGNORED_DATA:
        d["data"].pop(k, None)
    if d["model"]["pretrained"] and not _has_weights(d["model"]["backbone"]):
        d["model"]["pretrained"] = False
    return json.dumps(d, sort_keys=True, default=str)


def same_data(config: dict[str, Any] | None) -> bool:
    """True when source and target are one data set: its source validation split is then the target test split,
    so a checkpoint chosen by source accuracy would be chosen on the test labels."""
    d = (config or {}).get("data") or {}
    return bool(d) and d.get("source") == d.get("target") and d.get("source_path") == d.get("target_path")


def reported_accuracy(summary: dict[str, Any], config: dict[str, Any] | None = None) -> float | None:
    """The target accuracy a run reports: its label-free choice's (``summary['chosen']``), else its last epoch's;
    always the last epoch's when source and target are one data set (:func:`same_data`)."""
    chosen = summary.get("chosen")
    if isinstance(chosen, dict) and chosen.get("target_test_acc") is not None and not same_data(config):
        return float(chosen["target_test_acc"])
    acc = summary.get("final_target_test_acc", summary.get("target_test_acc"))
    return None if acc is None else float(acc)


@dataclass
class Gain:
    """A run against its baseline. ``points`` is None when there is no number to give (``reason`` says why)."""

    against: str | None                # 'source only', 'training from scratch', or None (the run is a baseline)
    points: float | None = None        # run's accuracy minus the baseline's, in percentage points
    run_acc: float | None = None
    baseline_acc: float | None = None
    baseline_run: str | None = None
    reason: str = ""

    @property
    def negative(self) -> bool:
        return self.points is not None and self.points < 0

    def text(self) -> str:
        """'negative transfer: −7.5 points against source only', '+3.1 points against training from scratch', ..."""
        if self.points is None:
            return self.reason
        if self.negative:
            return f"negative transfer: −{abs(self.points):.1f} points against {self.against}"
        return f"transfer gain: +{self.points:.1f} points against {self.against}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "negative": self.negative, "text": self.text()}


def _labelled(summary: dict[str, Any]) -> bool:
    return summary.get("target_labelled") is not False


def compare(rec: Any, baseline: Any | None, against: str | None) -> Gain:
    """The gain of run record ``rec`` against run record ``baseline`` (None: not found yet)."""
    s = rec.summary or {}
    if against is None:
        return Gain(None, reason="no transfer gain: this run is a baseline (source only or from scratch)")
    if not _labelled(s):
        return Gain(against, reason=NO_LABELS)
    if baseline is None:
        return Gain(against, reason=f"transfer gain: no baseline yet (no finished {against} run with the same "
                                    "settings; Setup's 'Also run its baseline' queues one)")
    mine, theirs = reported_accuracy(s, rec.config), reported_accuracy(baseline.summary or {}, baseline.config)
    if mine is None or theirs is None:
        return Gain(against, baseline_run=baseline.id, reason="transfer gain: not available until both runs "
                                                                "have a target accuracy")
    return Gain(against, points=round(100 * (mine - theirs), 2), run_acc=mine, baseline_acc=theirs,
                baseline_run=baseline.id)


class Matcher:
    """Finds baselines among stored runs: an index of completed runs by :func:`config_key` (newest wins)."""

    def __init__(self, records: Iterable[Any]) -> None:
        self._by_key: dict[str, Any] = {}
        for rec in sorted(records, key=lambda r: r.created or 0):
            if rec.status == "completed":
                key = _safe_key(rec.config)
                if key is not None:
                    self._by_key[key] = rec

    def baseline_of(self, config: RunConfig | dict[str, Any]) -> tuple[str | None, Any | None]:
        """(what the baseline is, its newest completed run or None)."""
        try:
            cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
            base = baseline_config(cfg)
        except Exception:  # an old or damaged config: no comparison, never a crash
            return None, None
        if base is None:
            return None, None
        return baseline_kind(cfg), self._by_key.get(config_key(base))

    def gain(self, rec: Any) -> Gain:
        against, base = self.baseline_of(rec.config)
        return compare(rec, base, against)


def _safe_key(config: dict[str, Any]) -> str | None:
    """``config_key`` of a stored config (cached by its JSON: pages ask on every render); None if unreadable."""
    import json

    try:
        return _cached_key(json.dumps(config, sort_keys=True, default=str))
    except Exception:
        return None


@functools.lru_cache(maxsize=4096)
def _cached_key(config_json: str) -> str:
    import json

    return config_key(json.loads(config_json))


def gain_for(store: Any, rec: Any) -> Gain:
    """The gain of one run record, against the store's runs."""
    return Matcher(store.list_runs()).gain(rec)


def gains(records: list[Any]) -> dict[str, Gain]:
    """run id -> Gain for every record (one index for all: the Runs table)."""
    m = Matcher(records)
    return {rec.id: m.gain(rec) for rec in records}


def record(store: Any, run_id: str) -> None:
    """After ``run_id`` completed: put ``summary['gain']`` on it (when its baseline is done) and on every
    completed run whose baseline it is (the report reads it there)."""
    records = store.list_runs()
    m = Matcher(records)
    for rec in records:
        if rec.status != "completed":
            continue
        if rec.id != run_id:
            _, base = m.baseline_of(rec.config)
            if base is None or base.id != run_id:
                continue
        g = m.gain(rec)
        if g.points is None and g.reason != NO_LABELS:  # nothing to report yet
            continue
        summary = dict(rec.summary or {})
        summary["gain"] = g.to_dict()
        store.set_summary(rec.id, summary)


def baseline_to_queue(store: Any, config: RunConfig) -> RunConfig | None:
    """The baseline config to queue beside ``config``: None when it has none or one is done or on its way."""
    base = baseline_config(config)
    if base is None:
        return None
    key = config_key(base)
    for rec in store.list_runs():
        if rec.status in ("completed", "queued", "running") and _safe_key(rec.config) == key:
            return None
    return base
