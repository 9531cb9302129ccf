"""Experiment 2 against experiment 1: does training on the x6 augmented clips help, model by model?

The study reads "most models' accuracies increasing by around 10 %" off single accuracies. Our
exp1 and exp2 trials of one split name and seed are scored on the same test clips, so each model's
gain is tested clip by clip (exact McNemar on the clips exactly one of the two gets right, Holm
over the models) and given a paired-bootstrap interval. Where the clips differ there is no pairing:
the row says so and shows Newcombe's unpaired interval instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from raygenre.report.markdown import DASH, acc_cell, pct, pvalue, signed, table
from raygenre.report.results import N_RESAMPLES, RANDOM_LABEL, Pair, Result, RunData, compare, correctness
from raygenre.stats import holm, newcombe_diff_interval

ALPHA = 0.05


@dataclass
class AugPair:
    """One model condition trained on original (exp1) and augmented (exp2) clips."""

    original: Result
    augmented: Result
    pair: Pair | None  # A = augmented, B = original; None when no test clips are shared
    why_unpaired: str = ""
    study_diff: float | None = None  # the study's Table 1 augmented − original, in points

    @property
    def random_init(self) -> bool:
        return self.original.random_init or self.augmented.random_init

    @property
    def name(self) -> str:
        key = self.original.key
        text = key.model if key.variant == "default" else f"{key.model} {key.variant}"
        return text + (RANDOM_LABEL if self.random_init else "")


def _why_unpaired(a: Result, b: Result) -> str:
    """Why two results share no test clips: no common split seed, or the same seed with other clip ids."""
    common = sorted(set(a.by_seed) & set(b.by_seed))
    if not common:
        return (f"no split seed in common (exp1 seeds {', '.join(map(str, b.seeds))}; "
                f"exp2 seeds {', '.join(map(str, a.seeds))})")
    same = [s for s in common if set(correctness(a.by_seed[s])) == set(correctness(b.by_seed[s]))]
    if same:
        return "no per-clip test predictions recorded"
    return f"the test clip ids differ for split seed(s) {', '.join(map(str, common))}"


def _study_diff(data: RunData, res: Result) -> float | None:
    """The study's Table 1 gain (augmented − original, points) for the row naming this model, if any."""
    for row in data.study["table1"]["rows"]:
        match = row.get("match")
        if match and all(getattr(res.key, f) == v for f, v in match.items()):
            return row["study"]["augmented"] - row["study"]["original"]
    return None


def aug_pairs(data: RunData) -> list[AugPair]:
    """Every (model, variant, split) with results on both original and augmented training clips."""
    out = []
    for key, res in data.results.items():
        if key.augmented:
            continue
        other = data.results.get(replace(key, augmented=True))
        if other is None:
            continue
        pair = compare(other, res)
        out.append(AugPair(res, other, pair, "" if pair else _why_unpaired(other, res), _study_diff(data, res)))
    done = [p.pair for p in out if p.pair is not None]
    for pair, adj in zip(done, holm([p.p for p in done])):
        pair.p_holm = adj
    return out


def _row(ap: AugPair) -> list[object]:
    pair = ap.pair
    study = DASH if ap.study_diff is None else f"{ap.study_diff:+g}"
    check = (lambda lo, hi: "not comparable") if ap.random_init and ap.study_diff is not None else (
        lambda lo, hi: _in(ap.study_diff, lo, hi))
    if pair is None:
        (k2, n2), (k1, n1) = ap.augmented.pooled, ap.original.pooled
        d, lo, hi = newcombe_diff_interval(k2, n2, k1, n1)
        return [ap.name, ap.original.key.split, acc_cell(ap.original), acc_cell(ap.augmented), signed(d),
                f"{signed(lo)} to {signed(hi)} (unpaired, Newcombe)", DASH, DASH,
                "no paired test: clips do not match", DASH, study, check(lo, hi)]
    return [ap.name, pair.a.key.split, pct(pair.acc_b), pct(pair.acc_a), signed(pair.diff),
            f"{signed(pair.lo)} to {signed(pair.hi)}", pair.b_only, pair.c_only, pvalue(pair.p),
            pvalue(pair.p_holm), study, check(pair.lo, pair.hi)]


def _in(study_points: float | None, lo: float, hi: float) -> str:
    if study_points is None or np.isnan(lo):
        return DASH
    return "yes" if lo <= study_points / 100 <= hi else "**no**"


def _summary(pairs: list[AugPair], study_rows: list[dict]) -> list[str]:
    """The study's claim against ours in two sentences: mean gain, and how many gains are significant."""
    gains = [r["study"]["augmented"] - r["study"]["original"] for r in study_rows if "match" in r]
    out = [f"The study: \"most models' accuracies increasing by around 10 %\"; its Table 1 gains are "
           f"{', '.join(f'{g:+g}' for g in gains)} points (mean {np.mean(gains):+.1f})."]
    paired = [p.pair for p in pairs if p.pair is not None]
    if paired:
        sig = [p for p in paired if p.p_holm is not None and p.p_holm < ALPHA and p.diff > 0]
        worse = [p for p in paired if p.p_holm is not None and p.p_holm < ALPHA and p.diff < 0]
        n_random = sum(p.random_init for p in pairs if p.pair is not None)
        random_note = f" ({n_random} of them random init)" if n_random else ""
        out.append(f"Ours: mean gain {np.mean([100 * p.diff for p in paired]):+.1f} points over {len(paired)} "
                   f"paired model(s){random_note}; {len(sig)} significantly better and {len(worse)} significantly "
                   f"worse with augmentation (Holm-adjusted exact McNemar p < {ALPHA:g}).")
    unpaired = [p for p in pairs if p.pair is None]
    for ap in unpaired:
        out.append(f"`{ap.name}` ({ap.original.key.split}): the exp1 and exp2 test clips do not match "
                   f"({ap.why_unpaired}), so no paired test is made; the interval shown is unpaired.")
    return out


def augmentation_section(data: RunData) -> str:
    out = ["## Augmentation (exp2 vs exp1)", "",
           "Each model trained on the original training clips (experiment 1) and on the x6 augmented ones "
           "(experiment 2), scored on the same test clips (same split name and seed). Δ = exp2 − exp1 on the "
           f"shared clips; interval: {N_RESAMPLES} paired bootstrap resamples of test clips; exact McNemar on the "
           "discordant clips; Holm over the models below.", ""]
    pairs = aug_pairs(data)
    if not pairs:
        return "\n".join(out + ["Not run: no model in this run has finished trials on both the original and the "
                                "augmented training clips (run `exp1` and `exp2`)."])
    headers = ["Model", "Split", "exp1 (%)", "exp2 (%)", "Δ (points)", "95 % CI of Δ", "exp2 right only",
               "exp1 right only", "Exact McNemar p", "Holm p", "Study Δ (points)", "Study Δ in CI"]
    out += [table(headers, [_row(p) for p in pairs], "llrrrrrrrrrc"), ""]
    if any(p.random_init for p in pairs):
        out += ["`[random init]`: an ImageNet network trained from random weights on one side or both; its gain is "
                "not the study's condition and is not checked against the study's.", ""]
    return "\n".join(out + _summary(pairs, data.study["table1"]["rows"]))
