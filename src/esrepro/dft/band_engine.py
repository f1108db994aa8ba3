"""GPAW band structures: SCF on a k-grid, then a fixed-density run on the path's k-points.

Runs inside a farm worker like `esrepro.dft.gpaw_engine.run_gpaw` (whose calculator set-up it
reuses); see `esrepro.dft.band_product` for what is stored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from esrepro.dft.band_product import BandProduct, BandSettings, band_versions
from esrepro.dft.gpaw_engine import (
    SCFNotConverged,
    _gpaw_has_blas,
    _gpaw_has_fftw,
    _scf_iterations,
    build_calculator,
    count_bands,
)
from esrepro.kpath import ContinuousKPath, continuous_kpath


class _Clock:
    """Wall and CPU seconds of a step (the machine may be shared: CPU time is the cost)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def run_scf(atoms: Atoms, settings: BandSettings, txt: str | Path | None = None):
    """The converged SCF calculator of `atoms` (on its own cell) under ``settings.scf``."""
    from gpaw import KohnShamConvergenceError

    settings.check()
    scf = settings.scf
    calc = build_calculator(scf, txt, count_bands(atoms, scf))
    atoms = atoms.copy()
    atoms.calc = calc
    try:
        atoms.get_potential_energy()
    except KohnShamConvergenceError as err:
        raise SCFNotConverged(
            f"SCF not converged in {scf.max_iterations} iterations ({type(err).__name__})"
        ) from err
    return calc


def scf_occupations(calc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eigenvalues, occupations normalised to 1, k-weights) on the SCF's IBZ k-points.

    GPAW's occupation numbers include the k-point weight and the spin degeneracy (2 without
    spin polarisation); dividing both out leaves the Fermi–Dirac occupation in [0, 1].
    """
    weights = np.asarray(calc.get_k_point_weights(), dtype=float)
    n_k = len(weights)
    eps = np.array([calc.get_eigenvalues(kpt=k, spin=0) for k in range(n_k)])
    occ = np.array([calc.get_occupation_numbers(kpt=k, spin=0) for k in range(n_k)])
    return eps, occ / (2.0 * weights[:, None]), weights


def highest_occupied_band(occupations: np.ndarray) -> int:
    """0-based index of the highest band with occupation > 0.5 at any k-point."""
    occupied = np.flatnonzero((occupations > 0.5).any(axis=0))
    if not len(occupied):
        raise ValueError("no band is more than half occupied at any SCF k-point")
    return int(occupied.max())


def path_eigenvalues(
    calc,
    kpoints: np.ndarray,
    n_converged: int,
    n_bands: int,
    txt: str | Path | None = None,
    eigenstates_tolerance: float = 4e-8,
) -> np.ndarray:
    """Eigenvalues (n_k, n_converged) at fractional `kpoints` on the SCF density of `calc`.

    No symmetry (the k-points are given one by one); bands beyond `n_converged` up to
    `n_bands` are computed but not converged, and not returned.
    """
    path = calc.fixed_density(
        kpts=np.asarray(kpoints, dtype=float),
        symmetry="off",
        nbands=n_bands,
        convergence={"bands": n_converged, "eigenstates": eigenstates_tolerance},
        txt=str(txt) if txt is not None else None,
    )
    n_k = len(kpoints)
    if len(path.get_ibz_k_points()) != n_k:
        raise RuntimeError(f"GPAW returned {len(path.get_ibz_k_points())} of {n_k} path k-points")
    return np.array([path.get_eigenvalues(kpt=k, spin=0)[:n_converged] for k in range(n_k)])


def run_gpaw_bands(
    atoms: Atoms,
    settings: BandSettings,
    txt: str | Path | None = None,
    kpath: ContinuousKPath | None = None,
) -> BandProduct:
    """SCF, HOB from its occupations, then bands HOB-below ... HOB+above on the unique path
    segments. `kpath` defaults to the structure's continuous Latimer–Munro path."""
    from gpaw.mpi import world

    clock = _Clock()
    kpath = kpath or continuous_kpath(atoms, symprec=settings.symprec)
    path_setup = clock.lap()
    calc = run_scf(atoms, settings, txt)
    scf_time = clock.lap()
    eps, occ, weights = scf_occupations(calc)
    hob = highest_occupied_band(occ)
    band_start = max(hob - settings.bands_below, 0)
    band_stop = hob + settings.bands_above + 1
    segments = kpath.segment_kpoints(settings.path_kpt_density)
    kpoints = np.concatenate(segments)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in segments])])
    path_txt = None if txt is None else Path(txt).with_suffix(".path.txt")
    energies = path_eigenvalues(
        calc, kpoints, band_stop, band_stop + settings.buffer_bands, path_txt,
        settings.path_eigenstates_tolerance,
    )
    path_time = clock.lap()
    n_kept = band_stop - band_start
    if eps.shape[1] < band_stop:  # the SCF holds fewer bands: pad its record with NaN
        pad = band_stop - eps.shape[1]
        eps = np.pad(eps, ((0, 0), (0, pad)), constant_values=np.nan)
        occ = np.pad(occ, ((0, 0), (0, pad)), constant_values=np.nan)
    return BandProduct(
        numbers=atoms.numbers.copy(),
        cell=np.array(atoms.cell),
        positions=atoms.positions.copy(),
        kpoints=kpoints,
        segment_offsets=offsets,
        eigenvalues=energies[:, band_start:band_stop],
        band_start=band_start,
        hob=hob,
        fermi_level=float(calc.get_fermi_level()),
        n_electrons=float(calc.get_number_of_electrons()),
        scf_eigenvalues=eps[:, band_start:band_stop],
        scf_occupations=occ[:, band_start:band_stop],
        scf_k_weights=weights,
        kpath=kpath,
        meta={
            "product": "bands",
            "n_kept_bands": n_kept,
            "n_kpoints_path": len(kpoints),
            "n_kpoints_walk": int(sum(len(segments[i]) - 1 for i, _ in kpath.steps) + 1),
            "n_kpoints_ibz_scf": len(weights),
            "kpt_grid": [int(x) for x in calc.wfs.kd.N_c],
            "scf_iterations": _scf_iterations(calc),
            "n_bands_scf": int(calc.get_number_of_bands()),
            "n_bands_path": band_stop + settings.buffer_bands,
            "timings": {
                "path_setup_wall_s": path_setup[0],
                "scf_wall_s": scf_time[0], "scf_cpu_s": scf_time[1],
                "path_wall_s": path_time[0], "path_cpu_s": path_time[1],
            },
            "mpi_ranks": int(world.size),
            "versions": band_versions(),
            "gpaw_fftw": _gpaw_has_fftw(),
            "gpaw_blas": _gpaw_has_blas(),
            "settings": settings.to_dict(),
            "host": os.uname().nodename,
        },
    )
