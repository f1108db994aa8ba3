"""VAE-GW's wavefunctions along Γ–K–M–Γ as a local product kind ("gw-path-wavefunctions").

For the relaxed structure of a GW product, the same PBE ground state is converged again (the
GW product's ground-state settings, as `esrepro.dft.wavefunction_product`), then a fixed-density
(non-SCF) run on k-points along the path, without symmetry, as the band engine's path run
(`esrepro.dft.band_engine.path_eigenvalues`). |ψ_nk|² of the bands `band_offsets` (from n_ref:
-1 is the highest valence band) is exported on the wavefunction export's grid and scaled as it:
the same `GridSampler`, degenerate states (within `degenerate_tolerance_ev` among the export's
``bands_per_side`` valence and conduction bands) replaced by their set's mean, each state
divided by its maximum (`state_grids`). So a path state at a grid k-point is the grid export's
state, and the state VAE reads both alike.

Beside the exported band, the PBE eigenvalues of `eigenvalue_bands` = (valence, conduction)
bands around the gap at every path k-point (`band_energies`, Fig. 3b's band structure), and
the ground state's `vacuum_level` (`esrepro.dft.gw_engine.vacuum_level`, as the GW product's):
the state table measures energies from the vacuum level, and so can the bands.

The k-points: `n_kpoints` along the whole path (the latent trajectory of the paper's Fig. 3a),
then `n_dense` evenly spaced on the segment `dense_segment` (K → M: the k-points where Fig. 3b's
generated states are compared with DFT), those already on the trajectory not repeated.

Never shipped (like the grid export): products live in ``<dft.cache>/gw-path-wavefunctions/``
(`path_wavefunction_cache`), keyed by every setting and the code versions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from esrepro.dft.gw_product import GWSettings, layer_with_vacuum
from esrepro.dft.product_file import open_product_file, write_product_file
from esrepro.dft.wavefunction_grid import GridSampler, GridSpec, degenerate_groups, scaled
from esrepro.dft.wavefunction_product import (
    _GROUND_STATE_FIELDS,
    WavefunctionSettings,
    layer_product_key,
    wavefunction_versions,
)
from esrepro.layer_kspace import K_TOLERANCE, hexagonal_points, path_kpoints, reciprocal_2d

#: Name of this product kind (cache keys, task files, failure records, product files).
PATH_WAVEFUNCTIONS = "gw-path-wavefunctions"
PATH_FORMAT = 2  # 2: band_energies and vacuum_level

#: Fields shared with `WavefunctionSettings`: the ground state and how a state is exported.
_EXPORT_FIELDS = (*_GROUND_STATE_FIELDS, "bands_per_side", "n_z", "n_xy", "z_window",
                  "degenerate_tolerance_ev")


@dataclass(frozen=True)
class PathSettings:
    """Everything that changes a path product (all of it is in the cache key). The export
    fields come from the grid export's settings (`from_wavefunctions`), so both describe the
    same ground state and scale states alike."""

    xc: str = "PBE"
    ecut_ev: float = 400.0
    kpts: tuple[int, int, int] = (6, 6, 1)
    smearing_width_ev: float = 0.05
    density_tolerance: float = 1e-5
    eigenstates_tolerance: float = 4e-8
    max_iterations: int = 200
    vacuum: float = 7.5
    bands_per_side: int = 8
    n_z: int = 40
    n_xy: int = 28
    z_window: float = 12.0
    degenerate_tolerance_ev: float = 1e-3
    #: Special points of `esrepro.layer_kspace.hexagonal_points`, in order.
    path: str = "GKMG"
    n_kpoints: int = 10
    dense_segment: str = "KM"
    n_dense: int = 15
    band_offsets: tuple[int, ...] = (-1,)
    #: Bands below and above the gap whose eigenvalues are kept (within `bands_per_side`).
    eigenvalue_bands: tuple[int, int] = (4, 4)

    @classmethod
    def from_wavefunctions(cls, export: WavefunctionSettings, **path: Any) -> PathSettings:
        data = export.to_dict()
        values = {name: data[name] for name in _EXPORT_FIELDS}
        values["kpts"] = tuple(values["kpts"])
        return cls(**values, **path)

    def grid(self) -> GridSpec:
        return GridSpec(n_z=self.n_z, n_xy=self.n_xy, z_window=self.z_window)

    def ground_state(self) -> GWSettings:
        return GWSettings(**{name: getattr(self, name) for name in _GROUND_STATE_FIELDS})

    def kpoints(self, cell: np.ndarray) -> dict[str, np.ndarray]:
        """The product's k-points: ``kpoints`` (n, 3) fractional, the trajectory's
        `n_kpoints` first, then the `n_dense` points of `dense_segment` not among them;
        ``arc`` (n,) their arc length along `path` (Å⁻¹); ``trajectory`` and ``dense`` (n,)
        which belong to each set; ``special_arc`` the arc length of each special point."""
        kpts, arc = path_kpoints(cell, self.path, self.n_kpoints)
        points = hexagonal_points(cell)
        legs = list(zip(self.path, self.path[1:], strict=False))
        if tuple(self.dense_segment) not in legs:
            raise ValueError(f"the segment {self.dense_segment} is not a leg of {self.path}")
        b = reciprocal_2d(cell)
        lengths = [float(np.linalg.norm((points[e] - points[s]) @ b)) for s, e in legs]
        special_arc = np.concatenate([[0.0], np.cumsum(lengths)])
        leg = legs.index(tuple(self.dense_segment))  # its first traversal
        start, end = (points[c] for c in self.dense_segment)
        t = np.linspace(0.0, 1.0, self.n_dense)
        dense_k = start + t[:, None] * (end - start)
        dense_arc = special_arc[leg] + t * lengths[leg]
        kpts, arc = list(kpts), list(arc)
        dense = [False] * len(kpts)
        n_trajectory = len(kpts)
        for k, a in zip(dense_k, dense_arc, strict=True):
            match = [i for i in range(n_trajectory)
                     if np.all(np.abs(kpts[i][:2] - k) < K_TOLERANCE) and abs(arc[i] - a) < 1e-6]
            if match:
                dense[match[0]] = True
            else:
                kpts.append(np.array([k[0], k[1], 0.0]))
                arc.append(a)
                dense.append(True)
        return {"kpoints": np.array(kpts), "arc": np.array(arc),
                "trajectory": np.arange(len(kpts)) < n_trajectory, "dense": np.array(dense),
                "special_arc": special_arc}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kpts"] = list(self.kpts)
        data["band_offsets"] = list(self.band_offsets)
        data["eigenvalue_bands"] = list(self.eigenvalue_bands)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PathSettings:
        data = dict(data)
        data["kpts"] = tuple(data["kpts"])
        data["band_offsets"] = tuple(data["band_offsets"])
        data["eigenvalue_bands"] = tuple(data["eigenvalue_bands"])
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def key_dict(self) -> dict[str, Any]:
        return self.to_dict()


def path_versions(versions: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**wavefunction_versions(versions),
            "product_format": f"{PATH_WAVEFUNCTIONS}-{PATH_FORMAT}"}


def path_cache_key(atoms: Atoms, settings: PathSettings,
                   versions: Mapping[str, str] | None = None) -> str:
    """Content address of the path product of `atoms` (re-centred as the GW key)."""
    return layer_product_key(PATH_WAVEFUNCTIONS, atoms, settings, path_versions(versions))


@dataclass
class PathWavefunctionProduct:
    """States of a few bands along the path on the `GridSpec` grid, each / its max, and the
    eigenvalues of the bands around the gap."""

    numbers: np.ndarray
    cell: np.ndarray
    positions: np.ndarray
    kpoints: np.ndarray  # (n_k, 3) fractional
    arc: np.ndarray  # (n_k,) Å⁻¹ along the path
    trajectory: np.ndarray  # (n_k,) bool: on the trajectory's n_kpoints
    dense: np.ndarray  # (n_k,) bool: one of the dense segment's points
    special_arc: np.ndarray  # (n_special,) arc length of the path's special points
    n_ref: int
    band_index: np.ndarray  # (n_bands,) 0-based
    energies: np.ndarray  # (n_k, n_bands) eV (GPAW's zero)
    states: np.ndarray  # (n_k, n_bands, n_z, n_xy, n_xy) float16, |ψ|² / max
    state_maxima: np.ndarray  # (n_k, n_bands)
    fermi_level: float
    band_energies_start: int  # 0-based band of band_energies' first column
    band_energies: np.ndarray  # (n_k, n_window) eV (GPAW's zero), PBE, bands around the gap
    vacuum_level: float  # eV (GPAW's zero), the ground state's, as the GW product's
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def band_offsets(self) -> np.ndarray:
        return self.band_index - self.n_ref

    @property
    def band_energy_offsets(self) -> np.ndarray:
        """Each `band_energies` column's band from the gap (-1: highest valence band)."""
        return self.band_energies_start + np.arange(self.band_energies.shape[1]) - self.n_ref

    def save(self, path: Path) -> None:
        write_product_file(
            path,
            {
                "numbers": self.numbers.astype(np.int16), "cell": self.cell.astype(np.float64),
                "positions": self.positions.astype(np.float64),
                "kpoints": self.kpoints.astype(np.float64), "arc": self.arc.astype(np.float64),
                "trajectory": self.trajectory.astype(bool), "dense": self.dense.astype(bool),
                "special_arc": self.special_arc.astype(np.float64),
                "n_ref": np.array([self.n_ref], np.int32),
                "band_index": self.band_index.astype(np.int32),
                "energies": self.energies.astype(np.float64),
                "states": self.states.astype(np.float16),
                "state_maxima": self.state_maxima.astype(np.float64),
                "fermi_level": np.array([self.fermi_level], np.float64),
                "band_energies_start": np.array([self.band_energies_start], np.int32),
                "band_energies": self.band_energies.astype(np.float64),
                "vacuum_level": np.array([self.vacuum_level], np.float64),
            },
            self.meta,
            tag=PATH_WAVEFUNCTIONS,
        )

    @classmethod
    def load(cls, path: Path) -> PathWavefunctionProduct:
        """Read a product written by `save`; a damaged or foreign file raises ValueError."""
        with open_product_file(path, "path wavefunction product", tag=PATH_WAVEFUNCTIONS,
                               one_line=True) as (z, meta):
            product = cls(
                numbers=z["numbers"].astype(int), cell=z["cell"], positions=z["positions"],
                kpoints=z["kpoints"], arc=z["arc"], trajectory=z["trajectory"].astype(bool),
                dense=z["dense"].astype(bool), special_arc=z["special_arc"],
                n_ref=int(z["n_ref"][0]), band_index=z["band_index"].astype(int),
                energies=z["energies"], states=z["states"], state_maxima=z["state_maxima"],
                fermi_level=float(z["fermi_level"][0]),
                band_energies_start=int(z["band_energies_start"][0]),
                band_energies=z["band_energies"],
                vacuum_level=float(z["vacuum_level"][0]),
                meta=meta,
            )
            if product.states.shape[:2] != (len(product.kpoints), len(product.band_index)):
                raise ValueError(f"state grids {product.states.shape[:2]} for "
                                 f"{len(product.kpoints)} k-points x "
                                 f"{len(product.band_index)} bands")
            if len(product.band_energies) != len(product.kpoints):
                raise ValueError(f"band energies at {len(product.band_energies)} of "
                                 f"{len(product.kpoints)} k-points")
            return product


