"""Splits and exp4 samplers: sizes, stratification, disjointness, determinism, nesting."""

from collections import Counter

import pytest

from raygenre.data.gtzan import GENRES, DatasetError, genre_of
from raygenre.data.splits import (
    bootstrap_sample,
    check_splits,
    fault_filtered_lists,
    make_split,
    nested_fractions,
    parse_seeds,
)
from raygenre.errors import SplitError

ALL_IDS = [f"{g}.{i:05d}" for g in GENRES for i in range(100)]


def test_paper_split_is_800_200_and_stratified():
    split = make_split(ALL_IDS, "paper", seed=0)
    assert split.counts() == {"train": 800, "valid": 0, "test": 200}
    assert set(split.train).isdisjoint(split.test)
    assert Counter(genre_of(i) for i in split.test) == {g: 20 for g in GENRES}
    assert Counter(genre_of(i) for i in split.train) == {g: 80 for g in GENRES}


def test_paper_split_seeded_and_order_independent():
    a = make_split(ALL_IDS, "paper", seed=3)
    b = make_split(list(reversed(ALL_IDS)), "paper", seed=3)
    c = make_split(ALL_IDS, "paper", seed=4)
    assert a.test == b.test
    assert a.test != c.test


def test_fault_filtered_sizes_disjoint_and_per_genre_test_counts():
    lists = fault_filtered_lists()
    assert {k: len(v) for k, v in lists.items()} == {"train": 443, "valid": 197, "test": 290}
    sets = [set(v) for v in lists.values()]
    assert sum(len(s) for s in sets) == len(set().union(*sets)) == 930
    assert Counter(genre_of(i) for i in lists["test"]) == {
        "blues": 31, "classical": 31, "country": 30, "disco": 29, "hiphop": 27,
        "jazz": 27, "metal": 27, "pop": 30, "reggae": 26, "rock": 32}
    split = make_split(ALL_IDS, "fault_filtered")
    assert split.counts() == {"train": 443, "valid": 197, "test": 290}
    assert split.missing == [] and len(split.excluded) == 70


def test_fault_filtered_reports_absent_ids_without_failing():
    few = [f"{g}.{i:05d}" for g in GENRES for i in range(20)]
    split = make_split(few, "fault_filtered")
    assert len(split.missing) == 930 - sum(split.counts().values())
    assert set(split.train) | set(split.valid) | set(split.test) <= set(few)
    assert split.assignment()[split.test[0]] == "test"


def test_bootstrap_is_seeded_with_replacement_and_full_size():
    train = make_split(ALL_IDS, "paper", seed=0).train
    a, b, c = bootstrap_sample(train, 5), bootstrap_sample(train, 5), bootstrap_sample(train, 6)
    assert a == b and a != c
    assert len(a) == 800 and len(set(a)) < 800 and set(a) <= set(train)


def test_nested_fractions_are_nested_stratified_and_deterministic():
    train = make_split(ALL_IDS, "paper", seed=0).train
    fractions = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    subsets = nested_fractions(train, fractions, seed=1)
    assert [len(subsets[f]) for f in fractions] == [160, 240, 320, 400, 480, 560, 640, 720, 800]
    for small, big in zip(fractions, fractions[1:]):
        assert set(subsets[small]) < set(subsets[big])
    assert Counter(genre_of(i) for i in subsets[0.2]) == {g: 16 for g in GENRES}
    assert subsets == nested_fractions(train, fractions, seed=1)
    assert subsets[0.2] != nested_fractions(train, fractions, seed=2)[0.2]


def test_parse_seeds_and_errors():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,1,1") == [1, 3]
    with pytest.raises(DatasetError):
        parse_seeds("4-0")
    with pytest.raises(SplitError, match="unknown split"):
        make_split(ALL_IDS, "random")


def test_splits_that_cannot_be_drawn_are_one_sentence():
    one_jazz = [i for i in ALL_IDS if not i.startswith("jazz.")] + ["jazz.00007"]
    with pytest.raises(SplitError, match="genre 'jazz' has only 1 usable clip"):
        check_splits(one_jazz, "paper", [0, 1])
    few = [f"{g}.{i:05d}" for g in ("rock", "jazz", "pop") for i in range(2)]
    with pytest.raises(SplitError, match="fewer than the 3 genres"):
        make_split(few, "paper", 0, 0.2)
    not_listed = [f"{g}.{i:05d}" for g in ("rock", "jazz") for i in range(5000, 5010)]
    with pytest.raises(SplitError, match="holds 0 of the fault_filtered split's 443 training clips"):
        check_splits(not_listed, "fault_filtered", [0])
    assert check_splits(ALL_IDS, "paper", [0, 1, 2]) == {"train": 800, "valid": 0, "test": 200}
