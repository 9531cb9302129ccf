"""Records -> results: one result per model condition, holding one record per split seed.

A *result* is keyed by (representation, model, variant, augmented, feature set, split name); its
records are the finished trials of that condition, one per split seed. The study's rows are looked
up by the ``match`` mappings in ``study.json``, so new models and experiments slot in as data.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from raygenre.genres import GENRES
from raygenre.records import latest_by_trial
from raygenre.stats import (
    discordant_counts,
    mcnemar_exact,
    paired_bootstrap_diff,
    wilson_interval,
)

N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True, order=True)
class RowKey:
    representation: str
    model: str
    variant: str
    augmented: bool
    feature_set: str
    split: str


def row_key(rec: dict) -> RowKey:
    return RowKey(rec.get("representation") or "?", rec.get("model") or "?", rec.get("variant") or "default",
                  bool(rec.get("augmented")), rec.get("feature_set") or "", (rec.get("split") or {}).get("name") or "?")


def split_seed(rec: dict) -> int:
    return int((rec.get("split") or {}).get("seed") or 0)


def correctness(rec: dict) -> dict[str, bool]:
    """Clip id -> whether the record's prediction for it is right."""
    test = rec.get("test") or {}
    return {i: t == p for i, t, p in zip(test.get("ids", []), test.get("y_true", []), test.get("y_pred", []))}


def evaluated_on(rec: dict) -> str:
    """'test', or 'valid' for a model-selection trial scored on validation clips."""
    return (rec.get("test") or {}).get("set") or (rec.get("config") or {}).get("evaluate_on") or "test"


def counts(rec: dict) -> tuple[int, int]:
    """(correct, total) of a record, from its metrics or, failing that, its predictions."""
    m = rec.get("metrics") or {}
    if "n_correct" in m and "n_test" in m:
        return int(m["n_correct"]), int(m["n_test"])
    c = correctness(rec)
    return sum(c.values()), len(c)


@dataclass
class Result:
    """One model condition; ``by_seed`` holds its record for each split seed."""

    key: RowKey
    by_seed: dict[int, dict] = field(default_factory=dict)
    label: str = ""
    random_init: bool = False  # an ImageNet architecture trained from random weights (not the study's condition)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.by_seed)

    @property
    def records(self) -> list[dict]:
        return [self.by_seed[s] for s in self.seeds]

    @property
    def accuracies(self) -> list[float]:
        return [counts(r)[0] / max(1, counts(r)[1]) for r in self.records]

    @property
    def pooled(self) -> tuple[int, int]:
        ks, ns = zip(*(counts(r) for r in self.records))
        return sum(ks), sum(ns)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies, ddof=1)) if len(self.by_seed) > 1 else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        """Wilson interval of the pooled count (every seed's test predictions together)."""
        return wilson_interval(*self.pooled)

    @property
    def macro_f1(self) -> float:
        vals = [(r.get("metrics") or {}).get("macro_f1") for r in self.records]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else float("nan")

    @cached_property
    def confusion(self) -> np.ndarray:
        """Confusion counts summed over seeds, rows = true genre, GTZAN order."""
        total = np.zeros((len(GENRES), len(GENRES)), dtype=int)
        for rec in self.records:
            cm = (rec.get("metrics") or {}).get("confusion_matrix")
            labels = (rec.get("metrics") or {}).get("labels") or list(GENRES)
            if cm is None:
                continue
            pos = [GENRES.index(g) for g in labels]
            total[np.ix_(pos, pos)] += np.asarray(cm, dtype=int)
        return total

    @property
    def params(self) -> list[tuple[int, int]]:
        """Distinct (total, trainable) parameter counts over the seeds' records (one, normally)."""
        found = {(int(p["total"]), int(p["trainable"])) for r in self.records if (p := r.get("params"))}
        return sorted(found)

    @property
    def histories(self) -> list[tuple[int, list[dict]]]:
        """(split seed, per-epoch history sorted by epoch) of each record that has one."""
        return [(s, sorted(self.by_seed[s]["history"], key=lambda h: h.get("epoch", 0)))
                for s in self.seeds if self.by_seed[s].get("history")]

    def recall(self, genre: str) -> tuple[int, int]:
        """(correct, clips) of one genre over every seed."""
        i = GENRES.index(genre)
        return int(self.confusion[i, i]), int(self.confusion[i].sum())


@dataclass
class Pair:
    """A paired comparison of results A and B on the test clips they share."""

    a: Result
    b: Result
    n: int
    acc_a: float
    acc_b: float
    b_only: int  # A right, B wrong
    c_only: int  # A wrong, B right
    p: float
    diff: float
    lo: float
    hi: float
    seeds: list[int]
    p_holm: float | None = None


def paired_vectors(a: Result, b: Result) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    """Aligned correctness of A and B over the seeds whose test id sets are identical; None if none."""
    va: list[bool] = []
    vb: list[bool] = []
    used: list[int] = []
    for seed in sorted(set(a.by_seed) & set(b.by_seed)):
        ca, cb = correctness(a.by_seed[seed]), correctness(b.by_seed[seed])
        if not ca or set(ca) != set(cb):
            continue
        ids = sorted(ca)
        va += [ca[i] for i in ids]
        vb += [cb[i] for i in ids]
        used.append(seed)
    if not used:
        return None
    return np.asarray(va), np.asarray(vb), used


