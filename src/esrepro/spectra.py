"""Spectra from DFT products: energy grids and Gaussian broadening of projector weights.

Shared by every paper that consumes densities of states (DOSnp PDOS, ALIGNN-DOS total DOS,
LDOS per atom). Products store unbroadened weights, so grids and widths are cheap parameters.
"""

from __future__ import annotations

import numpy as np
from ase.units import Rydberg

from esrepro.dft.product import N_CHANNELS, DFTProduct

#: Non-spin-polarized calculations hold two electrons per band.
SPIN_DEGENERACY = 2.0


def energy_grid(emin_ev: float, emax_ev: float, n_points: int) -> np.ndarray:
    """`n_points` equally spaced energies on [emin_ev, emax_ev] (eV, relative to E_ref)."""
    if not emax_ev > emin_ev or n_points < 2:
        raise ValueError(f"bad energy grid: [{emin_ev}, {emax_ev}] with {n_points} points")
    return np.linspace(emin_ev, emax_ev, n_points)


def dosnp_grid(emin_ry: float = -1.5, emax_ry: float = 1.0, n_points: int = 1000) -> np.ndarray:
    """The DOSnp grid: [E_F - 1.5 Ry, E_F + 1.0 Ry] in 1,000 points, in eV."""
    return energy_grid(emin_ry * Rydberg, emax_ry * Rydberg, n_points)


def gaussian_kernel(energies: np.ndarray, grid: np.ndarray, sigma_ev: float) -> np.ndarray:
    """Normalized Gaussians (standard deviation `sigma_ev`) of each energy, on `grid`."""
    if not (np.isfinite(sigma_ev) and sigma_ev > 0):
        raise ValueError(f"broadening sigma must be positive, got {sigma_ev}")
    x = (grid[None, :] - energies.reshape(-1)[:, None]) / sigma_ev
    return np.exp(-0.5 * x * x) / (np.sqrt(2 * np.pi) * sigma_ev)


def projected_dos(product: DFTProduct, grid: np.ndarray, sigma_ev: float) -> np.ndarray:
    """PDOS per atom and (l, m) channel, (n_atoms, 16, len(grid)), states/eV, spin-summed.

    `grid` is relative to `product.reference_energy` (the VBM for gapped systems, else E_F).
    Bands outside the product's stored window contribute nothing.
    """
    eigen = product.window_eigenvalues().astype(np.float64) - product.reference_energy
    kernel = gaussian_kernel(eigen, grid, sigma_ev)  # (n_k * n_bands, n_grid)
    weights = product.projector_weights.astype(np.float64)  # (n_atoms, 16, n_k, n_bands)
    weights = weights * product.k_weights[None, None, :, None] * SPIN_DEGENERACY
    n_atoms = weights.shape[0]
    pdos = weights.reshape(n_atoms * N_CHANNELS, -1) @ kernel
    return pdos.reshape(n_atoms, N_CHANNELS, len(grid))


def total_dos(product: DFTProduct, grid: np.ndarray, sigma_ev: float) -> np.ndarray:
    """Total DOS (states/eV per cell, spin-summed) from all bands, on `grid` relative to E_ref."""
    eigen = product.eigenvalues.astype(np.float64) - product.reference_energy
    kernel = gaussian_kernel(eigen, grid, sigma_ev)
    weights = np.repeat(product.k_weights.astype(np.float64), eigen.shape[1]) * SPIN_DEGENERACY
    return weights @ kernel
