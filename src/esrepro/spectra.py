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


def atom_ldos(
    product: DFTProduct, grid: np.ndarray, sigma_ev: float, e_ref: float | None = None
) -> np.ndarray:
    """Per-atom LDOS (n_atoms, len(grid)), states/eV, spin-summed, from LCAO Mulliken weights.

    Summed over atoms it equals the total DOS of the window's bands (the weights of each band
    add up to one). `grid` is relative to `e_ref` (absolute eV; default the product's
    reference energy). Needs a product computed in LCAO mode.
    """
    if product.atom_weights is None:
        raise ValueError(
            "the DFT product has no per-atom weights: compute it with dft.settings.mode: lcao"
        )
    e_ref = product.reference_energy if e_ref is None else e_ref
    eigen = product.window_eigenvalues().astype(np.float64) - e_ref
    kernel = gaussian_kernel(eigen, grid, sigma_ev)  # (n_k * n_bands, n_grid)
    weights = (
        product.atom_weights.astype(np.float64) * product.k_weights[None, :, None]
        * SPIN_DEGENERACY
    )
    return weights.reshape(weights.shape[0], -1) @ kernel


def total_dos(
    product: DFTProduct, grid: np.ndarray, sigma_ev: float, e_ref: float | None = None
) -> np.ndarray:
    """Total DOS (states/eV per cell, spin-summed) from all bands, on `grid` relative to `e_ref`
    (absolute eV; default `product.reference_energy`)."""
    e_ref = product.reference_energy if e_ref is None else e_ref
    eigen = product.eigenvalues.astype(np.float64) - e_ref
    kernel = gaussian_kernel(eigen, grid, sigma_ev)
    weights = np.repeat(product.k_weights.astype(np.float64), eigen.shape[1]) * SPIN_DEGENERACY
    return weights @ kernel


#: Energy references of a DOS grid (see :func:`reference_energy`).
REFERENCES: tuple[str, ...] = ("midgap", "vbm", "fermi")


def reference_energy(product: DFTProduct, convention: str) -> float:
    """Zero of a DOS grid (eV, absolute) under a named convention.

    ``fermi``: GPAW's Fermi level. ``vbm``: the VBM for gapped systems, else E_F (the DOSnp
    features). ``midgap``: the middle of the gap for gapped systems, else E_F. A T -> 0
    insulator's Fermi level lies in the gap, and GPAW's lands anywhere inside it with narrow
    smearing; mid-gap is that position made well-defined, so "E - E_F" spectra of insulators
    are aligned and a gap reads off either side of zero (ALIGNN-DOS paper, Fig. 6).
    """
    if convention == "fermi":
        return float(product.fermi_level)
    if convention == "vbm":
        return float(product.reference_energy)
    if convention == "midgap":
        return (
            float(0.5 * (product.vbm + product.cbm)) if product.gap > 0
            else float(product.fermi_level)
        )
    raise ValueError(f"unknown energy reference {convention!r}; allowed: {', '.join(REFERENCES)}")


def complete_band_range(product: DFTProduct, e_ref: float) -> tuple[float, float]:
    """Energies (relative to ``e_ref``) between which the product holds every band at every k.

    Below the first value the lowest band may not reach; above the second, bands beyond the
    calculation's ``nbands`` are missing at some k-point, so a DOS there would be too low.
    """
    eigen = product.eigenvalues.astype(np.float64) - e_ref
    return float(eigen[:, 0].max()), float(eigen[:, -1].min())


def dos_per_electron(
    product: DFTProduct,
    grid: np.ndarray,
    sigma_ev: float,
    reference: str = "midgap",
    per_spin: bool = False,
) -> np.ndarray:
    """Total DOS divided by the number of valence electrons (states/eV/electron) on ``grid``.

    ``grid`` is relative to :func:`reference_energy`. With ``per_spin`` the DOS of one spin
    channel (half the spin-summed one here): JARVIS's ``edos_up``, which the ALIGNN-DOS paper
    normalizes per electron, so spectra from both sources share one scale. Raises ValueError
    when the product lacks bands needed for the top of the grid (plus three broadening widths).
    """
    e_ref = reference_energy(product, reference)
    _, top = complete_band_range(product, e_ref)
    needed = float(np.max(grid)) + 3.0 * sigma_ev
    if top < needed:
        raise ValueError(
            f"bands reach only E_ref{top:+.2f} eV at some k-point, "
            f"DOS grid needs E_ref{needed:+.2f} eV"
            " (raise dft.settings.bands_cover_ev)"
        )
    dos = total_dos(product, grid, sigma_ev, e_ref) / float(product.n_electrons)
    return dos / SPIN_DEGENERACY if per_spin else dos


def gap_from_dos(dos: np.ndarray, energies: np.ndarray, threshold: float) -> float:
    """Band gap read off a DOS (paper recipe): distance between the first bins with DOS at or
    above ``threshold`` on either side of E = 0.

    0.0 when the bin nearest E = 0 is at or above the threshold (a metal); NaN when no bin on
    one side reaches it (the gap runs off the grid).
    """
    dos = np.asarray(dos, dtype=np.float64)
    energies = np.asarray(energies, dtype=np.float64)
    zero = int(np.argmin(np.abs(energies)))
    if dos[zero] >= threshold:
        return 0.0
    filled = dos >= threshold
    below = np.flatnonzero(filled[:zero])
    above = np.flatnonzero(filled[zero + 1:])
    if below.size == 0 or above.size == 0:
        return float("nan")
    return float(energies[zero + 1 + above[0]] - energies[below[-1]])