def path_wavefunction_cache(cache):
    """Where path products live: ``<cache>/gw-path-wavefunctions/`` (own cache only)."""
    from esrepro.dft.cache import DFTCache

    return DFTCache(cache.root / PATH_WAVEFUNCTIONS)


def state_grids(periodic_part: Callable[[int], np.ndarray], energies: np.ndarray, first: int,
                wanted: Sequence[int], sampler: GridSampler, tolerance: float
                ) -> dict[int, tuple[np.ndarray, float]]:
    """{band: (|ψ|² / max as float16, max)} of the `wanted` bands at one k-point, exactly as
    the grid export (`run_wavefunction_export`): degenerate groups among the export's bands
    `first ... first + len(energies) - 1` (`energies`: theirs), each member replaced by the
    group's mean |ψ|², then scaled. `periodic_part(n)` gives u_nk on GPAW's grid."""
    bands = np.arange(first, first + len(energies))
    grids: dict[int, np.ndarray] = {}
    for group in degenerate_groups(np.asarray(energies), tolerance):
        members = [int(bands[i]) for i in group]
        if not set(members) & set(int(w) for w in wanted):
            continue
        values = [sampler.modulus_squared(periodic_part(n)) for n in members]
        mean = np.mean(values, axis=0)
        for n in members:
            grids[n] = mean
    out = {}
    for n in wanted:
        grid, peak = scaled(grids[int(n)])
        out[int(n)] = (grid.astype(np.float16), peak)
    return out


