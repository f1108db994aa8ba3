from __future__ import annotations

import re
from pathlib import Path

import ase.io
import numpy as np
import pytest

from esrepro.fetch import mirror_path
from esrepro.sources import dosnp_structure_source
from esrepro.structures import StructureError, canonical_structure_hash, formula, read_structure

SH_URL = (
    "https://raw.githubusercontent.com/libAtoms/silicon-testing-framework/"
    "ec91b17fbbcd6c4a06a257acbfcba77734c0080c/tests/bulk_sh/sh.extxyz"
)


@pytest.fixture
def bate(mirror_dir: Path) -> Path:
    """The real ecalj POSCAR of mp-1000 (rocksalt BaTe, 2 atoms)."""
    return mirror_path(dosnp_structure_source("mp-1000").url, mirror_dir)


def test_reads_real_poscar(bate: Path) -> None:
    atoms = read_structure(bate)
    assert atoms.get_chemical_symbols() == ["Ba", "Te"]
    assert formula(atoms) == "BaTe"
    # fcc primitive cell with a/2 = 3.5449 A: volume a^3/4.
    assert atoms.get_volume() == pytest.approx((2 * 3.5449197699601274) ** 3 / 4, rel=1e-9)
    assert atoms.pbc.all()


def test_reads_extxyz_and_cif(mirror_dir: Path, bate: Path, tmp_path: Path) -> None:
    si = read_structure(mirror_path(SH_URL, mirror_dir))
    assert formula(si) == "Si" and len(si) == 1
    cif = tmp_path / "bate.cif"
    bate_atoms = read_structure(bate)
    ase.io.write(cif, bate_atoms)
    from_cif = read_structure(cif)
    # CIF stores cell parameters, so the cell comes back rotated: compare invariants only.
    assert formula(from_cif) == "BaTe"
    np.testing.assert_allclose(from_cif.cell.cellpar(), bate_atoms.cell.cellpar(), atol=1e-4)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("POSCAR", "this is not a POSCAR\n"),
        ("empty.cif", ""),
        ("junk.xyz", "3\n\nSi 0 0\n"),
    ],
)
def test_bad_file_error_names_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(StructureError, match=re.escape(str(path))):
        read_structure(path)


def test_missing_file_error_names_file(tmp_path: Path) -> None:
    with pytest.raises(StructureError, match="nope.vasp"):
        read_structure(tmp_path / "nope.vasp")


def test_zero_volume_cell_rejected(tmp_path: Path) -> None:
    path = tmp_path / "POSCAR.flat"
    path.write_text("flat\n1.0\n1 0 0\n0 1 0\n0 0 0\nSi\n1\ndirect\n0 0 0\n")
    with pytest.raises(StructureError, match=r"POSCAR\.flat"):
        read_structure(path)


def test_hash_invariant_to_permutation_and_wrapping(bate: Path) -> None:
    atoms = read_structure(bate)
    ref = canonical_structure_hash(atoms)

    permuted = atoms[[1, 0]]
    assert canonical_structure_hash(permuted) == ref

    shifted = atoms.copy()
    shifted.positions[1] += atoms.cell[0] - 2 * atoms.cell[2]  # a lattice translation
    assert canonical_structure_hash(shifted) == ref

    nearly_one = atoms.copy()  # frac 0.999999999 must hash like 0.0
    nearly_one.positions[0] -= 1e-9 * atoms.cell[1]
    assert canonical_structure_hash(nearly_one) == ref


def test_hash_sensitive_to_coordinates_cell_and_species(bate: Path) -> None:
    atoms = read_structure(bate)
    ref = canonical_structure_hash(atoms)

    moved = atoms.copy()
    moved.positions[1] += np.array([1e-3, 0.0, 0.0])
    assert canonical_structure_hash(moved) != ref

    strained = atoms.copy()
    strained.set_cell(atoms.cell * 1.01, scale_atoms=True)
    assert canonical_structure_hash(strained) != ref

    selenide = atoms.copy()
    selenide.numbers[1] = 34  # Te -> Se
    assert canonical_structure_hash(selenide) != ref


def _skewed_rocksalt():
    """Rocksalt on a needlessly skewed cell: the cubic cell's vectors mixed by a unimodular
    integer matrix (a = a1 + 2 a2, b = a2, c = a3 + a1), atoms unchanged."""
    from ase.build import bulk

    cubic = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    skewed = cubic.copy()
    mix = np.array([[1, 2, 0], [0, 1, 0], [1, 0, 1]])
    skewed.set_cell(mix @ cubic.cell.array, scale_atoms=False)
    skewed.wrap()
    return cubic, skewed


def test_orthogonality_defect() -> None:
    from esrepro.structures import orthogonality_defect

    assert orthogonality_defect(np.diag([3.0, 4.0, 5.0])) == pytest.approx(1.0)
    # fcc primitive cell: edges a/sqrt(2) at 60 degrees, volume a^3/4 -> sqrt(2).
    fcc = 0.5 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    assert orthogonality_defect(fcc) == pytest.approx(np.sqrt(2))


def test_niggli_cell_keeps_the_crystal_its_frame_and_atom_order() -> None:
    from esrepro.structures import niggli_cell_same_frame, orthogonality_defect

    cubic, skewed = _skewed_rocksalt()
    reduced = niggli_cell_same_frame(skewed)
    assert orthogonality_defect(skewed.cell.array) > 3
    assert orthogonality_defect(reduced.cell.array) == pytest.approx(1.0)
    assert reduced.get_volume() == pytest.approx(skewed.get_volume())
    assert list(reduced.numbers) == list(skewed.numbers)
    # Same frame: the new vectors are integer combinations of the old ones (no rotation), so
    # they are the cubic axes up to order and sign, and every atom moved by a lattice vector.
    combination = np.linalg.solve(skewed.cell.array.T, reduced.cell.array.T).T
    assert np.allclose(combination, np.round(combination), atol=1e-8)
    assert np.allclose(np.sort(np.abs(reduced.cell.array), axis=0), np.sort(np.abs(cubic.cell.array), axis=0))
    shift = np.linalg.solve(reduced.cell.array.T, (reduced.positions - skewed.positions).T).T
    assert np.allclose(shift, np.round(shift), atol=1e-8)
    assert canonical_structure_hash(reduced) != canonical_structure_hash(skewed)
