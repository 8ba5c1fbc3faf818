"""Choosing a model without target labels: the label-free criteria, the choice, early stopping.

The one owner of the criteria (:data:`CRITERIA`): each is a score every evaluation writes into the
epoch metrics under its ``name`` (``store.epoch_metrics``), whether a higher or a lower score is better,
what it means and where it comes from. No score and no choice here reads a target label: the scores are
computed from source validation labels and predictions, and from target *predictions* only
(:func:`label_free_scores` takes no target labels at all). The oracle (:func:`oracle`) is the only thing
that reads ``target_test_acc``; it is computed separately and always labelled "oracle: uses target labels".

Criteria:

* ``source_val_acc``: accuracy on held-out source images (the usual early-stopping rule).
* ``target_entropy``: mean softmax entropy on the target test images, in nats (lower: more confident).
* ``target_im``: information maximisation, H(mean p) − mean H(p) on the target (Gomes, Krause & Perona,
  "Discriminative clustering by regularized information maximization", NeurIPS 2010; used for adaptation
  by Liang et al., SHOT, ICML 2020): confident *and* diverse predictions.
* ``target_snd``: soft neighbourhood density (Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the
  right way: unsupervised validation of domain adaptation via soft neighborhood density", ICCV 2021).
* ``dev_risk``: deep embedded validation (You, Wang, Long & Jordan, "Towards accurate model selection in deep
  unsupervised domain adaptation", ICML 2019): the source validation loss weighted by p(target)/p(source)
  from a domain classifier on features, with the control variate.

Cost per evaluation (numpy and scikit-learn on the arrays evaluation already has): SND is O(n²·k) on at
most :data:`SND_MAX` target images; DEV fits two logistic regressions on at most :data:`DEV_MAX` features
per domain. For LeNet on 1,000 + 1,000 images this is tens of milliseconds on one core (see
docs/RESULTS.md, "Choosing a model without target labels").

This module imports no torch and no streamlit: pages, bench and the sweep read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

SND_TEMPERATURE = 0.05  # τ of Saito et al. 2021 (their default)
SND_MAX = 1000  # target images SND compares pairwise (a fixed, seeded subset when there are more)
DEV_MAX = 2000  # features per domain the DEV domain classifier sees
_EPS = 1e-12


@dataclass(frozen=True)
class Criterion:
    """A label-free score: its epoch-metric key, its label, which way is better, what it means, its source."""

    name: str
    label: str
    higher_is_better: bool
    meaning: str
    citation: str

    def better(self, a: float, b: float | None) -> bool:
        """Whether score ``a`` is strictly better than ``b`` (None: nothing yet). NaN is never better."""
        if a is None or not math.isfinite(a):
            return False
        if b is None or not math.isfinite(b):
            return True
        return a > b if self.higher_is_better else a < b

    def at_least(self, a: float | None, b: float | None) -> bool:
        """Whether score ``a`` is as good as ``b`` or better (a tie counts); NaN never is."""
        return self.better(a, b) or (a is not None and a == b)


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("source_val_acc", "Source validation accuracy", True,
              "accuracy on held-out labelled source images; blind to the domain shift",
              "standard practice (e.g. Ganin et al., JMLR 2016, reverse validation aside)"),
    Criterion("target_entropy", "Target entropy", False,
              "mean entropy of the target predictions (nats); low = confident, even when wrong",
              "Morerio et al., ICLR 2018 (minimal-entropy correlation alignment)"),
    Criterion("target_im", "Information maximisation", True,
              "H(mean prediction) − mean H(prediction) on the target: confident and using every class",
              "Gomes, Krause & Perona, NeurIPS 2010; Liang et al. (SHOT), ICML 2020"),
    Criterion("target_snd", "Soft neighbourhood density (SND)", True,
              "entropy of each target image's soft neighbourhood among target predictions: dense clusters",
              "Saito et al., ICCV 2021, 'Tune it the right way'"),
    Criterion("dev_risk", "Deep embedded validation (DEV)", False,
              "source validation loss re-weighted towards the target by a domain classifier (control variate)",
              "You et al., ICML 2019, 'Towards accurate model selection in deep unsupervised domain adaptation'"),
)}

#: What a run chooses by when its config does not say (Setup names it as the default).
DEFAULT_CRITERION = "source_val_acc"


def get(name: str) -> Criterion:
    """The criterion called ``name``; an unknown name raises KeyError listing the known ones."""
    if name not in CRITERIA:
        raise KeyError(f"unknown selection criterion '{name}'; known: {', '.join(CRITERIA)}")
    return CRITERIA[name]


# ------------------------------------------------------------------ the scores
def entropy_rows(p: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of probabilities. Shape: (N, K) -> (N,)."""
    p = np.asarray(p, dtype=np.float64)
    return -(p * np.log(np.clip(p, _EPS, None))).sum(1)


