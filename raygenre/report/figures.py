"""The report's PNG figures, drawn on matplotlib's Agg canvas (no pyplot state, no display needed).

Genres always run in GTZAN order; every axis is labelled; percentages throughout, as in the tables.
Each function writes one file and returns its name relative to the report folder.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from raygenre.genres import GENRES
from raygenre.report.exp4 import SizePoint
from raygenre.report.paired import PairedFamily
from raygenre.report.results import Result, RowKey

PREFIX = "fig-"
DPI = 110
STUDY_STYLE = {"marker": "D", "color": "tab:red", "markersize": 7, "linestyle": "none"}


def slug(key: RowKey) -> str:
    parts = [key.split, key.representation, key.model, key.variant, "aug" if key.augmented else "",
             key.feature_set]
    return re.sub(r"[^a-z0-9]+", "-", "-".join(p for p in parts if p).lower()).strip("-")


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_dir: Path, name: str) -> str:
    fig.savefig(out_dir / name, dpi=DPI, metadata={"Software": None})
    return name


def clear_figures(out_dir: Path) -> None:
    """Remove this reporter's earlier PNGs, so a re-run never leaves figures of vanished models."""
    for old in out_dir.glob(f"{PREFIX}*.png"):
        old.unlink()


def confusion(res: Result, out_dir: Path) -> str:
    """Row-normalised confusion matrix (each true genre's clips sum to 100 %)."""
    cm = res.confusion.astype(float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure(5.6, 4.8, layout=None)  # fixed margins: one of these per model, layout solving is slow
    fig.subplots_adjust(left=0.16, right=0.9, bottom=0.19, top=0.93)
    ax = fig.add_subplot()
    im = ax.imshow(100 * norm, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(GENRES)):
        for j in range(len(GENRES)):
            if cm[i, j]:
                ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(GENRES)), GENRES, rotation=45, ha="right")
    ax.set_yticks(range(len(GENRES)), GENRES)
    ax.set_xlabel("Predicted genre")
    ax.set_ylabel("True genre")
    seeds = f", {len(res.by_seed)} split seeds pooled" if len(res.by_seed) > 1 else ""
    ax.set_title(f"{res.label} ({res.key.split}): accuracy {100 * res.accuracy:.1f} %{seeds}", fontsize=9)
    fig.colorbar(im, ax=ax, label="% of the true genre's clips", fraction=0.046, pad=0.03)
    return _save(fig, out_dir, f"{PREFIX}confusion-{slug(res.key)}.png")


def comparison(results: list[Result], study_pct: dict[RowKey, float], out_dir: Path) -> str | None:
    """Our accuracies with Wilson 95 % error bars, best at the top, the study's figure as a marker."""
    if not results:
        return None
    results = sorted(results, key=lambda r: (r.accuracy, r.label))
    y = np.arange(len(results))
    acc = np.array([100 * r.accuracy for r in results])
    ci = np.array([[100 * c for c in r.ci] for r in results])
    fig = _figure(7.5, 1.2 + 0.38 * len(results))
    ax = fig.add_subplot()
    ax.errorbar(acc, y, xerr=[acc - ci[:, 0], ci[:, 1] - acc], fmt="o", color="tab:blue", capsize=3,
                label="ours, 95 % Wilson interval")
    sy = [i for i, r in enumerate(results) if r.key in study_pct]
    if sy:
        ax.plot([study_pct[results[i].key] for i in sy], sy, label="study", **STUDY_STYLE)
    ax.set_yticks(y, [r.label for r in results])
    ax.set_xlabel("Test accuracy (%)")
    ax.set_ylabel("Model")
    ax.axvline(10, color="grey", linestyle=":", linewidth=1, label="chance (10 %)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Models on split '{results[0].key.split}'", fontsize=10)
    return _save(fig, out_dir, f"{PREFIX}comparison.png")


