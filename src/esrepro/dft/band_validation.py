"""The band engine against an external band structure: Materials Project's VASP PBE bands of Si.

The reference is matminer's copy of MP's line-mode band structure of Si (a pymatgen
``BandStructureSymmLine`` JSON, pinned in ``sources.yaml`` as ``mp_si_bandstructure_matminer``).
It carries the reciprocal lattice and the k-points but no structure: the cell is rebuilt from the
reciprocal lattice (a = 2π (B⁻¹)ᵀ) with the diamond basis (0, 0, 0), (¼, ¼, ¼). Our bands are
computed on the very same k-points and compared after aligning each set's VBM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from esrepro.dft.band_engine import (
    highest_occupied_band,
    path_eigenvalues,
    run_scf,
    scf_occupations,
)
from esrepro.dft.band_product import BandSettings
from esrepro.fetch import fetch_url
from esrepro.sources import dataset_sources

REFERENCE_DATASET = "mp_si_bandstructure_matminer"


def fetch_reference(dest_dir: str | Path, mirror: str | Path | None = None) -> Path:
    """The pinned MP Si line-mode band structure JSON, fetched (or mirrored) into `dest_dir`."""
    [source] = dataset_sources(REFERENCE_DATASET)
    return fetch_url(source.url, source.sha256, Path(dest_dir) / source.filename, mirror=mirror)


@dataclass(frozen=True)
class LineModeReference:
    atoms: Atoms
    kpoints: np.ndarray  # (n_k, 3) fractional
    energies: np.ndarray  # (n_k, n_bands) eV
    branch_ends: np.ndarray  # indices of the labelled end points of each branch


def load_reference(path: str | Path) -> LineModeReference:
    """Si cell, k-points and bands of the line-mode JSON at `path`."""
    from pymatgen.electronic_structure.bandstructure import BandStructureSymmLine
    from pymatgen.electronic_structure.core import Spin

    bs = BandStructureSymmLine.from_dict(json.loads(Path(path).read_text()))
    rec = np.asarray(bs.lattice_rec.matrix)
    cell = 2 * np.pi * np.linalg.inv(rec).T
    atoms = Atoms("Si2", cell=cell, scaled_positions=[[0, 0, 0], [0.25, 0.25, 0.25]], pbc=True)
    ends = sorted({b[i] for b in bs.branches for i in ("start_index", "end_index")})
    return LineModeReference(
        atoms=atoms,
        kpoints=np.array([k.frac_coords for k in bs.kpoints]),
        energies=np.asarray(bs.bands[Spin.up]).T,
        branch_ends=np.array(ends),
    )


@dataclass(frozen=True)
class Comparison:
    hob: int
    bands: tuple[int, int]  # first and last band compared (0-based)
    n_kpoints: int
    max_abs_ev: float
    mean_abs_ev: float
    gap_ev: float
    reference_gap_ev: float


def compare_bands(
    reference: LineModeReference, settings: BandSettings, stride: int = 1
) -> Comparison:
    """Our bands HOB-below ... HOB+above on every `stride`-th reference k-point (branch ends
    always included) against the reference's, each aligned to its own VBM on those k-points."""
    picked = np.union1d(np.arange(0, len(reference.kpoints), stride), reference.branch_ends)
    calc = run_scf(reference.atoms, settings)
    _, occupations, _ = scf_occupations(calc)
    hob = highest_occupied_band(occupations)
    first, stop = hob - settings.bands_below, hob + settings.bands_above + 1
    ours = path_eigenvalues(
        calc, reference.kpoints[picked], stop, stop + settings.buffer_bands,
        eigenstates_tolerance=settings.path_eigenstates_tolerance,
    )[:, first:stop]
    theirs = reference.energies[picked, first:stop]
    column = hob - first
    ours = ours - ours[:, column].max()
    theirs = theirs - theirs[:, column].max()
    deviation = np.abs(ours - theirs)
    return Comparison(
        hob=hob,
        bands=(first, stop - 1),
        n_kpoints=len(picked),
        max_abs_ev=float(deviation.max()),
        mean_abs_ev=float(deviation.mean()),
        gap_ev=float(ours[:, column + 1].min()),
        reference_gap_ev=float(theirs[:, column + 1].min()),
    )
