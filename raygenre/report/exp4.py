"""Experiment 4: bootstrap resamples of the training set, and the training-size curve.

The study reads its bootstrap box plot by eye and gives no per-fraction numbers for the size
curve, so its figures are stored as approximate readings and statements; ours come with
intervals and paired differences against the full training set.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from raygenre.report.markdown import (
    DASH,
    NOT_RUN,
    acc_cell,
    ci_cell,
    image,
    interval,
    number,
    pct,
    pvalue,
    share,
    signed,
    table,
)
from raygenre.report.results import Pair, Result, RunData, by_condition, compare, group
from raygenre.stats import holm


@dataclass
class SizePoint:
    fraction: float
    result: Result
    n_train: float
    vs_full: Pair | None = None


def bootstrap_groups(data: RunData) -> dict[tuple[str, str], list[dict]]:
    return by_condition(data.bootstrap, data.split, data.feature_set)


def size_curves(data: RunData) -> dict[tuple[str, str], list[SizePoint]]:
    """Per (model, variant): one point per training fraction, paired against the largest fraction."""
    out: dict[tuple[str, str], list[SizePoint]] = {}
    for cond, recs in by_condition(data.size, data.split, data.feature_set).items():
        by_frac: dict[float, list[dict]] = defaultdict(list)
        for rec in recs:
            by_frac[round(float(rec.get("train_fraction") or 1.0), 6)].append(rec)
        points = []
        for frac in sorted(by_frac):
            res = next(iter(group(by_frac[frac]).values()))
            res.label = f"{share(frac)}"
            n_train = float(np.mean([r.get("n_train") or 0 for r in res.records]))
            points.append(SizePoint(frac, res, n_train))
        full = points[-1]
        pairs = [compare(p.result, full.result) for p in points[:-1]]
        done = [p for p in pairs if p is not None]
        for pair, adj in zip(done, holm([p.p for p in done])):
            pair.p_holm = adj
        for point, pair in zip(points[:-1], pairs):
            point.vs_full = pair
        out[cond] = points
    return out


def _quantiles(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    q = np.quantile(v, [0.025, 0.25, 0.5, 0.75, 0.975])
    return {"lo95": q[0], "q1": q[1], "median": q[2], "q3": q[3], "hi95": q[4], "min": v.min(), "max": v.max()}


def _study_range(a: float | None, b: float | None) -> str:
    return DASH if a is None or b is None else f"{number(a)}–{number(b)}"


def bootstrap_section(data: RunData, figure: str | None) -> str:
    spec = data.study["exp4"]["bootstrap"]
    headers = ["Metric", "Ours median (%)", "Ours IQR", "Ours 2.5–97.5 %", "Ours min–max", "Study median (%)",
               "Study IQR", "Study min–max", "Study median in our IQR"]
    out = ["### Bootstrap resamples of the training set", ""]
    groups = bootstrap_groups(data)
    if not groups:
        rows = [[name, NOT_RUN, DASH, DASH, DASH, number(spec[key]["median"]),
                 _study_range(spec[key]["q1"], spec[key]["q3"]), _study_range(spec[key]["min"], spec[key]["max"]), DASH]
                for name, key in (("Accuracy", "accuracy"), ("Macro-F1", "macro_f1"))]
        return "\n".join(out + [f"Study: {spec['resamples']} resamples ({spec['source']}).", "",
                                table(headers, rows, "lrrrrrrrc")])
    for (model, variant), recs in groups.items():
        name = model if variant == "default" else f"{model} {variant}"
        seeds = sorted({(r.get("split") or {}).get("seed") for r in recs})
        rows = []
        for label, key in (("Accuracy", "accuracy"), ("Macro-F1", "macro_f1")):
            q = _quantiles([r["metrics"][key] for r in recs])
            st = spec[key]
            verdict = DASH if st["median"] is None else (
                "yes" if q["q1"] <= st["median"] / 100 <= q["q3"] else "**no**")
            rows.append([label, pct(q["median"]), interval(q["q1"], q["q3"]), interval(q["lo95"], q["hi95"]),
                         interval(q["min"], q["max"]), number(st["median"]), _study_range(st["q1"], st["q3"]),
                         _study_range(st["min"], st["max"]), verdict])
        out += [f"**{name}**: {len(recs)} bootstrap resamples (study: {spec['resamples']}), split seed(s) "
                f"{', '.join(map(str, seeds))}. Study figures: {spec['source']}.", "",
                table(headers, rows, "lrrrrrrrc"), ""]
        full = data.find({"representation": recs[0].get("representation"), "model": model, "variant": variant})
        if full is not None:
            out += [f"The spread above is training-set variability only (the test set is fixed). The test set's own "
                    f"sampling error comes on top: {name} on the full training set scores {acc_cell(full)} % with a "
                    f"95 % Wilson interval of {ci_cell(full)}.", ""]
    if figure:
        out += [image(figure, "Bootstrap distribution of accuracy and macro-F1"), ""]
    return "\n".join(out).rstrip()


def _statements(spec: dict, points: list[SizePoint]) -> list[list[str]]:
    """The study's claims about the size curve, each checked against ours."""
    by = {round(p.fraction, 6): p for p in points}
    best = max(points, key=lambda p: p.result.accuracy)
    rows = [["highest accuracy at " + f"{share(spec['best_fraction'])}",
             f"highest at {share(best.fraction)} ({pct(best.result.accuracy)} %)"]]
    near = by.get(round(spec["near_optimal_fraction"], 6))
    if near is not None:
        pair = compare(near.result, best.result) if near is not best else None
        text = "it is the best point" if pair is None else (
            f"{signed(pair.diff)} points vs the best ({share(best.fraction)}), 95 % CI "
            f"{signed(pair.lo)} to {signed(pair.hi)}")
        rows.append([f"near-optimal at {share(spec['near_optimal_fraction'])}", text])
    if spec.get("dip_at_full") and len(points) > 1 and points[-2].vs_full is not None:
        p, last, prev = points[-2].vs_full, points[-1].fraction, points[-2].fraction
        rows.append([f"slight dip at 100 % (vs {share(spec['best_fraction'])})",
                     f"{share(last)} minus {share(prev)}: {signed(-p.diff)} points, 95 % CI "
                     f"{signed(-p.hi)} to {signed(-p.lo)}, McNemar p = {pvalue(p.p)}"])
    return rows


