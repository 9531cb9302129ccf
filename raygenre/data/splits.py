"""Train/validation/test splits and the exp4 training-set samplers, as clip-id lists.

* ``paper``: the study's stratified 80/20 split with a seed (800/200 on 1000 clips), one split
  shared by every model of a run.
* ``fault_filtered``: the artist- and fault-filtered lists of Kereliuk, Sturm & Larsen (2015),
  shipped in ``raygenre/data/splits/`` (443/197/290). Listed ids absent from the data (a synthetic
  set, say) are reported in ``missing``, not fatal.
* exp4 samplers: bootstrap resamples of the training ids and stratified, nested training fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources

import numpy as np
from sklearn.model_selection import train_test_split

from raygenre.data.gtzan import clip_id_from_filename, genre_of
from raygenre.errors import DatasetError, SplitError

SPLIT_NAMES = ("paper", "fault_filtered")
FAULT_FILTERED_SUBSETS = ("train", "valid", "test")


@dataclass
class Split:
    name: str
    seed: int
    train: list[str]
    test: list[str]
    valid: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)   # listed ids absent from the data
    excluded: list[str] = field(default_factory=list)  # data ids in no list

    def assignment(self) -> dict[str, str]:
        """clip id -> 'train' | 'valid' | 'test'."""
        out = {i: "train" for i in self.train}
        out.update({i: "valid" for i in self.valid})
        out.update({i: "test" for i in self.test})
        return out

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def to_dict(self) -> dict:
        return asdict(self)


def _labels(ids: Sequence[str]) -> list[str]:
    return [genre_of(i) for i in ids]


def _check_unique(ids: Sequence[str]) -> list[str]:
    ids = list(ids)
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise DatasetError(f"clip ids must be unique; repeated: {dup}.")
    return ids


def paper_split(ids: Sequence[str], seed: int = 0, test_fraction: float = 0.2) -> Split:
    """Stratified by genre; sorted input makes the result independent of discovery order."""
    ids = sorted(_check_unique(ids))
    labels = _labels(ids)
    per_genre = {g: labels.count(g) for g in sorted(set(labels))}
    small = [g for g, n in per_genre.items() if n < 2]
    if small:
        raise SplitError(f"genre '{small[0]}' has only {per_genre[small[0]]} usable clip, and a stratified "
                         f"train/test split needs at least 2 clips of every genre present.")
    try:
        train, test = train_test_split(ids, test_size=test_fraction, random_state=seed, stratify=labels,
                                       shuffle=True)
    except ValueError:  # scikit-learn: the test (or train) part cannot hold one clip of each genre
        n_test = int(np.ceil(test_fraction * len(ids)))
        raise SplitError(f"a stratified split with test fraction {test_fraction:g} of {len(ids)} clips gives "
                         f"{n_test} test clips, fewer than the {len(per_genre)} genres present: add clips or "
                         f"change split.test_fraction.") from None
    return Split("paper", seed, sorted(train), sorted(test))


def fault_filtered_lists() -> dict[str, list[str]]:
    """The shipped lists as clip ids: {'train': [...443], 'valid': [...197], 'test': [...290]}."""
    folder = resources.files("raygenre.data") / "splits"
    out = {}
    for subset in FAULT_FILTERED_SUBSETS:
        text = (folder / f"fault_filtered_{subset}.txt").read_text()
        out[subset] = [clip_id_from_filename(line.strip()) for line in text.splitlines() if line.strip()]
    return out


def fault_filtered_split(ids: Sequence[str]) -> Split:
    """The fixed lists restricted to the clips present; absent and unlisted ids are reported."""
    present = set(_check_unique(ids))
    lists = fault_filtered_lists()
    listed = {i for subset in lists.values() for i in subset}
    found = {subset: sum(i in present for i in chosen) for subset, chosen in lists.items()}
    if not found["train"] or not found["test"]:
        raise SplitError(f"the data holds {found['train']} of the fault_filtered split's {len(lists['train'])} "
                         f"training clips and {found['test']} of its {len(lists['test'])} test clips; "
                         f"use --split paper for data that is not the full GTZAN.")
    return Split(
        "fault_filtered", 0,
        train=[i for i in lists["train"] if i in present],
        test=[i for i in lists["test"] if i in present],
        valid=[i for i in lists["valid"] if i in present],
        missing=sorted(listed - present),
        excluded=sorted(present - listed),
    )


def make_split(ids: Sequence[str], name: str, seed: int = 0, test_fraction: float = 0.2) -> Split:
    if name == "paper":
        return paper_split(ids, seed, test_fraction)
    if name == "fault_filtered":
        return fault_filtered_split(ids)
    raise SplitError(f"unknown split '{name}': choose one of {', '.join(SPLIT_NAMES)}.")


def check_splits(ids: Sequence[str], name: str, seeds: Sequence[int], test_fraction: float = 0.2) -> dict:
    """Draw the configured split for every seed over the usable clips, before any trial or heavy work.

    Raises SplitError in one sentence when it cannot be drawn; returns the counts of the first seed.
    """
    counts = [make_split(ids, name, seed, test_fraction).counts() for seed in seeds]
    return counts[0] if counts else {}


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0,1,2,3,4]; '0,3,7' -> [0,3,7]; '2' -> [2]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise DatasetError(f"split seeds '{text}' are not of the form '0-4' or '0,3,7'.") from None
    if not seeds:
        raise DatasetError("at least one split seed is needed.")
    return sorted(set(seeds))


def bootstrap_sample(train_ids: Sequence[str], index: int, seed: int = 0) -> list[str]:
    """Resample ``train_ids`` with replacement to its own size; ``(seed, index)`` fixes the draw."""
    ids = sorted(train_ids)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    return [ids[k] for k in rng.integers(0, len(ids), size=len(ids))]


def nested_fractions(train_ids: Sequence[str], fractions: Sequence[float],
                     seed: int = 0) -> dict[float, list[str]]:
    """Stratified training subsets, each containing the smaller ones.

    Every genre's ids are shuffled once; a fraction takes the first ``round(f * n_genre)``
    of each genre (at least one), so subsets are nested and class balance is kept.
    """
    if any(not 0 < f <= 1 for f in fractions):
        raise DatasetError(f"training fractions must lie in (0, 1]; got {list(fractions)}.")
    rng = np.random.default_rng(seed)
    by_genre: dict[str, list[str]] = {}
    for clip_id in sorted(train_ids):
        by_genre.setdefault(genre_of(clip_id), []).append(clip_id)
    order = {g: list(rng.permutation(ids)) for g, ids in sorted(by_genre.items())}
    out = {}
    for f in sorted(fractions):
        subset = []
        for ids in order.values():
            subset.extend(ids[: max(1, int(round(f * len(ids))))])
        out[float(f)] = sorted(subset)
    return out