def recall_heatmap(results: list[Result], out_dir: Path) -> str | None:
    """Per-genre recall, models x genres, models sorted by accuracy."""
    if not results:
        return None
    results = sorted(results, key=lambda r: (-r.accuracy, r.label))
    rec = np.full((len(results), len(GENRES)), np.nan)
    for i, res in enumerate(results):
        for j, genre in enumerate(GENRES):
            k, n = res.recall(genre)
            if n:
                rec[i, j] = 100 * k / n
    fig = _figure(7.5, 1.4 + 0.36 * len(results))
    ax = fig.add_subplot()
    im = ax.imshow(rec, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(rec.shape[0]):
        for j in range(rec.shape[1]):
            if not np.isnan(rec[i, j]):
                ax.text(j, i, f"{rec[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if rec[i, j] > 60 else "white")
    ax.set_xticks(range(len(GENRES)), GENRES, rotation=45, ha="right")
    ax.set_yticks(range(len(results)), [r.label for r in results])
    ax.set_xlabel("Genre")
    ax.set_ylabel("Model")
    fig.colorbar(im, ax=ax, label="Recall (%)")
    return _save(fig, out_dir, f"{PREFIX}recall-heatmap.png")


def bootstrap_box(groups: dict[tuple[str, str], list[dict]], study: dict, out_dir: Path) -> str | None:
    """Box plots of bootstrap accuracy and macro-F1, the study's median (and IQR) beside them."""
    if not groups:
        return None
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    data, labels = [], []
    for (model, variant), recs in groups.items():
        name = model if variant == "default" else f"{model} {variant}"
        for metric, title in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            data.append([100 * r["metrics"][metric] for r in recs])
            labels.append(f"{name}\n{title}")
    ax.boxplot(data, whis=1.5)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    for i, label in enumerate(labels):
        st = study["accuracy" if label.endswith("accuracy") else "macro_f1"]
        if st["q1"] is not None:
            ax.vlines(i + 1.3, st["q1"], st["q3"], color="tab:red", linewidth=3, alpha=0.5,
                      label="study IQR" if i == 0 else None)
        if st["min"] is not None:
            ax.plot([i + 1.3] * 2, [st["min"], st["max"]], "x", color="tab:red",
                    label="study outliers" if i == 0 else None)
        ax.plot([i + 1.3], [st["median"]], label="study median" if i == 0 else None, **STUDY_STYLE)
    ax.set_ylabel("Test score (%)")
    ax.set_xlabel("Metric (boxes: ours; whiskers at 1.5 IQR, points beyond are outliers)")
    ax.set_title(f"{len(data[0])} bootstrap resamples of the training set (study: read off its Figure 8)",
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, out_dir, f"{PREFIX}bootstrap.png")


def size_curve(curves: dict[tuple[str, str], list[SizePoint]], study: dict, out_dir: Path) -> str | None:
    """Accuracy against training fraction with a Wilson 95 % band; the study's landmarks as lines."""
    if not curves:
        return None
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    for (model, variant), points in curves.items():
        x = np.array([100 * p.fraction for p in points])
        acc = np.array([100 * p.result.accuracy for p in points])
        band = np.array([[100 * c for c in p.result.ci] for p in points])
        name = model if variant == "default" else f"{model} {variant}"
        ax.fill_between(x, band[:, 0], band[:, 1], alpha=0.2, label=f"{name}: 95 % Wilson interval")
        ax.plot(x, acc, marker="o", label=f"{name}: accuracy")
    ax.axvline(100 * study["near_optimal_fraction"], color="grey", linestyle="--", linewidth=1,
               label=f"study: near-optimal at {100 * study['near_optimal_fraction']:g} %")
    ax.axvline(100 * study["best_fraction"], color="tab:red", linestyle=":", linewidth=1,
               label=f"study: highest at {100 * study['best_fraction']:g} %")
    ax.set_xlabel("Training data used (% of the training split)")
    ax.set_ylabel("Test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out_dir, f"{PREFIX}training-size.png")


def pvalue_matrix(fam: PairedFamily, out_dir: Path) -> str | None:
    """Exact McNemar p-values for every pair of one split's models (uncorrected)."""
    n = len(fam.results)
    if n < 2:
        return None
    p = np.array([[np.nan if v is None else v for v in row] for row in fam.matrix], dtype=float)
    fig = _figure(1.8 + 0.45 * n, 1.4 + 0.4 * n)
    ax = fig.add_subplot()
    im = ax.imshow(-np.log10(np.clip(p, 1e-6, 1)), cmap="magma_r", vmin=0, vmax=4)
    for i in range(n):
        for j in range(n):
            if i != j and not np.isnan(p[i, j]):
                ax.text(j, i, f"{p[i, j]:.2f}" if p[i, j] >= 0.01 else "<.01", ha="center", va="center",
                        fontsize=6, color="white" if p[i, j] < 0.01 else "black")
    names = [r.label for r in fam.results]
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("Model")
    ax.set_ylabel("Model")
    ax.set_title(f"Exact McNemar p (uncorrected), split '{fam.split}'", fontsize=9)
    fig.colorbar(im, ax=ax, label="-log10 p")
    return _save(fig, out_dir, f"{PREFIX}pvalues-{re.sub(r'[^a-z0-9]+', '-', fam.split.lower())}.png")


def _curve(ax, history: list[dict], field: str, scale: float, **style) -> None:
    points = [(h["epoch"], scale * float(h[field])) for h in history if h.get(field) is not None]
    if points:
        x, y = zip(*points)
        ax.plot(x, y, marker="o" if len(points) < 12 else None, markersize=3, linewidth=1.2, **style)


def learning_curves(results: list[Result], out_dir: Path) -> str | None:
    """Small multiples, one cell per model: loss per epoch above, accuracy per epoch below (train, valid)."""
    results = [r for r in results if r.histories]
    if not results:
        return None
    ncols = min(4, len(results))
    nrows = math.ceil(len(results) / ncols)
    height = 4.2 * nrows + 0.3
    fig = _figure(3.2 * ncols + 0.4, height, layout=None)  # many axes: fixed margins are faster
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.75 / height, top=1 - 0.3 / height, wspace=0.3, hspace=0.15)
    grid = fig.add_gridspec(3 * nrows - 1, ncols, height_ratios=([1, 1, 0.35] * nrows)[:-1])  # spacer rows between
    train = {"color": "tab:blue", "linestyle": "-"}
    valid = {"color": "tab:orange", "linestyle": "--"}
    for i, res in enumerate(results):
        row, col = divmod(i, ncols)
        ax_loss = fig.add_subplot(grid[3 * row, col])
        ax_acc = fig.add_subplot(grid[3 * row + 1, col], sharex=ax_loss)
        for _, history in res.histories:
            alpha = 1.0 if len(res.histories) == 1 else 0.6
            _curve(ax_loss, history, "loss", 1.0, alpha=alpha, **train)
            _curve(ax_loss, history, "valid_loss", 1.0, alpha=alpha, **valid)
            _curve(ax_acc, history, "accuracy", 100.0, alpha=alpha, **train)
            _curve(ax_acc, history, "valid_accuracy", 100.0, alpha=alpha, **valid)
        ax_acc.axhline(100 * res.accuracy, color="tab:green", linestyle=":", linewidth=1)
        seeds = f", {len(res.histories)} seeds" if len(res.histories) > 1 else ""
        ax_loss.set_title(f"{res.label}{seeds}", fontsize=8)
        ax_loss.set_ylabel("Loss", fontsize=8)
        ax_acc.set_ylabel("Accuracy (%)", fontsize=8)
        ax_acc.set_xlabel("Epoch", fontsize=8)
        ax_acc.set_ylim(0, 100)
        ax_loss.tick_params(labelbottom=False, labelsize=7)
        ax_acc.tick_params(labelsize=7)
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], **train, label="training"), Line2D([], [], **valid, label="validation"),
               Line2D([], [], color="tab:green", linestyle=":", label="test accuracy (evaluated model)")]
    fig.legend(handles=handles, loc="lower center", ncols=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0))
    return _save(fig, out_dir, f"{PREFIX}learning-curves.png")
