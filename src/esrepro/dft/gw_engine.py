"""GPAW G0W0 of a 2D monolayer: relax the in-plane lattice, PBE ground state, G0W0 on its IBZ.

Runs inside a farm worker like `esrepro.dft.band_engine.run_gpaw_bands` (optionally under
``mpirun``); see `esrepro.dft.gw_product` for what is stored. GPAW's G0W0 keeps its restart
files (``qcache_<name>/``, ``<name>_results_GW.pckl``, ``<name>.txt``) in the working directory,
and reuses a ``qcache`` it finds: every run therefore works in a private temporary directory
under a name of its own (`gw_name`), and `clear_gw_files` removes those files before a G0W0
starts, so a directory reused with other inputs never resumes a stale self-energy.

Relaxation: ASE's `FrechetCellFilter` with the in-plane cell components only (mask xx, yy, xy)
together with the atomic positions, under `FixSymmetry`, driven by BFGS on GPAW's analytic
plane-wave stress. Chosen over a scan of the energy in a: each step reuses the previous
density and wavefunctions (MoS2 from a 2.5% compressed start: 5 steps, 50 s), the layer's
thickness relaxes with a instead of being frozen at each scan point, and the symmetry
constraint keeps stress noise from breaking the prototype's point group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import Bohr, Ha

from esrepro.dft.band_engine import _Clock
from esrepro.dft.gpaw_engine import (
    SCFNotConverged,
    _band_edges,
    _channel_weights,
    _gpaw_has_blas,
    _gpaw_has_fftw,
    _scf_iterations,
)
from esrepro.dft.gw_product import ORBITALS, GWProduct, GWSettings, gw_versions, layer_with_vacuum
from esrepro.dft.product import L_OFFSET
from esrepro.structures import canonical_structure_hash


class RelaxationNotConverged(RuntimeError):
    """The in-plane relaxation hit `relax_max_steps`."""


def gw_name(atoms: Atoms, txt: str | Path | None) -> str:
    """A file name of this material's G0W0: the farm's log name (``<material>.gpaw.txt``) and
    a structure hash, so two materials never share GPAW's restart files."""
    stem = Path(txt).name.split(".")[0] if txt else "material"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)
    return f"gw-{safe}-{canonical_structure_hash(atoms)[:12]}"


def clear_gw_files(workdir: Path, name: str) -> list[Path]:
    """Remove GPAW's G0W0 restart and result files of `name` in `workdir`; returns them."""
    workdir = Path(workdir)
    removed = [p for p in (*workdir.glob(f"qcache_{name}*"), *workdir.glob(f"{name}_results_*"),
                           *workdir.glob(f"{name}.txt"), *workdir.glob(f"{name}.w.txt"))
               if p.exists()]
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def gw_nbands(atoms: Atoms, ecut_ev: float) -> int:
    """Bands GPAW's G0W0 sums over by default at cut-off `ecut_ev`: about the number of plane
    waves of the response (`gpaw.response.g0w0.G0W0`'s own formula, volume in Bohr³)."""
    volume = abs(np.linalg.det(np.asarray(atoms.cell))) / Bohr**3
    return int(volume * (ecut_ev / Ha) ** 1.5 * 2**0.5 / 3 / np.pi**2)


