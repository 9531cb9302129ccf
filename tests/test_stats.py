"""The report's statistics against hand-checked values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raygenre.stats import (
    chance_range,
    classification_metrics,
    discordant_counts,
    holm,
    mcnemar_exact,
    newcombe_diff_interval,
    paired_bootstrap_diff,
    wilson_interval,
)


def test_wilson_158_of_200():
    lo, hi = wilson_interval(158, 200)
    assert lo == pytest.approx(0.728, abs=5e-4)
    assert hi == pytest.approx(0.841, abs=5e-4)


def test_wilson_edges():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0 < hi < 0.2
    lo, hi = wilson_interval(20, 20)
    assert 0.8 < lo < 1 and hi == pytest.approx(1.0)


def test_mcnemar_exact_b10_c2():
    # binomial test of 2 of 12 at 1/2: 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact(10, 2) == pytest.approx(0.0386, abs=1e-4)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)


def test_mcnemar_no_discordant_pairs_is_one():
    assert mcnemar_exact(0, 0) == 1.0


def test_discordant_counts():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert discordant_counts(a, b) == (2, 1)
    with pytest.raises(ValueError):
        discordant_counts([True], [True, False])


def test_holm_step_down_and_monotone():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    rng = np.random.default_rng(1)
    a = rng.random(200) < 0.8
    b = rng.random(200) < 0.7
    d1 = paired_bootstrap_diff(a, b, n_resamples=2000, seed=3)
    d2 = paired_bootstrap_diff(a, b, n_resamples=2000, seed=3)
    assert d1 == d2
    diff, lo, hi = d1
    assert diff == pytest.approx(a.mean() - b.mean())
    assert lo < diff < hi
    assert paired_bootstrap_diff(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap_diff([], [])


def test_newcombe_matches_published_example():
    # Newcombe (1998), method 10, example 56/70 vs 48/80: 0.0524 to 0.3339
    d, lo, hi = newcombe_diff_interval(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert lo == pytest.approx(0.0524, abs=1e-4)
    assert hi == pytest.approx(0.3339, abs=1e-4)


def test_chance_range_of_a_random_guesser():
    lo, hi = chance_range(200, 10)
    assert lo < 0.1 < hi
    assert (lo, hi) == pytest.approx((0.06, 0.145))


def test_classification_metrics_unchanged():
    m = classification_metrics(["blues", "rock", "rock"], ["blues", "rock", "pop"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["n_correct"] == 2 and m["n_test"] == 3
    assert m["per_class_recall"]["rock"] == 0.5 and m["per_class_recall"]["jazz"] is None
