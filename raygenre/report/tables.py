"""The study's tables with our numbers beside them: Table 1, Table 3, Appendix A, and the rest.

Every row of the study appears whether or not it was run ("not run"), so a partial run shows at
a glance what is missing; results that match no study row are listed under "All results".
"""

from __future__ import annotations

from raygenre.genres import GENRES
from raygenre.report.markdown import (
    DASH,
    NOT_RUN,
    acc_cell,
    ci_cell,
    inside,
    interval,
    number,
    params_cell,
    pct,
    signed,
    table,
)
from raygenre.report.results import Result, RowKey, RunData, counts, weights_summary
from raygenre.stats import chance_range, wilson_interval

MARKS = "¹²³⁴⁵⁶⁷⁸⁹"
RANDOM_INIT = "random_init"


class Footnotes:
    """Numbered footnotes of one table, from the study's footnote texts."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts
        self.used: list[str] = []

    def mark(self, name: str | None) -> str:
        if not name:
            return ""
        if name not in self.used:
            self.used.append(name)
        return " " + MARKS[self.used.index(name)]

    def render(self) -> str:
        return "\n".join(f"{MARKS[i]} {self.texts[n]}  " for i, n in enumerate(self.used))

    def close(self, body: list[str]) -> str:
        """The table's lines with the footnotes it used below them."""
        return "\n".join(body + (["", self.render()] if self.used else []))


def _study_cells(res: Result | None, study_pct: float | None, notes: Footnotes) -> list[str]:
    """Ours, CI, study, study-in-CI; a random-init net is marked and not checked against the study."""
    if res is not None and res.random_init:
        return [acc_cell(res) + notes.mark(RANDOM_INIT), ci_cell(res), number(study_pct), "not comparable"]
    lo, hi = res.ci if res is not None else (float("nan"), float("nan"))
    return [acc_cell(res), ci_cell(res), number(study_pct), inside(study_pct, lo, hi)]


def n_test_clips(data: RunData) -> int:
    """Test clips of one record under the primary split (the study's 200 when nothing ran)."""
    for res in data.primary_results():
        return counts(res.records[0])[1]
    return int(data.study["test_size"])


def table1(data: RunData) -> str:
    spec = data.study["table1"]
    notes = Footnotes(data.study["footnotes"])
    cols = spec["columns"]
    headers = ["Experimental condition"]
    for col in ("original", "augmented"):
        headers += [f"Ours, {cols[col]} (%)", "95 % CI", "Study (%)", "Study in CI"]
    rows = []
    for row in spec["rows"]:
        cells = [row["label"] + notes.mark(row.get("footnote"))]
        for col, aug in (("original", False), ("augmented", True)):
            study_pct = row["study"][col]
            if row.get("chance"):
                n = n_test_clips(data)
                lo, hi = chance_range(n, data.study["n_classes"])
                cells += [f"{100 / data.study['n_classes']:g} (chance)", f"{interval(lo, hi)} (guessing, n={n})",
                          number(study_pct), inside(study_pct, lo, hi)]
            else:
                cells += _study_cells(data.find(row["match"], augmented=aug), study_pct, notes)
        rows.append(cells)
    return notes.close([f"## {spec['title']}", "", spec["caption"], "", table(headers, rows, "lrrrcrrrc")])


def table3(data: RunData) -> str:
    spec = data.study["table3"]
    notes = Footnotes(data.study["footnotes"])
    headers = ["Experimental condition", "Ours (%)", "95 % CI", "Study (%)", "Study in CI",
               "Ours − study (points)", "Ours macro-F1 (%)"]
    rows = []
    for row in spec["rows"]:
        res = data.find(row["match"])
        diff = (DASH if res is None or res.random_init or row["study"] is None
                else signed(res.accuracy - row["study"] / 100))
        f1 = DASH if res is None else pct(res.macro_f1)
        label = row["label"] + notes.mark(row.get("footnote"))
        rows.append([label, *_study_cells(res, row["study"], notes), diff, f1])
    return notes.close([f"## {spec['title']}", "", spec["caption"], "", table(headers, rows, "lrrrcrr")])


def appendix_a(data: RunData) -> str:
    spec = data.study["appendix_a"]
    notes = Footnotes(data.study["footnotes"])
    headers = ["Network", "Approach", "Variant", "Ours (%)", "95 % CI", "Study (%)", "Study in CI",
               "Best (study / ours)", "Parameters (total / trainable)"]
    found = [data.find(row["match"]) for row in spec["rows"]]
    ours_best: dict[str, float] = {}
    for row, res in zip(spec["rows"], found):
        if res is not None:
            ours_best[row["model"]] = max(ours_best.get(row["model"], -1.0), res.accuracy)
    rows = []
    for row, res in zip(spec["rows"], found):
        best = ["study" if row.get("best") else "",
                "ours" if res is not None and res.accuracy == ours_best.get(row["model"]) else ""]
        rows.append([row["model"], row["label"] + notes.mark(row.get("footnote")), f"`{row['match']['variant']}`",
                     *_study_cells(res, row["study"], notes), " / ".join(b for b in best if b) or DASH,
                     params_cell(res)])
    return notes.close([f"## {spec['title']}", "", spec["caption"], "", table(headers, rows, "lllrrrccr")])


