"""Crystal structures: reading POSCAR/CIF/extxyz into ``ase.Atoms`` and a canonical hash."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

__all__ = [
    "StructureError",
    "canonical_structure_hash",
    "formula",
    "is_rhombohedral_setting",
    "niggli_cell_same_frame",
    "orthogonality_defect",
    "read_structure",
]

_MIN_VOLUME_A3 = 1e-6


class StructureError(ValueError):
    """A structure file could not be read or does not describe a 3D periodic cell."""


def _ase_format(path: Path) -> str | None:
    # VASP files are often named POSCAR.mp-123 / CONTCAR_x, which ASE's sniffing does not catch.
    name = path.name.upper()
    if name.startswith(("POSCAR", "CONTCAR")) or path.suffix.lower() == ".vasp":
        return "vasp"
    if path.suffix.lower() == ".cif":
        return "cif"
    if path.suffix.lower() in (".xyz", ".extxyz"):
        return "extxyz"
    return None  # let ASE guess


def read_structure(path: str | Path, index: int = 0) -> Atoms:
    """Read one structure (frame ``index`` of multi-frame files) from POSCAR/CIF/extxyz.

    Raises ``StructureError`` naming the file for any parse failure, an empty structure or a
    cell with (near) zero volume.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # CIF readers warn about e.g. missing occupancies; failures still raise below.
            warnings.simplefilter("ignore")
            atoms = ase.io.read(path, index=index, format=_ase_format(path))
    except Exception as exc:  # ASE raises many types (ValueError, IndexError, StopIteration...)
        raise StructureError(
            f"cannot read structure from {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(atoms, Atoms):
        raise StructureError(f"cannot read structure from {path}: got {type(atoms).__name__}")
    check_structure(atoms, f"structure in {path}")
    return atoms


def check_structure(atoms: Atoms, where: str) -> None:
    """Raise ``StructureError`` (naming ``where``) for an empty structure or a (near) zero-volume cell."""
    if len(atoms) == 0:
        raise StructureError(f"{where} has no atoms")
    volume = abs(np.linalg.det(atoms.cell.array))
    if volume < _MIN_VOLUME_A3:
        raise StructureError(f"{where} has a zero-volume cell (volume {volume:.3g} A^3)")


def canonical_structure_hash(atoms: Atoms, decimals: int = 5) -> str:
    """sha256 of a canonical form of ``atoms``, independent of atom order and wrapping.

    The form contains the cell (rounded), pbc, and the atoms sorted by (Z, fractional coords),
    with fractional coordinates wrapped into [0, 1) along periodic directions and rounded to
    ``decimals``. Structures that differ only by permutation or lattice translations of atoms
    hash equal; moving an atom by more than the rounding changes the hash.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    numbers = np.asarray(atoms.numbers, dtype=int)
    frac = atoms.cell.scaled_positions(atoms.positions)
    frac[:, pbc] %= 1.0
    frac = np.round(frac, decimals)
    # Rounding can push 0.999999 to 1.0, which is the same site as 0.0; "+ 0.0" drops -0.0.
    frac[:, pbc] %= 1.0
    frac = frac + 0.0
    order = np.lexsort((frac[:, 2], frac[:, 1], frac[:, 0], numbers))

    def fmt(values: np.ndarray) -> list[str]:
        # Fixed-width text, not float repr, so the hash does not depend on numpy/python printing.
        return [f"{v:.{decimals}f}" for v in np.ravel(values)]

    canonical = {
        "v": 1,
        "cell": fmt(np.round(atoms.cell.array, decimals) + 0.0),
        "pbc": pbc.tolist(),
        "numbers": numbers[order].tolist(),
        "frac": fmt(frac[order]),
    }
    blob = json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def formula(atoms: Atoms) -> str:
    """Reduced formula in pymatgen's convention (e.g. ``"BaTe"``, ``"SiO2"``)."""
    from pymatgen.core import Composition  # lazy: pymatgen import costs ~1 s

    return Composition(atoms.get_chemical_formula()).reduced_formula


def orthogonality_defect(cell: np.ndarray) -> float:
    """prod |a_i| / |det(a)|: 1 for an orthogonal cell, large for a skewed one.

    A plane-wave code's FFT grid must resolve the cutoff sphere along every cell vector, so
    its size grows with this defect at fixed volume.
    """
    cell = np.asarray(cell, dtype=float)
    return float(np.prod(np.linalg.norm(cell, axis=1)) / abs(np.linalg.det(cell)))


def is_rhombohedral_setting(atoms: Atoms) -> bool:
    """Whether the cell has a = b = c and alpha = beta = gamma (the 3-fold axis permutes it)."""
    lengths_angles = atoms.cell.cellpar()
    return bool(
        np.ptp(lengths_angles[:3]) < 1e-4 * lengths_angles[0] and np.ptp(lengths_angles[3:]) < 1e-4
    )


def niggli_cell_same_frame(atoms: Atoms) -> Atoms:
    """The same crystal on its Niggli-reduced cell, without rotating it.

    ``ase.build.niggli_reduce`` rebuilds the cell from its lengths and angles, which rotates the
    Cartesian frame and with it every m-resolved (p_x, d_xy, ...) projection. Here the reduced
    basis is the integer combination of the original vectors that Niggli's algorithm finds;
    atoms keep their order and Cartesian positions, wrapped into the new cell.
    """
    from ase.build.tools import niggli_reduce_cell

    _, op = niggli_reduce_cell(atoms.cell)
    reduced = atoms.copy()
    # niggli_reduce_cell's `op` maps new fractional coordinates to old ones (s_old = op s_new),
    # so the new basis vectors (rows) are op^T times the old ones.
    reduced.set_cell(op.T @ atoms.cell.array, scale_atoms=False)
    reduced.wrap()
    return reduced
