"""The G0W0 product of the DFT engine: settings, cache key and file format (VAE-GW's labels).

A third product kind beside the ground-state and band products: for a 2D monolayer, the
in-plane lattice relaxed with GPAW PBE, a PBE ground state on a Γ-centred 6×6×1 k-grid, and
G0W0 (GPAW, full frequency, 2D Coulomb truncation, analytic q→0 correction) for a window of
bands around the gap on the irreducible k-points of that grid. Its cache keys are its own (the
payload names the product kind) and hold GPAW's and gpaw-data's versions like every kind. Only
products are stored: the relaxed structure, energies, renormalisation factors, occupations,
orbital characters and timings; no wavefunctions (`esrepro.dft.wavefunction_product` makes
those locally from a regenerated ground state) and no GPAW logs.

Band indices: `n_ref` = floor(valence electrons / 2), the number of bands a non-metal fills.
The window is bands ``n_ref - bands_below ... n_ref + bands_above - 1``; a state's band offset
is ``n - n_ref``: -1 is the highest valence band, 0 the lowest conduction band (in a metal the
same count of the electrons, which then no longer separates occupied from empty).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from esrepro.checks import expect_bool, expect_choice, expect_int, expect_mapping, expect_number
from esrepro.dft.product_file import open_product_file, write_product_file
from esrepro.dft.settings import _xc_error, code_versions
from esrepro.structures import canonical_structure_hash

#: Name of this product kind (in cache keys, task files, failure records and product files).
GW = "gw"
#: Bump when the layout or meaning of a GW product changes.
GW_FORMAT = 1
#: Orbital-character channels of `GWProduct.orbital_character` (l = 0..3).
ORBITALS: tuple[str, ...] = ("s", "p", "d", "f")


@dataclass(frozen=True)
class GWSettings:
    """Everything that changes a GW product (all of it is in the cache key).

    Defaults are the cheap machine-scale recipe measured in docs/notes/vae-gw-dft.md; C2DB's
    (200 eV extrapolated, 8 bands below and 4 above) costs hours per material on 2 cores.
    """

    # Ground state (also the one the wavefunction export regenerates).
    xc: str = "PBE"
    ecut_ev: float = 400.0
    #: Γ-centred Monkhorst-Pack grid; the GW labels sit on its irreducible k-points.
    kpts: tuple[int, int, int] = (6, 6, 1)
    smearing_width_ev: float = 0.05  # Fermi-Dirac, as C2DB's ground states
    density_tolerance: float = 1e-5
    eigenstates_tolerance: float = 4e-8
    max_iterations: int = 200
    #: Empty space on each side of the layer (Å, ASE's `center(vacuum)` convention). The
    #: engine re-centres every input with it, so only this value, not the input's, matters.
    vacuum: float = 7.5
    # In-plane relaxation (PBE, same ground-state settings): cell (a, b, γ) and positions.
    relax: bool = True
    relax_fmax: float = 0.02  # eV/Å on atoms and on the cell's in-plane stress components
    relax_max_steps: int = 60
    # G0W0.
    #: Plane-wave cut-off of the response (eV); with `ecut_extrapolation` the largest of them.
    gw_ecut_ev: float = 25.0
    #: Cut-offs (eV) whose self-energies are extrapolated linearly in ecut^-3/2 to infinity
    #: (GPAW's ecut_extrapolation); () for none. The largest must equal `gw_ecut_ev`.
    ecut_extrapolation: tuple[float, ...] = ()
    #: Bands the self-energy sums over; 0: GPAW's default from the cut-off (about the number of
    #: plane waves, `esrepro.dft.gw_engine.gw_nbands`). GPAW refuses it with extrapolation.
    gw_nbands: int = 0
    bands_below: int = 4  # valence bands in the window
    bands_above: int = 4  # conduction bands in the window
    truncation: str = "2D"
    q0_correction: bool = True
    #: GPAW's nonlinear frequency grid of the full-frequency (not plasmon-pole) calculation.
    domega0_ev: float = 0.025
    omega2_ev: float = 10.0
    eta_ev: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)  # further G0W0 keywords

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any] | None, source: str = "params.yaml vae_gw.dft"
    ) -> GWSettings:
        """Settings from a params block; unknown keys and bad values are errors naming
        ``<source>.<key>``. Numbers are coerced to their declared types, so `ecut_ev: 400`
        hashes like 400.0."""
        params = expect_mapping(params, source) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"unknown GW setting(s) {sorted(unknown, key=str)} in {source}; "
                f"known: {sorted(known)}"
            )
        values: dict[str, Any] = {}
        defaults = cls()
        for name, value in params.items():
            label = f"{source}.{name}"
            default = getattr(defaults, name)
            if name == "xc":
                error = _xc_error(str(value))
                if not isinstance(value, str) or error:
                    raise ValueError(f"{label}: GPAW does not know the functional {value!r}")
                values[name] = value
            elif name == "truncation":
                values[name] = expect_choice(value, label, ("2D",))
            elif name == "kpts":
                if not isinstance(value, (list, tuple)) or len(value) != 3:
                    raise ValueError(f"{label}: expected three k-point counts, got {value!r}")
                values[name] = tuple(expect_int(v, f"{label}[{i}]", minimum=1)
                                     for i, v in enumerate(value))
            elif name == "ecut_extrapolation":
                if not isinstance(value, (list, tuple)):
                    raise ValueError(f"{label}: expected a list of cut-offs (eV), got {value!r}")
                values[name] = tuple(expect_number(v, f"{label}[{i}]", minimum=0.0)
                                     for i, v in enumerate(value))
            elif name == "extra":
                values[name] = expect_mapping(value, label)
            elif isinstance(default, bool):
                values[name] = expect_bool(value, label)
            elif isinstance(default, int):
                values[name] = expect_int(value, label, minimum=0)
            else:
                values[name] = expect_number(value, label, minimum=0.0)
        settings = cls(**values)
        settings.check(source)
        return settings

    def check(self, source: str = "GW settings") -> None:
        """Refuse combinations GPAW would reject late, in a worker (errors say which)."""
        if self.ecut_extrapolation and not np.isclose(max(self.ecut_extrapolation),
                                                      self.gw_ecut_ev):
            raise ValueError(
                f"{source}.ecut_extrapolation: its largest cut-off must equal gw_ecut_ev "
                f"({self.gw_ecut_ev:g} eV), got {list(self.ecut_extrapolation)}"
            )
        if self.ecut_extrapolation and len(self.ecut_extrapolation) < 2:
            raise ValueError(f"{source}.ecut_extrapolation: extrapolating needs at least two "
                             f"cut-offs, got {list(self.ecut_extrapolation)}")
        if self.ecut_extrapolation and self.gw_nbands:
            raise ValueError(f"{source}: gw_nbands cannot be set with ecut_extrapolation (GPAW "
                             "takes the band count from the cut-offs then)")
        if self.bands_below < 1 or self.bands_above < 1:
            raise ValueError(f"{source}: the band window needs at least one valence and one "
                             "conduction band (bands_below, bands_above >= 1)")
        if self.vacuum <= 0 or self.gw_ecut_ev <= 0 or self.ecut_ev <= 0:
            raise ValueError(f"{source}: vacuum, ecut_ev and gw_ecut_ev must be positive")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kpts"] = list(self.kpts)
        data["ecut_extrapolation"] = list(self.ecut_extrapolation)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GWSettings:
        """Inverse of `to_dict` (task files of the farm, product meta)."""
        data = dict(data)
        data["kpts"] = tuple(data["kpts"])
        data["ecut_extrapolation"] = tuple(data["ecut_extrapolation"])
        return cls(**data)

    def key_dict(self) -> dict[str, Any]:
        return self.to_dict()

    def ground_state_dict(self) -> dict[str, Any]:
        """The settings of the ground state alone (the wavefunction export's SCF)."""
        names = ("xc", "ecut_ev", "kpts", "smearing_width_ev", "density_tolerance",
                 "eigenstates_tolerance", "max_iterations")
        return {name: self.to_dict()[name] for name in names}


def gw_versions(versions: Mapping[str, str] | None = None) -> dict[str, str]:
    """Code versions of a GW product: GPAW's and gpaw-data's, and this product's format."""
    return {**dict(versions or code_versions()), "product_format": f"{GW}-{GW_FORMAT}"}


def layer_with_vacuum(atoms: Atoms, vacuum: float) -> Atoms:
    """A copy of the monolayer `atoms`, periodic in-plane only, with `vacuum` Å on each side.

    The first two cell vectors must lie in the xy plane and the third be along z (ASE's 2D
    builders and C2DB's cells are so); anything else is refused naming the cell.
    """
    cell = np.asarray(atoms.cell)
    if not (np.allclose(cell[:2, 2], 0.0, atol=1e-8) and np.allclose(cell[2, :2], 0.0, atol=1e-8)):
        raise ValueError(f"not a 2D layer cell (in-plane vectors in xy, the third along z): "
                         f"{cell.round(4).tolist()}")
    layer = atoms.copy()
    layer.calc = None
    layer.pbc = (True, True, False)
    layer.center(vacuum, axis=2)
    return layer


def gw_cache_key(atoms: Atoms, settings: GWSettings,
                 versions: Mapping[str, str] | None = None) -> str:
    """Content address of the GW product of `atoms` (the payload names the product kind).

    The structure enters after re-centring with ``settings.vacuum`` (so the input's own vacuum
    does not split keys); ASE's version is excluded as for the other kinds.
    """
    versions = gw_versions(versions)
    versions.pop("ase", None)
    payload = {
        "product": GW,
        "structure": canonical_structure_hash(layer_with_vacuum(atoms, settings.vacuum)),
        "settings": settings.key_dict(),
        "versions": versions,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


#: Per-state arrays of a GW product: (n_k, n_window) each, except orbital_character.
_STATE_ARRAYS = ("e_dft", "e_gw", "z", "occupations", "sigma", "vxc", "exx")


@dataclass
class GWProduct:
    """G0W0 quasiparticle energies of a window of bands on the irreducible k-points.

    Energies are absolute eV of GPAW's potential zero (GPAW's G0W0 `eps` and `qp`);
    `vacuum_level` is the planar-average electrostatic potential at the cell's top face, far
    from the layer, for aligning materials. The structure is the relaxed one; `meta["input"]`
    holds the cell the relaxation started from.
    """

    numbers: np.ndarray  # (n_atoms,)
    cell: np.ndarray  # (3, 3) Å, relaxed, with `settings.vacuum` on each side
    positions: np.ndarray  # (n_atoms, 3) Å, relaxed
    kpoints: np.ndarray  # (n_k, 3) fractional, the irreducible k-points of the grid
    k_weights: np.ndarray  # (n_k,) summing to 1
    band_start: int  # first band of the window (0-based over all bands)
    n_ref: int  # floor(valence electrons / 2)
    e_dft: np.ndarray  # (n_k, n_window) eV, Kohn-Sham eigenvalues
    e_gw: np.ndarray  # (n_k, n_window) eV, G0W0 quasiparticle energies
    z: np.ndarray  # (n_k, n_window) renormalisation factors
    occupations: np.ndarray  # (n_k, n_window) in [0, 1]
    sigma: np.ndarray  # (n_k, n_window) eV, correlation self-energy (extrapolated if asked)
    vxc: np.ndarray  # (n_k, n_window) eV
    exx: np.ndarray  # (n_k, n_window) eV
    orbital_character: np.ndarray  # (n_k, n_window, 4) s, p, d, f fractions, summing to 1
    fermi_level: float
    n_electrons: float
    gap_dft: float  # eV on the k-grid; 0 for a metal
    gap_gw: float  # eV on the k-grid; 0 for a metal
    vacuum_level: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def band_stop(self) -> int:
        return self.band_start + self.e_dft.shape[1]

    @property
    def is_metal(self) -> bool:
        return bool(self.meta.get("is_metal", self.gap_dft <= 0))

    @property
    def delta_gw(self) -> np.ndarray:
        """E_GW - E_DFT per state, (n_k, n_window) eV: the learning target."""
        return self.e_gw - self.e_dft

    @property
    def band_offsets(self) -> np.ndarray:
        """n - n_ref of each window band: -1 the highest valence band, 0 the lowest empty."""
        return np.arange(self.band_start, self.band_stop) - self.n_ref

    @property
    def lattice_constant(self) -> float:
        """|a1| of the relaxed cell, Å."""
        return float(np.linalg.norm(self.cell[0]))

    def settings(self) -> GWSettings:
        return GWSettings.from_dict(self.meta["settings"])

    def atoms(self) -> Atoms:
        """The relaxed structure (the wavefunction export regenerates its ground state)."""
        return Atoms(numbers=self.numbers, cell=self.cell, positions=self.positions,
                     pbc=(True, True, False))

    def save(self, path: Path) -> None:
        """Write atomically (temporary file + rename), as the other products."""
        write_product_file(
            path,
            {
                "numbers": self.numbers.astype(np.int16),
                "cell": self.cell.astype(np.float64),
                "positions": self.positions.astype(np.float64),
                "kpoints": self.kpoints.astype(np.float64),
                "k_weights": self.k_weights.astype(np.float64),
                "bands": np.array([self.band_start, self.n_ref], dtype=np.int32),
                **{name: getattr(self, name).astype(np.float64) for name in _STATE_ARRAYS},
                "orbital_character": self.orbital_character.astype(np.float32),
                "scalars": np.array([self.fermi_level, self.n_electrons, self.gap_dft,
                                     self.gap_gw, self.vacuum_level], dtype=np.float64),
            },
            self.meta,
            tag=GW,
        )

    @classmethod
    def load(cls, path: Path) -> GWProduct:
        """Read a product written by `save`; a damaged or foreign file raises ValueError with one
        line naming the file."""
        with open_product_file(path, "GW product", tag=GW, one_line=True) as (z, meta):
            band_start, n_ref = (int(x) for x in z["bands"])
            fermi, n_electrons, gap_dft, gap_gw, vacuum = (float(x) for x in z["scalars"])
            product = cls(
                numbers=z["numbers"].astype(int),
                cell=z["cell"],
                positions=z["positions"],
                kpoints=z["kpoints"],
                k_weights=z["k_weights"],
                band_start=band_start,
                n_ref=n_ref,
                **{name: z[name] for name in _STATE_ARRAYS},
                orbital_character=z["orbital_character"],
                fermi_level=fermi,
                n_electrons=n_electrons,
                gap_dft=gap_dft,
                gap_gw=gap_gw,
                vacuum_level=vacuum,
                meta=meta,
            )
            shape = (len(product.kpoints), product.e_dft.shape[1])
            bad = [n for n in _STATE_ARRAYS if getattr(product, n).shape != shape]
            if bad or product.orbital_character.shape != (*shape, len(ORBITALS)):
                raise ValueError(f"arrays {bad or ['orbital_character']} do not have the "
                                 f"shape {shape} of (k-points, window bands)")
            return product


def gw_cache(cache):
    """Where GW products live: ``<cache>/gw/`` and the ``gw/`` folders of the seeds (a shipped
    GW archive unpacks there), apart from the other kinds (`esrepro.dft.stage.band_cache`)."""
    from esrepro.dft.cache import DFTCache

    return DFTCache(cache.root / GW, [s / GW for s in cache.seeds if (s / GW).is_dir()])
