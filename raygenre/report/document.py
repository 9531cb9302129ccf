"""REPORT.md: header, the study's tables beside ours, paired tests, validity, figures.

A pure function of the records and the study's shipped numbers: no clock, no randomness that is
not seeded, no paths in the text, so the same records give the same report byte for byte.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from raygenre.records import read_records_checked
from raygenre.reference import load_study
from raygenre.report import figures
from raygenre.report.augmentation import augmentation_section
from raygenre.report.encoders import draw_layers as draw_encoder_layers
from raygenre.report.encoders import encoder_section
from raygenre.report.exp4 import bootstrap_groups, exp4_section, size_curves
from raygenre.report.markdown import DASH, image, pct, table
from raygenre.report.paired import PairedFamily, families, paired_section
from raygenre.report.results import RowKey, RunData, collect, weights_summary
from raygenre.report.searches import draw as draw_searches
from raygenre.report.searches import search_section
from raygenre.report.tables import all_results, appendix_a, failed_trials, recall_facts, table1, table3
from raygenre.report.training import history_results, training_section
from raygenre.report.validity import validity_section
from raygenre.storage import RunPath

REPORT_NAME = "REPORT.md"


def _text(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return DASH if value is None else str(value)


def _values(records: list[dict], get) -> str:
    """The distinct values of one field over the records, most common first."""
    seen = Counter(_text(get(r)) for r in records)
    return "; ".join(v for v, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))) or DASH


def _versions(records: list[dict]) -> str:
    packages: dict[str, set[str]] = {}
    for rec in records:
        for name, ver in (rec.get("versions") or {}).items():
            packages.setdefault(name, set()).add(_text(ver))
    if not packages:
        return DASH
    parts = [f"{n} {' / '.join(sorted(v))}" + (" (differs between trials)" if len(v) > 1 else "")
             for n, v in sorted(packages.items())]
    return ", ".join(parts)


def _splits(data: RunData) -> str:
    seeds: dict[str, set[int]] = {}
    sizes: dict[str, set[int]] = {}
    for rec in data.ok:
        sp = rec.get("split") or {}
        seeds.setdefault(sp.get("name") or "?", set()).add(int(sp.get("seed") or 0))
        sizes.setdefault(sp.get("name") or "?", set()).add(int((rec.get("metrics") or {}).get("n_test") or 0))
    return "; ".join(f"`{name}`, seed(s) {', '.join(map(str, sorted(seeds[name])))}, "
                     f"{' / '.join(map(str, sorted(sizes[name])))} test clips" for name in sorted(seeds)) or DASH


def header(data: RunData) -> str:
    recs = data.records
    ok = data.ok or recs
    studies = Counter((r.get("study") or "?", r.get("status") == "ok" and bool(r.get("metrics"))) for r in recs)
    names = sorted({s for s, _ in studies})
    trials = "; ".join(f"{s}: {studies[(s, True)]} ok, {studies[(s, False)]} failed" for s in names)
    times = sorted(r["finished_at"] for r in recs if r.get("finished_at"))
    cpu_gpu = _values(ok, lambda r: {k: (r.get("resources") or {}).get(k) for k in ("cpu", "gpu")})
    nodes = sorted({_text((r.get("resources") or {}).get("node")) for r in ok})
    study = data.study
    rows = [
        ["Study reproduced", f"{study['title']}; {study['authors']}"],
        ["Data source", _values(ok, lambda r: (r.get("run") or {}).get("source"))],
        ["Data hash", _values(ok, lambda r: (r.get("run") or {}).get("data_hash"))],
        ["Profile", _values(ok, lambda r: (r.get("run") or {}).get("profile"))],
        ["Split(s)", _splits(data)],
        ["Feature set(s)", _values([r for r in ok if r.get("representation") == "features"],
                                   lambda r: r.get("feature_set"))],
        ["Tables below use", f"split `{data.split}`" + (f", feature set `{data.feature_set}`" if data.feature_set
                                                         else "") + " (the study's conditions where present)"],
        ["Network weights", _values([r for r in ok if r.get("weights")], weights_summary)],
        ["Trials", trials],
        ["Hardware", _values(ok, lambda r: (r.get("run") or {}).get("hardware"))],
        ["Resources per trial", f"{cpu_gpu}; {len(nodes)} node(s): {', '.join(nodes[:8])}"
                                + (" …" if len(nodes) > 8 else "")],
        ["Versions", _versions(ok)],
        ["Trials finished", f"{times[0]} to {times[-1]}" if times else DASH],
    ]
    return "\n".join(["# GTZAN genre classification: the study reproduced", "",
                      table(["", ""], rows, "ll")])


def how_to_read(data: RunData) -> str:
    return "\n".join([
        "## How to read this report", "",
        "- Accuracies are percentages of test clips. **95 % CI** is the Wilson score interval (scipy) of our "
        "accuracy; **Study in CI** says whether the study's figure lies inside it. That is a consistency check, "
        "not a test: the study's own figure is one run on 200 clips and carries about ±6 points itself.",
        "- With several split seeds a cell reads *mean ± standard deviation (each seed's accuracy, in seed "
        "order)*, and the interval is the Wilson interval of the pooled count over every seed's test predictions "
        "(n = seeds × test clips): an interval for the accuracy averaged over splits, narrower than one split's. "
        "The seed-to-seed spread is in the ± value.",
        "- **not run**: no finished trial of that row in this run; the row stays so gaps are visible.",
        "- **random init** (a footnote in the tables, `[random init]` in labels): an ImageNet network trained from "
        "random weights, e.g. by the quick profile without weight files. Not the study's condition: such rows are "
        "not checked against the study's figures.",
        "- **Parameters (total / trainable)**: the network's parameter count and the part the variant trains.",
        f"- {data.study['footnotes']['test_size']}",
    ])


def _study_marks(data: RunData) -> dict[RowKey, float]:
    """Our primary results that a study row names, with the study's figure (percent)."""
    marks: dict[RowKey, float] = {}
    for row in data.study["table3"]["rows"] + data.study["appendix_a"]["rows"]:
        res = data.find(row["match"])
        if res is not None and not res.random_init and row["study"] is not None:
            marks.setdefault(res.key, row["study"])
    for row in data.study["table1"]["rows"]:
        res = data.find(row["match"], augmented=True) if "match" in row else None
        if res is not None and not res.random_init:
            marks.setdefault(res.key, row["study"]["augmented"])
    return marks