def information_maximisation(p_tgt: np.ndarray) -> float:
    """H(mean p) − mean H(p) over target softmax outputs (nats; Gomes et al. 2010). Shape: (N, K).

    0 when every image gets the same prediction or every prediction is uniform; log K at best.
    """
    p = np.asarray(p_tgt, dtype=np.float64)
    if len(p) == 0:
        return float("nan")
    return float(entropy_rows(p.mean(0, keepdims=True))[0] - entropy_rows(p).mean())


def soft_neighbourhood_density(p_tgt: np.ndarray, temperature: float = SND_TEMPERATURE,
                               max_n: int = SND_MAX, seed: int = 0) -> float:
    """SND (Saito et al., ICCV 2021): L2-normalise the target softmax outputs, take each image's similarity to
    every other (itself excluded), softmax them at ``temperature`` and average the entropy of those
    neighbourhood distributions. Higher: denser neighbourhoods. Shape: (N, K); at most ``max_n`` rows (a fixed
    subset drawn with ``seed``)."""
    p = np.asarray(p_tgt, dtype=np.float64)
    if len(p) < 2:
        return float("nan")
    if len(p) > max_n:
        p = p[np.sort(np.random.default_rng(seed).choice(len(p), max_n, replace=False))]
    f = p / np.clip(np.linalg.norm(p, axis=1, keepdims=True), _EPS, None)
    sim = f @ f.T / temperature
    np.fill_diagonal(sim, -np.inf)
    sim -= sim.max(1, keepdims=True)
    w = np.exp(sim)
    w /= w.sum(1, keepdims=True)
    return float(entropy_rows(w).mean())


def domain_weights(src_feats: np.ndarray, tgt_feats: np.ndarray, seed: int = 0, folds: int = 2) -> np.ndarray:
    """Importance weights w(x) = p(target|x)/p(source|x) · n_s/n_t for each source row (You et al. 2019), from a
    logistic-regression domain classifier on standardised features, cross-fitted: each source row is weighed by
    a classifier that did not see it. Shape: (Ns, D), (Nt, D) -> (Ns,)."""
    from sklearn.linear_model import LogisticRegression

    xs, xt = np.asarray(src_feats, np.float64), np.asarray(tgt_feats, np.float64)
    rng = np.random.default_rng(seed)
    if len(xt) > DEV_MAX:
        xt = xt[rng.choice(len(xt), DEV_MAX, replace=False)]
    mu, sd = np.concatenate([xs, xt]).mean(0), np.concatenate([xs, xt]).std(0) + 1e-6
    xs, xt = (xs - mu) / sd, (xt - mu) / sd
    fs, ft = rng.permutation(len(xs)) % folds, rng.permutation(len(xt)) % folds
    w = np.empty(len(xs))
    for k in range(folds):
        train_s, train_t = xs[fs != k], xt[ft != k]
        clf = LogisticRegression(C=1.0, max_iter=300)
        clf.fit(np.concatenate([train_s, train_t]), np.r_[np.zeros(len(train_s)), np.ones(len(train_t))])
        p_t = np.clip(clf.predict_proba(xs[fs == k])[:, 1], 1e-6, 1 - 1e-6)
        w[fs == k] = p_t / (1 - p_t) * len(train_s) / len(train_t)
    return w


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """DEV (You et al. 2019, Algorithm 1): with L = w·loss, η = −Cov(L, w)/Var(w), the risk is
    mean(L) + η·mean(w) − η. Lower is better. Shape: (N,), (N,)."""
    loss, w = np.asarray(losses, np.float64), np.asarray(weights, np.float64)
    if len(loss) < 2:
        return float("nan")
    weighted = w * loss
    var = w.var(ddof=1)
    eta = -np.cov(weighted, w)[0, 1] / var if var > 0 else 0.0
    return float(weighted.mean() + eta * w.mean() - eta)


