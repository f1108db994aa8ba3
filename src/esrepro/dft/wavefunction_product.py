"""VAE-GW's wavefunction tensors as a local product kind ("gw-wavefunctions"), never shipped.

For the relaxed structure of a GW product (`GWProduct.atoms()`), the same PBE ground state is
computed again (the GW product's ground-state settings; ~10-60 s) and exported on the paper's
grid (`esrepro.dft.wavefunction_grid`): |ψ_nk|² of `bands_per_side` valence and as many
conduction bands at every irreducible k-point of the grid (a superset of the GW window, so
every GW label has its state), the pseudo charge density, and "super states" (pseudobands:
|ψ|² of every state in an energy slice summed over bands and the uniform k-grid, one per slice
of `super_state_windows_ev`). Each array is divided by its maximum, as the paper's code does;
the maxima are kept.

Why a product of its own: the tensors are ~4 MB per material (MoS2: 112 states of 40 × 28 ×
28 as float16, compressed), ~0.6 GB for the machine-scale set, too much to ship in `seeds/`,
while the ground state that regenerates them takes ~25 CPU s. A cache kind gives them what
the shipped GW products have: keys that hold every setting and the code versions, the farm
(parallel, resumable, failures recorded with their reason) and a content-hashed file per
material. They
live in ``<dft.cache>/gw-wavefunctions/`` (`wavefunction_cache`), which `esrepro seed pack`
does not read.

Degenerate states (within `degenerate_tolerance_ev` at a k-point) get the mean |ψ|² of their
set: any basis of a degenerate subspace is a valid set of eigenstates and the eigensolver picks
one at random, so a single member's |ψ|² is not reproducible; the set's mean is (the paper's
code stores the members as returned).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from esrepro.checks import expect_int, expect_mapping, expect_number
from esrepro.dft.gw_product import GWSettings, gw_versions, layer_with_vacuum
from esrepro.dft.product_file import open_product_file, write_product_file
from esrepro.dft.wavefunction_grid import GridSampler, GridSpec, degenerate_groups, scaled
from esrepro.structures import canonical_structure_hash

#: Name of this product kind (cache keys, task files, failure records, product files).
WAVEFUNCTIONS = "gw-wavefunctions"
WAVEFUNCTION_FORMAT = 1

_GROUND_STATE_FIELDS = ("xc", "ecut_ev", "kpts", "smearing_width_ev", "density_tolerance",
                        "eigenstates_tolerance", "max_iterations", "vacuum")


@dataclass(frozen=True)
class WavefunctionSettings:
    """Everything that changes a wavefunction product (all of it is in the cache key).

    The ground-state fields must equal those of the GW product whose states they describe
    (`from_gw`), so that band indices and energies match the GW labels.
    """

    xc: str = "PBE"
    ecut_ev: float = 400.0
    kpts: tuple[int, int, int] = (6, 6, 1)
    smearing_width_ev: float = 0.05
    density_tolerance: float = 1e-5
    eigenstates_tolerance: float = 4e-8
    max_iterations: int = 200
    vacuum: float = 7.5
    #: Valence bands exported per k-point, and as many conduction bands (the paper: "the same
    #: number of conduction states as valence states").
    bands_per_side: int = 8
    n_z: int = 40
    n_xy: int = 28
    z_window: float = 12.0  # Å, centred on the layer
    #: Energy slices (eV, relative to mid-gap, E_F in a metal) of the super states.
    super_state_windows_ev: tuple[tuple[float, float], ...] = ((-8.0, 0.0), (0.0, 4.0),
                                                               (4.0, 8.0))
    degenerate_tolerance_ev: float = 1e-3
    #: Bands converged in the ground state; 0: `n_bands_needed`'s rule, enough to cover the
    #: highest super-state slice at every k-point (checked).
    nbands: int = 0

    @classmethod
    def from_gw(cls, gw: GWSettings, **export: Any) -> WavefunctionSettings:
        """The ground state of `gw` with the export settings `export`."""
        data = gw.to_dict()
        ground = {name: data[name] for name in _GROUND_STATE_FIELDS}
        ground["kpts"] = tuple(ground["kpts"])
        return cls(**ground, **export)

    @classmethod
    def from_params(cls, gw: GWSettings, params: Mapping[str, Any] | None,
                    source: str = "params.yaml vae_gw.wavefunctions") -> WavefunctionSettings:
        """Export settings from a params block on top of the GW settings' ground state."""
        params = expect_mapping(params, source) or {}
        allowed = {f.name for f in fields(cls)} - set(_GROUND_STATE_FIELDS)
        unknown = set(params) - allowed
        if unknown:
            raise ValueError(f"unknown wavefunction setting(s) {sorted(unknown, key=str)} in "
                             f"{source}; known: {sorted(allowed)}")
        values: dict[str, Any] = {}
        for name, value in params.items():
            label = f"{source}.{name}"
            if name == "super_state_windows_ev":
                if not isinstance(value, (list, tuple)) or not all(
                        isinstance(w, (list, tuple)) and len(w) == 2 for w in value):
                    raise ValueError(f"{label}: expected a list of [low, high] eV pairs, got "
                                     f"{value!r}")
                windows = tuple((expect_number(lo, label), expect_number(hi, label))
                                for lo, hi in value)
                if any(lo >= hi for lo, hi in windows):
                    raise ValueError(f"{label}: each window needs low < high, got {value!r}")
                values[name] = windows
            elif name in ("z_window", "degenerate_tolerance_ev"):
                values[name] = expect_number(value, label, minimum=0.0)
            else:
                values[name] = expect_int(value, label, minimum=1 if name != "nbands" else 0)
        return cls.from_gw(gw, **values)

    def grid(self) -> GridSpec:
        return GridSpec(n_z=self.n_z, n_xy=self.n_xy, z_window=self.z_window)

    def ground_state(self) -> GWSettings:
        """GW settings carrying this ground state (what `gw_engine.ground_state` takes)."""
        return GWSettings(**{name: getattr(self, name) for name in _GROUND_STATE_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kpts"] = list(self.kpts)
        data["super_state_windows_ev"] = [list(w) for w in self.super_state_windows_ev]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WavefunctionSettings:
        data = dict(data)
        data["kpts"] = tuple(data["kpts"])
        data["super_state_windows_ev"] = tuple(tuple(w) for w in data["super_state_windows_ev"])
        return cls(**data)

    def key_dict(self) -> dict[str, Any]:
        return self.to_dict()


def wavefunction_versions(versions: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**gw_versions(versions),
            "product_format": f"{WAVEFUNCTIONS}-{WAVEFUNCTION_FORMAT}"}


def wavefunction_cache_key(atoms: Atoms, settings: WavefunctionSettings,
                           versions: Mapping[str, str] | None = None) -> str:
    """Content address of the wavefunction product of `atoms` (re-centred as the GW key)."""
    return layer_product_key(WAVEFUNCTIONS, atoms, settings, wavefunction_versions(versions))


def layer_product_key(product: str, atoms: Atoms, settings: Any,
                      versions: Mapping[str, str]) -> str:
    """Content address of the product kind `product` of the layer `atoms` re-centred with
    ``settings.vacuum``: the kind, the structure, ``settings.key_dict()`` and `versions` but
    ASE's (as every kind's key)."""
    versions = dict(versions)
    versions.pop("ase", None)
    payload = {
        "product": product,
        "structure": canonical_structure_hash(layer_with_vacuum(atoms, settings.vacuum)),
        "settings": settings.key_dict(),
        "versions": versions,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass
class WavefunctionProduct:
    """States, density and super states of one material on the `GridSpec` grid, each / max."""

    numbers: np.ndarray
    cell: np.ndarray
    positions: np.ndarray
    kpoints: np.ndarray  # (n_k, 3) irreducible, fractional
    k_weights: np.ndarray  # (n_k,)
    n_ref: int
    k_index: np.ndarray  # (n_states,) into kpoints
    band_index: np.ndarray  # (n_states,) 0-based band
    energies: np.ndarray  # (n_states,) eV
    occupations: np.ndarray  # (n_states,) in [0, 1]
    states: np.ndarray  # (n_states, n_z, n_xy, n_xy) float16, |ψ|² / max
    state_maxima: np.ndarray  # (n_states,) max |ψ|² (Å⁻³) before scaling
    density: np.ndarray  # (n_z, n_xy, n_xy) pseudo density / max
    density_max: float  # e/Å³
    super_states: np.ndarray  # (n_windows, n_z, n_xy, n_xy) / max
    super_maxima: np.ndarray  # (n_windows,)
    z_offsets: np.ndarray  # (n_z,) Å relative to the layer's centre
    energy_reference: float  # eV: mid-gap, or E_F in a metal
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def band_offsets(self) -> np.ndarray:
        return self.band_index - self.n_ref

    def index(self) -> dict[tuple[int, int], int]:
        """(k index, band) -> state row."""
        return {(int(k), int(n)): i for i, (k, n) in enumerate(zip(self.k_index,
                                                                    self.band_index,
                                                                    strict=True))}

    def save(self, path: Path) -> None:
        write_product_file(
            path,
            {
                "numbers": self.numbers.astype(np.int16),
                "cell": self.cell.astype(np.float64),
                "positions": self.positions.astype(np.float64),
                "kpoints": self.kpoints.astype(np.float64),
                "k_weights": self.k_weights.astype(np.float64),
                "n_ref": np.array([self.n_ref], dtype=np.int32),
                "k_index": self.k_index.astype(np.int32),
                "band_index": self.band_index.astype(np.int32),
                "energies": self.energies.astype(np.float64),
                "occupations": self.occupations.astype(np.float64),
                "states": self.states.astype(np.float16),
                "state_maxima": self.state_maxima.astype(np.float64),
                "density": self.density.astype(np.float32),
                "super_states": self.super_states.astype(np.float32),
                "super_maxima": self.super_maxima.astype(np.float64),
                "z_offsets": self.z_offsets.astype(np.float64),
                "scalars": np.array([self.density_max, self.energy_reference], dtype=np.float64),
            },
            self.meta,
            tag=WAVEFUNCTIONS,
        )

    @classmethod
    def load(cls, path: Path) -> WavefunctionProduct:
        """Read a product written by `save`; a damaged or foreign file raises ValueError."""
        with open_product_file(path, "wavefunction product", tag=WAVEFUNCTIONS,
                               one_line=True) as (z, meta):
            density_max, reference = (float(x) for x in z["scalars"])
            product = cls(
                numbers=z["numbers"].astype(int), cell=z["cell"], positions=z["positions"],
                kpoints=z["kpoints"], k_weights=z["k_weights"], n_ref=int(z["n_ref"][0]),
                k_index=z["k_index"].astype(int), band_index=z["band_index"].astype(int),
                energies=z["energies"], occupations=z["occupations"], states=z["states"],
                state_maxima=z["state_maxima"], density=z["density"],
                density_max=density_max, super_states=z["super_states"],
                super_maxima=z["super_maxima"], z_offsets=z["z_offsets"],
                energy_reference=reference, meta=meta,
            )
            if product.states.shape[0] != len(product.band_index):
                raise ValueError(f"{product.states.shape[0]} state grids for "
                                 f"{len(product.band_index)} states")
            return product


def wavefunction_cache(cache):
    """Where wavefunction products live: ``<cache>/gw-wavefunctions/`` (own cache only: they
    are never shipped, so no seed holds them)."""
    from esrepro.dft.cache import DFTCache

    return DFTCache(cache.root / WAVEFUNCTIONS)


def energy_reference(eigenvalues: np.ndarray, n_electrons: float, fermi: float) -> float:
    """Mid-gap of a non-metal on the k-grid, E_F of a metal (`gpaw_engine._band_edges`)."""
    from esrepro.dft.gpaw_engine import _band_edges

    vbm, cbm, gap = _band_edges(eigenvalues, n_electrons, fermi)
    return (vbm + cbm) / 2 if gap > 0 else fermi


def n_bands_needed(atoms: Atoms, settings: WavefunctionSettings, n_ref: int) -> int:
    """Bands converged in the ground state: `settings.nbands`, else 3 n_ref + 16 (a margin;
    `run_wavefunction_export` checks that the top super-state slice is covered)."""
    return settings.nbands or max(3 * n_ref + 16, n_ref + settings.bands_per_side + 8)


def _symmetrized(calc, values: np.ndarray) -> np.ndarray:
    """`values` on GPAW's grid averaged over the crystal's symmetry operations, as GPAW
    symmetrises its density (an IBZ-weighted sum becomes the full-BZ sum)."""
    from gpaw.mpi import serial_comm

    desc = calc.dft.density.nt_sR.desc.new(comm=serial_comm, dtype=float)
    array = desc.empty()
    array.data[:] = values
    symmetries = calc.dft.ibzwfs.ibz.symmetries
    array.symmetrize(symmetries.rotation_scc, symmetries.translation_sc)
    return np.array(array.data)


def run_wavefunction_export(atoms: Atoms, settings: WavefunctionSettings,
                            txt: str | Path | None = None) -> WavefunctionProduct:
    """Ground state of `atoms` (no relaxation: pass the GW product's relaxed structure) and the
    grids. Runs in a farm worker; every MPI rank computes the (cheap) grids."""
    from esrepro.dft.band_engine import _Clock
    from esrepro.dft.gw_engine import ground_state, n_reference_bands, state_energies

    clock = _Clock()
    layer = layer_with_vacuum(atoms, settings.vacuum)
    spec = settings.grid()
    n_ref, valence = n_reference_bands(layer, settings.xc)
    first, stop = n_ref - settings.bands_per_side, n_ref + settings.bands_per_side
    if first < 0:
        raise ValueError(f"bands_per_side={settings.bands_per_side} reaches below band 0 "
                         f"({n_ref} bands hold the valence electrons)")
    nbands = n_bands_needed(layer, settings, n_ref)
    calc, iterations = ground_state(layer, settings.ground_state(), nbands, txt)
    kpoints, weights, eps, occ = state_energies(calc)
    eps, occ = eps[:, :nbands], occ[:, :nbands]  # the converged bands only
    reference = energy_reference(eps, valence, float(calc.get_fermi_level()))
    top = reference + max(hi for _, hi in settings.super_state_windows_ev)
    if eps[:, -1].min() < top:
        raise ValueError(f"{nbands} bands reach only {eps[:, -1].min() - reference:.2f} eV above "
                         "the reference at some k-point; the super states need "
                         f"{top - reference:.2f} eV: set nbands higher")
    gs_wall, gs_cpu = clock.lap()

    sampler = GridSampler(calc.dft.density.nt_sR.desc.size, np.array(layer.cell),
                          layer.positions, spec)
    rows, grids, maxima = [], [], []
    window_sums = np.zeros((len(settings.super_state_windows_ev),
                            *calc.dft.density.nt_sR.desc.size))
    for k in range(len(kpoints)):
        k_grids = {}
        for n in range(eps.shape[1]):
            energy = eps[k, n] - reference
            in_slices = [i for i, (lo, hi) in enumerate(settings.super_state_windows_ev)
                         if lo < energy <= hi]
            if not in_slices and not first <= n < stop:
                continue
            u = calc.get_pseudo_wave_function(band=n, kpt=k, periodic=True)  # Å^-3/2
            for i in in_slices:
                window_sums[i] += weights[k] * np.abs(u) ** 2
            if first <= n < stop:
                k_grids[n] = sampler.modulus_squared(u)
        bands = np.arange(first, stop)
        for group in degenerate_groups(eps[k, bands], settings.degenerate_tolerance_ev):
            mean = np.mean([k_grids[bands[i]] for i in group], axis=0)
            for i in group:
                k_grids[bands[i]] = mean
        for n in bands:
            grid, peak = scaled(k_grids[n])
            rows.append((k, n))
            grids.append(grid.astype(np.float16))
            maxima.append(peak)
    density, density_max = scaled(sampler.density(
        np.asarray(calc.get_pseudo_density())))
    supers = [scaled(sampler.density(_symmetrized(calc, s))) for s in window_sums]
    export_wall, export_cpu = clock.lap()
    k_index = np.array([k for k, _ in rows])
    band_index = np.array([n for _, n in rows])
    from esrepro.dft.gpaw_engine import _gpaw_has_fftw

    return WavefunctionProduct(
        numbers=layer.numbers.copy(), cell=np.array(layer.cell),
        positions=layer.positions.copy(), kpoints=kpoints, k_weights=weights, n_ref=n_ref,
        k_index=k_index, band_index=band_index, energies=eps[k_index, band_index],
        occupations=occ[k_index, band_index], states=np.stack(grids),
        state_maxima=np.array(maxima), density=density, density_max=density_max,
        super_states=np.stack([s for s, _ in supers]),
        super_maxima=np.array([m for _, m in supers]), z_offsets=spec.z_offsets(),
        energy_reference=reference,
        meta={
            "product": WAVEFUNCTIONS,
            "grid_shape_gpaw": [int(n) for n in calc.dft.density.nt_sR.desc.size],
            "n_bands_converged": nbands,
            "scf_iterations": iterations,
            "timings": {"ground_state_wall_s": gs_wall, "ground_state_cpu_s": gs_cpu,
                        "export_wall_s": export_wall, "export_cpu_s": export_cpu},
            "versions": wavefunction_versions(),
            "gpaw_fftw": _gpaw_has_fftw(),
            "settings": settings.to_dict(),
            "host": os.uname().nodename,
        },
    )
