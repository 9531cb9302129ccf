"""Paired tests between models evaluated on the same test clips.

The study ranks models by single accuracies on 200 clips without tests. Two models scored on the
same clips can be compared far more sharply than two independent intervals suggest, because only
the clips on which they disagree matter: exact McNemar for the test, a paired bootstrap of test
clips for the interval of the difference, Holm for the many comparisons against the best model.
"""

from __future__ import annotations

from dataclasses import dataclass

from raygenre.report.markdown import DASH, image, pct, pvalue, signed, table
from raygenre.report.results import N_RESAMPLES, Pair, Result, RunData, compare
from raygenre.stats import holm

ALPHA = 0.05


@dataclass
class PairedFamily:
    """The models of one split, the best of them, its Holm-corrected comparisons and the p matrix."""

    split: str
    results: list[Result]
    best: Result
    vs_best: list[tuple[Result, Pair | None]]
    matrix: list[list[float | None]]


def families(data: RunData) -> list[PairedFamily]:
    """One family per split name (the primary split first), each with two or more models."""
    splits = sorted({k.split for k in data.results}, key=lambda s: (s != data.split, s))
    out = []
    for split in splits:
        results = sorted((r for k, r in data.results.items() if k.split == split),
                         key=lambda r: (-r.accuracy, r.label))
        if len(results) < 2:
            continue
        best = results[0]
        pairs = [(r, compare(best, r)) for r in results[1:]]
        done = [p for _, p in pairs if p is not None]
        for pair, adj in zip(done, holm([p.p for p in done])):
            pair.p_holm = adj
        matrix: list[list[float | None]] = [[None] * len(results) for _ in results]
        for i, a in enumerate(results):
            for j in range(i + 1, len(results)):
                pair = compare(a, results[j], n_resamples=0)
                if pair is not None:
                    matrix[i][j] = matrix[j][i] = pair.p
        out.append(PairedFamily(split, results, best, pairs, matrix))
    return out


def _family_text(fam: PairedFamily, figure: str | None) -> str:
    best = fam.best
    headers = ["Model", "Accuracy (%)", "Best − model (points)", "95 % CI (paired bootstrap)",
               "Best right only (b)", "Model right only (c)", "Exact McNemar p", "Holm p", "Differs at 5 %"]
    rows = []
    for res, pair in fam.vs_best:
        if pair is None:
            rows.append([res.label, pct(res.accuracy), DASH, "no shared test clips", DASH, DASH, DASH, DASH, DASH])
            continue
        rows.append([res.label, pct(res.accuracy), signed(pair.diff), f"{signed(pair.lo)} to {signed(pair.hi)}",
                     pair.b_only, pair.c_only, pvalue(pair.p), pvalue(pair.p_holm),
                     "yes" if pair.p_holm is not None and pair.p_holm < ALPHA else "no"])
    n_shared = [p.n for _, p in fam.vs_best if p is not None]
    out = [f"### Split `{fam.split}`: best model `{best.label}` ({pct(best.accuracy)} %) against every other", "",
           f"{len(fam.results)} models; comparisons use the test clips both models were scored on "
           f"({max(n_shared) if n_shared else 0} clips at most, pooled over shared split seeds); "
           f"{N_RESAMPLES} paired bootstrap resamples of test clips; Holm correction over "
           f"{len(n_shared)} comparisons.", "", table(headers, rows, "lrrrrrrrc"), ""]
    short = {r.label: f"M{i + 1}" for i, r in enumerate(fam.results)}
    mrows = []
    for i, res in enumerate(fam.results):
        cells = [DASH if i == j else ("n/a" if p is None else pvalue(p)) for j, p in enumerate(fam.matrix[i])]
        mrows.append([f"{short[res.label]} `{res.label}`", *cells])
    out += ["Exact McNemar p-values for every pair (not corrected for multiplicity; n/a: no shared test clips). "
            "Columns follow the row numbering.", "",
            table(["Model", *short.values()], mrows, "l" + "r" * len(fam.results)), ""]
    if figure:
        out += [image(figure, f"McNemar p-value matrix, split {fam.split}"), ""]
    return "\n".join(out).rstrip()


def paired_section(data: RunData, figures: dict[str, str], fams: list[PairedFamily] | None = None) -> str:
    out = ["## Paired tests", "",
           "Models scored on the same test clips are compared clip by clip. Exact McNemar: a two-sided binomial "
           "test on the clips where exactly one of the two models is right. Interval: 95 % percentile interval of "
           "the accuracy difference over resamples of test clips (pairs kept together, seeded). "
           "Only models with identical test clip sets (same split name and seed) are paired.", ""]
    fams = families(data) if fams is None else fams
    if not fams:
        return "\n".join(out + ["Fewer than two models share a test set in this run: nothing to pair."])
    for fam in fams:
        out += [_family_text(fam, figures.get(f"pvalues-{fam.split}")), ""]
    return "\n".join(out).rstrip()
