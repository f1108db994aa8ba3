"""Bandformer's node features and its hard-capped 12-nearest-neighbour crystal graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from esrepro.papers.bandformer.features import (
    MAX_Z,
    crystal_graph,
    node_feature_dim,
    node_features,
)


def test_elemental_features_are_group_period_radius_scaled() -> None:
    # Si: group 14, period 3, empirical radius 1.10 A; Cs: group 1, period 6, 2.60 A.
    x = node_features([14, 55], "elemental")
    raw = np.array([[14, 3, 1.10], [1, 6, 2.60]])
    expected = (raw - [9.5, 4.0, 1.35]) / [8.5, 3.0, 1.25]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6)
    assert np.abs(expected).max() <= 1.0
    assert node_feature_dim("elemental") == x.shape[1]


def test_onehot_features_and_errors() -> None:
    x = node_features([1, 8, 100], "onehot")
    assert x.shape == (3, MAX_Z) == (3, node_feature_dim("onehot"))
    assert x.sum(1).tolist() == [1.0, 1.0, 1.0]
    assert x[1, 7] == 1.0
    with pytest.raises(ValueError, match="Z = 1..100"):
        node_features([101], "onehot")
    with pytest.raises(ValueError, match="node features 'zmat'"):
        node_features([1], "zmat")  # type: ignore[arg-type]


def test_graph_never_exceeds_the_cutoff() -> None:
    # Simple cubic, a = 7 A: 6 neighbours at 7 A, the next shell at 9.9 A lies beyond 8 A, so
    # every atom keeps 6 < 12 neighbours (the ALIGNN-style graph would grow its radius).
    atoms = Atoms("Po", cell=np.eye(3) * 7.0, pbc=True)
    g = crystal_graph(atoms, k=12, cutoff=8.0)
    assert g.edge_index.shape[1] == 6
    np.testing.assert_allclose(g.edge_len.numpy(), 7.0, rtol=1e-6)
    # a = 5 A: 6 at 5 A and 12 at 7.07 A (a whole shell tied with the 12th) are all kept.
    g = crystal_graph(Atoms("Po", cell=np.eye(3) * 5.0, pbc=True), k=12, cutoff=8.0)
    assert g.edge_index.shape[1] == 18 and float(g.edge_len.max()) < 8.0


def test_isolated_atom_has_no_edges() -> None:
    atoms = Atoms("Ar3", positions=[[0, 0, 0], [3, 0, 0], [10, 10, 10]], cell=[20, 20, 20],
                  pbc=True)
    g = crystal_graph(atoms)
    degree = torch.bincount(g.edge_index[1], minlength=3)
    assert degree.tolist() == [1, 1, 0]
    assert g.x.shape == (3, 3)


def test_graph_does_not_depend_on_atom_order() -> None:
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    perm = np.random.default_rng(0).permutation(len(atoms))
    g, gp = crystal_graph(atoms), crystal_graph(atoms[perm])
    # Degree and sorted bond lengths of each atom follow it through the permutation.
    for new, old in enumerate(perm):
        a = torch.sort(g.edge_len[g.edge_index[1] == old]).values
        b = torch.sort(gp.edge_len[gp.edge_index[1] == new]).values
        torch.testing.assert_close(a, b)
