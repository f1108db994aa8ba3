"""DOSnp dataset: the featurized PDOS file, per-material samples, batching and splits.

The features file is written by the featurize stage with ``torch.save`` and holds a dict:

=================  ==========================  ============================================
key                type / shape                meaning
=================  ==========================  ============================================
``material_ids``   ``list[str]`` (n)           Materials Project ids
``formulas``       ``list[str]`` (n)           reduced formulas
``pdos``           float16 (total_atoms,16,G)  PDOS, states/eV per atom-channel, G = 1000
``atom_ptr``       int64 (n+1,)                atoms of material i: rows atom_ptr[i]:atom_ptr[i+1]
``lda_gap_table``  float32 (n,)                LDA gap of the paper's table (ecalj), eV
``qsgw_gap``       (n,)                        QSGW gap, eV (the target)
``gpaw_gap``       (n,)                        our GPAW LDA gap, eV
``energy_grid``    (G,)                        eV relative to E_F (VBM for insulators)
``n_atoms``        (n,)                        atoms in the primitive cell
``split``          ``list[str]`` (n)           "train" / "test"
``meta``           dict                        provenance of the featurization
=================  ==========================  ============================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from esrepro.dft.product import N_CHANNELS
from esrepro.training import read_torch_file

REQUIRED_KEYS: tuple[str, ...] = (
    "material_ids",
    "formulas",
    "pdos",
    "atom_ptr",
    "lda_gap_table",
    "qsgw_gap",
    "gpaw_gap",
    "energy_grid",
    "n_atoms",
    "split",
)


def load_features(path: str | Path) -> dict[str, Any]:
    """Load and validate a features file (see module docstring for the schema)."""
    path = Path(path)
    feats = read_torch_file(path)  # a features file is data: it must not be able to run code
    if not isinstance(feats, Mapping):
        raise ValueError(f"{path}: a features file holds a dict, found {type(feats).__name__}")
    validate_features(feats, source=str(path))
    return feats


def validate_features(feats: Mapping[str, Any], source: str = "features") -> None:
    """Check keys and mutually consistent lengths; raise ``ValueError`` naming the problem."""
    missing = [k for k in REQUIRED_KEYS if k not in feats]
    if missing:
        raise ValueError(f"{source}: missing keys {missing}")
    n = len(feats["material_ids"])
    ptr = torch.as_tensor(feats["atom_ptr"])
    pdos = feats["pdos"]
    if not isinstance(pdos, torch.Tensor) or pdos.dim() != 3 or pdos.shape[1] != N_CHANNELS:
        shape = tuple(pdos.shape) if isinstance(pdos, torch.Tensor) else type(pdos).__name__
        raise ValueError(
            f"{source}: pdos must be a tensor (total_atoms, {N_CHANNELS}, n_grid); got {shape}"
        )
    if ptr.shape != (n + 1,):
        raise ValueError(f"{source}: atom_ptr has shape {tuple(ptr.shape)}, expected ({n + 1},)")
    if int(ptr[0]) != 0 or int(ptr[-1]) != pdos.shape[0] or bool((ptr[1:] < ptr[:-1]).any()):
        raise ValueError(
            f"{source}: atom_ptr must rise from 0 to the number of PDOS rows ({pdos.shape[0]})"
        )
    if len(feats["energy_grid"]) != pdos.shape[2]:
        raise ValueError(
            f"{source}: energy_grid has {len(feats['energy_grid'])} points, pdos {pdos.shape[2]}"
        )
    for key in ("formulas", "lda_gap_table", "qsgw_gap", "gpaw_gap", "n_atoms", "split"):
        if len(feats[key]) != n:
            raise ValueError(f"{source}: {key} has length {len(feats[key])}, expected {n}")
    if not torch.equal(torch.as_tensor(feats["n_atoms"]).long(), ptr.diff()):
        raise ValueError(f"{source}: n_atoms disagrees with the atom counts atom_ptr gives")
    if not bool(torch.isfinite(pdos).all()):
        raise ValueError(f"{source}: pdos holds NaN or infinite values")
    bad = sorted({s for s in feats["split"]} - {"train", "test"})
    if bad:
        raise ValueError(f"{source}: split labels must be 'train'/'test'; found {bad}")


class PDOSGraphDataset(Dataset):
    """One sample per material: its atoms' PDOS and its band gaps.

    Args:
        features: dict loaded by :func:`load_features`.
        indices: material rows to expose (e.g. the training split); all when ``None``.

    Each item is a dict ``{"pdos": (n_atoms, 16, G) float16, "lda_gap", "qsgw_gap": float,
    "row": int}`` where ``row`` is the material's row in the features file.
    """

    def __init__(self, features: Mapping[str, Any], indices: Sequence[int] | None = None) -> None:
        self.features = features
        self.ptr = torch.as_tensor(features["atom_ptr"], dtype=torch.long)
        n = len(features["material_ids"])
        self.indices = list(range(n)) if indices is None else [int(i) for i in indices]
        self.lda_gap = torch.as_tensor(features["lda_gap_table"], dtype=torch.float32)
        self.qsgw_gap = torch.as_tensor(features["qsgw_gap"], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.indices[i]
        a, b = int(self.ptr[row]), int(self.ptr[row + 1])
        return {
            "pdos": self.features["pdos"][a:b],
            "lda_gap": self.lda_gap[row],
            "qsgw_gap": self.qsgw_gap[row],
            "row": row,
        }


def collate_pdos(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Concatenate the atoms of a list of materials into one batch.

    Returns ``{"pdos": (total_atoms, 16, G) float32, "atom_index": (total_atoms,) long,
    "n_graphs": int, "lda_gap": (B,), "qsgw_gap": (B,), "row": (B,) long}``. PDOS is stored as
    float16 on disk to halve its size and widened here, per batch, so training runs in float32.
    """
    counts = torch.tensor([item["pdos"].shape[0] for item in batch], dtype=torch.long)
    return {
        "pdos": torch.cat([item["pdos"] for item in batch], dim=0).to(torch.float32),
        "atom_index": torch.repeat_interleave(torch.arange(len(batch)), counts),
        "n_graphs": len(batch),
        "lda_gap": torch.stack(
            [torch.as_tensor(item["lda_gap"], dtype=torch.float32) for item in batch]
        ),
        "qsgw_gap": torch.stack(
            [torch.as_tensor(item["qsgw_gap"], dtype=torch.float32) for item in batch]
        ),
        "row": torch.tensor([int(item["row"]) for item in batch], dtype=torch.long),
    }
