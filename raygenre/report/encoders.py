"""Experiment 5's section: "Beyond the study: pretrained encoders" (a pure function of the records).

* **Table**: each encoder x probe, accuracy on test clips (mean over split seeds) with the 95 % Wilson
  interval of the pooled count, the layer chosen on validation clips, the weights it ran with, and the
  published figure beside it with that figure's protocol (EVAR linear probes and MARBLE's MLP probe, both on
  GTZAN's fault-filtered split with 30 s clips). A row from random weights says so: it tests the plumbing.
* **Paired tests**: each encoder row against the best feature model of the study's experiment 3 and against
  Wav2Vec2, on the test clips they share (exact McNemar, paired bootstrap interval of the difference); a
  comparison whose records are not in this report, or whose clips differ, is named as missing.
* **Per-layer figure**: validation accuracy of every layer (the best learning rate / weight decay draw of
  each layer, mean over seeds) for MERT and Wav2Vec2: what the layer search saw, never the test clips.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from raygenre.report.markdown import image, interval, pct, pvalue, signed, table
from raygenre.report.results import Result, compare, evaluated_on, group

EXPERIMENT = "exp5"
TITLE = "## Beyond the study: pretrained encoders"
#: published accuracies (%) on GTZAN's fault-filtered split, 30 s clips, with their protocol
PUBLISHED: dict[tuple[str, str], tuple[str, str]] = {
    ("ast", "linear"): ("85.1 ± 0.5", "EVAR linear probe"),
    ("clap", "linear"): ("84.3 ± 2.6", "EVAR linear probe (LAION-CLAP)"),
    ("clap_unfused", "linear"): ("84.3 ± 2.6", "EVAR linear probe (LAION-CLAP)"),
    ("wav2vec2", "linear"): ("57.8", "EVAR linear probe"),
    ("mert", "mlp"): ("78.6 (layer 7)", "MARBLE MLP probe"),
}
LAYER_MODELS = ("mert", "wav2vec2")


def _refits(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("experiment") == EXPERIMENT and r.get("status") == "ok"
            and r.get("metrics") and evaluated_on(r) == "test"]


def _layer_of(res: Result) -> str:
    layers = sorted({str(((r.get("search") or {}).get("config") or {}).get("params.layer",
                                                                         (r.get("params") or {}).get("layer", "last")))
                     for r in res.records})
    return ", ".join(layers)


def _weights(res: Result) -> str:
    text = str(res.records[0].get("weights") or "")
    return "random init: not a pretrained encoder" if text.startswith("random") else text.split(" (")[0]


def encoder_results(records: list[dict]) -> dict:
    return group(_refits(records))


def _references(records: list[dict], split: str) -> tuple[Result | None, dict[str, Result]]:
    """The best feature model of the study's rows under ``split``, and Wav2Vec2 results by variant."""
    others = group([r for r in records if r.get("status") == "ok" and r.get("metrics") and evaluated_on(r) == "test"
                    and r.get("experiment") != EXPERIMENT and not r.get("search")
                    and r.get("bootstrap_index") is None and float(r.get("train_fraction") or 1.0) == 1.0])
    features = [res for key, res in others.items() if key.representation == "features" and key.split == split]
    best = max(features, key=lambda r: r.accuracy, default=None)
    w2v = {key.variant: res for key, res in {**others, **encoder_results(records)}.items()
           if key.model == "wav2vec2" and key.split == split}
    return best, w2v


def _pair_cell(a: Result, b: Result | None) -> str:
    if b is None:
        return "not in these records"
    pair = compare(a, b)
    if pair is None:
        return "no shared test clips"
    return f"{signed(pair.diff)} [{interval(pair.lo, pair.hi)}], p {pvalue(pair.p)} (n={pair.n})"


def layer_curves(records: list[dict]) -> dict[tuple[str, str, str], dict[int, float]]:
    """(model, variant, split) -> layer -> validation accuracy (best draw per layer and seed, mean over seeds)."""
    best: dict[tuple[str, str, str], dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        info = r.get("search") or {}
        layer = (info.get("config") or {}).get("params.layer")
        if r.get("experiment") != EXPERIMENT or info.get("role") != "trial" or layer is None \
                or r.get("model") not in LAYER_MODELS or r.get("status") != "ok":
            continue
        key = (r["model"], r["variant"], (r.get("split") or {}).get("name") or "?")
        seed = int((r.get("split") or {}).get("seed") or 0)
        acc = float((r.get("metrics") or {}).get("accuracy", 0.0))
        best[key][int(layer)][seed] = max(acc, best[key][int(layer)].get(seed, 0.0))
    return {k: {layer: float(np.mean(list(s.values()))) for layer, s in sorted(v.items())} for k, v in best.items()}


def draw_layers(records: list[dict], out_dir: Path) -> str | None:
    from raygenre.report.figures import PREFIX, _figure, _save

    curves = layer_curves(records)
    if not curves:
        return None
    fig = _figure(6.5, 3.6)
    ax = fig.subplots()
    for (model, variant, split), points in sorted(curves.items()):
        ax.plot(list(points), [100 * v for v in points.values()], marker="o", label=f"{model} {variant} ({split})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (0 = input embedding)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Per-layer probe accuracy on validation clips")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, f"{PREFIX}encoder-layers.png")


def encoder_section(records: list[dict], layers_figure: str | None = None) -> str:
    """The section's Markdown ('' when the records hold no exp5 row)."""
    results = encoder_results(records)
    if not results:
        return ""
    rows, pairs = [], []
    for key, res in sorted(results.items(), key=lambda kv: (kv[0].split, -kv[1].accuracy)):
        lo, hi = res.ci
        published, protocol = PUBLISHED.get((key.model, key.variant), ("", ""))
        spread = f" ± {100 * res.std:.1f}" if len(res.seeds) > 1 else ""  # across seeds, as EVAR reports
        rows.append([key.model, key.variant, key.split, len(res.seeds), f"{pct(res.accuracy)}{spread}",
                     interval(lo, hi), pct(res.macro_f1), _layer_of(res), _weights(res), published or "—",
                     protocol or "—"])
        best, w2v = _references(records, key.split)
        if key.model != "wav2vec2":
            ref = w2v.get(key.variant) or next(iter(w2v.values()), None)
            pairs.append([f"{key.model} {key.variant} ({key.split})",
                          f"{best.key.model}: {_pair_cell(res, best)}" if best else "not in these records",
                          _pair_cell(res, ref)])
    out = [TITLE, "",
           "Frozen encoders, embeddings cached once per clip, linear (logistic regression) and MLP probes; the layer, "
           "learning rate and weight decay chosen on validation clips only, then one fit scored once on test. "
           "Accuracy: mean (± standard deviation) over split seeds; interval: 95 % Wilson interval of the pooled "
           "test predictions. The published figures are on GTZAN's fault-filtered split with 30 s clips; a row "
           "on another split or from random weights is not comparable with them.", "",
           table(["encoder", "probe", "split", "seeds", "accuracy %", "95 % CI", "macro-F1 %", "layer chosen",
                  "weights", "published %", "published protocol"], rows), ""]
    if pairs:
        out += ["### Paired tests on the same test clips", "",
                "Accuracy difference (percentage points, encoder minus reference) with its paired bootstrap 95 % "
                "interval and the exact McNemar p-value.", "",
                table(["encoder row", "vs the best feature model (exp3)", "vs Wav2Vec2"], pairs), ""]
    if layers_figure:
        out += ["### Per-layer accuracy (validation clips)", "", image(layers_figure, "Per-layer probe accuracy"), ""]
    return "\n".join(out).rstrip()
