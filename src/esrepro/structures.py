"""Crystal structures: reading POSCAR/CIF/extxyz into ``ase.Atoms`` and a canonical hash."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import ase.io
import ase.io.cif
import numpy as np
from ase import Atoms

__all__ = [
    "MIN_INTERATOMIC_DISTANCE_A",
    "StructureError",
    "canonical_structure_hash",
    "check_cell",
    "check_structure",
    "formula",
    "is_rhombohedral_setting",
    "niggli_cell_same_frame",
    "orthogonality_defect",
    "read_structure",
]

_MIN_VOLUME_A3 = 1e-6
#: Atoms closer than this (periodic images included) overlap: no real bond is this short (H2's,
#: the shortest, is 0.74 A), so such a file is a broken structure.
MIN_INTERATOMIC_DISTANCE_A = 0.5
#: A CIF site is ordered when it holds one species at occupancy 1 within this tolerance.
_OCCUPANCY_TOL = 1e-3


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

    Raises ``StructureError`` naming the file for any parse failure, a missing frame, an empty
    structure, a direction that is not periodic, a disordered (partially occupied or mixed) CIF
    site, non-finite numbers, a cell with (near) zero volume, overlapping atoms (see
    :func:`check_structure`) or coordinate lines past the atom count of a POSCAR.
    """
    path = Path(path)
    fmt = _ase_format(path)
    try:
        with warnings.catch_warnings():
            # CIF readers warn about e.g. missing occupancies; failures still raise below.
            warnings.simplefilter("ignore")
            if index < 0:
                # ASE reads index -k as the slice [-k:], which silently gives frame 0 when the
                # file has fewer than k frames: index the list of all frames instead.
                frames = ase.io.read(path, index=":", format=fmt)
                if not isinstance(frames, list) or not -len(frames) <= index < 0:
                    raise StopIteration
                atoms = frames[index]
            else:
                atoms = ase.io.read(path, index=index, format=fmt)
    except StopIteration as exc:  # ASE's reader yielded fewer frames than asked for
        reason = "no structure in file" if index == 0 else f"no frame {index}"
        raise StructureError(f"{path}: {reason}") from exc
    except Exception as exc:  # ASE raises many types (ValueError, IndexError, AssertionError...)
        raise StructureError(
            f"cannot read structure from {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(atoms, Atoms):
        raise StructureError(f"cannot read structure from {path}: got {type(atoms).__name__}")
    _check_ordered(atoms, path)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.all():
        axes = ", ".join("abc"[k] for k in np.flatnonzero(~pbc))
        raise StructureError(
            f"{path}: structure is not periodic along {axes} (pbc={pbc.tolist()}); "
            "a 3D periodic cell is required"
        )
    check_structure(atoms, f"structure in {path}")
    if fmt == "vasp":
        _check_poscar_atom_count(path, len(atoms))
    return atoms


def _check_ordered(atoms: Atoms, path: Path) -> None:
    """Reject a CIF site with partial or mixed occupancy, which ASE reduces to one species."""
    occupancy = atoms.info.get("occupancy")
    if not isinstance(occupancy, dict):  # only ASE's CIF reader sets it (site -> {symbol: occ})
        return
    for site, species in occupancy.items():
        if not isinstance(species, dict):
            continue
        occ = {str(sym): float(value) for sym, value in species.items()}
        if len(occ) == 1 and abs(next(iter(occ.values())) - 1.0) <= _OCCUPANCY_TOL:
            continue
        label = _cif_site_label(path, site)
        described = ", ".join(f"{sym} {value:g}" for sym, value in occ.items())
        raise StructureError(
            f"{path}: disordered site {label} ({described}): partial or mixed occupancy is "
            "not supported; give an ordered structure"
        )


def _cif_site_label(path: Path, site: str) -> str:
    # ASE keys atoms.info["occupancy"] by the row of the _atom_site loop; name the row's label.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = next(ase.io.cif.parse_cif(str(path))).get("_atom_site_label")
        return f"{labels[int(site)]!s} (row {int(site) + 1} of _atom_site)"
    except Exception:  # the label only decorates the message: fall back to the row number
        return f"#{site}"


def _check_poscar_atom_count(path: Path, n_atoms: int) -> None:
    """Reject coordinate lines past the atoms a POSCAR's counts line declares.

    ASE takes the line after the positions as the (blank) separator of a velocity block and
    the lines after it as velocities, so surplus coordinates are dropped or become velocities.
    """
    lines = path.read_text(errors="replace").splitlines()
    row = 5  # comment, scale, 3 lattice vectors; then optional species line, then counts
    try:
        counts = [int(word) for word in lines[row].split()]
    except (ValueError, IndexError):
        row += 1
        try:
            counts = [int(word) for word in lines[row].split()]
        except (ValueError, IndexError):
            return  # a layout ASE read but this scan does not follow: nothing to check
    if sum(counts) != n_atoms:
        return
    row += 1
    if row < len(lines) and lines[row].strip()[:1] in ("s", "S"):  # Selective dynamics
        row += 1
    row += 1 + n_atoms  # coordinate mode line, then the positions
    if row >= len(lines):
        return
    words = lines[row].split()
    if len(words) >= 3 and all(_is_number(word) for word in words[:3]):
        raise StructureError(
            f"{path}: line {row + 1} holds coordinates past the {n_atoms} atoms of the counts "
            f"line ({' '.join(map(str, counts))}); fix the counts or remove the extra lines"
        )


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def check_structure(atoms: Atoms, where: str) -> None:
    """Raise ``StructureError`` (naming ``where``) for an empty structure, a non-finite or
    (near) zero-volume cell, non-finite positions, or two atoms (periodic images included)
    closer than :data:`MIN_INTERATOMIC_DISTANCE_A`."""
    if len(atoms) == 0:
        raise StructureError(f"{where} has no atoms")
    check_cell(atoms.cell.array, where)
    positions = np.asarray(atoms.positions, dtype=float)
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        raise StructureError(
            f"{where} has non-finite (NaN or inf) positions for atom(s) {bad[:10].tolist()}"
        )
    _check_no_overlap(atoms, where)


def check_cell(cell: np.ndarray, where: str) -> None:
    """Raise ``StructureError`` (naming ``where``) for a cell with non-finite entries or (near)
    zero volume."""
    cell = np.asarray(cell, dtype=float)
    if not np.isfinite(cell).all():
        raise StructureError(f"{where} has a non-finite (NaN or inf) cell {cell.tolist()}")
    volume = abs(np.linalg.det(cell))
    if volume < _MIN_VOLUME_A3:
        raise StructureError(f"{where} has a zero-volume cell (volume {volume:.3g} A^3)")


def _check_no_overlap(atoms: Atoms, where: str) -> None:
    from ase.neighborlist import neighbor_list

    first, second, distance = neighbor_list("ijd", atoms, MIN_INTERATOMIC_DISTANCE_A)
    if not len(distance):
        return
    k = int(np.argmin(distance))
    i, j, d = int(first[k]), int(second[k]), float(distance[k])
    pair = f"atom {i} and its own periodic image" if i == j else f"atoms {i} and {j}"
    raise StructureError(
        f"{where} has overlapping atoms: {pair} ({atoms[i].symbol}, {atoms[j].symbol}) are "
        f"{d:.3g} A apart (periodic images included; minimum {MIN_INTERATOMIC_DISTANCE_A} A)"
    )


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
