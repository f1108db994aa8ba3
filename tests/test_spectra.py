"""Energy grids and Gaussian broadening of DFT products (synthetic products, no GPAW)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.units import Rydberg

from esrepro.dft.product import CHANNEL_LABELS, N_CHANNELS, DFTProduct
from esrepro.spectra import (
    SPIN_DEGENERACY,
    dosnp_grid,
    energy_grid,
    gaussian_kernel,
    projected_dos,
    total_dos,
)


def make_product(
    eigenvalues: np.ndarray,
    k_weights: np.ndarray,
    projector_weights: np.ndarray,
    *,
    vbm: float,
    cbm: float,
    fermi: float,
    band_start: int = 0,
    band_stop: int | None = None,
) -> DFTProduct:
    n_atoms = projector_weights.shape[0]
    gap = max(cbm - vbm, 0.0)
    return DFTProduct(
        numbers=np.full(n_atoms, 14),
        cell=np.eye(3) * 5.0,
        positions=np.zeros((n_atoms, 3)),
        eigenvalues=np.asarray(eigenvalues, dtype=np.float32),
        k_weights=np.asarray(k_weights, dtype=np.float32),
        fermi_level=fermi,
        vbm=vbm if gap > 0 else fermi,
        cbm=cbm if gap > 0 else fermi,
        gap=gap,
        n_electrons=2.0 * band_start + 2.0,
        projector_weights=np.asarray(projector_weights, dtype=np.float16),
        band_start=band_start,
        band_stop=eigenvalues.shape[1] if band_stop is None else band_stop,
        channel_mask=np.ones((n_atoms, N_CHANNELS), dtype=bool),
    )


@pytest.fixture
def random_product() -> DFTProduct:
    """3 atoms, 4 k-points with unequal weights, 12 bands, of which 2:10 carry weights."""
    rng = np.random.default_rng(7)
    n_k, n_bands = 4, 12
    eigen = np.sort(rng.uniform(-15.0, 10.0, size=(n_k, n_bands)), axis=1)
    k_w = np.array([0.1, 0.2, 0.3, 0.4])
    weights = rng.random((3, N_CHANNELS, n_k, 8))
    return make_product(
        eigen,
        k_w,
        weights,
        vbm=float(eigen[:, 5].max()),
        cbm=float(eigen[:, 6].min()),
        fermi=0.0,
        band_start=2,
        band_stop=10,
    )


def test_gaussian_kernel_is_normalized() -> None:
    grid = np.linspace(-10, 10, 4001)
    kernel = gaussian_kernel(np.array([-1.0, 0.0, 2.5]), grid, 0.2)
    np.testing.assert_allclose(np.trapezoid(kernel, grid, axis=1), 1.0, atol=1e-9)
    # Standard deviation is sigma.
    var = np.trapezoid(kernel[1] * grid**2, grid)
    assert var == pytest.approx(0.04, rel=1e-6)


def test_total_dos_integrates_to_bands_times_spin(random_product: DFTProduct) -> None:
    p = random_product
    grid = energy_grid(-40.0, 40.0, 8001)
    dos = total_dos(p, grid, sigma_ev=0.1)
    n_bands = p.eigenvalues.shape[1]
    assert np.all(dos >= 0)
    # k weights sum to 1, so the area is the band count x 2 (spin), independent of the weights.
    assert np.trapezoid(dos, grid) == pytest.approx(SPIN_DEGENERACY * n_bands, rel=1e-6)


def test_projected_dos_integrates_to_weights(random_product: DFTProduct) -> None:
    p = random_product
    grid = energy_grid(-40.0, 40.0, 8001)
    pdos = projected_dos(p, grid, sigma_ev=0.1)
    assert pdos.shape == (p.n_atoms, N_CHANNELS, len(grid))
    w = p.projector_weights.astype(np.float64)
    expected = SPIN_DEGENERACY * np.einsum("ackn,k->ac", w, p.k_weights.astype(np.float64))
    np.testing.assert_allclose(np.trapezoid(pdos, grid, axis=-1), expected, rtol=1e-6)


def test_projected_dos_uses_k_weights() -> None:
    # Same single state in two k-points with weights 0.25 / 0.75: only the k weights differ.
    eigen = np.array([[-1.0, 3.0], [-1.0, 3.0]])
    weights = np.zeros((1, N_CHANNELS, 2, 2))
    weights[0, 0, 0, 0] = 1.0  # only the k=0 state of band 0 has s-weight
    p = make_product(eigen, [0.25, 0.75], weights, vbm=-1.0, cbm=3.0, fermi=1.0)
    grid = energy_grid(-10.0, 10.0, 2001)
    area = np.trapezoid(projected_dos(p, grid, 0.1)[0, 0], grid)
    assert area == pytest.approx(SPIN_DEGENERACY * 0.25, rel=1e-6)


@pytest.mark.parametrize("channel", [0, 2, 6, 12])
def test_delta_state_sits_at_energy_relative_to_vbm_in_insulator(channel: int) -> None:
    # Band 0 (valence) at -2.3 eV, band 1 (conduction) at +1.7 eV absolute; VBM = -2.0 at k=1.
    eigen = np.array([[-2.3, 1.7], [-2.0, 2.2]])
    weights = np.zeros((2, N_CHANNELS, 2, 2))
    weights[1, channel, 0, 0] = 1.0  # atom 1, band 0 at k=0: absolute -2.3 eV
    p = make_product(eigen, [0.5, 0.5], weights, vbm=-2.0, cbm=1.7, fermi=-0.1)
    assert p.gap > 0 and p.reference_energy == pytest.approx(-2.0)
    grid = energy_grid(-5.0, 5.0, 10001)  # 1 meV spacing
    pdos = projected_dos(p, grid, sigma_ev=0.02)
    peak = grid[np.argmax(pdos[1, channel])]
    assert peak == pytest.approx(-2.3 - (-2.0), abs=1.5e-3), CHANNEL_LABELS[channel]
    # Every other atom-channel is empty.
    others = np.delete(pdos.reshape(-1, len(grid)), 1 * N_CHANNELS + channel, axis=0)
    assert np.abs(others).max() == 0.0


def test_delta_state_sits_at_energy_relative_to_fermi_in_metal() -> None:
    eigen = np.array([[-2.3, 0.4], [-2.0, -0.2]])  # band 1 crosses E_F: metal
    weights = np.zeros((1, N_CHANNELS, 2, 2))
    weights[0, 1, 1, 1] = 1.0  # p_y of band 1 at k=1: absolute -0.2 eV
    p = make_product(eigen, [0.5, 0.5], weights, vbm=0.0, cbm=0.0, fermi=0.1)
    assert p.gap == 0 and p.reference_energy == pytest.approx(0.1)
    grid = energy_grid(-5.0, 5.0, 10001)
    pdos = projected_dos(p, grid, sigma_ev=0.02)
    assert grid[np.argmax(pdos[0, 1])] == pytest.approx(-0.2 - 0.1, abs=1.5e-3)


def test_bands_outside_window_do_not_contribute() -> None:
    eigen = np.array([[-30.0, -1.0, 2.0, 25.0]])
    weights = np.ones((1, N_CHANNELS, 1, 2))  # window: bands 1:3
    p = make_product(eigen, [1.0], weights, vbm=-1.0, cbm=2.0, fermi=0.5, band_start=1, band_stop=3)
    grid = energy_grid(-40.0, 40.0, 8001)
    pdos = projected_dos(p, grid, 0.1)
    # The peaks are at -1 - (-1) = 0 and 2 - (-1) = 3 eV; nothing near -29 or +26 eV.
    s = pdos[0, 0]
    assert s[np.abs(grid + 29.0) < 1.0].max() < 1e-12
    assert s[np.abs(grid - 26.0) < 1.0].max() < 1e-12
    assert np.trapezoid(s, grid) == pytest.approx(SPIN_DEGENERACY * 2, rel=1e-6)


def test_dosnp_grid() -> None:
    grid = dosnp_grid()
    assert len(grid) == 1000
    assert grid[0] == pytest.approx(-1.5 * Rydberg) and grid[-1] == pytest.approx(1.0 * Rydberg)
    assert grid[0] == pytest.approx(-20.4085, abs=1e-3)  # eV, 1 Ry = 13.605693 eV
    np.testing.assert_allclose(np.diff(grid), 2.5 * Rydberg / 999)


@pytest.mark.parametrize(
    "sigma",
    [
        0.0,
        -0.1,
        float("nan"),
    ],
)
def test_bad_sigma_raises(random_product: DFTProduct, sigma: float) -> None:
    grid = dosnp_grid()
    with pytest.raises(ValueError, match="sigma"):
        projected_dos(random_product, grid, sigma)
    with pytest.raises(ValueError, match="sigma"):
        total_dos(random_product, grid, sigma)


@pytest.mark.parametrize("emin, emax, n", [(1.0, 1.0, 10), (2.0, -2.0, 10), (-1.0, 1.0, 1)])
def test_bad_grid_raises(emin: float, emax: float, n: int) -> None:
    with pytest.raises(ValueError, match="bad energy grid"):
        energy_grid(emin, emax, n)