def size_section(data: RunData, figure: str | None) -> str:
    spec = data.study["exp4"]["size"]
    out = ["### Accuracy per training fraction", "",
           f"Study: {spec['fractions']} training-set sizes; {spec['source']}: " + "; ".join(spec["facts"]) + ".", ""]
    curves = size_curves(data)
    if not curves:
        return "\n".join(out + [f"Ours: {NOT_RUN}."])
    headers = ["Training fraction", "Training clips", "Accuracy (%)", "95 % CI", "Macro-F1 (%)",
               "Δ vs largest (points)", "95 % CI of Δ (paired bootstrap)", "McNemar p (Holm)"]
    for (model, variant), points in curves.items():
        name = model if variant == "default" else f"{model} {variant}"
        rows = []
        for p in points:
            pair = p.vs_full
            rows.append([f"{share(p.fraction)}", f"{p.n_train:.0f}", acc_cell(p.result), ci_cell(p.result),
                         pct(p.result.macro_f1), DASH if pair is None else signed(pair.diff),
                         DASH if pair is None else f"{signed(pair.lo)} to {signed(pair.hi)}",
                         DASH if pair is None else pvalue(pair.p_holm)])
        out += [f"**{name}** (each fraction against the largest on the same test clips):", "",
                table(headers, rows), "", "The study's statements against our curve:", "",
                table(["Study", "Ours"], _statements(spec, points), "ll"), ""]
    if figure:
        out += [image(figure, "Accuracy against training-set fraction"), ""]
    return "\n".join(out).rstrip()


def selection_text(data: RunData) -> str:
    """Our model choice for exp4 when it was made on validation clips (the study chose on the test set)."""
    groups = by_condition(data.select, data.split, data.feature_set)
    if not groups:
        return ""
    ranked = sorted(((model if variant == "default" else f"{model} {variant}", next(iter(group(recs).values())))
                     for (model, variant), recs in groups.items()), key=lambda nr: -nr[1].accuracy)
    rows = [[name, acc_cell(res), ci_cell(res)] for name, res in ranked]
    return "\n".join(["This run chose its model on validation clips carved from the training split (the study "
                      "chose on the test set, which flatters the chosen model):", "",
                      table(["Candidate", "Validation accuracy (%)", "95 % CI"], rows), ""])


def exp4_section(data: RunData, figures: dict[str, str]) -> str:
    spec = data.study["exp4"]
    parts = [f"## {spec['title']}",
             f"The study uses its best original-data model, `{spec['model']}` (Table 3).",
             selection_text(data).rstrip(),
             bootstrap_section(data, figures.get("bootstrap")),
             size_section(data, figures.get("size"))]
    return "\n\n".join(p for p in parts if p)
