"""Validity checks the study does not make: the `length` leak and the split's artist/fault effects.

* ``kaggle58`` vs ``content57``: the Kaggle CSV's ``length`` column describes the file, not the
  music; the same model with and without it, on the same test clips, is a paired comparison.
* ``paper`` vs ``fault_filtered``: the random split lets one artist (and GTZAN's repeated and
  distorted clips) sit on both sides; the fault-filtered split does not. Different test sets, so
  the difference gets an unpaired (Newcombe) interval.
"""

from __future__ import annotations

from dataclasses import replace

from raygenre.report.markdown import DASH, acc_cell, ci_cell, pvalue, signed, table
from raygenre.report.results import Result, RowKey, RunData, compare
from raygenre.stats import newcombe_diff_interval

LEAKY, CLEAN = "kaggle58", "content57"
RANDOM_SPLIT, FILTERED_SPLIT = "paper", "fault_filtered"


def _name(key: RowKey) -> str:
    text = key.model if key.variant == "default" else f"{key.model} {key.variant}"
    return text + (" +aug" if key.augmented else "")


def leak_pairs(data: RunData) -> list[tuple[Result, Result]]:
    """(kaggle58, content57) results of the same model, variant and split."""
    out = []
    for key, res in data.results.items():
        if key.representation == "features" and key.feature_set == LEAKY:
            other = data.results.get(replace(key, feature_set=CLEAN))
            if other is not None:
                out.append((res, other))
    return out


def split_pairs(data: RunData) -> list[tuple[Result, Result]]:
    """(paper, fault_filtered) results of the same model, variant, augmentation and feature set."""
    out = []
    for key, res in data.results.items():
        if key.split == RANDOM_SPLIT:
            other = data.results.get(replace(key, split=FILTERED_SPLIT))
            if other is not None:
                out.append((res, other))
    return out


def leak_text(data: RunData) -> str:
    out = ["### The `length` column: `kaggle58` vs `content57`", "",
           "The study's 58 inputs include `length`, the number of samples in each file. It describes the file, "
           "not the music; where file lengths differ between GTZAN's sources, a model can read genre off it. "
           "`content57` drops it. Same model, same test clips: a paired comparison.", ""]
    pairs = leak_pairs(data)
    if not pairs:
        return "\n".join(out + ["Not run: this run holds no feature model under both `kaggle58` and `content57` "
                                "(set `features.set` to each)."])
    headers = ["Model", "Split", "kaggle58 (%)", "content57 (%)", "Δ (points)", "95 % CI (paired bootstrap)",
               "Exact McNemar p", "Test clips"]
    rows = []
    for leaky, clean in pairs:
        pair = compare(leaky, clean)
        if pair is None:
            rows.append([_name(leaky.key), leaky.key.split, acc_cell(leaky), acc_cell(clean), DASH,
                         "no shared test clips", DASH, DASH])
            continue
        rows.append([_name(leaky.key), leaky.key.split, acc_cell(leaky), acc_cell(clean), signed(pair.diff),
                     f"{signed(pair.lo)} to {signed(pair.hi)}", pvalue(pair.p), pair.n])
    return "\n".join(out + [table(headers, rows), "",
                            "Δ = kaggle58 − content57: a positive, significant Δ means `length` carries "
                            "genre information the audio content does not."])


def split_text(data: RunData) -> str:
    out = ["### The split: `paper` (random 80/20) vs `fault_filtered`", "",
           "The study's random split can put clips of one artist, and GTZAN's repeated or distorted clips, in "
           "both training and test; the fault-filtered split keeps artists apart and drops the faulty clips. "
           "Test sets differ, so the interval of the difference is Newcombe's unpaired score interval.", ""]
    pairs = split_pairs(data)
    if not pairs:
        return "\n".join(out + ["Not run: this run holds no model under both the `paper` and the `fault_filtered` "
                                "split (set `split.name` to each)."])
    headers = ["Model", "Feature set", "paper (%)", "95 % CI", "fault_filtered (%)", "95 % CI", "Δ (points)",
               "95 % CI (Newcombe)"]
    rows = []
    for rand, filt in pairs:
        (k1, n1), (k2, n2) = rand.pooled, filt.pooled
        d, lo, hi = newcombe_diff_interval(k1, n1, k2, n2)
        rows.append([_name(rand.key), rand.key.feature_set or DASH, acc_cell(rand), ci_cell(rand), acc_cell(filt),
                     ci_cell(filt), signed(d), f"{signed(lo)} to {signed(hi)}"])
    return "\n".join(out + [table(headers, rows), "",
                            "Δ = paper − fault_filtered, on pooled counts: a positive Δ is accuracy the random split "
                            "credits to the model that the artist-disjoint split does not."])


def validity_section(data: RunData) -> str:
    return "\n".join(["## Validity", "", leak_text(data), "", split_text(data)])
