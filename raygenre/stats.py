"""Per-trial classification metrics (stored in a record) and the statistics the report draws from them.

Shared by the trial runners and the reporter; imports only numpy, scipy, scikit-learn and the genre names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binom, binomtest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from raygenre.genres import GENRES


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


# ---------------------------------------------------------------------------------------------
# Statistics for the report. The study gives one accuracy per model on 200 clips and compares
# models without tests; these turn a record's predictions into intervals and paired tests.
# ---------------------------------------------------------------------------------------------

def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (scipy); (nan, nan) when n is 0.

    Wilson rather than the normal approximation because accuracies near 0 or 1 on a few hundred
    clips make the Wald interval leave [0, 1] and undercover.
    """
    if n <= 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def discordant_counts(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int]:
    """(b, c): clips model A gets right and B wrong, and clips A gets wrong and B right."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired predictions differ in length: {a.shape} vs {b.shape}.")
    return int((a & ~b).sum()), int((~a & b).sum())


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of b against b + c at 1/2 (scipy).

    Only discordant pairs carry information about which model is better; with none, p is 1.
    """
    if b + c == 0:
        return 1.0
    return float(binomtest(int(b), int(b + c), 0.5, alternative="two-sided").pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error), in the input order.

    Written here because statsmodels is not a dependency and scipy ships only Benjamini-Hochberg.
    """
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def paired_bootstrap_diff(a_correct: Sequence[bool], b_correct: Sequence[bool],
                          n_resamples: int = 2000, confidence: float = 0.95,
                          seed: int = 0) -> tuple[float, float, float]:
    """Accuracy difference A - B and its percentile interval from resampling test clips in pairs.

    Resampling clips (not models) keeps each clip's two predictions together, so the interval
    reflects the test set's sampling error of the *difference*. Seeded: the report is deterministic.
    """
    a = np.asarray(a_correct, dtype=float)
    b = np.asarray(b_correct, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired bootstrap needs two equal, non-empty vectors, got {a.shape} and {b.shape}.")
    d = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, 2_000_000 // d.size)  # bound memory for large test sets
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(d.mean()), float(lo), float(hi)


def newcombe_diff_interval(k1: int, n1: int, k2: int, n2: int,
                           confidence: float = 0.95) -> tuple[float, float, float]:
    """Difference of two independent proportions p1 - p2 with Newcombe's hybrid score interval.

    For accuracies on *different* test sets (e.g. two splits), where no pairing exists; it is
    built from the two Wilson intervals, so it agrees with the per-row intervals of the report.
    """
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, confidence)
    l2, u2 = wilson_interval(k2, n2, confidence)
    d = p1 - p2
    return d, d - float(np.hypot(p1 - l1, u2 - p2)), d + float(np.hypot(u1 - p1, p2 - l2))


def chance_range(n: int, n_classes: int = 10, confidence: float = 0.95) -> tuple[float, float]:
    """Central range of the accuracy of a uniform random guesser on n clips (binomial quantiles)."""
    alpha = (1 - confidence) / 2
    lo, hi = binom.ppf([alpha, 1 - alpha], n, 1 / n_classes)
    return float(lo / n), float(hi / n)
