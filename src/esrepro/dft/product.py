"""The per-material DFT product: what the cache stores and what paper code consumes.

Stored as one compressed ``.npz`` per material. Projector weights are kept *unbroadened*
(|<p_i|psi_nk>|^2 per atom and real-harmonic channel), so that grids and broadening widths
are featurization parameters: changing them never re-runs DFT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esrepro.dft.product_file import open_product_file, write_product_file

#: Channel order of the 16 PDOS channels: s; p(y,z,x); d(m=-2..2); f(m=-3..3).
CHANNEL_LABELS: tuple[str, ...] = (
    "s",
    "p_y", "p_z", "p_x",
    "d_xy", "d_yz", "d_z2", "d_zx", "d_x2-y2",
    "f_-3", "f_-2", "f_-1", "f_0", "f_1", "f_2", "f_3",
)
N_CHANNELS = len(CHANNEL_LABELS)
#: Angular momentum of each channel, and the first channel of each l.
CHANNEL_L = np.array([0] + [1] * 3 + [2] * 5 + [3] * 7)
L_OFFSET = {0: 0, 1: 1, 2: 4, 3: 9}


@dataclass
class DFTProduct:
    """Ground-state products of one non-spin-polarized calculation (energies in eV)."""

    numbers: np.ndarray  # (n_atoms,) atomic numbers, in the order of the input structure
    cell: np.ndarray  # (3, 3) Å
    positions: np.ndarray  # (n_atoms, 3) Å
    eigenvalues: np.ndarray  # (n_k, n_bands) absolute eV
    k_weights: np.ndarray  # (n_k,) IBZ weights summing to 1
    fermi_level: float
    vbm: float
    cbm: float
    gap: float  # 0 for metals
    n_electrons: float  # valence electrons
    #: (n_atoms, 16, n_k, n_window_bands) float16 weights of bands band_start:band_stop
    projector_weights: np.ndarray
    band_start: int
    band_stop: int
    channel_mask: np.ndarray  # (n_atoms, 16) True where the setup has a bound projector
    meta: dict[str, Any] = field(default_factory=dict)
    #: LCAO mode only: (n_atoms, n_k, n_window_bands) float16 Mulliken weights of bands
    #: band_start:band_stop on each atom's orbitals (they sum to 1 over atoms); None in PW mode.
    atom_weights: np.ndarray | None = None

    @property
    def reference_energy(self) -> float:
        """E_F convention of the features: the VBM for gapped systems, the Fermi level else."""
        return self.vbm if self.gap > 0 else self.fermi_level

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    def window_eigenvalues(self) -> np.ndarray:
        """Eigenvalues (n_k, n_window_bands) matching `projector_weights`."""
        return self.eigenvalues[:, self.band_start:self.band_stop]

    def save(self, path: Path) -> None:
        """Write atomically (temporary file + rename) so an interrupted run leaves no half file."""
        write_product_file(
            path,
            {
                "numbers": self.numbers.astype(np.int16),
                "cell": self.cell.astype(np.float64),
                "positions": self.positions.astype(np.float64),
                "eigenvalues": self.eigenvalues.astype(np.float32),
                "k_weights": self.k_weights.astype(np.float32),
                "scalars": np.array(
                    [self.fermi_level, self.vbm, self.cbm, self.gap, self.n_electrons],
                    dtype=np.float64,
                ),
                "projector_weights": self.projector_weights.astype(np.float16),
                "band_range": np.array([self.band_start, self.band_stop], dtype=np.int32),
                "channel_mask": self.channel_mask.astype(bool),
            },
            self.meta,
            after_meta=(
                None if self.atom_weights is None
                else {"atom_weights": self.atom_weights.astype(np.float16)}
            ),
        )

    @classmethod
    def load(cls, path: Path) -> DFTProduct:
        """Read a product written by `save`; a damaged file raises ValueError naming it."""
        with open_product_file(path, "DFT product") as (z, meta):
            fermi, vbm, cbm, gap, nel = (float(x) for x in z["scalars"])
            start, stop = (int(x) for x in z["band_range"])
            return cls(
                numbers=z["numbers"].astype(int),
                cell=z["cell"],
                positions=z["positions"],
                eigenvalues=z["eigenvalues"],
                k_weights=z["k_weights"],
                fermi_level=fermi,
                vbm=vbm,
                cbm=cbm,
                gap=gap,
                n_electrons=nel,
                projector_weights=z["projector_weights"],
                band_start=start,
                band_stop=stop,
                channel_mask=z["channel_mask"],
                meta=meta,
                atom_weights=z["atom_weights"] if "atom_weights" in z.files else None,
            )


def read_product_meta(path: Path) -> dict[str, Any]:
    """The ``meta`` record of a product file written by `DFTProduct.save`, without its arrays.

    A damaged file raises ValueError naming it, as `DFTProduct.load` does.
    """
    with open_product_file(path, "DFT product") as (_, meta):
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    return meta
