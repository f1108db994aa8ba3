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
    assert np.allclose(
        np.sort(np.abs(reduced.cell.array), axis=0), np.sort(np.abs(cubic.cell.array), axis=0)
    )
    shift = np.linalg.solve(reduced.cell.array.T, (reduced.positions - skewed.positions).T).T
    assert np.allclose(shift, np.round(shift), atol=1e-8)
    assert canonical_structure_hash(reduced) != canonical_structure_hash(skewed)


# --- input validation: every bad file is an error naming the file (and the atom/site/frame) ---

_POSCAR_HEAD = "x\n1.0\n{cell}\nSi\n{n}\ndirect\n"
_CUBE = "3 0 0\n0 3 0\n0 0 3"


def _poscar(tmp_path: Path, name: str, coords: str, cell: str = _CUBE, n: int = 1) -> Path:
    path = tmp_path / name
    path.write_text(_POSCAR_HEAD.format(cell=cell, n=n) + coords)
    return path


@pytest.mark.parametrize(
    ("cell", "coords", "message"),
    [
        ("3 0 0\n0 3 0\n0 0 nan", "0 0 0\n", r"a non-finite \(NaN or inf\) cell .*nan"),
        ("3 0 0\n0 inf 0\n0 0 3", "0 0 0\n", r"a non-finite \(NaN or inf\) cell .*inf"),
        (
            _CUBE, "0.5 0.5 0.5\n0 nan 0\n",
            r"non-finite \(NaN or inf\) positions for atom\(s\) \[1\]",
        ),
    ],
)
def test_non_finite_cell_or_positions_rejected(
    tmp_path: Path, cell: str, coords: str, message: str
) -> None:
    # The volume check alone let these through: NaN < 1e-6 is False.
    path = _poscar(tmp_path, "POSCAR.nan", coords, cell=cell, n=coords.count("\n"))
    with pytest.raises(StructureError, match=rf"structure in {re.escape(str(path))} has {message}"):
        read_structure(path)


def test_overlapping_atoms_rejected_naming_the_pair(tmp_path: Path) -> None:
    same_place = _poscar(tmp_path, "POSCAR.dup", "0 0 0\n0.5 0.5 0.5\n0.01 0 0\n", n=3)
    with pytest.raises(
        StructureError, match=rf"{re.escape(str(same_place))}.*atoms 0 and 2 .* 0\.03 A apart"
    ):
        read_structure(same_place)
    # Only 0.03 A apart through the periodic boundary (fractional 0.995 and 0.005).
    across = _poscar(tmp_path, "POSCAR.wrap", "0.995 0 0\n0.5 0.5 0.5\n0.005 0 0\n", n=3)
    with pytest.raises(
        StructureError, match=rf"{re.escape(str(across))}.*atoms 0 and 2 .* 0\.03 A apart"
    ):
        read_structure(across)
    # A cell vector shorter than the minimum puts an atom on its own image.
    thin = _poscar(tmp_path, "POSCAR.thin", "0 0 0\n", cell="0.3 0 0\n0 3 0\n0 0 3")
    with pytest.raises(
        StructureError, match=rf"{re.escape(str(thin))}.*atom 0 and its own periodic image"
    ):
        read_structure(thin)


def test_short_real_bond_is_not_an_overlap(tmp_path: Path) -> None:
    # H2's 0.74 A, the shortest bond in the real inputs (mp-730101), stays well above the limit.
    path = tmp_path / "POSCAR.h2"
    path.write_text("h2\n1.0\n6 0 0\n0 6 0\n0 0 6\nH\n2\ncartesian\n0 0 0\n0 0 0.741\n")
    assert len(read_structure(path)) == 2


_CIF = """data_x
_cell_length_a 3.0
_cell_length_b 3.0
_cell_length_c 3.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
{sites}"""


@pytest.mark.parametrize(
    ("sites", "message"),
    [
        # Mixed site: ASE keeps one species (here Co) and drops the other without a word.
        (
            "Fe1 Fe 0 0 0 0.5\nCo1 Co 0 0 0 0.5\nO1 O 0.5 0.5 0.5 1.0\n",
            r"disordered site Fe1 .*\(Fe 0\.5, Co 0\.5\)",
        ),
        # Vacancy-disordered site.
        (
            "O1 O 0.5 0.5 0.5 1.0\nFe1 Fe 0 0 0 0.5\n",
            r"disordered site Fe1 \(row 2 of _atom_site\) \(Fe 0\.5\)",
        ),
    ],
)
def test_disordered_cif_site_rejected(tmp_path: Path, sites: str, message: str) -> None:
    path = tmp_path / "disordered.cif"
    path.write_text(_CIF.format(sites=sites))
    with pytest.raises(StructureError, match=rf"{re.escape(str(path))}: {message}"):
        read_structure(path)


def test_ordered_cif_with_occupancies_reads(tmp_path: Path) -> None:
    path = tmp_path / "ordered.cif"
    path.write_text(_CIF.format(sites="Fe1 Fe 0 0 0 1.0\nO1 O 0.5 0.5 0.5 1.0\n"))
    assert read_structure(path).get_chemical_symbols() == ["Fe", "O"]


def _xyz_frame(x: float, pbc: str = "T T T") -> str:
    return (
        '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 '
        f'pbc="{pbc}"\nSi {x} 0 0\n'
    )


@pytest.mark.parametrize(("pbc", "axes"), [("F F F", "a, b, c"), ("T T F", "c")])
def test_non_periodic_extxyz_rejected(tmp_path: Path, pbc: str, axes: str) -> None:
    path = tmp_path / "molecule.xyz"
    path.write_text(_xyz_frame(0.0, pbc))
    with pytest.raises(
        StructureError, match=rf"{re.escape(str(path))}: structure is not periodic along {axes} "
    ):
        read_structure(path)


def test_missing_frame_or_structure_named(tmp_path: Path) -> None:
    two = tmp_path / "two.xyz"
    two.write_text(_xyz_frame(0.0) + _xyz_frame(1.0))
    assert read_structure(two, 1).positions[0, 0] == 1.0
    assert read_structure(two, -2).positions[0, 0] == 0.0
    for index in (2, -3):  # ASE read -3 as the slice [-3:] and gave frame 0
        with pytest.raises(StructureError, match=rf"^{re.escape(str(two))}: no frame {index}$"):
            read_structure(two, index)
    for name in ("empty.cif", "empty.xyz"):
        empty = tmp_path / name
        empty.write_text("")
        with pytest.raises(
            StructureError, match=rf"^{re.escape(str(empty))}: no structure in file$"
        ):
            read_structure(empty)


def test_poscar_coordinates_past_the_atom_count_rejected(tmp_path: Path) -> None:
    # Counts say 2; ASE skipped line 3 as a separator and read line 4 on as velocities.
    path = _poscar(
        tmp_path, "POSCAR.extra",
        "0 0 0\n0.5 0.5 0.5\n0.25 0.25 0.25\n0.75 0.75 0.75\n0.1 0.2 0.3\n", n=2,
    )
    with pytest.raises(
        StructureError,
        match=rf"{re.escape(str(path))}: line 11 holds coordinates past the 2 atoms",
    ):
        read_structure(path)
    # A CONTCAR's velocity block (after a blank line) is not extra coordinates.
    contcar = _poscar(tmp_path, "CONTCAR", "0 0 0\n0.5 0.5 0.5\n\n0.01 0 0\n0 0.01 0\n", n=2)
    assert len(read_structure(contcar)) == 2
