"""Markdown formatting: percentages, intervals, p-values and pipe tables, one convention throughout."""

from __future__ import annotations

import math
from collections.abc import Sequence

from raygenre.report.results import Result

DASH = "—"
NOT_RUN = "not run"


def pct(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage, '77.5'; a dash for missing values."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    return f"{100 * x:.{digits}f}"


def share(fraction: float) -> str:
    """A training fraction as '80 %'."""
    return f"{100 * fraction:g} %"


def interval(lo: float, hi: float, digits: int = 1) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return DASH
    return f"{pct(lo, digits)}–{pct(hi, digits)}"


def signed(x: float, digits: int = 1) -> str:
    return f"{100 * x:+.{digits}f}"


def pvalue(p: float | None) -> str:
    if p is None or math.isnan(p):
        return DASH
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def inside(study_pct: float | None, lo: float, hi: float) -> str:
    """Whether the study's figure (in percent) lies in our interval (fractions)."""
    if study_pct is None or math.isnan(lo):
        return DASH
    return "yes" if lo <= study_pct / 100 <= hi else "**no**"


def number(x: float | None) -> str:
    """The study's percentage as printed: '76', '45.5'."""
    if x is None:
        return DASH
    return f"{x:g}"


def acc_cell(res: Result | None) -> str:
    """Our accuracy: one value, or mean ± std with each seed's value in seed order."""
    if res is None:
        return NOT_RUN
    if len(res.by_seed) == 1:
        return pct(res.accuracy)
    seeds = " / ".join(pct(a) for a in res.accuracies)
    return f"{pct(res.accuracy)} ± {pct(res.std)} ({seeds})"


def ci_cell(res: Result | None) -> str:
    return DASH if res is None else interval(*res.ci)


def params_cell(res: Result | None) -> str:
    """Parameter counts 'total / trainable' (thousands separated); a dash for models without them."""
    if res is None or not res.params:
        return DASH
    return "; ".join(f"{total:,} / {trainable:,}" for total, trainable in res.params)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A pipe table; ``align`` is one letter per column (l, r, c), default left then right."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        cells = [str(c).replace("|", "\\|").replace("\n", " ") for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def image(path: str, alt: str) -> str:
    return f"![{alt}]({path})"
