"""The classification report of a confusion matrix: precision, recall, F1 and support per class, with
accuracy, macro and weighted averages (the numbers of ``sklearn.metrics.classification_report``, computed
here from the counts the evaluation already stores, so the Monitor and the HTML report need no
predictions and no scikit-learn). numpy only: the pages import it.

A class with no predicted images has precision 0, one with no true images recall 0, and F1 is 0 where
precision + recall is 0 (scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_report(confusion: Sequence[Sequence[int]], classes: Sequence[str] | None = None,
                          ) -> dict[str, Any]:
    """Per-class and averaged precision, recall, F1 of a confusion matrix (rows true, columns predicted).

    Returns:
        ``{"classes": [{"class", "precision", "recall", "f1", "support"}, ...], "accuracy",
        "macro": {"precision", "recall", "f1", "support"}, "weighted": {...}, "support"}``; fractions in [0, 1].
        Averages are over the classes with at least one true image, as scikit-learn averages over the labels
        present in ``y_true`` or ``y_pred``: classes with neither are left out of the averages.
    """
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"a confusion matrix is square; got shape {c.shape}")
    k = c.shape[0]
    names = [str(n) for n in classes] if classes is not None and len(classes) == k else [str(i) for i in range(k)]
    tp = np.diag(c)
    support, predicted = c.sum(axis=1), c.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    total = float(support.sum())

    def avg(weights: np.ndarray) -> dict[str, float]:
        w = np.where(present, weights, 0.0)
        s = w.sum()
        return {name: float((v * w).sum() / s) if s > 0 else 0.0
                for name, v in (("precision", precision), ("recall", recall), ("f1", f1))}

    return {
        "classes": [{"class": names[i], "precision": float(precision[i]), "recall": float(recall[i]),
                     "f1": float(f1[i]), "support": int(support[i])} for i in range(k)],
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro": {**avg(np.ones(k)), "support": int(total)},
        "weighted": {**avg(support), "support": int(total)},
        "support": int(total),
    }


def report_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report as table rows (class, precision, recall, F1 in %, support), then accuracy and the averages."""
    rows = [{"class": r["class"], "precision": 100 * r["precision"], "recall": 100 * r["recall"],
             "F1": 100 * r["f1"], "support": r["support"]} for r in report["classes"]]
    rows.append({"class": "accuracy", "precision": None, "recall": None, "F1": 100 * report["accuracy"],
                 "support": report["support"]})
    for key, label in (("macro", "macro average"), ("weighted", "weighted average")):
        a = report[key]
        rows.append({"class": label, "precision": 100 * a["precision"], "recall": 100 * a["recall"],
                     "F1": 100 * a["f1"], "support": a["support"]})
    return rows
