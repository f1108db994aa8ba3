"""VAE-GW baselines: the mean, a line in E_DFT and gradient boosting on per-state features."""

from __future__ import annotations

import numpy as np
import pytest

from esrepro.papers.vae_gw.baselines import (
    BASELINES,
    LinearInEDFT,
    band_index_from_gap,
    make_baseline,
    state_features,
)


def _states(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic states of materials with 4 occupied bands: E_DFT, band from the gap, s/p/d."""
    rng = np.random.default_rng(seed)
    band = rng.integers(0, 8, n)
    e_dft = np.where(band < 4, -1.0, 1.0) * rng.uniform(0.2, 4.0, n)
    orbital = rng.dirichlet(np.ones(3), n)
    return e_dft, band_index_from_gap(band, np.full(n, 4)), orbital


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def test_band_index_counts_from_the_gap() -> None:
    assert band_index_from_gap([0, 2, 3, 4, 5], [4, 4, 4, 4, 4]).tolist() == [-4, -2, -1, 1, 2]


def test_linear_baseline_recovers_a_linear_signal() -> None:
    e, band, orb = _states(400, 0)
    noise = np.random.default_rng(1).normal(0, 0.02, e.size)
    X = state_features(e, band, orb)
    y = 0.6 + 0.15 * e + noise
    line = LinearInEDFT().fit(X, y)
    assert line.slope_ == pytest.approx(0.15, abs=0.01)
    assert line.intercept_ == pytest.approx(0.6, abs=0.01)
    e_test, band_test, orb_test = _states(200, 2)
    X_test = state_features(e_test, band_test, orb_test)
    y_test = 0.6 + 0.15 * e_test
    mean = make_baseline("mean").fit(X, y)
    assert mean.predict(X_test) == pytest.approx(np.full(200, y.mean()))
    assert _mae(line.predict(X_test), y_test) < 0.01 < 0.2 < _mae(mean.predict(X_test), y_test)


def test_gradient_boosting_learns_band_and_orbital_dependence_seeded() -> None:
    def target(e, band, orb):  # a scissor-like jump at the gap plus a d-character term
        return np.where(band > 0, 0.8, -0.3) + 0.5 * orb[:, 2] + 0.05 * e

    train, test = _states(2000, 3), _states(500, 4)
    X, X_test = state_features(*train), state_features(*test)
    y, y_test = target(*train), target(*test)
    preds = {name: make_baseline(name, seed=7).fit(X, y).predict(X_test) for name in BASELINES}
    errors = {name: _mae(p, y_test) for name, p in preds.items()}
    assert errors["gbm"] < 0.05 < errors["linear_edft"] < errors["mean"]
    again = make_baseline("gbm", seed=7).fit(X, y).predict(X_test)
    np.testing.assert_array_equal(again, preds["gbm"])


def test_bad_baseline_input_is_named() -> None:
    with pytest.raises(ValueError, match="unknown baseline 'ridge'"):
        make_baseline("ridge")
    with pytest.raises(ValueError, match="takes no options"):
        make_baseline("mean", max_iter=10)
    with pytest.raises(ValueError, match="3 feature rows, 2 targets"):
        make_baseline("mean").fit(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="2 energies, 3 band indices"):
        state_features(np.zeros(2), np.zeros(3), np.zeros((2, 3)))
