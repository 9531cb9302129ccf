"""The report's "Searches" section: per searched row, what was searched, what it cost, what it found.

A search is the records sharing one ``search.id``: its trials (scored on validation clips, ``test.set:
valid``) and its refit (the chosen configuration, scored once on test). For each: the configuration found,
its validation score, the refit's test accuracy with its Wilson interval, trials run and stopped early,
epochs or rounds spent against every trial's full budget, and a figure of the best validation score so far
against trials and against compute. Other rows of the same experiment tested on the same clips (e.g.
Appendix C's tuned XGBoost beside the XGBoost search) are compared with the refit by an exact McNemar test.
"""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from raygenre.report.figures import PREFIX, _figure, _save
from raygenre.report.markdown import DASH, image, interval, pct, pvalue, table
from raygenre.report.results import correctness, counts
from raygenre.stats import discordant_counts, mcnemar_exact, wilson_interval

#: Appendix C of the study (scikit-learn names): shown beside an XGBoost search's result. The same values
#: as ``raygenre.models.tabular.TUNED_XGBOOST_PARAMS`` (a test checks it); the report imports no model code.
APPENDIX_C = {"subsample": 0.6, "reg_lambda": 1.5, "reg_alpha": 0.1, "n_estimators": 1000, "max_depth": 9,
              "learning_rate": 0.05, "gamma": 0, "colsample_bytree": 0.6}


def search_groups(records: list[dict]) -> dict[str, dict]:
    """search id -> {"trials": [ok trial records by index], "refit": record or None}."""
    out: dict[str, dict] = {}
    for rec in records:
        info = rec.get("search") or {}
        if not info or rec.get("status") != "ok":
            continue
        group = out.setdefault(info["id"], {"trials": [], "refit": None})
        if info["role"] == "trial":
            group["trials"].append(rec)
        else:
            group["refit"] = rec
    for group in out.values():
        group["trials"].sort(key=lambda r: (r.get("finished_at") or "", r["search"]["index"]))
    return dict(sorted(out.items()))