def compare(a: Result, b: Result, n_resamples: int = N_RESAMPLES) -> Pair | None:
    """Exact McNemar and a paired bootstrap interval of acc(A) - acc(B); None without shared clips.

    ``n_resamples=0`` skips the bootstrap (the interval is then nan), for p-value matrices.
    """
    vec = paired_vectors(a, b)
    if vec is None:
        return None
    va, vb, seeds = vec
    bb, cc = discordant_counts(va, vb)
    if n_resamples:
        diff, lo, hi = paired_bootstrap_diff(va, vb, n_resamples=n_resamples, seed=BOOTSTRAP_SEED)
    else:
        diff, lo, hi = float(va.mean() - vb.mean()), float("nan"), float("nan")
    return Pair(a, b, len(va), float(va.mean()), float(vb.mean()), bb, cc, mcnemar_exact(bb, cc),
                diff, lo, hi, seeds)


def _newer(new: dict, old: dict) -> bool:
    return (new.get("finished_at") or "") >= (old.get("finished_at") or "")


def group(records: list[dict]) -> dict[RowKey, Result]:
    """Results keyed by condition; of two records for one condition and seed the later one wins."""
    out: dict[RowKey, Result] = {}
    for rec in records:
        key = row_key(rec)
        res = out.setdefault(key, Result(key))
        seed = split_seed(rec)
        if seed not in res.by_seed or _newer(rec, res.by_seed[seed]):
            res.by_seed[seed] = rec
    return dict(sorted(out.items()))


def _pick(present: set[str], preferred: list[str]) -> str:
    for name in preferred:
        if name in present:
            return name
    return sorted(present)[0] if present else ""


@dataclass
class RunData:
    """Everything the report shows, derived from the records once."""

    study: dict
    records: list[dict]
    ok: list[dict]
    failed: list[dict]
    results: dict[RowKey, Result]
    bootstrap: list[dict]
    size: list[dict]
    select: list[dict]
    split: str
    feature_set: str

    def find(self, match: dict, augmented: bool | None = None, split: str | None = None,
             feature_set: str | None = None) -> Result | None:
        """The result a study row names, under the report's primary split and feature set."""
        want = dict(match)
        if augmented is not None:
            want["augmented"] = augmented
        want.setdefault("variant", "default")
        want.setdefault("augmented", False)
        split = split or self.split
        for key, res in self.results.items():
            if key.split != split or any(getattr(key, f) != v for f, v in want.items()):
                continue
            if key.representation == "features" and key.feature_set != (feature_set or self.feature_set):
                continue
            return res
        return None

    def primary_results(self) -> list[Result]:
        """Results under the primary split (and primary feature set for feature models)."""
        return [r for k, r in self.results.items() if k.split == self.split
                and (k.representation != "features" or k.feature_set == self.feature_set)]


RANDOM_WEIGHTS = "random"
RANDOM_LABEL = " [random init]"


def label_of(key: RowKey, feature_set: str, random_init: bool = False) -> str:
    """Short, unique model label: model, variant unless default, '+aug', a non-primary feature set.

    Random-init ImageNet nets carry ``[random init]`` so no table or figure shows them as the study's condition.
    """
    text = key.model if key.variant == "default" else f"{key.model} {key.variant}"
    if key.augmented:
        text += " +aug"
    if key.representation == "features" and key.feature_set and key.feature_set != feature_set:
        text += f" [{key.feature_set}]"
    return text + (RANDOM_LABEL if random_init else "")


def is_random_init(res: Result, pretrained_models: list[str]) -> bool:
    """Whether any seed of a pretrained architecture was trained from random weights."""
    return res.key.model in pretrained_models and any(str(r.get("weights") or "").startswith(RANDOM_WEIGHTS)
                                                      for r in res.records)


def weights_summary(rec: dict) -> str | None:
    """A record's weight source without its file path: 'random', 'pretrained:IMAGENET1K_V1', 'file'."""
    weights = rec.get("weights")
    if not weights:
        return None
    head = str(weights).split(" (")[0].strip()
    if head.startswith("file:") or "/" in head or "\\" in head:
        return head.split(":")[0]  # the report never prints paths
    return head


def collect(records: list[dict], study: dict) -> RunData:
    """Split the records into model rows, bootstrap trials, size trials and failures."""
    latest = list(latest_by_trial(records).values())
    ok = [r for r in latest if r.get("status") == "ok" and r.get("metrics")]
    ok_ids = {id(r) for r in ok}
    failed = [r for r in latest if id(r) not in ok_ids]
    names = study["studies"]
    rows = [r for r in ok if r.get("study") not in names["not_model_rows"] and evaluated_on(r) == "test"
            and not r.get("search")  # searched rows have a section of their own (raygenre.report.searches)
            and r.get("bootstrap_index") is None and float(r.get("train_fraction") or 1.0) == 1.0]
    splits = {((r.get("split") or {}).get("name") or "?") for r in ok}
    split = _pick(splits, study["conditions"]["preferred_splits"])
    fsets = {r.get("feature_set") for r in ok if r.get("representation") == "features"
             and (r.get("split") or {}).get("name") == split}
    feature_set = _pick({f for f in fsets if f}, study["conditions"]["preferred_feature_sets"])
    results = group(rows)
    for key, res in results.items():
        res.random_init = is_random_init(res, study["pretrained_models"])
        res.label = label_of(key, feature_set, res.random_init)
    return RunData(study, latest, ok, failed, results,
                   [r for r in ok if r.get("study") == names["bootstrap"]],
                   [r for r in ok if r.get("study") == names["size"]],
                   [r for r in ok if r.get("study") == names["select"]], split, feature_set)


def by_condition(records: list[dict], split: str, feature_set: str) -> dict[tuple[str, str], list[dict]]:
    """Exp4 records under the primary split / feature set, grouped by (model, variant)."""
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in records:
        key = row_key(rec)
        if key.split != split or (key.representation == "features" and key.feature_set != feature_set):
            continue
        out[(key.model, key.variant)].append(rec)
    return dict(sorted(out.items()))
