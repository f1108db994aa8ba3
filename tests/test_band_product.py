"""Band-product settings, cache keys, file format, and band selection / gap (no GPAW run)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase.build import bulk

from esrepro.bands import gap_difference, resampling_gap_error, select_bands
from esrepro.dft.band_product import BandProduct, BandSettings, band_cache_key
from esrepro.dft.kinds import kind_named, kind_of
from esrepro.dft.settings import DFTSettings, cache_key
from esrepro.errors import ConfigError
from helpers import synthetic_band_product

VERSIONS = {"product_format": "2", "gpaw": "26.7.0", "gpaw-data": "1.0.1", "ase": "3.25.0"}


def silicon():
    return bulk("Si", "diamond", a=5.43)


def test_ground_state_keys_are_unchanged_by_the_bandsynthetic_band_product() -> None:
    """Pinned from main before the band product existed (commit b4b2af9): the ground-state
    cache keys, and with them every cached and seeded LDA product, must not move."""
    assert cache_key(silicon(), DFTSettings(), VERSIONS) == (
        "e533896738eb161d220c5817ffca548a6d8d2f6292c49d203bc318d24cd6e005"
    )
    custom = DFTSettings(ecut_ev=200.0, kpt_density=1.5, reduce_skewed_cells=4.0,
                         dos_kpt_density=3.0)
    assert cache_key(silicon(), custom, VERSIONS) == (
        "45dba925ddc9d091342131df1f2c819c9bff458acb3c084669b34c31b830918c"
    )


def test_band_keys_are_their_own() -> None:
    settings = BandSettings()
    key = band_cache_key(silicon(), settings, VERSIONS)
    assert key != cache_key(silicon(), settings.scf, VERSIONS)
    assert key == band_cache_key(silicon()[[1, 0]], settings, VERSIONS)  # atom order
    for change in ({"path_kpt_density": 10.0}, {"bands_above": 4},
                   {"scf": dataclasses.replace(settings.scf, ecut_ev=500.0)}):
        assert band_cache_key(silicon(), dataclasses.replace(settings, **change), VERSIONS) != key
    assert band_cache_key(bulk("Si", "diamond", a=5.44), settings, VERSIONS) != key
    assert kind_of(settings).name == "bands" and kind_of(settings.scf).name == "ground-state"


def test_band_settings_from_params() -> None:
    settings = BandSettings.from_params({"path_kpt_density": 12, "scf": {"ecut_ev": 400}})
    assert settings.path_kpt_density == 12.0
    assert settings.scf.xc == "PBE" and settings.scf.ecut_ev == 400.0
    assert BandSettings.from_dict(settings.to_dict()) == settings
    assert kind_named("bands").settings_from_dict(settings.to_dict()) == settings
    with pytest.raises(ValueError, match=r"unknown band setting.*nbands"):
        BandSettings.from_params({"nbands": 3})
    with pytest.raises(ConfigError, match=r"bands\.dft\.bands_below"):
        BandSettings.from_params({"bands_below": -1})
    with pytest.raises(ValueError, match=r"ecutt.*bands\.dft\.scf"):
        BandSettings.from_params({"scf": {"ecutt": 1}})
    with pytest.raises(ValueError, match="plane-wave"):
        BandSettings.from_params({"scf": {"mode": "lcao"}})
    with pytest.raises(ValueError, match="input cell"):
        BandSettings.from_params({"scf": {"reduce_skewed_cells": 4.0}})


def test_non_metal_gap_and_mid_gap_zero() -> None:
    selected = select_bands(synthetic_band_product(vb_top=1.0, cb_bottom=1.7, fermi=1.2))
    assert not selected.is_metal
    assert selected.gap == pytest.approx(0.7)
    assert selected.zero == pytest.approx(1.35)
    assert selected.energies[:, 2].max() == pytest.approx(-0.35)
    assert selected.energies[:, 3].min() == pytest.approx(0.35)
    # The walk: Γ -> X -> Γ, the junction at X kept once; labels at 0, L, 2L.
    n = len(selected.arc)
    assert n == 2 * len(synthetic_band_product(1.0, 1.7, 1.2).kpoints) - 1
    assert [label for label, _ in selected.labels] == ["Γ", "X", "Γ"]
    assert selected.labels[-1][1] == pytest.approx(selected.arc[-1])
    np.testing.assert_allclose(selected.energies, selected.energies[::-1])


def test_overlapping_bands_are_a_metal_zeroed_at_the_fermi_level() -> None:
    # VB top at X (1.0) above the CB bottom at Γ (0.9): an indirect overlap.
    selected = select_bands(synthetic_band_product(vb_top=1.0, cb_bottom=0.9, fermi=0.95))
    assert selected.is_metal and selected.gap == 0.0
    assert selected.zero == 0.95
    assert gap_difference(selected.energies, 2) == pytest.approx(-0.1)


def test_missing_bands_are_refused() -> None:
    product = synthetic_band_product(1.0, 1.7, 1.2)
    with pytest.raises(ValueError, match=r"holds bands 3\.\.8, 2\.\.8 are needed"):
        select_bands(product, n_below=3)


def test_gap_error_of_smoothing_and_resampling() -> None:
    selected = select_bands(synthetic_band_product(vb_top=1.0, cb_bottom=1.7, fermi=1.2))
    # Without smoothing, the resampled grid hits both band edges (Γ, X, Γ at 0, L, 2L).
    assert resampling_gap_error(selected, 257, width=0.0) == pytest.approx(0.0, abs=1e-9)
    # Smoothing lowers the VB maximum and raises the CB minimum: the gap opens, more so
    # with a wider Gaussian.
    small = resampling_gap_error(selected, 257, width=0.02)
    large = resampling_gap_error(selected, 257, width=0.1)
    assert 0 < small < large < 0.7


def test_save_load_round_trip(tmp_path) -> None:
    product = synthetic_band_product(1.0, 1.7, 1.2)
    path = tmp_path / "p.npz"
    product.save(path)
    back = BandProduct.load(path)
    np.testing.assert_array_equal(back.eigenvalues, product.eigenvalues)
    np.testing.assert_array_equal(back.kpoints, product.kpoints)
    assert (back.band_start, back.hob, back.band_stop) == (3, 5, 9)
    assert back.kpath.steps == product.kpath.steps and back.meta == {"note": "synthetic"}
    # A truncated file or a ground-state product is named as damaged / foreign.
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="damaged band product file"):
        BandProduct.load(path)
