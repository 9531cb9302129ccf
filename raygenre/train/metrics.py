"""Per-trial classification metrics, as stored in a record."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from raygenre.data.gtzan import GENRES


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str],
                           labels: Sequence[str] = GENRES) -> dict:
    """Accuracy, macro-F1, per-class recall and the confusion matrix (rows = true, GTZAN order)."""
    labels = list(labels)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    present = [g for g in labels if g in set(y_true)]
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class_recall": {g: (float(r) if g in present else None) for g, r in zip(labels, recall)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": labels,
        "n_test": int(len(y_true)),
        "n_correct": int((y_true == y_pred).sum()),
    }