def label_free_scores(src_probs: np.ndarray, src_y: np.ndarray, src_feats: np.ndarray,
                      tgt_probs: np.ndarray, tgt_feats: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Every criterion's score for one evaluation (the epoch-metric keys of :data:`CRITERIA`).

    Takes source validation labels and both domains' softmax outputs and features; no target label.
    Shape: (Ns, K), (Ns,), (Ns, D), (Nt, K), (Nt, D).
    """
    src_probs, tgt_probs = np.asarray(src_probs, np.float64), np.asarray(tgt_probs, np.float64)
    src_y = np.asarray(src_y)
    out = {"source_val_acc": float((src_probs.argmax(1) == src_y).mean()) if len(src_y) else float("nan"),
           "target_entropy": float(entropy_rows(tgt_probs).mean()) if len(tgt_probs) else float("nan"),
           "target_im": information_maximisation(tgt_probs),
           "target_snd": soft_neighbourhood_density(tgt_probs, seed=seed)}
    if len(src_y) >= 4 and len(tgt_feats) >= 4:
        losses = -np.log(np.clip(src_probs[np.arange(len(src_y)), src_y], _EPS, None))
        out["dev_risk"] = dev_risk(losses, domain_weights(src_feats, tgt_feats, seed=seed))
    else:
        out["dev_risk"] = float("nan")
    return out


# ------------------------------------------------------------------ the choice
def _rows(epoch_rows: Any) -> list[dict[str, Any]]:
    if hasattr(epoch_rows, "to_dict"):  # a DataFrame from store.epoch_metrics
        epoch_rows = epoch_rows.to_dict("records")
    return [dict(r) for r in epoch_rows]


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _latest_phase(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epochs of the latest phase a multi-phase method reached (epoch metric ``phase``; e.g. ADDA's
    target encoder, phase 2): an epoch of an earlier phase is not yet a model of the method (ADDA's phase 1
    is source-only training), so no criterion may choose it. Rows without a phase are all kept."""
    phases = [_num(r.get("phase")) for r in rows]
    last = max((f for f in phases if f is not None), default=None)
    return rows if last is None else [r for r, f in zip(rows, phases) if f == last]


def choose(epoch_rows: Iterable[dict[str, Any]] | Any, criterion: str = DEFAULT_CRITERION) -> dict[str, Any]:
    """The epoch a criterion chooses: the last with the best score (a tie goes to the later, more trained
    epoch: ADDA's source validation accuracy is the same in every epoch of its phase 2) among the epochs of
    the latest phase (see :func:`_latest_phase`); the rule :class:`Tracker` applies while training, so the
    selected checkpoint is this epoch's. Reads ``target_test_acc`` only to report it.

    Returns:
        ``{"criterion", "epoch", "score", "target_test_acc"}``; epoch and score None when no epoch has a
        finite score; target_test_acc None with an unlabelled target.
    """
    c = get(criterion)
    best: dict[str, Any] | None = None
    for row in _latest_phase(_rows(epoch_rows)):
        if c.at_least(_num(row.get(c.name)), None if best is None else _num(best.get(c.name))):
            best = row
    if best is None:
        return {"criterion": c.name, "epoch": None, "score": None, "target_test_acc": None}
    return {"criterion": c.name, "epoch": int(best["epoch"]), "score": _num(best.get(c.name)),
            "target_test_acc": _num(best.get("target_test_acc"))}


def oracle(epoch_rows: Iterable[dict[str, Any]] | Any) -> dict[str, Any]:
    """The epoch with the best target test accuracy among those a criterion may choose (the latest phase's):
    uses target labels, for reporting only (never a choice).

    Returns ``{"epoch", "target_test_acc"}``, both None with an unlabelled target.
    """
    best: dict[str, Any] | None = None
    for row in _latest_phase(_rows(epoch_rows)):
        acc = _num(row.get("target_test_acc"))
        if acc is not None and (best is None or acc > best["target_test_acc"]):
            best = {"epoch": int(row["epoch"]), "target_test_acc": acc}
    return best or {"epoch": None, "target_test_acc": None}


def summarise(epoch_rows: Any, criterion: str = DEFAULT_CRITERION) -> dict[str, Any]:
    """``{"chosen": choose(...), "oracle": oracle(...)}``: what a run's summary and the CLI's JSON line carry."""
    rows = _rows(epoch_rows)
    return {"chosen": choose(rows, criterion), "oracle": oracle(rows)}


# ------------------------------------------------------------ while training
class Tracker:
    """Follows the criterion epoch by epoch: whether this epoch's score improved (then the trainer writes the
    selected checkpoint) and whether early stopping should end the run (``patience`` epochs without
    improvement; 0 = never). Its state goes into the checkpoint so a resumed run goes on counting."""

    def __init__(self, criterion: str = DEFAULT_CRITERION, patience: int = 0) -> None:
        self.criterion, self.patience = get(criterion), int(patience)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad = 0  # epochs since the last improvement
        self.phase: float | None = None  # a multi-phase method's phase (see _latest_phase)

    def update(self, epoch: int, metrics: dict[str, Any]) -> bool:
        """Record one evaluation (``epoch`` counted from 1); True when it is the best so far or ties with it
        (the selected checkpoint moves to the later epoch; early stopping counts a tie as no improvement). The
        first epoch of a new phase starts the count afresh."""
        score = _num(metrics.get(self.criterion.name))
        phase = _num(metrics.get("phase"))
        if phase is not None and phase != self.phase:
            self.phase, self.best, self.best_epoch, self.bad = phase, None, None, 0
        if self.criterion.better(score, self.best):
            self.best, self.best_epoch, self.bad = score, int(epoch), 0
            return True
        self.bad += 1
        if self.criterion.at_least(score, self.best):
            self.best_epoch = int(epoch)
            return True
        return False

    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad >= self.patience

    def stop_note(self, epoch: int) -> str:
        """The run's note when early stopping ended it."""
        return (f"stopped early at epoch {epoch}: {self.criterion.name} did not improve for {self.bad} epoch"
                f"{'s' if self.bad != 1 else ''}")

    def state(self) -> dict[str, Any]:
        return {"criterion": self.criterion.name, "best": self.best, "best_epoch": self.best_epoch, "bad": self.bad,
                "phase": self.phase}

    def load(self, state: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's state (one of another criterion, or none, starts afresh)."""
        if state and state.get("criterion") == self.criterion.name:
            self.best, self.best_epoch, self.bad = state.get("best"), state.get("best_epoch"), int(state.get("bad", 0))
            self.phase = state.get("phase")


def problems(criterion: Any, patience: Any) -> list[str]:
    """What is wrong with a run's selection settings (``RunConfig.validate`` adds these)."""
    errs = []
    if criterion not in CRITERIA:
        errs.append(f"selection.criterion: '{criterion}' is not one of {', '.join(CRITERIA)}.")
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        errs.append(f"selection.patience: must be a whole number of epochs, 0 (off) or more, got {patience!r}.")
    return errs
