"""LCAO products: per-atom Mulliken weights, the per-atom LDOS built from them (LDOS paper)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase.build import bulk

from esrepro.dft.gpaw_engine import run_gpaw
from esrepro.dft.product import DFTProduct
from esrepro.dft.settings import DFTSettings
from esrepro.spectra import atom_ldos, energy_grid, total_dos

pytestmark = [pytest.mark.gpaw]

LCAO = DFTSettings(
    mode="lcao", basis="dzp", kpt_density=1.5, bands_cover_ev=0.0, converge_bands="occupied"
)


@pytest.fixture(scope="module")
def sic() -> DFTProduct:
    return run_gpaw(bulk("SiC", "zincblende", a=4.36), LCAO)


@pytest.fixture(scope="module")
def si() -> DFTProduct:
    return run_gpaw(bulk("Si", "diamond", a=5.43), LCAO)


def test_mulliken_weights_sum_to_one_per_band(sic: DFTProduct) -> None:
    w = sic.atom_weights.astype(np.float64)
    assert w.shape == (2, len(sic.k_weights), sic.band_stop - sic.band_start)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=2e-3)  # float16 storage


def test_ldos_of_the_atoms_adds_up_to_the_total_dos(sic: DFTProduct) -> None:
    # Bands outside the stored window lie beyond this grid (checked), so on it the identity
    # (paper eq. 7) must hold exactly.
    grid = energy_grid(-20.0, 10.0, 3001)
    assert sic.band_start == 0
    assert sic.eigenvalues[:, sic.band_stop:].min() - sic.reference_energy > grid[-1] + 5 * 0.1
    ldos = atom_ldos(sic, grid, 0.1)
    np.testing.assert_allclose(ldos.sum(axis=0), total_dos(sic, grid, 0.1), atol=2e-3 * ldos.max())


def test_carbon_takes_charge_from_silicon(sic: DFTProduct) -> None:
    # Mulliken valence populations up to mid-gap: C is the more electronegative atom, so it holds
    # (in dzp Mulliken terms, which understate ionicity: ~4.1)
    # more than its 4 valence electrons and Si fewer, and together they hold all 8.
    grid = energy_grid(-25.0, sic.gap / 2, 20001)
    si_pop, c_pop = np.trapezoid(atom_ldos(sic, grid, 0.05), grid, axis=1)
    assert si_pop + c_pop == pytest.approx(8.0, abs=0.05)
    assert c_pop > 4.05 and si_pop < 3.95


def test_equivalent_atoms_have_equal_ldos(si: DFTProduct) -> None:
    grid = energy_grid(-15.0, 8.0, 2301)
    ldos = atom_ldos(si, grid, 0.1)
    np.testing.assert_allclose(ldos[0], ldos[1], atol=1e-3 * ldos.max())


def test_atom_weights_round_trip_and_pw_products_have_none(si: DFTProduct, tmp_path) -> None:
    si.save(tmp_path / "si.npz")
    loaded = DFTProduct.load(tmp_path / "si.npz")
    np.testing.assert_array_equal(loaded.atom_weights, si.atom_weights)
    pw = dataclasses.replace(si, atom_weights=None)
    pw.save(tmp_path / "pw.npz")
    assert DFTProduct.load(tmp_path / "pw.npz").atom_weights is None
    with pytest.raises(ValueError, match="mode: lcao"):
        atom_ldos(pw, energy_grid(-1.0, 1.0, 3), 0.1)


def test_skewed_hexagonal_cells_run_in_lcao() -> None:
    # A 2H-SiC cell with a 123 degree angle: GPAW's real-space grids refuse it as given.
    from esrepro.papers.ldos.generators import sic_polytypes

    atoms = sic_polytypes(2, seed=1, polytypes=["2H"])[1]
    if atoms.cell.cellpar()[5] < 100:  # make sure the case is the skewed one
        atoms.set_cell(atoms.cell.array @ [[1, 0, 0], [1, 1, 0], [0, 0, 1]], scale_atoms=False)
    product = run_gpaw(atoms, dataclasses.replace(LCAO, kpt_density=0.5))
    np.testing.assert_array_equal(product.numbers, atoms.numbers)
    np.testing.assert_allclose(product.atom_weights.astype(float).sum(axis=0), 1.0, atol=2e-3)


def test_products_from_a_denser_non_self_consistent_k_mesh(sic: DFTProduct) -> None:
    dense = run_gpaw(
        bulk("SiC", "zincblende", a=4.36), dataclasses.replace(LCAO, dos_kpt_density=3.0)
    )
    assert dense.meta["n_kpoints_ibz_scf"] == sic.meta["n_kpoints_ibz"]
    assert dense.meta["n_kpoints_ibz"] > 2 * sic.meta["n_kpoints_ibz"]
    assert dense.k_weights.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(dense.atom_weights.astype(np.float64).sum(axis=0), 1.0, atol=2e-3)
    # Same density, so the same bands: the gap moves by k-sampling only, and the valence count
    # below mid-gap is unchanged.
    assert dense.gap == pytest.approx(sic.gap, abs=0.3)
    grid = energy_grid(-25.0, dense.gap / 2, 20001)
    assert np.trapezoid(atom_ldos(dense, grid, 0.05), grid, axis=1).sum() == pytest.approx(
        8.0, abs=0.05
    )
