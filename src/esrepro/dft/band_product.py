"""The band-structure product of the DFT engine: settings, cache key and file format.

A second product kind beside the ground-state product (`esrepro.dft.product`): a PBE SCF on a
k-grid, then a fixed-density (non-self-consistent) run on the k-points of the unique segments
of the material's continuous Latimer–Munro path (`esrepro.kpath`), converging only the bands
around the highest occupied band (HOB). Its cache keys are its own: the key payload names the
product kind, so no band key can equal a ground-state key, and the ground-state keys
(`esrepro.dft.settings.cache_key`) are untouched. Only products are stored: energies, the
path layout, occupations on the SCF grid and timings (no wavefunctions, no GPAW logs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from esrepro.checks import expect_int, expect_mapping, expect_number
from esrepro.dft.product_file import open_product_file, write_product_file
from esrepro.dft.settings import DFTSettings, code_versions
from esrepro.kpath import ContinuousKPath
from esrepro.structures import canonical_structure_hash

#: Name of this product kind (in cache keys, task files, failure records and product files).
BANDS = "bands"
#: Bump when the layout or meaning of a band product changes.
BAND_FORMAT = 1

#: SCF defaults of the band product where they differ from `DFTSettings`' (the LDA DOS
#: product's): PBE as Materials Project's band structures; only the occupied bands and a few
#: empty ones (the density needs no more; the path run has its own band count).
BAND_SCF_DEFAULTS: dict[str, Any] = {
    "xc": "PBE",
    "nbands_factor": 1.0,
    "min_empty_bands": 8,
    "bands_cover_ev": 0.0,
    "converge_bands": "occupied",
}


def _default_scf() -> DFTSettings:
    return DFTSettings(**BAND_SCF_DEFAULTS)


@dataclass(frozen=True)
class BandSettings:
    """Everything that changes a band product (all of it is in the cache key)."""

    scf: DFTSettings = field(default_factory=_default_scf)
    #: k-points per Å⁻¹ (2π convention) along each unique path segment, ends included.
    path_kpt_density: float = 20.0
    #: Bands kept: HOB - bands_below ... HOB + bands_above (6 for the Bandformer paper).
    bands_below: int = 2
    bands_above: int = 3
    #: Extra bands in the path run that are not converged: the eigensolver converges the top
    #: wanted band much faster with a few bands above it.
    buffer_bands: int = 4
    #: Eigenstate residual (eV² per electron) the path run converges its bands to; GPAW's
    #: default for SCFs (see docs/notes/bandformer-dft.md for what looser values change).
    path_eigenstates_tolerance: float = 4e-8
    #: spglib tolerance (Å) of the Latimer–Munro path's symmetry analysis.
    symprec: float = 0.01

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any] | None, source: str = "params.yaml bands.dft"
    ) -> BandSettings:
        """Settings from a params block: the fields above, `scf` holding overrides of
        `BAND_SCF_DEFAULTS` (any `DFTSettings` key). Unknown keys and bad values are errors
        naming ``<source>.<key>``."""
        params = expect_mapping(params, source) or {}
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"unknown band setting(s) {sorted(unknown, key=str)} in {source}; "
                f"known: {sorted(known)}"
            )
        values: dict[str, Any] = {}
        for name, value in params.items():
            label = f"{source}.{name}"
            if name == "scf":
                overrides = expect_mapping(value, label) or {}
                values[name] = DFTSettings.from_params(
                    {**BAND_SCF_DEFAULTS, **overrides}, source=label
                )
            elif name in ("path_kpt_density", "symprec", "path_eigenstates_tolerance"):
                values[name] = expect_number(value, label, minimum=0.0)
            else:
                values[name] = expect_int(value, label, minimum=0)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse SCF settings the band run cannot honour (errors say which)."""
        if self.scf.mode != "pw":
            raise ValueError(f"band products need plane-wave mode, got scf.mode={self.scf.mode!r}")
        if self.scf.reduce_skewed_cells or self.scf.dos_kpt_density:
            # The path's fractional k-points belong to the input cell; a Niggli cell or a
            # second non-SCF step of the ground-state engine would not match them.
            raise ValueError("band products run on the input cell: scf.reduce_skewed_cells and "
                             "scf.dos_kpt_density must be 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BandSettings:
        """Inverse of `to_dict` (task files of the farm)."""
        return cls(**{**data, "scf": DFTSettings(**data["scf"])})

    def key_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scf": self.scf.key_dict()}


def band_versions(versions: Mapping[str, str] | None = None) -> dict[str, str]:
    """Code versions of a band product: GPAW's and gpaw-data's, and this product's format."""
    return {**dict(versions or code_versions()), "product_format": f"{BANDS}-{BAND_FORMAT}"}


def band_cache_key(
    atoms: Atoms, settings: BandSettings, versions: Mapping[str, str] | None = None
) -> str:
    """Content address of the band product of `atoms` (the payload names the product kind).

    The cell enters through the canonical structure hash, and with it the k-path, whose
    fractional coordinates belong to that cell. ASE's version is excluded as for ground states.
    """
    versions = band_versions(versions)
    versions.pop("ase", None)
    payload = {
        "product": BANDS,
        "structure": canonical_structure_hash(atoms),
        "settings": settings.key_dict(),
        "versions": versions,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass
class BandProduct:
    """Bands HOB-bands_below ... HOB+bands_above on the unique segments of a continuous path.

    Energies are absolute eV of the SCF's potential. Band indices are 0-based over all bands of
    the calculation: `eigenvalues[:, j]` is band ``band_start + j``; `hob` is the highest band
    whose occupation (normalised to 1) exceeds 0.5 at some SCF k-point.
    """

    numbers: np.ndarray  # (n_atoms,)
    cell: np.ndarray  # (3, 3) Å, the cell the path's fractional k-points belong to
    positions: np.ndarray  # (n_atoms, 3) Å
    kpoints: np.ndarray  # (n_k, 3) fractional, the unique segments one after the other
    segment_offsets: np.ndarray  # (n_segments + 1,) segment i is kpoints[o[i]:o[i+1]]
    eigenvalues: np.ndarray  # (n_k, n_kept) eV
    band_start: int
    hob: int
    fermi_level: float  # of the SCF
    n_electrons: float
    scf_eigenvalues: np.ndarray  # (n_k_scf, n_kept) eV on the SCF's IBZ k-points
    scf_occupations: np.ndarray  # (n_k_scf, n_kept) in [0, 1]
    scf_k_weights: np.ndarray  # (n_k_scf,) summing to 1
    kpath: ContinuousKPath
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def band_stop(self) -> int:
        return self.band_start + self.eigenvalues.shape[1]

    def segment_eigenvalues(self) -> list[np.ndarray]:
        """Eigenvalues (n_k_i, n_kept) of each unique segment, in `kpath.segments` order."""
        o = self.segment_offsets
        return [self.eigenvalues[o[i]:o[i + 1]] for i in range(len(o) - 1)]

    def segment_kpoints(self) -> list[np.ndarray]:
        o = self.segment_offsets
        return [self.kpoints[o[i]:o[i + 1]] for i in range(len(o) - 1)]

    def save(self, path: Path) -> None:
        """Write atomically (temporary file + rename), as `DFTProduct.save`."""
        write_product_file(
            path,
            {
                "numbers": self.numbers.astype(np.int16),
                "cell": self.cell.astype(np.float64),
                "positions": self.positions.astype(np.float64),
                "kpoints": self.kpoints.astype(np.float64),
                "segment_offsets": self.segment_offsets.astype(np.int32),
                "eigenvalues": self.eigenvalues.astype(np.float64),
                "bands": np.array([self.band_start, self.hob], dtype=np.int32),
                "scalars": np.array([self.fermi_level, self.n_electrons], dtype=np.float64),
                "scf_eigenvalues": self.scf_eigenvalues.astype(np.float64),
                "scf_occupations": self.scf_occupations.astype(np.float32),
                "scf_k_weights": self.scf_k_weights.astype(np.float64),
            },
            {**self.meta, "kpath": self.kpath.to_json()},
            tag=BANDS,
        )

    @classmethod
    def load(cls, path: Path) -> BandProduct:
        """Read a product written by `save`; a damaged or foreign file raises ValueError."""
        with open_product_file(path, "band product", tag=BANDS) as (z, meta):
            kpath = ContinuousKPath.from_json(meta.pop("kpath"))
            band_start, hob = (int(x) for x in z["bands"])
            fermi, n_electrons = (float(x) for x in z["scalars"])
            return cls(
                numbers=z["numbers"].astype(int),
                cell=z["cell"],
                positions=z["positions"],
                kpoints=z["kpoints"],
                segment_offsets=z["segment_offsets"].astype(int),
                eigenvalues=z["eigenvalues"],
                band_start=band_start,
                hob=hob,
                fermi_level=fermi,
                n_electrons=n_electrons,
                scf_eigenvalues=z["scf_eigenvalues"],
                scf_occupations=z["scf_occupations"],
                scf_k_weights=z["scf_k_weights"],
                kpath=kpath,
                meta=meta,
            )
