"""Per-epoch training histories: where each network's training ended, and the learning-curve figure.

The study reports one test accuracy per model and no training curves; a final training accuracy far
above the test accuracy (over-fitting on 800 clips) or a loss still falling (stopped too early) is
worth seeing next to that number. Histories come only from the records (``history`` entries).
"""

from __future__ import annotations

import numpy as np

from raygenre.report.markdown import DASH, image, pct, signed, table
from raygenre.report.results import Result, RunData

SELECTION = {"last": "last epoch", "valid": "best validation epoch"}


def history_results(data: RunData) -> list[Result]:
    """Results under the primary split whose records carry a per-epoch history, in table order."""
    return [r for r in data.primary_results() if r.histories]


def final(history: list[dict], field: str) -> float | None:
    """The field's value at the last epoch that reports it."""
    values = [h[field] for h in history if h.get(field) is not None]
    return float(values[-1]) if values else None


def best_valid(history: list[dict]) -> tuple[float, int] | None:
    """(best validation accuracy, its epoch); the earliest epoch wins ties."""
    scored = [(float(h["valid_accuracy"]), int(h["epoch"])) for h in history if h.get("valid_accuracy") is not None]
    return max(scored, key=lambda ve: (ve[0], -ve[1])) if scored else None


def _mean(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return float(np.mean(found)) if found else None


def _selection(res: Result) -> str:
    found = sorted({str(((r.get("config") or {}).get("train") or {}).get("selection") or "") for r in res.records})
    return " / ".join(SELECTION.get(s, s) for s in found if s) or DASH


def _row(res: Result) -> list[object]:
    hists = [h for _, h in res.histories]
    loss = _mean([final(h, "loss") for h in hists])
    train_acc = _mean([final(h, "accuracy") for h in hists])
    valid_acc = _mean([final(h, "valid_accuracy") for h in hists])
    bests = [best_valid(h) for h in hists]
    best = " / ".join(f"{pct(b[0])} (epoch {b[1]})" for b in bests if b) or DASH
    epochs = " / ".join(str(n) for n in sorted({len(h) for h in hists}))
    gap = DASH if train_acc is None else signed(train_acc - res.accuracy)
    return [res.label, ", ".join(str(s) for s, _ in res.histories), epochs, _selection(res),
            DASH if loss is None else f"{loss:.3f}", pct(train_acc), pct(valid_acc), best, pct(res.accuracy), gap]


def training_section(data: RunData, figure: str | None) -> str:
    out = ["## Learning curves", ""]
    results = history_results(data)
    if not results:
        return "\n".join(out + ["No finished trial under the primary split records a per-epoch history "
                                "(one-shot models only): no learning curves."])
    headers = ["Model", "Split seeds", "Epochs", "Evaluated model", "Final train loss", "Final train accuracy (%)",
               "Final valid accuracy (%)", "Best valid accuracy (%)", "Test accuracy (%)", "Train − test (points)"]
    out += ["Training loss and accuracy per epoch from each trial's history (validation curves where a validation "
            "set was carved from the training clips; never the test set). Values are means over split seeds; "
            "train − test is the gap between the last epoch's training accuracy and the test accuracy.", "",
            table(headers, [_row(r) for r in results], "llllrrrrrr")]
    if figure:
        out += ["", image(figure, "Learning curves: loss and accuracy per epoch, per model")]
    return "\n".join(out)