def draw_figures(data: RunData, out_dir: Path, fams: list[PairedFamily]) -> dict[str, str]:
    """Every figure, by role; a role whose data is absent is missing from the mapping."""
    primary = data.primary_results()
    exp4 = data.study["exp4"]
    figs: dict[str, str | None] = {
        "comparison": figures.comparison(primary, _study_marks(data), out_dir),
        "recall": figures.recall_heatmap(primary, out_dir),
        "bootstrap": figures.bootstrap_box(bootstrap_groups(data), exp4["bootstrap"], out_dir),
        "size": figures.size_curve(size_curves(data), exp4["size"], out_dir),
        "learning": figures.learning_curves(history_results(data), out_dir),
    }
    for fam in fams:
        figs[f"pvalues-{fam.split}"] = figures.pvalue_matrix(fam, out_dir)
    figs.update({f"search:{sid}": name for sid, name in draw_searches(data.records, out_dir).items()})
    figs["encoder-layers"] = draw_encoder_layers(data.records, out_dir)  # exp5's per-layer probe accuracy
    for res in sorted(primary, key=lambda r: (-r.accuracy, r.label)):
        figs[f"confusion-{figures.slug(res.key)}"] = figures.confusion(res, out_dir)
    return {k: v for k, v in figs.items() if v}


def genre_section(data: RunData, figs: dict[str, str]) -> str:
    out = ["## Per-genre results", ""]
    if "recall" in figs:
        out += ["Recall per genre (% of each genre's test clips classified correctly), split seeds pooled:", "",
                image(figs["recall"], "Per-genre recall, models by genres"), ""]
    out += [recall_facts(data), "", "### Confusion matrices", ""]
    ranked = sorted(data.primary_results(), key=lambda r: (-r.accuracy, r.label))
    confusions = [(r, figs[f"confusion-{figures.slug(r.key)}"]) for r in ranked
                  if f"confusion-{figures.slug(r.key)}" in figs]
    if not confusions:
        return "\n".join(out + ["No model finished under the primary split."])
    out += ["Rows are true genres and sum to 100 %; split seeds pooled; best model first.", ""]
    for res, path in confusions:
        out += [f"**{res.label}** ({res.key.representation}, split `{res.key.split}`): {pct(res.accuracy)} %", "",
                image(path, f"Confusion matrix of {res.label}"), ""]
    return "\n".join(out).rstrip()


def render(data: RunData, figs: dict[str, str], fams: list[PairedFamily]) -> str:
    """The whole REPORT.md text for the collected records and the drawn figures."""
    comparison = ["### All models against the study", "",
                  image(figs["comparison"], "Model comparison with 95 % intervals and the study's figures"), ""] \
        if "comparison" in figs else []
    parts = [header(data), how_to_read(data), table1(data), "\n".join([table3(data), "", *comparison]).rstrip(),
             appendix_a(data), augmentation_section(data), training_section(data, figs.get("learning")),
             exp4_section(data, figs),
             search_section(data.records, {k[7:]: v for k, v in figs.items() if k.startswith("search:")}),
             encoder_section(data.records, figs.get("encoder-layers")),
             paired_section(data, figs, fams), validity_section(data),
             genre_section(data, figs), all_results(data), failed_trials(data)]
    return "\n\n".join(p.rstrip() for p in parts if p) + "\n"


def build_report(records: list[dict], out_dir: str | Path, skipped_note: str = "") -> Path:
    """Write REPORT.md and its figures for ``records`` into ``out_dir``; returns the REPORT.md path.

    ``skipped_note`` (bad record lines that were not read) goes under the title, so a reader of the
    report knows records are missing, not only whoever ran the command.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures.clear_figures(out)
    data = collect(records, load_study())
    fams = families(data)
    figs = draw_figures(data, out, fams)
    path = out / REPORT_NAME
    text = render(data, figs, fams)
    if skipped_note:
        title, rest = text.split("\n\n", 1)
        text = f"{title}\n\n**Warning:** {skipped_note}\n\n{rest}"
    path.write_text(text, encoding="utf-8")
    return path


def default_out_dir(run_dir: str | Path | RunPath) -> Path:
    """``reports/<name of the run directory>``, relative to the working directory."""
    return Path("reports") / RunPath.of(run_dir).name


def write_report(run_dir: str | Path | RunPath, out_dir: str | Path | RunPath | None = None) -> Path | RunPath:
    """Report on the records under ``run_dir/records``; raises RecordsError if there are none.

    ``out_dir`` may be in object storage: the report is drawn in a local temp folder and uploaded.
    """
    read = read_records_checked(run_dir)
    note = read.skipped_summary()
    if note:
        print(f"warning: {note}", file=sys.stderr)
    target = RunPath.of(out_dir if out_dir is not None else default_out_dir(run_dir))
    if not target.remote:
        return build_report(read.records, target.uri, note)
    with target.written_locally() as folder:
        build_report(read.records, folder, note)
    return target / REPORT_NAME