def _study_rows(data: RunData) -> dict[RowKey, str]:
    """Which study row each of our results stands for (under the primary condition)."""
    named: dict[RowKey, str] = {}
    for name, key in (("table3", "Table 3"), ("appendix_a", "Appendix A")):
        for row in data.study[name]["rows"]:
            res = data.find(row["match"])
            if res is not None:
                named.setdefault(res.key, f"{key}: {row['label']}")
    for row in data.study["table1"]["rows"]:
        res = data.find(row["match"], augmented=True) if "match" in row else None
        if res is not None:
            named.setdefault(res.key, f"Table 1 (augmented): {row['label']}")
    for row in data.study["appendix_a"]["rows"]:
        res = data.find(row["match"], augmented=True)
        if res is not None:
            named.setdefault(res.key, f"Appendix A variant, augmented (not in the study): {row['label']}")
    return named


def _weights(res: Result) -> str:
    found = sorted({w for r in res.records if (w := weights_summary(r))})
    return " / ".join(found) or DASH


def all_results(data: RunData) -> str:
    """Every model condition the run holds, under every split and feature set."""
    named = _study_rows(data)
    headers = ["Model", "Representation", "Feature set", "Split", "Seeds", "Accuracy (%)", "95 % CI",
               "Macro-F1 (%)", "Test clips (pooled)", "Parameters (total / trainable)", "Weights", "Study row"]
    rows = []
    for key, res in data.results.items():
        study_row = named.get(key, "(none)")
        if res.random_init and key in named:
            study_row += " (random init: not the study's condition)"
        rows.append([res.label, key.representation, key.feature_set or DASH, key.split,
                     ", ".join(map(str, res.seeds)), acc_cell(res), ci_cell(res), pct(res.macro_f1),
                     res.pooled[1], params_cell(res), _weights(res), study_row])
    if not rows:
        return "## All results\n\nNo model-comparison trials (experiments 1–3) finished in this run."
    return "\n".join(["## All results", "",
                      "Every model condition in the run, including other splits and feature sets than the "
                      "tables above use.", "", table(headers, rows, "lllllrrrrrll")])


def recall_facts(data: RunData) -> str:
    """The per-genre recalls the study states in its text, beside ours with Wilson intervals."""
    headers = ["Model", "Genre", "Ours (%)", "95 % CI", "Study (%)", "Study in CI"]
    rows = []
    for fact in data.study["recall_facts"]:
        res = data.find(fact["match"])
        for genre in GENRES:
            if genre not in fact["recall"]:
                continue
            study_pct = fact["recall"][genre]
            if res is None:
                rows.append([fact["label"], genre, NOT_RUN, DASH, number(study_pct), DASH])
                continue
            k, n = res.recall(genre)
            lo, hi = wilson_interval(k, n)
            label = fact["label"] + (" (random init)" if res.random_init else "")
            rows.append([label, genre, pct(k / n) if n else DASH, interval(lo, hi), number(study_pct),
                         "not comparable" if res.random_init else inside(study_pct, lo, hi)])
    return "\n".join(["### Per-genre recalls the study states", "",
                      "The study quotes these recalls in its text (20 test clips per genre, so each carries "
                      "an interval of roughly ±20 points).", "", table(headers, rows, "llrrrc")])


def failed_trials(data: RunData) -> str:
    if not data.failed:
        return "## Failed trials\n\nNone: every trial in the records finished."
    headers = ["Trial", "Study", "Model", "Variant", "Split", "Error"]
    rows = []
    for rec in sorted(data.failed, key=lambda r: r.get("trial_key") or ""):
        err = (rec.get("error") or "no error text").strip().splitlines() or [""]
        text = err[-1][:200]
        rows.append([f"`{rec.get('trial_key')}`", rec.get("study") or DASH, rec.get("model") or DASH,
                     rec.get("variant") or DASH, f"{(rec.get('split') or {}).get('name')} / "
                     f"{(rec.get('split') or {}).get('seed')}", text])
    return "\n".join(["## Failed trials", "",
                      f"{len(data.failed)} trial(s) failed and count nowhere above (last line of each error).",
                      "", table(headers, rows, "llllll")])
