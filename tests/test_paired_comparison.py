"""esrepro.metrics.paired_comparison, the record every "which model is better" claim uses."""

import numpy as np
import pytest

from esrepro.metrics import paired_comparison


def test_paired_comparison_resolves_a_clear_winner_and_not_a_tie():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.1, 1.0, 200)
    clear = paired_comparison(base, base + 0.05 + 0.01 * rng.standard_normal(200), names=("x", "y"))
    assert clear["winner"] == "x"
    assert clear["ci95"][0] < clear["diff"] < clear["ci95"][1] < 0
    tie = paired_comparison(base, base + 0.05 * rng.standard_normal(200), names=("x", "y"))
    assert tie["winner"] is None and tie["ci95"][0] < 0 < tie["ci95"][1]
    flipped = paired_comparison(base + 0.05, base, names=("x", "y"))
    assert flipped["winner"] == "y" and flipped["ci95"][0] > 0


def test_paired_comparison_is_seeded_and_pairs_samples():
    rng = np.random.default_rng(2)
    hard = rng.uniform(0, 10, 50)  # sample difficulty dwarfs the 0.1 difference
    a, b = hard, hard + 0.1
    assert paired_comparison(a, b) == paired_comparison(a, b)
    assert paired_comparison(a, b)["winner"] == "a"  # resolved only because samples are paired
    with pytest.raises(ValueError, match="differ in length"):
        paired_comparison(a, b[:-1])


def test_too_few_samples_resolve_no_winner():
    # Two samples of one sign give a bootstrap interval that excludes 0 whatever their spread.
    few = paired_comparison([0.1, 0.2], [0.5, 0.9])
    assert few["ci95"][1] < 0 and few["winner"] is None
    assert paired_comparison([0.1, 0.2] * 5, [0.5, 0.9] * 5)["winner"] == "a"