def _slug(search_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", search_id.lower()).strip("-")[-80:]


def progress_figure(search_id: str, trials: list[dict], out_dir: Path) -> str | None:
    """Best validation score so far against trials finished and against epochs/rounds spent."""
    if not trials:
        return None
    metric = trials[0]["search"]["metric"]
    sign = 1 if trials[0]["search"]["mode"] == "max" else -1
    scores = [r["search"]["score"] for r in trials]
    spent, best, used, bests = 0, None, [], []
    for score, rec in zip(scores, trials):
        spent += rec["search"]["ended"]["step"]
        if score is not None and (best is None or sign * score > sign * best):
            best = score
        used.append(spent)
        bests.append(float("nan") if best is None else best)
    scale = 100 if metric == "valid_accuracy" else 1
    unit = trials[0]["search"]["ended"]["unit"]
    fig = _figure(9.0, 3.4)
    for ax, xs, label in ((fig.add_subplot(1, 2, 1), list(range(1, len(trials) + 1)), "trials finished"),
                          (fig.add_subplot(1, 2, 2), used, f"{unit}s spent (all trials)")):
        ax.step(xs, [scale * b for b in bests], where="post", color="tab:blue", label="best so far")
        ax.plot(xs, [scale * s if s is not None else float("nan") for s in scores], "o", color="tab:gray",
                markersize=3, label="trial")
        ax.set_xlabel(label)
        ax.set_ylabel(f"validation {'accuracy (%)' if scale == 100 else 'loss'}")
        ax.grid(alpha=0.3)
    fig.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Search: {trials[0]['model']} {trials[0]['variant']}", fontsize=10)
    return _save(fig, out_dir, f"{PREFIX}search-{_slug(search_id)}.png")


def draw(records: list[dict], out_dir: Path) -> dict[str, str]:
    figs = {}
    for sid, group in search_groups(records).items():
        name = progress_figure(sid, group["trials"], out_dir)
        if name:
            figs[sid] = name
    return figs


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return DASH if v is None else str(v)


def _peers(refit: dict, records: list[dict]) -> list[dict]:
    """Rows of the refit's experiment, not searched, tested on exactly the refit's test clips."""
    ids = set(refit["test"]["ids"])
    return [r for r in records if r.get("status") == "ok" and not r.get("search") and r.get("test")
            and r["test"].get("set") == "test" and r.get("experiment") == refit["experiment"]
            and set(r["test"]["ids"]) == ids]


def _compare(refit: dict, peers: list[dict]) -> list[str]:
    if not peers:
        return []
    rows = []
    mine = correctness(refit)
    for peer in peers:
        theirs = correctness(peer)
        ids = sorted(mine)
        b, c = discordant_counts([mine[i] for i in ids], [theirs[i] for i in ids])
        k, n = counts(peer)
        rows.append([f"{peer['model']}" + ("" if peer["variant"] == "default" else f" {peer['variant']}"),
                     pct(k / n), interval(*wilson_interval(k, n)), f"{b} / {c}", pvalue(mcnemar_exact(b, c))])
    k, n = counts(refit)
    head = [[f"{refit['model']} (searched)", pct(k / n), interval(*wilson_interval(k, n)), DASH, DASH]]
    return ["Same test clips, paired (exact McNemar; *b / c*: clips only the searched model got right / only "
            "the other did):", "",
            table(["Model", "Test accuracy (%)", "95 % CI", "b / c", "p"], head + rows, "lrrrr"), ""]


def _appendix_c(refit: dict) -> list[str]:
    if refit["model"] not in ("xgboost", "xgboost_tuned"):
        return []
    found = {k.split(".", 1)[1]: v for k, v in refit["search"]["config"].items() if k.startswith("params.")}
    keys = sorted(set(found) | set(APPENDIX_C))
    rows = [[k, _value(found.get(k)), _value(APPENDIX_C.get(k))] for k in keys]
    return ["Parameters found beside the study's Appendix C (—: not set there, the library's default):", "",
            table(["Parameter", "Found", "Appendix C"], rows, "lrr"), ""]


def search_section(records: list[dict], figs: dict[str, str]) -> str:
    """The "Searches" section, or an empty string when the run searched nothing."""
    groups = search_groups(records)
    if not groups:
        return ""
    out = ["## Searches", "",
           "Each searched row ran Tune trials scored on **validation clips only** (a stratified carve of the "
           "training clips, or `fault_filtered`'s valid list); the chosen configuration was then trained on the "
           "training clips and scored once on the test clips. *Spent* counts the epochs or boosting rounds every "
           "trial ran against the budget all of them would have run without early stopping.", ""]
    for sid, group in groups.items():
        trials, refit = group["trials"], group["refit"]
        first = refit or trials[0]
        info = first["search"]
        title = f"{first['model']}" + ("" if first["variant"] == "default" else f" {first['variant']}")
        out += [f"### {title} (split `{first['split']['name']}` seed {first['split']['seed']})", ""]
        stopped = sum(r["search"]["ended"]["reason"] == "stopped" for r in trials)
        spent = sum(r["search"]["ended"]["step"] for r in trials)
        budget = sum(r["search"]["ended"]["budget"] for r in trials)
        unit = trials[0]["search"]["ended"]["unit"] if trials else "step"
        rows = [["Algorithm / scheduler", f"{info['algorithm']} / {info['scheduler']}"],
                ["Trials run / stopped early", f"{len(trials)} / {stopped}"],
                [f"{unit.capitalize()}s spent / full budget",
                 f"{spent} / {budget} ({pct(spent / budget) if budget else DASH} %)"]]
        if refit is not None:
            k, n = counts(refit)
            chosen = refit["search"]
            n_valid = next((len(r["test"]["ids"]) for r in trials if r["search"]["index"] == chosen["index"]), None)
            rows += [["Chosen configuration", ", ".join(f"`{k2}`={_value(v)}" for k2, v in
                                                        sorted(chosen["config"].items()))],
                     [f"Its validation score ({chosen['metric']})",
                      f"{_value(chosen['score'])} on {n_valid or DASH} validation clips (trial {chosen['index']})"],
                     ["Refit test accuracy (%)",
                      f"{pct(k / n)} (95 % CI {interval(*wilson_interval(k, n))}) on {n} test clips"],
                     ["Choice rule", chosen.get("rule") or DASH]]
        else:
            rows.append(["Refit", "not run (interrupted search: `--resume` finishes it)"])
        out += [table(["", ""], rows, "ll"), ""]
        if refit is not None:
            out += _appendix_c(refit) + _compare(refit, _peers(refit, records))
        if sid in figs:
            out += [image(figs[sid], f"Best validation score so far of the {title} search"), ""]
    return "\n".join(out).rstrip()
