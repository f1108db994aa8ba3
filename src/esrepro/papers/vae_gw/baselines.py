"""Baselines for the GW correction Delta GW = E_GW - E_DFT on simple per-state features.

All three take the same feature matrix (:func:`state_features`: column 0 E_DFT, column 1 the
band index relative to the gap, then the state's orbital character, e.g. its s/p/d fractions)
and share one ``fit(X, y)`` / ``predict(X)`` interface:

* ``mean``: the mean training correction (a scissor-free constant);
* ``linear_edft``: least squares ``a + b * E_DFT``;
* ``gbm``: scikit-learn's ``HistGradientBoostingRegressor`` on every column, seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "BASELINES",
    "Baseline",
    "GradientBoosted",
    "LinearInEDFT",
    "MeanCorrection",
    "band_index_from_gap",
    "make_baseline",
    "state_features",
]

#: Baseline names, in the order the metrics list them.
BASELINES: tuple[str, ...] = ("mean", "linear_edft", "gbm")


class Baseline(Protocol):
    def fit(self, X: np.ndarray, y: np.ndarray) -> Baseline: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def band_index_from_gap(band: Sequence[int] | np.ndarray, n_occupied: Sequence[int] | np.ndarray
                        ) -> np.ndarray:
    """Band index counted from the gap: the highest occupied band is -1, the one below -2, the
    lowest unoccupied +1, ... (``band`` 0-based; ``n_occupied`` bands below the gap, per state)."""
    band, n_occ = np.asarray(band, dtype=np.int64), np.asarray(n_occupied, dtype=np.int64)
    return np.where(band < n_occ, band - n_occ, band - n_occ + 1)


def state_features(e_dft: np.ndarray, band_from_gap: np.ndarray, orbital: np.ndarray
                   ) -> np.ndarray:
    """``(n, 2 + n_orbital)``: E_DFT (eV), band index from the gap, orbital character
    ``(n, n_orbital)`` (e.g. s/p/d fractions of the state's projections)."""
    e_dft = np.asarray(e_dft, dtype=np.float64).reshape(-1)
    band = np.asarray(band_from_gap, dtype=np.float64).reshape(-1)
    orbital = np.asarray(orbital, dtype=np.float64)
    orbital = orbital.reshape(-1, 1) if orbital.ndim == 1 else orbital
    if not (e_dft.shape[0] == band.shape[0] == orbital.shape[0]):
        raise ValueError(f"state features: {e_dft.shape[0]} energies, {band.shape[0]} band "
                         f"indices, {orbital.shape[0]} orbital rows")
    return np.column_stack([e_dft, band, orbital])


def _check(X: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"baseline features must be (n, >= 1) with E_DFT first, got {X.shape}")
    if y is None:
        return X, None
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape[0] != X.shape[0] or X.shape[0] == 0:
        raise ValueError(f"baseline fit: {X.shape[0]} feature rows, {y.shape[0]} targets")
    return X, y


class MeanCorrection:
    """Predicts the mean training correction for every state."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> MeanCorrection:
        _, y = _check(X, y)
        self.mean_ = float(y.mean())
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X, _ = _check(X)
        return np.full(X.shape[0], self.mean_)


class LinearInEDFT:
    """Least squares ``intercept_ + slope_ * E_DFT`` (column 0)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearInEDFT:
        X, y = _check(X, y)
        design = np.column_stack([np.ones(X.shape[0]), X[:, 0]])
        (self.intercept_, self.slope_), *_ = np.linalg.lstsq(design, y, rcond=None)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X, _ = _check(X)
        return self.intercept_ + self.slope_ * X[:, 0]


class GradientBoosted:
    """``HistGradientBoostingRegressor`` on every feature column, ``random_state=seed`` (its
    early-stopping split is the only random part); ``options`` go to the regressor."""

    def __init__(self, seed: int = 0, **options: Any) -> None:
        self.seed, self.options = int(seed), options

    def fit(self, X: np.ndarray, y: np.ndarray) -> GradientBoosted:
        from sklearn.ensemble import HistGradientBoostingRegressor

        X, y = _check(X, y)
        self.model_ = HistGradientBoostingRegressor(random_state=self.seed, **self.options)
        self.model_.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X, _ = _check(X)
        return self.model_.predict(X)


def make_baseline(name: str, seed: int = 0, **options: Any) -> Baseline:
    """The baseline called ``name`` (:data:`BASELINES`); ``options`` go to ``gbm``."""
    if options and name != "gbm":
        raise ValueError(f"baseline {name!r} takes no options, got {sorted(options)}")
    if name == "mean":
        return MeanCorrection()
    if name == "linear_edft":
        return LinearInEDFT()
    if name == "gbm":
        return GradientBoosted(seed, **options)
    raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
