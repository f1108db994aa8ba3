"""Every setting that changes a DFT product, and the cache key derived from them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ase import Atoms

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
    def from_params(cls, params: dict[str, Any]) -> DFTSettings:
        """Build settings from the `dft.settings` block of params.yaml; unknown keys are errors."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"unknown DFT setting(s) {sorted(unknown)} in params.yaml dft.settings; "
                f"known: {sorted(known)}"
            )
        # Coerce to the declared types so that `ecut_ev: 350` in YAML hashes like 350.0.
        defaults = cls()
        coerced = {}
        for name, value in params.items():
            default = getattr(defaults, name)
            if isinstance(default, bool) or isinstance(default, dict):
                coerced[name] = value
            elif isinstance(default, (int, float, str)):
                coerced[name] = type(default)(value)
            else:
                coerced[name] = value
        return cls(**coerced)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the settings added later that are at their neutral default,
        so products cached before such a setting existed keep their keys."""
        defaults = DFTSettings()
        return {k: v for k, v in asdict(self).items() if not (k in ADDED_SETTINGS and v == getattr(defaults, k))}


#: Settings added after products were cached: hashed only when they differ from their default
#: (see :meth:`DFTSettings.key_dict`).
ADDED_SETTINGS: frozenset[str] = frozenset({"dos_kpt_density", "reduce_skewed_cells"})

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
