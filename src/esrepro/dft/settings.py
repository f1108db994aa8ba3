"""Every setting that changes a DFT product, and the cache key derived from them."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ase import Atoms

from esrepro.checks import (
    expect_bool,
    expect_choice,
    expect_int,
    expect_mapping,
    expect_number,
    expect_str,
)
from esrepro.structures import (
    canonical_structure_hash,
    is_rhombohedral_setting,
    niggli_cell_same_frame,
    orthogonality_defect,
)

#: Bump when the layout or meaning of a cached product changes, so old entries are not reused.
#: 2: m-resolved projector weights symmetrized over the point group (1 held IBZ-only weights).
PRODUCT_FORMAT = 2


@dataclass(frozen=True)
class DFTSettings:
    """GPAW settings for one ground-state calculation plus the products to extract.

    Anything here is part of the cache key: two calculations with equal settings on the same
    (canonical) structure with the same GPAW and PAW-setup versions give the same product.
    Settings that only affect *how* a result is obtained (parallel layout, time-out) are not.
    """

    mode: str = "pw"
    ecut_ev: float = 450.0
    xc: str = "LDA"
    kpt_density: float = 2.0  # k-points per reciprocal Å (ASE convention), Γ-centred grids
    #: Round grids up to even sizes: odd Γ-centred grids miss the zone boundary (X, L, M, R),
    #: where many band edges lie (Cu3N gap 1.37 eV on 5x5x5 vs 0.21 on 6x6x6; ecalj 0.28).
    kpt_even: bool = True
    smearing: str = "fermi-dirac"
    smearing_width_ev: float = 0.01
    #: Number of bands as a multiple of the occupied bands; empty bands carry the conduction
    #: part of the PDOS (the DOSnp window reaches E_F + 1 Ry).
    nbands_factor: float = 2.0
    min_empty_bands: int = 12
    #: Enough bands to hold every state up to ~E_F + bands_cover_ev at every k-point, from a
    #: free-electron estimate scaled by free_electron_band_scale (0 disables; see count_bands).
    bands_cover_ev: float = 14.0
    free_electron_band_scale: float = 1.2
    #: Bands converged to `eigenstates_tolerance` in the SCF ("occupied", "all", "CBM+<eV>").
    #: Converging every empty band costs many iterations for little change in the PDOS.
    converge_bands: str = "CBM+5.0"
    density_tolerance: float = 1e-4
    eigenstates_tolerance: float = 4e-8
    max_iterations: int = 200
    basis: str = "dzp"  # only used in LCAO mode
    #: Products: PAW-projector weights are kept for bands with eigenvalues in
    #: [E_ref - window_below_ev, E_ref + window_above_ev] (E_ref = VBM for insulators, E_F else).
    window_below_ev: float = 22.0
    window_above_ev: float = 15.0
    #: k-point density of a non-self-consistent step on the converged SCF density, from which
    #: every product (eigenvalues, weights, E_F, band edges) is then taken; 0 = the SCF's own
    #: k-points. The DOS of small cells needs far more k-points than their density does.
    dos_kpt_density: float = 0.0
    #: Plane-wave mode: compute on the Niggli-reduced cell (same crystal, frame and atom order)
    #: when that divides the cell's orthogonality defect by more than this factor; 0 = never.
    #: A skewed primitive cell inflates the FFT grid and the k-mesh: Br2Cs2F2 (body-centred
    #: tetragonal, defect 6.1) took 564 s on its MP cell and 118 s on its Niggli cell, same
    #: gap. Rhombohedral settings run there with point-group symmetry off (`NIGGLI_NO_POINT_GROUP`).
    #: Only the structures it moves carry it in their cache key (`applies_cell_reduction`).
    reduce_skewed_cells: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any] | None, source: str = "params.yaml dft.settings"
    ) -> DFTSettings:
        """Build settings from the `dft.settings` block of params.yaml, validating every value.

        Unknown keys and bad values are errors naming ``<source>.<key>``, raised here rather
        than in a worker per material (where each would be recorded as that material's DFT
        failure). `source` says where the block came from, for callers that merge overrides.
        Values are coerced to the declared types, so `ecut_ev: 350` in YAML hashes like 350.0
        (and `1e-4`, a string to PyYAML, like 1.0e-4): valid params keep their cache keys.
        """
        if not isinstance(params, Mapping):
            raise ValueError(
                f"{source}: expected a mapping of DFT settings, got {params!r} "
                "(use {} for the defaults)"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"unknown DFT setting(s) {sorted(unknown, key=str)} in {source}; "
                f"known: {sorted(known)}"
            )
        coerced = {
            name: _coerce_setting(name, value, f"{source}.{name}") for name, value in params.items()
        }
        return cls(**coerced)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the settings added later that are at their neutral default,
        so products cached before such a setting existed keep their keys."""
        defaults = DFTSettings()
        return {
            k: v for k, v in asdict(self).items()
            if not (k in ADDED_SETTINGS and v == getattr(defaults, k))
        }


