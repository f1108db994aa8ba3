"""LRLIDG's descriptor cap is chosen by inner cross-validation on the training rows."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from esrepro.papers.dosnp.baselines import LRLIDG, choose_descriptor_cap
from esrepro.splits import kfold_labels


def _noisy_linear_set(n_per: int = 6) -> tuple[list, np.ndarray, np.ndarray, list[str]]:
    """fcc cells of four metals at six lattice constants; y = 1.3 lda + 0.5 + noise."""
    rng = np.random.default_rng(0)
    structures = [
        bulk(sym, "fcc", a=a)
        for sym in ("Cu", "Ag", "Al", "Ni")
        for a in np.linspace(3.6, 4.6, n_per)
    ]
    lda = rng.uniform(0.1, 3.0, len(structures))
    y = 1.3 * lda + 0.5 + rng.normal(0, 0.3, len(structures))
    return structures, lda, y, [f"mp-{i}" for i in range(len(structures))]


def test_the_cap_with_the_lowest_inner_cv_error_is_chosen() -> None:
    structures, lda, y, ids = _noisy_linear_set()
    choice = choose_descriptor_cap(structures, lda, y, ids, [1.0, 0.1], folds=4, seed=0)
    assert set(choice.inner_cv_mae) == {0.1, 1.0}
    assert choice.max_descriptors_per_sample == min(
        choice.inner_cv_mae, key=choice.inner_cv_mae.get
    )
    # Recompute the inner-CV error of one candidate by hand, fold by fold.
    fold = np.asarray(kfold_labels(ids, 4, 0))
    err = np.zeros(len(y))
    for j in range(4):
        fit, held = np.flatnonzero(fold != j), np.flatnonzero(fold == j)
        model = LRLIDG(max_descriptors_per_sample=1.0).fit([structures[i] for i in fit], lda[fit],
                                                           y[fit])
        err[held] = np.abs(model.predict([structures[i] for i in held], lda[held]) - y[held])
    assert choice.inner_cv_mae[1.0] == pytest.approx(err.mean())


def test_inner_cv_avoids_interpolating_noise() -> None:
    """Uncapped, ~20 descriptors fit 18 noisy samples exactly; CV must prefer a small cap."""
    structures, lda, y, ids = _noisy_linear_set()
    choice = choose_descriptor_cap(structures, lda, y, ids, [0.1, 1.0], folds=4, seed=0)
    assert choice.inner_cv_mae[1.0] > choice.inner_cv_mae[0.1]
    assert choice.max_descriptors_per_sample == 0.1


def test_a_single_candidate_needs_no_cross_validation() -> None:
    structures, lda, y, ids = _noisy_linear_set(2)
    choice = choose_descriptor_cap(structures, lda, y, ids, [0.2], folds=5, seed=0)
    assert choice.max_descriptors_per_sample == 0.2 and choice.inner_cv_mae == {}
    with pytest.raises(ValueError, match="ids"):
        choose_descriptor_cap(structures, lda, y, ids[:-1], [0.2, 0.3], folds=5, seed=0)
