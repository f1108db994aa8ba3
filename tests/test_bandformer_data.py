"""Bandformer's targets from a band product: resampled bands, the k-points they sit at, the gap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from esrepro.papers.bandformer.data import band_targets
from helpers import synthetic_band_product


def test_targets_of_a_non_metal_sit_on_the_walk_with_mid_gap_zero() -> None:
    # Γ -> X -> Γ on a 4 Å cubic cell: |Γ X| = π/4 Å⁻¹, the walk twice that.
    product = synthetic_band_product(vb_top=1.0, cb_bottom=1.7, fermi=1.2)
    target = band_targets(product, 2, 3, n_kpoints=33, smoothing_width=0.0)
    assert target.bands.shape == (33, 6) and target.kpoints.shape == (33, 3)
    assert not target.is_metal and target.gap == pytest.approx(0.7)
    # Mid-gap zero: the band edges at ±gap/2, hit exactly by the unsmoothed resampling.
    assert target.bands[:, 2].max() == pytest.approx(-0.35, abs=1e-6)
    assert target.bands[:, 3].min() == pytest.approx(0.35, abs=1e-6)
    assert target.gap_resampled_error == pytest.approx(0.0, abs=1e-6)
    # The k-points are the Cartesian walk: Γ, X (kx = π/4) at the middle, back to Γ.
    half = np.pi / 4
    np.testing.assert_allclose(target.kpoints[[0, 16, 32], 0], [0.0, half, 0.0], atol=1e-6)
    np.testing.assert_allclose(target.kpoints[:, 1:], 0.0, atol=1e-7)
    np.testing.assert_allclose(target.arc[[0, 16, 32]], [0.0, half, 2 * half], rtol=1e-6)
    # Each resampled point's k-point lies at its arc position along the walk.
    np.testing.assert_allclose(
        target.kpoints[:, 0], np.minimum(target.arc, 2 * half - target.arc), atol=1e-6
    )
    assert [label for label, _ in json.loads(target.labels)] == ["Γ", "X", "Γ"]


def test_smoothing_moves_band_edges_and_reports_the_gap_it_adds() -> None:
    product = synthetic_band_product(vb_top=1.0, cb_bottom=1.7, fermi=1.2)
    target = band_targets(product, 2, 3, n_kpoints=33, smoothing_width=0.1)
    # The valence maximum (a peak at X) is lowered and the conduction minimum (a trough at Γ,
    # where the closed walk wraps) raised: the resampled gap is larger than the DFT one.
    assert target.gap == pytest.approx(0.7)
    assert target.gap_resampled_error > 0.01


def test_a_metal_is_zeroed_at_the_fermi_level_and_missing_bands_are_refused() -> None:
    metal = band_targets(synthetic_band_product(1.0, 0.9, 0.95), 2, 3, 17, 0.0)
    assert metal.is_metal and metal.gap == 0.0
    assert metal.bands[:, 2].max() == pytest.approx(1.0 - 0.95, abs=1e-6)
    with pytest.raises(ValueError, match="are needed"):
        band_targets(synthetic_band_product(1.0, 1.7, 1.2), 3, 3, 17, 0.0)