#: Settings added after products were cached: hashed only when they differ from their default
#: (see :meth:`DFTSettings.key_dict`).
ADDED_SETTINGS: frozenset[str] = frozenset({"dos_kpt_density", "reduce_skewed_cells"})

#: Modes `esrepro.dft.gpaw_engine.build_calculator` knows how to set up.
MODES: tuple[str, ...] = ("pw", "lcao")
#: GPAW occupation functions the engine can use: it always passes a width, which GPAW's
#: tetrahedron methods and fixed occupations refuse (and a product needs a Fermi level).
SMEARINGS: tuple[str, ...] = ("fermi-dirac", "marzari-vanderbilt", "methfessel-paxton")
#: `converge_bands` forms that reach GPAW as it expects them (the setting is a string, so
#: GPAW's integer band counts are not among them): "occupied", "all", "CBM+<eV>" with a
#: non-negative float, as GPAW parses it (`float(converge_bands[4:])`).
CONVERGE_BANDS = re.compile(r"occupied|all|CBM\+(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

#: GPAW keywords `esrepro.dft.gpaw_engine.build_calculator` passes itself; `extra` may add
#: or override any other (e.g. `h`, `basis`, `symmetry`), these would be passed twice.
ENGINE_KEYWORDS: tuple[str, ...] = (
    "mode", "xc", "kpts", "occupations", "nbands", "convergence", "maxiter", "txt",
)

#: Lower bounds of the numeric settings: (minimum, whether the minimum itself is allowed).
#: Zero is allowed only where it means "off" (see the field comments of DFTSettings).
_NUMBER_BOUNDS: dict[str, tuple[float, bool]] = {
    "ecut_ev": (0.0, False),
    "kpt_density": (0.0, False),
    "smearing_width_ev": (0.0, False),
    "nbands_factor": (0.0, False),
    "min_empty_bands": (0, True),
    "bands_cover_ev": (0.0, True),
    "free_electron_band_scale": (0.0, True),
    "density_tolerance": (0.0, False),
    "eigenstates_tolerance": (0.0, False),
    "max_iterations": (1, True),
    "window_below_ev": (0.0, True),
    "window_above_ev": (0.0, True),
    "dos_kpt_density": (0.0, True),
    "reduce_skewed_cells": (0.0, True),
}


@lru_cache(maxsize=64)
def _xc_error(name: str) -> str | None:
    """Why GPAW refuses the functional `name` (None if it takes it or GPAW is absent here).

    Constructing GPAW's XC object is a name lookup (its own table, then libxc), milliseconds,
    no calculation; it knows every name a calculation accepts ("LDA", "PBE", "HSE06",
    "GGA_X_PBE+GGA_C_PBE", ...) and refuses "LDAA" or "pbe".
    """
    try:
        from gpaw.xc import XC
    except ImportError:  # no GPAW in this environment: the workers will say
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # libxc build notes on meta-GGAs, irrelevant here
            XC(name)
    except Exception as err:  # noqa: BLE001 - GPAW raises NameError, KeyError, IndexError ...
        return f"{type(err).__name__}: {err}"
    return None


def _coerce_setting(name: str, value: Any, label: str) -> Any:
    """`value` of setting `name` checked and converted to its declared type (errors name `label`).

    Conversions are the ones `from_params` always made (float(), int()), so every value that
    was valid before hashes as before.
    """
    if name == "mode":
        return expect_choice(value, label, MODES)
    if name == "smearing":
        return expect_choice(value, label, SMEARINGS)
    if name == "xc":
        xc = expect_str(value, label)
        error = _xc_error(xc)
        if error:
            raise ValueError(f"{label}: GPAW does not know the functional {xc!r} ({error})")
        return xc
    if name == "converge_bands":
        if not isinstance(value, str) or not CONVERGE_BANDS.fullmatch(value):
            raise ValueError(
                f"{label}: expected 'occupied', 'all' or 'CBM+<eV>' (e.g. 'CBM+5.0'), got {value!r}"
            )
        return value
    default = DFTSettings.__dataclass_fields__[name].default
    if name == "extra":
        extra = expect_mapping(value, label)
        clashes = sorted(set(extra) & set(ENGINE_KEYWORDS))
        if clashes:
            raise ValueError(
                f"{label}: {clashes} are set by the engine from the other settings "
                "(GPAW would get them twice); use those settings instead"
            )
        return extra
    if isinstance(default, bool):
        return expect_bool(value, label)
    if isinstance(default, str):
        return expect_str(value, label)
    minimum, inclusive = _NUMBER_BOUNDS.get(name, (None, True))
    if isinstance(default, int):
        return expect_int(value, label, minimum=None if minimum is None else int(minimum))
    if isinstance(default, float):
        return expect_number(value, label, minimum=minimum, inclusive=inclusive)
    return value


#: `cell_reduction` outcomes that move a structure to its Niggli cell.
NIGGLI = "niggli"
#: ... with point-group symmetry off: a rhombohedral setting (a = b = c, alpha = beta = gamma)
#: has vectors the 3-fold axis permutes; on its Niggli cell GPAW keeps the point group only by
#: symmetrizing the real-space grid to equal sizes along short and long vectors (mp-541912:
#: (18,18,54) -> (54,54,54)), which made those runs no faster (CuGaO2 26 vs 38 s). With the
#: point group off (time reversal kept) the grid stays small, at the price of more k-points;
#: the PDOS is a k-sum and does not change. Measured, CPU s on the input cell -> Niggli cell
#: without point group, gaps within 2.2 meV: mp-10618 InLiSe2 (defect ratio 3.1) 20.9 -> 13.2,
#: mp-551456 (5.3) 138 -> 70, mp-541912 (8.1) 121 -> 44.
NIGGLI_NO_POINT_GROUP = "niggli, no point group"


def cell_reduction(atoms: Atoms, settings: DFTSettings) -> str | None:
    """Whether `settings.reduce_skewed_cells` moves this structure to its Niggli cell.

    Returns None (the input cell), :data:`NIGGLI`, or :data:`NIGGLI_NO_POINT_GROUP` for a
    rhombohedral setting. LCAO mode always runs on the Niggli cell (its real-space grids refuse
    skewed cells; see `esrepro.dft.gpaw_engine.run_gpaw`), so the setting concerns plane-wave
    mode only.
    """
    if settings.mode != "pw" or settings.reduce_skewed_cells <= 0:
        return None
    reduced = niggli_cell_same_frame(atoms)
    ratio = orthogonality_defect(atoms.cell.array) / orthogonality_defect(reduced.cell.array)
    if ratio <= settings.reduce_skewed_cells:
        return None
    return NIGGLI_NO_POINT_GROUP if is_rhombohedral_setting(atoms) else NIGGLI


def applies_cell_reduction(atoms: Atoms, settings: DFTSettings) -> bool:
    """Whether the settings move this structure to its Niggli cell (see `cell_reduction`)."""
    return cell_reduction(atoms, settings) is not None


@lru_cache(maxsize=1)
def code_versions() -> dict[str, str]:
    """Versions of the codes whose output a cached product depends on."""
    versions = {"product_format": str(PRODUCT_FORMAT)}
    for package in ("gpaw", "gpaw-data", "ase"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "absent"
    return versions


def cache_key(atoms: Atoms, settings: DFTSettings, versions: dict[str, str] | None = None) -> str:
    """Content address of the product of `settings` applied to `atoms`.

    ASE's minor version is deliberately excluded: it does not change GPAW results.
    """
    versions = dict(versions or code_versions())
    versions.pop("ase", None)
    key_settings = settings.key_dict()
    if not applies_cell_reduction(atoms, settings):
        # The calculation is the one run without the setting: keep that key.
        key_settings.pop("reduce_skewed_cells", None)
    payload = {
        "structure": canonical_structure_hash(atoms),
        "settings": key_settings,
        "versions": versions,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
