"""One GPAW ground-state calculation and the extraction of its products.

Runs inside a worker process (optionally under ``mpirun``); see `esrepro.dft.worker`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from esrepro.dft.product import L_OFFSET, N_CHANNELS, DFTProduct
from esrepro.dft.settings import NIGGLI_NO_POINT_GROUP, DFTSettings, cell_reduction, code_versions
from esrepro.structures import niggli_cell_same_frame


class SCFNotConverged(RuntimeError):
    """The self-consistency loop hit `max_iterations`."""


#: hbar^2 / 2 m_e in eV A^2: a free electron of wave number k has energy HBAR2_2M * k^2.
HBAR2_2M = 3.80998


def free_electron_bands(n_electrons: float, volume: float, above_fermi_ev: float) -> float:
    """Bands of a free-electron gas of this density below E_F + ``above_fermi_ev``.

    States (per spin) below wave number k: V k^3 / (6 pi^2); the gas's E_F follows from the
    density. Our cached products need 0.7-1.26x this count (median 0.89) to reach E_VBM + 14 eV.
    """
    k_fermi = (3.0 * np.pi**2 * n_electrons / volume) ** (1.0 / 3.0)
    k_top = np.sqrt(k_fermi**2 + above_fermi_ev / HBAR2_2M)
    return float(volume * k_top**3 / (6.0 * np.pi**2))


def count_bands(atoms: Atoms, settings: DFTSettings) -> int:
    """Bands to compute, from the PAW setups' valence electrons:

    max(nbands_factor x occupied, occupied + min_empty_bands,
        free_electron_band_scale x free-electron bands below E_F + bands_cover_ev).

    The last term makes products hold every band up to ~E_F + bands_cover_ev at every k-point
    (DOSnp's PDOS window reaches E_F + 1 Ry, ALIGNN-DOS's grid E_F + 10 eV). Without it,
    semicore-rich dilute cells (Rb2Te, Cs3Bi, CsK2Sb) stopped at E_VBM + 8 eV.
    """
    from gpaw.setup_data import SetupData

    valence = sum(SetupData(s, settings.xc, "paw").Nv for s in atoms.get_chemical_symbols())
    occupied = int(np.ceil(valence / 2))
    covering = 0
    if settings.bands_cover_ev > 0:
        volume = abs(float(np.linalg.det(np.asarray(atoms.cell))))
        covering = int(np.ceil(
            settings.free_electron_band_scale
            * free_electron_bands(valence, volume, settings.bands_cover_ev)
        ))
    return max(
        int(np.ceil(settings.nbands_factor * occupied)),
        occupied + settings.min_empty_bands,
        covering,
    )


def build_calculator(
    settings: DFTSettings, txt: str | Path | None, nbands: int, point_group: bool = True
):
    """A GPAW calculator for `settings` (imported lazily: GPAW is heavy and MPI-aware).

    ``point_group=False`` switches point-group symmetry off (time reversal is kept).
    """
    from gpaw import GPAW, PW

    if settings.mode == "pw":
        mode: Any = PW(settings.ecut_ev)
        extra = {}
    elif settings.mode == "lcao":
        mode = "lcao"
        extra = {"basis": settings.basis}
    else:
        raise ValueError(f"unknown GPAW mode {settings.mode!r} (use 'pw' or 'lcao')")
    return GPAW(
        mode=mode,
        xc=settings.xc,
        kpts={"density": settings.kpt_density, "gamma": True, "even": settings.kpt_even},
        occupations={"name": settings.smearing, "width": settings.smearing_width_ev},
        # LCAO diagonalizes the full basis anyway, and more bands than orbitals is an error
        # (a 1-atom Si cell has 13 dzp orbitals): keep them all.
        nbands="nao" if settings.mode == "lcao" else nbands,
        convergence={
            "density": settings.density_tolerance,
            "eigenstates": settings.eigenstates_tolerance,
            "bands": settings.converge_bands,
        },
        maxiter=settings.max_iterations,
        txt=str(txt) if txt is not None else None,
        **{
            **extra,
            **({} if point_group else {"symmetry": {"point_group": False}}),
            **settings.extra,
        },
    )


def _band_edges(
    eigenvalues: np.ndarray, n_electrons: float, fermi: float
) -> tuple[float, float, float]:
    """(VBM, CBM, gap) of a non-spin-polarized band structure; gap 0 for metals.

    A system is a metal when the electron count is odd or a band crosses the Fermi level
    (VBM above CBM); eigenvalues come from the same k-mesh as the SCF.
    """
    n_occ = n_electrons / 2
    if abs(n_occ - round(n_occ)) > 1e-6:
        return fermi, fermi, 0.0
    n_occ = int(round(n_occ))
    vbm = float(eigenvalues[:, n_occ - 1].max())
    cbm = float(eigenvalues[:, n_occ].min())
    if cbm <= vbm:
        return fermi, fermi, 0.0
    return vbm, cbm, cbm - vbm


def _projector_indices(setup, ell: int) -> list[int]:
    """Indices of the bound-state PAW projectors of angular momentum `ell` (GPAW's own rule)."""
    from gpaw.dos import get_projector_numbers

    return get_projector_numbers(setup, ell)


def _channel_weights(calc, band_start: int, band_stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Projector weights (n_atoms, 16, n_k, n_window) and channel mask (n_atoms, 16).

    Weights are |<p_i|psi_nk>|^2 summed over the bound projectors of each l, per real harmonic
    m, and averaged over the crystal's point group. An IBZ k-point stands for its whole star;
    only the m-sum is invariant under the rotations that generate the star, so the m-resolved
    weights must be symmetrized the way GPAW symmetrizes atomic density matrices
    (gpaw.old.atomrotations): w_am = 1/N_s sum_s [R_s rho_b R_s^T]_mm with b = a_sa[s][a] and
    rho_b = sum_radial P* P^T. Time reversal needs nothing: it conjugates rho, R_s is real.
    """
    from gpaw.mpi import world
    from gpaw.rotation import rotation

    wfs = calc.wfs
    kd = wfs.kd
    n_atoms = len(calc.setups)
    my_bands = wfs.bd.get_slice()
    rho: dict[tuple[int, int], np.ndarray] = {}
    mask = np.zeros((n_atoms, N_CHANNELS), dtype=bool)
    for a, setup in enumerate(calc.setups):
        for ell, offset in L_OFFSET.items():
            indices = _projector_indices(setup, ell)
            if not indices:
                continue
            n_m = 2 * ell + 1
            r = np.zeros((kd.nibzkpts, wfs.bd.nbands, n_m, n_m))
            for kpt in wfs.kpt_u:
                if kpt.s == 0 and a in kpt.projections:
                    # Projector indices are grouped per radial function, m fastest.
                    P_njm = kpt.projections[a][:, indices].reshape(-1, len(indices) // n_m, n_m)
                    r[kpt.k, my_bands] = np.einsum("njm,njp->nmp", P_njm.conj(), P_njm).real
            world.sum(r)
            rho[a, ell] = r[:, band_start:band_stop]
            mask[a, offset:offset + n_m] = True

    symmetry = kd.symmetry
    cell_cv = symmetry.cell_cv
    weights = np.zeros((n_atoms, N_CHANNELS, kd.nibzkpts, band_stop - band_start))
    for s, op_cc in enumerate(symmetry.op_scc):
        op_vv = np.linalg.inv(cell_cv) @ op_cc @ cell_cv
        R_lmm = {ell: rotation(ell, op_vv) for ell in L_OFFSET}
        for a, ell in rho:
            R_mm = R_lmm[ell]
            offset = L_OFFSET[ell]
            weights[a, offset:offset + 2 * ell + 1] += np.einsum(
                "mi,knij,mj->mkn", R_mm, rho[symmetry.a_sa[s][a], ell], R_mm
            )
    weights /= len(symmetry.op_scc)
    return weights.astype(np.float32), mask


def _mulliken_atom_weights(calc, band_start: int, band_stop: int) -> np.ndarray:
    """LCAO Mulliken weights per atom, (n_atoms, n_k, n_window), point-group averaged.

    w_a(nk) = sum_{mu on a} Re[C*_n,mu (C_n S)_mu]: the share of band n at k on atom a's
    orbitals. Over all atoms it sums to the band's norm (1), so per-atom LDOS built from it add
    up to the total DOS exactly (the LDOS paper's eq. 7), which PAW-projector weights do not.
    An IBZ k-point stands for its star, so weights are averaged over the symmetry operations'
    atom maps (w_a = 1/N_s sum_s w_{a_sa[s][a]}), as the projector weights are.
    """
    from gpaw.mpi import world

    wfs = calc.wfs
    kd = wfs.kd
    n_atoms = len(calc.setups)
    M_a = list(wfs.setups.M_a) + [wfs.setups.nao]
    my_bands = wfs.bd.get_slice()
    w = np.zeros((n_atoms, kd.nibzkpts, wfs.bd.nbands))
    for kpt in wfs.kpt_u:
        if kpt.s != 0:
            continue
        C_nM = kpt.C_nM
        # GPAW's convention: <psi_n|psi_n> = sum_mu,nu C_n,mu S_mu,nu C*_n,nu (= 1).
        pop_nM = (C_nM.conj() * (C_nM @ kpt.S_MM)).real
        for a in range(n_atoms):
            w[a, kpt.k, my_bands] = pop_nM[:, M_a[a]:M_a[a + 1]].sum(axis=1)
    world.sum(w)
    w = w[:, :, band_start:band_stop]
    a_sa = kd.symmetry.a_sa
    return np.mean([w[np.asarray(a_sa[s])] for s in range(len(a_sa))], axis=0)


def run_gpaw(atoms: Atoms, settings: DFTSettings, txt: str | Path | None = None) -> DFTProduct:
    """Run the SCF for `atoms` and extract eigenvalues, band edges and projector weights.

    Projector weights per (atom, l, m) sum over the bound projectors of that l, as
    `gpaw.dos.DOSCalculator.raw_pdos` does; channels whose l the setup lacks stay zero and are
    flagged in `channel_mask`.
    """
    from gpaw import KohnShamConvergenceError
    from gpaw.dos import IBZWaveFunctions
    from gpaw.mpi import world
    from gpaw.new.scf import TooFewBandsError

    t0 = time.perf_counter()
    nbands = count_bands(atoms, settings)
    reduction = cell_reduction(atoms, settings)
    # See esrepro.dft.settings.NIGGLI_NO_POINT_GROUP.
    point_group = reduction != NIGGLI_NO_POINT_GROUP
    calc = build_calculator(settings, txt, nbands, point_group=point_group)
    atoms = atoms.copy()
    cell_reduced = reduction is not None
    if cell_reduced:
        atoms = niggli_cell_same_frame(atoms)
    if settings.mode != "pw":
        # Real-space grids (LCAO) refuse strongly skewed cells ("weird unit cell", e.g. a
        # strained hexagonal cell at 123 degrees); the Niggli cell is the same crystal, with the
        # atoms in the same order, so per-atom products still line up with the input.
        from ase.build import niggli_reduce

        niggli_reduce(atoms)
    atoms.calc = calc
    try:
        energy = atoms.get_potential_energy()
    except TooFewBandsError as err:
        # A subclass of KohnShamConvergenceError in GPAW: say what actually went wrong.
        raise SCFNotConverged(
            f"too few bands ({nbands}) to converge bands up to {settings.converge_bands}; "
            "raise nbands_factor, min_empty_bands or "
            f"bands_cover_ev ({type(err).__name__})"
        ) from err
    except KohnShamConvergenceError as err:
        # GPAW raises this itself at `maxiter`; it tests convergence first, so a run that
        # converges on its last allowed iteration (niter == maxiter) is a success.
        raise SCFNotConverged(
            f"SCF not converged in {settings.max_iterations} iterations ({type(err).__name__})"
        ) from err
    iterations = _scf_iterations(calc)
    scf_kpoints = len(calc.get_ibz_k_points())
    if settings.dos_kpt_density > 0:
        # Products from a denser k-mesh on the converged density (no new SCF): the DOS of a
        # 2-atom cell on the SCF's 1/A mesh shows k-sampling ripples even at 0.5 eV smearing.
        calc = calc.fixed_density(
            kpts={"density": settings.dos_kpt_density, "gamma": True, "even": settings.kpt_even},
            update_fermi_level=True,
            txt=None,
        )

    fermi = float(calc.get_fermi_level())
    n_k = len(calc.get_ibz_k_points())
    eigenvalues = np.array([calc.get_eigenvalues(kpt=k, spin=0) for k in range(n_k)])
    n_electrons = float(calc.get_number_of_electrons())
    vbm, cbm, gap = _band_edges(eigenvalues, n_electrons, fermi)
    e_ref = vbm if gap > 0 else fermi

    in_window = (eigenvalues.max(axis=0) >= e_ref - settings.window_below_ev) & (
        eigenvalues.min(axis=0) <= e_ref + settings.window_above_ev
    )
    bands = np.flatnonzero(in_window)
    band_start, band_stop = int(bands.min()), int(bands.max()) + 1

    wfs = IBZWaveFunctions(calc)
    weights, mask = _channel_weights(calc, band_start, band_stop)
    atom_weights = (
        _mulliken_atom_weights(calc, band_start, band_stop) if settings.mode == "lcao" else None
    )

    return DFTProduct(
        numbers=atoms.numbers.copy(),
        cell=np.array(atoms.cell),
        positions=atoms.positions.copy(),
        eigenvalues=eigenvalues.astype(np.float32),
        k_weights=np.asarray(wfs.weights(), dtype=np.float32),
        fermi_level=fermi,
        vbm=vbm,
        cbm=cbm,
        gap=gap,
        n_electrons=n_electrons,
        projector_weights=weights.astype(np.float16),
        band_start=band_start,
        band_stop=band_stop,
        channel_mask=mask,
        atom_weights=None if atom_weights is None else atom_weights.astype(np.float16),
        meta={
            "energy_ev": float(energy),
            "scf_iterations": iterations,
            "n_bands": int(eigenvalues.shape[1]),
            "n_kpoints_ibz": n_k,
            "n_kpoints_ibz_scf": scf_kpoints,
            "kpt_grid": [int(x) for x in calc.wfs.kd.N_c],
            "niggli_cell": cell_reduced,
            "point_group_symmetry": point_group,
            "wall_s": time.perf_counter() - t0,
            "mpi_ranks": int(world.size),
            "versions": code_versions(),
            # How GPAW was built changes speed, not results (products agree to the stored
            # precision), so it is recorded here and kept out of the cache key.
            "gpaw_fftw": _gpaw_has_fftw(),
            "gpaw_blas": _gpaw_has_blas(),
            "settings": settings.to_dict(),
            "setups": {s.symbol: getattr(s, "fingerprint", None) for s in calc.setups},
            "host": os.uname().nodename,
        },
    )


def _gpaw_has_fftw() -> bool:
    """Whether this GPAW links FFTW (else its plane-wave FFTs run on scipy's pocketfft)."""
    from gpaw.fftw import have_fftw

    return bool(have_fftw())


def _gpaw_has_blas() -> bool:
    """Whether this GPAW links a C BLAS (else it calls scipy's and falls back to slower loops)."""
    import _gpaw

    return hasattr(_gpaw, "mmm")


def _scf_iterations(calc) -> int | None:
    """Number of SCF iterations, across GPAW's old and new calculator interfaces."""
    for path in ("scf.niter", "dft.scf_loop.niter"):
        obj = calc
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return int(obj)
        except (AttributeError, TypeError):
            continue
    return None