def n_reference_bands(atoms: Atoms, xc: str) -> tuple[int, float]:
    """(floor(valence electrons / 2), valence electrons) from the PAW setups."""
    from gpaw.setup_data import SetupData

    valence = float(sum(SetupData(s, xc, "paw").Nv for s in atoms.get_chemical_symbols()))
    return int(valence // 2), valence


def build_gw_calculator(settings: GWSettings, txt: str | Path | None, nbands: int | None = None,
                        converge_bands: int | str = "occupied"):
    """The PBE plane-wave calculator of the relaxation and the ground state."""
    from gpaw import GPAW, PW, FermiDirac

    return GPAW(
        mode=PW(settings.ecut_ev),
        xc=settings.xc,
        kpts={"size": tuple(settings.kpts), "gamma": True},
        occupations=FermiDirac(settings.smearing_width_ev),
        convergence={"density": settings.density_tolerance,
                     "eigenstates": settings.eigenstates_tolerance,
                     "bands": converge_bands},
        maxiter=settings.max_iterations,
        txt=str(txt) if txt is not None else None,
        **({"nbands": nbands} if nbands else {}),
    )


def _converge(atoms: Atoms, settings: GWSettings) -> float:
    from gpaw import KohnShamConvergenceError

    try:
        return atoms.get_potential_energy()
    except KohnShamConvergenceError as err:
        raise SCFNotConverged(
            f"SCF not converged in {settings.max_iterations} iterations ({type(err).__name__})"
        ) from err


def relax_layer(layer: Atoms, settings: GWSettings, txt: str | Path | None = None
                ) -> tuple[Atoms, dict[str, Any]]:
    """The layer with its in-plane cell and positions relaxed (see the module docstring), and
    the relaxation's record (steps, a before and after). Raises `RelaxationNotConverged`."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = layer.copy()
    atoms.calc = build_gw_calculator(settings, txt)
    atoms.set_constraint(FixSymmetry(atoms))
    cell_filter = FrechetCellFilter(atoms, mask=[True, True, False, False, False, True])
    log = None if txt is None else str(Path(txt).with_suffix(".log"))
    with BFGS(cell_filter, logfile=log) as opt:
        _converge(atoms, settings)
        converged = opt.run(fmax=settings.relax_fmax, steps=settings.relax_max_steps)
    if not converged:
        raise RelaxationNotConverged(
            f"in-plane relaxation not converged in {settings.relax_max_steps} steps "
            f"(fmax {settings.relax_fmax:g} eV/Å)"
        )
    relaxed = layer_with_vacuum(Atoms(atoms.numbers, cell=atoms.cell, positions=atoms.positions,
                                      pbc=atoms.pbc), settings.vacuum)
    record = {
        "steps": int(opt.nsteps),
        "a_start": float(np.linalg.norm(layer.cell[0])),
        "a_relaxed": float(np.linalg.norm(relaxed.cell[0])),
        "energy_ev": float(atoms.get_potential_energy()),
    }
    return relaxed, record


#: Unconverged bands above those a fixed-density run converges: the eigensolver converges the
#: top wanted band much faster with a few above it (as the band engine's path run).
BUFFER_BANDS = 8


def ground_state(layer: Atoms, settings: GWSettings, nbands: int,
                 txt: str | Path | None = None):
    """The SCF of `layer` (occupied bands converged), then a fixed-density run converging
    `nbands` bands (the empty states G0W0 sums over), whose calculator is returned with the SCF's
    iteration count.

    Iterative, not GPAW's full diagonalisation: on MoS2 (400 eV, 6x6x1) 55 bands took 20 CPU s
    this way and 107 s by `diagonalize_full_hamiltonian`, eigenvalues equal to 3e-7 eV.
    """
    calc = build_gw_calculator(settings, txt)
    atoms = layer.copy()
    atoms.calc = calc
    _converge(atoms, settings)
    iterations = _scf_iterations(calc)
    bands = calc.fixed_density(
        nbands=nbands + BUFFER_BANDS,
        convergence={"bands": nbands, "eigenstates": settings.eigenstates_tolerance},
        maxiter=settings.max_iterations,
        txt=None if txt is None else str(Path(txt).with_suffix(".bands.txt")),
    )
    return bands, iterations


def state_energies(calc) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(IBZ k-points, weights, eigenvalues (n_k, n_bands) eV, occupations in [0, 1]).

    Occupations are read `raw` (already in [0, 1]) and copied: GPAW 26.7's
    `get_occupation_numbers` multiplies the calculator's own array by the k-point weight in
    place, so a .gpw written after it holds weighted occupations and G0W0 read from it is
    wrong (measured on MoS2: EXX of the top valence band -17.7 instead of -20.1 eV).
    """
    weights = np.asarray(calc.get_k_point_weights(), dtype=float)
    n_k = len(weights)
    eps = np.array([calc.get_eigenvalues(kpt=k, spin=0) for k in range(n_k)])
    occ = np.array([np.array(calc.get_occupation_numbers(kpt=k, spin=0, raw=True))
                    for k in range(n_k)])
    return np.asarray(calc.get_ibz_k_points()), weights, eps, occ


def orbital_character(calc, band_start: int, band_stop: int) -> np.ndarray:
    """(n_k, n_window, 4) s/p/d/f shares of each state's PAW-projector weight (summed over atoms
    and m; `esrepro.dft.gpaw_engine._channel_weights`), normalised to sum to 1."""
    weights, _ = _channel_weights(calc, band_start, band_stop)  # (atoms, 16, k, n)
    per_l = []
    for ell, offset in L_OFFSET.items():
        per_l.append(weights[:, offset:offset + 2 * ell + 1].sum(axis=(0, 1)))
    by_l = np.stack(per_l, axis=-1).astype(float)  # (k, n, l)
    total = by_l.sum(axis=-1, keepdims=True)
    return by_l / np.where(total > 0, total, 1.0)


def vacuum_level(calc) -> float:
    """Planar average (eV) of the electrostatic potential at the cell's top and bottom face,
    the plane farthest from a centred layer."""
    potential = np.asarray(calc.get_electrostatic_potential())
    return float(potential[:, :, 0].mean())


def run_g0w0(gpw: Path, settings: GWSettings, band_start: int, band_stop: int, name: str,
             workdir: Path) -> dict[str, np.ndarray]:
    """GPAW's G0W0 results (arrays (spins, IBZ k, window), eV) for bands band_start ...
    band_stop - 1 of the ground state `gpw`, computed in `workdir` under `name`.

    GPAW writes ``qcache_<name>`` relative to the working directory, so the call runs there.
    """
    from gpaw.response.g0w0 import G0W0

    workdir = Path(workdir)
    clear_gw_files(workdir, name)
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        gw = G0W0(
            calc=str(Path(gpw).resolve()),
            filename=name,
            ecut=settings.gw_ecut_ev,
            ecut_extrapolation=list(settings.ecut_extrapolation) or False,
            **({"nbands": settings.gw_nbands} if settings.gw_nbands else {}),
            bands=(band_start, band_stop),
            truncation=settings.truncation,
            q0_correction=settings.q0_correction,
            frequencies={"type": "nonlinear", "domega0": settings.domega0_ev,
                         "omega2": settings.omega2_ev},
            eta=settings.eta_ev,
            **settings.extra,
        )
        return gw.calculate()
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def private_workdir(near: str | Path | None):
    """A temporary directory shared by every MPI rank (rank 0 makes it, beside `near` if
    given, and removes it at the end)."""
    from gpaw.mpi import broadcast, world

    parent = Path(near).parent if near else None
    path = tempfile.mkdtemp(prefix="esrepro-gw-", dir=parent) if world.rank == 0 else None
    path = Path(broadcast(path, 0, comm=world))
    try:
        yield path
    finally:
        world.barrier()
        if world.rank == 0:
            shutil.rmtree(path, ignore_errors=True)


def _sum(world, value: float) -> float:
    """`value` summed over the MPI ranks (each rank's process time: the run's core-seconds)."""
    buffer = np.array([value])
    world.sum(buffer)
    return float(buffer[0])


def run_gpaw_gw(atoms: Atoms, settings: GWSettings, txt: str | Path | None = None) -> GWProduct:
    """Relax, ground state, G0W0: the GW product of the monolayer `atoms`."""
    from gpaw.mpi import world

    settings.check()
    clock = _Clock()
    layer = layer_with_vacuum(atoms, settings.vacuum)
    input_cell = np.array(layer.cell)
    n_ref, valence = n_reference_bands(layer, settings.xc)
    band_start = n_ref - settings.bands_below
    band_stop = n_ref + settings.bands_above
    if band_start < 0:
        raise ValueError(f"bands_below={settings.bands_below} reaches below band 0 "
                         f"({n_ref} bands hold the valence electrons)")
    name = gw_name(layer, txt)
    timings: dict[str, float] = {}
    with private_workdir(txt) as workdir:
        relax_record: dict[str, Any] = {}
        if settings.relax:
            relax_txt = None if txt is None else Path(txt).with_suffix(".relax.txt")
            layer, relax_record = relax_layer(layer, settings, relax_txt)
        wall, cpu = clock.lap()
        timings.update(relax_wall_s=wall, relax_cpu_s=cpu)

        n_sum = settings.gw_nbands or gw_nbands(layer, settings.gw_ecut_ev)
        if n_sum < band_stop + 1:
            raise ValueError(
                f"the self-energy would sum over {n_sum} bands (gw_ecut_ev "
                f"{settings.gw_ecut_ev:g} eV), fewer than the window needs (bands up to "
                f"{band_stop - 1}); raise gw_ecut_ev or set gw_nbands"
            )
        nbands = max(n_sum, band_stop)
        calc, iterations = ground_state(layer, settings, nbands, txt)
        gpw = workdir / "gs.gpw"
        calc.write(str(gpw), mode="all")  # before anything reads the calculator (state_energies)
        kpoints, weights, eps, occ = state_energies(calc)
        character = orbital_character(calc, band_start, band_stop)
        vacuum = vacuum_level(calc)
        fermi = float(calc.get_fermi_level())
        wall, cpu = clock.lap()
        timings.update(ground_state_wall_s=wall, ground_state_cpu_s=cpu)

        results = run_g0w0(gpw, settings, band_start, band_stop, name, workdir)
        wall, cpu = clock.lap()
        timings.update(gw_wall_s=wall, gw_cpu_s=cpu)
    timings.update({key.replace("_cpu_s", "_core_s"): _sum(world, value)
                    for key, value in list(timings.items()) if key.endswith("_cpu_s")})

    e_dft = results["eps"][0]
    e_gw = results["qp"][0]
    if not np.allclose(e_dft, eps[:, band_start:band_stop], atol=1e-4):
        raise RuntimeError("G0W0's Kohn-Sham energies differ from the ground state's "
                           f"(max {np.abs(e_dft - eps[:, band_start:band_stop]).max():.2e} eV)")
    _, _, gap_dft = _band_edges(eps, valence, fermi)
    is_metal = gap_dft <= 0
    gap_gw = 0.0
    if not is_metal:
        i = n_ref - band_start
        gap_gw = float(e_gw[:, i].min() - e_gw[:, i - 1].max())
    fit = results.get("sigr2_skn")
    return GWProduct(
        numbers=layer.numbers.copy(),
        cell=np.array(layer.cell),
        positions=layer.positions.copy(),
        kpoints=kpoints,
        k_weights=weights,
        band_start=band_start,
        n_ref=n_ref,
        e_dft=e_dft,
        e_gw=e_gw,
        z=results["Z"][0],
        occupations=occ[:, band_start:band_stop],
        sigma=results["sigma"][0],
        vxc=results["vxc"][0],
        exx=results["exx"][0],
        orbital_character=character,
        fermi_level=fermi,
        n_electrons=valence,
        gap_dft=float(gap_dft),
        gap_gw=gap_gw,
        vacuum_level=vacuum,
        meta={
            "product": "gw",
            "is_metal": bool(is_metal),
            "orbitals": list(ORBITALS),
            "input": {"cell": input_cell.tolist()},
            "relaxation": relax_record,
            "scf_iterations": iterations,
            "n_bands_converged": nbands,
            "gw_nbands": n_sum,
            "gw_name": name,
            "ecut_extrapolation_min_r2": None if fit is None else float(np.min(fit)),
            "sigma_per_ecut": None if fit is None else np.asarray(
                results["sigma_eskn"])[:, 0].tolist(),
            "dsigma_per_ecut": None if fit is None else np.asarray(
                results["dsigma_eskn"])[:, 0].tolist(),
            "kpt_grid": list(settings.kpts),
            "timings": timings,
            "mpi_ranks": int(world.size),
            "versions": gw_versions(),
            "gpaw_fftw": _gpaw_has_fftw(),
            "gpaw_blas": _gpaw_has_blas(),
            "settings": settings.to_dict(),
            "host": os.uname().nodename,
        },
    )