def run_path_export(atoms: Atoms, settings: PathSettings,
                    txt: str | Path | None = None) -> PathWavefunctionProduct:
    """SCF of `atoms` (no relaxation: the GW product's relaxed structure), the fixed-density
    run on the path and the grids. Runs in a farm worker."""
    from esrepro.dft.band_engine import _Clock
    from esrepro.dft.gpaw_engine import _gpaw_has_blas, _gpaw_has_fftw, _scf_iterations
    from esrepro.dft.gw_engine import (
        BUFFER_BANDS,
        _converge,
        build_gw_calculator,
        n_reference_bands,
        vacuum_level,
    )

    clock = _Clock()
    layer = layer_with_vacuum(atoms, settings.vacuum)
    where = settings.kpoints(np.array(layer.cell))
    kpoints = where["kpoints"]
    n_ref, _ = n_reference_bands(layer, settings.xc)
    first, stop = n_ref - settings.bands_per_side, n_ref + settings.bands_per_side
    wanted = [n_ref + o for o in settings.band_offsets]
    if first < 0 or any(not first <= n < stop for n in wanted):
        raise ValueError(f"band offsets {list(settings.band_offsets)} must lie within "
                         f"bands_per_side={settings.bands_per_side} of the gap (n_ref {n_ref})")
    below, above = settings.eigenvalue_bands
    e_start, e_stop = n_ref - below, n_ref + above
    if below < 1 or above < 0 or e_start < first or e_stop > stop:
        raise ValueError(f"eigenvalue_bands {list(settings.eigenvalue_bands)}: at least one "
                         f"valence band, at most bands_per_side={settings.bands_per_side} each "
                         f"side (n_ref {n_ref})")
    ground = settings.ground_state()
    calc = build_gw_calculator(ground, txt)
    scf = layer.copy()
    scf.calc = calc
    _converge(scf, ground)
    iterations = _scf_iterations(calc)
    vacuum = vacuum_level(calc)
    scf_wall, scf_cpu = clock.lap()
    path = calc.fixed_density(
        kpts=kpoints, symmetry="off", nbands=stop + BUFFER_BANDS,
        convergence={"bands": stop, "eigenstates": settings.eigenstates_tolerance},
        maxiter=settings.max_iterations,
        txt=None if txt is None else str(Path(txt).with_suffix(".path.txt")),
    )
    if len(path.get_ibz_k_points()) != len(kpoints):
        raise RuntimeError(f"GPAW returned {len(path.get_ibz_k_points())} of {len(kpoints)} "
                           "path k-points")
    eps = np.array([path.get_eigenvalues(kpt=k, spin=0)[:stop] for k in range(len(kpoints))])
    path_wall, path_cpu = clock.lap()
    sampler = GridSampler(path.dft.density.nt_sR.desc.size, np.array(layer.cell),
                          layer.positions, settings.grid())
    states, maxima = [], []
    for k in range(len(kpoints)):
        grids = state_grids(
            lambda n, k=k: path.get_pseudo_wave_function(band=n, kpt=k, periodic=True),
            eps[k, first:stop], first, wanted, sampler, settings.degenerate_tolerance_ev)
        states.append([grids[n][0] for n in wanted])
        maxima.append([grids[n][1] for n in wanted])
    export_wall, export_cpu = clock.lap()
    return PathWavefunctionProduct(
        numbers=layer.numbers.copy(), cell=np.array(layer.cell),
        positions=layer.positions.copy(), kpoints=kpoints, arc=where["arc"],
        trajectory=where["trajectory"], dense=where["dense"], special_arc=where["special_arc"],
        n_ref=n_ref, band_index=np.array(wanted), energies=eps[:, wanted],
        states=np.array(states, dtype=np.float16), state_maxima=np.array(maxima),
        fermi_level=float(calc.get_fermi_level()),
        band_energies_start=e_start, band_energies=eps[:, e_start:e_stop], vacuum_level=vacuum,
        meta={
            "product": PATH_WAVEFUNCTIONS,
            "grid_shape_gpaw": [int(n) for n in path.dft.density.nt_sR.desc.size],
            "n_bands_converged": stop,
            "scf_iterations": iterations,
            "timings": {"scf_wall_s": scf_wall, "scf_cpu_s": scf_cpu,
                        "path_wall_s": path_wall, "path_cpu_s": path_cpu,
                        "export_wall_s": export_wall, "export_cpu_s": export_cpu},
            "versions": path_versions(),
            "gpaw_fftw": _gpaw_has_fftw(),
            "gpaw_blas": _gpaw_has_blas(),
            "settings": settings.to_dict(),
            "host": os.uname().nodename,
        },
    )
