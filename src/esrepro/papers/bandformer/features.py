"""Bandformer's encoder input: node features and the crystal graph (paper, Methods).

The paper builds the graph from the "12 nearest neighbors within 8 A searching radius" of each
atom and describes atoms by "group number, period number and atomic radius", compared with a
one-hot encoding of the atomic number. Edge features (the Gaussian expansion of the bond
length) are computed inside the model from ``edge_len``, so the dataset stores lengths only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from ase import Atoms
from torch import Tensor

from esrepro.graphs import CrystalGraph, periodic_knn_graph
from esrepro.papers.bandformer.config import NodeFeatures

__all__ = [
    "ELEMENTAL_FEATURES",
    "MAX_Z",
    "NODE_FEATURES",
    "NodeFeatures",
    "crystal_graph",
    "elemental_features",
    "node_feature_dim",
    "node_features",
]

#: Node feature kinds: the paper's ``elemental`` (group, period, radius) or ``onehot`` (Z).
NODE_FEATURES: tuple[str, ...] = ("elemental", "onehot")
#: Column order of the ``elemental`` features, each mapped linearly onto about [-1, 1]: group
#: 1..18, period 1..7 and the atomic radius 0.1..2.6 A (empirical radii: H 0.25, Cs 2.6).
#: Centred inputs: with [0, 1] features the species differ by small offsets on a common mode,
#: and a small network needed about twice the steps to separate them (synthetic test task).
ELEMENTAL_FEATURES: tuple[str, ...] = ("group", "period", "atomic_radius")
_CENTRES = (9.5, 4.0, 1.35)
_HALF_RANGES = (8.5, 3.0, 1.25)
#: Width of the ``onehot`` features: Z = 1..100 (as the public code's species embedding).
MAX_Z = 100


@cache
def _elemental(z: int) -> tuple[float, float, float]:
    from pymatgen.core.periodic_table import Element

    el = Element.from_Z(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for missing data; handled below
        radius = el.atomic_radius
        if radius is None or not math.isfinite(float(radius)):
            # Empirical (Slater) radius; Clementi's calculated one for the noble gases.
            radius = el.atomic_radius_calculated
    if radius is None or not math.isfinite(float(radius)):
        raise ValueError(f"{el.symbol}: no atomic radius in pymatgen (empirical or calculated)")
    # pymatgen puts the lanthanides and actinides in group 3.
    raw = (float(el.group), float(el.row), float(radius))
    scaled = ((v - c) / h for v, c, h in zip(raw, _CENTRES, _HALF_RANGES, strict=True))
    return tuple(scaled)  # type: ignore[return-value]


def elemental_features(numbers: Sequence[int] | np.ndarray) -> Tensor:
    """``(n, 3)`` float32 scaled ``(group, period, atomic radius)`` of atomic numbers
    ``numbers`` (:data:`ELEMENTAL_FEATURES`)."""
    rows = [_elemental(int(z)) for z in np.asarray(numbers).reshape(-1)]
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, len(ELEMENTAL_FEATURES))


def node_feature_dim(kind: NodeFeatures) -> int:
    """Width of the node features of ``kind``."""
    if kind == "elemental":
        return len(ELEMENTAL_FEATURES)
    if kind == "onehot":
        return MAX_Z
    raise ValueError(f"node features {kind!r}: expected one of {NODE_FEATURES}")


def node_features(numbers: Sequence[int] | np.ndarray, kind: NodeFeatures) -> Tensor:
    """``(n, node_feature_dim(kind))`` float32 node features of atomic numbers ``numbers``."""
    z = np.asarray(numbers, dtype=np.int64).reshape(-1)
    if kind == "elemental":
        return elemental_features(z)
    node_feature_dim(kind)  # unknown kind: one clear error
    if z.size and (z.min() < 1 or z.max() > MAX_Z):
        raise ValueError(f"one-hot node features cover Z = 1..{MAX_Z}, got Z = {z.tolist()}")
    x = torch.zeros(z.size, MAX_Z)
    x[torch.arange(z.size), torch.from_numpy(z - 1)] = 1.0
    return x


def crystal_graph(
    atoms: Atoms, k: int = 12, cutoff: float = 8.0, features: NodeFeatures = "elemental"
) -> CrystalGraph:
    """Bandformer's crystal graph: each atom's ``k`` nearest periodic neighbours within a hard
    ``cutoff`` (A), with node features ``x``.

    Neighbours tied with the k-th (within :data:`esrepro.graphs.DEFAULT_TIE_TOL`) are all kept,
    so a symmetric shell is never split by atom order (Si: 4 + 12 = 16 neighbours). The cutoff
    is never exceeded: an atom with fewer than ``k`` neighbours within it keeps those it has,
    and an isolated atom (none within ``cutoff``) has no edges; the model then updates it from
    its own state only (its attention sum is empty). Edges are both directions of every bond.

    Returns a :class:`~esrepro.graphs.CrystalGraph` with ``x`` ``(n, F)``, ``edge_index``
    ``(2, E)``, ``edge_len`` ``(E,)`` (the distances, A), ``edge_vec``, ``image`` and
    ``numbers``.
    """
    graph = periodic_knn_graph(atoms, k=k, cutoff=cutoff, hard_cutoff=True)
    graph.x = node_features(atoms.numbers, features)
    return graph
