"""Periodic k-NN crystal graphs and line graphs (``esrepro.graphs``) against independent oracles.

Oracles: a brute-force enumeration of lattice images (``graph_helpers``) and pymatgen's
neighbour search. Structures: fcc Cu (1-atom cell whose own images are its neighbours), a
strongly skewed triclinic cell, a skewed 1-atom cell with an atom outside the cell, and real
JARVIS structures from the mirrored ALIGNN sample data.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from esrepro.graphs import (
    CrystalGraph,
    line_graph,
    line_graph_from_edges,
    periodic_knn_graph,
)
from esrepro.structures import read_structure
from graph_helpers import (
    brute_force_knn_edges,
    graph_edge_dict,
    per_atom_distances,
)

ALIGNN_SAMPLES = (
    "raw.githubusercontent.com/usnistgov/alignn/a8be0bed552ac70c14b8db825a48dbca1d14ad8d/"
    "alignn/examples/sample_data_multi_prop"
)
# Skewed real cells: CuNa2O2 (angles 133/149/58 deg), Bi3Sb (rhombohedral, 31 deg), Xe (1 atom),
# Cr3Li4Mn3O12 (22-atom triclinic).
REAL_IDS = ("JVASP-50332", "JVASP-107772", "JVASP-21210", "JVASP-42300")


def _cu() -> Atoms:
    return bulk("Cu", "fcc", a=3.61)


def _skewed_triclinic() -> Atoms:
    cell = np.array([[4.0, 0.0, 0.0], [3.7, 1.1, 0.0], [3.3, 0.8, 1.4]])
    return Atoms("NaCl", scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.45, 0.8]], cell=cell, pbc=True)


def _one_atom_skewed() -> Atoms:
    cell = np.array([[2.5, 0.0, 0.0], [2.2, 0.9, 0.0], [1.1, 0.4, 2.1]])
    # Deliberately outside the cell: images must refer to the unwrapped position.
    return Atoms("Al", scaled_positions=[[1.3, -0.2, 0.5]], cell=cell, pbc=True)


def _needle() -> Atoms:
    # The triclinic lattice in a unimodular (det +1) basis with angles down to 6.5 deg; the
    # graph code searches in a reduced basis and must map images back to this one.
    atoms = _skewed_triclinic()
    m = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]])
    atoms.set_cell(m @ atoms.cell.array, scale_atoms=False)
    return atoms


def _real(mirror_dir, jid: str) -> Atoms:
    return read_structure(mirror_dir / ALIGNN_SAMPLES / f"POSCAR-{jid}.vasp")


def _check_against_brute_force(atoms: Atoms, k: int) -> CrystalGraph:
    g = periodic_knn_graph(atoms, k=k)
    ours = graph_edge_dict(g.edge_index, g.image, g.edge_len)
    ref = brute_force_knn_edges(atoms, k)
    assert set(ours) == set(ref), (
        f"edge sets differ: {len(set(ours) - set(ref))} extra, {len(set(ref) - set(ours))} missing"
    )
    for key, d in ref.items():
        assert ours[key] == pytest.approx(d, abs=1e-5)
    # edge_vec is r_dst + image @ cell - r_src and edge_len its norm
    pos = torch.as_tensor(atoms.positions, dtype=torch.float64)
    cell = torch.as_tensor(atoms.cell.array, dtype=torch.float64)
    vec = pos[g.edge_index[1]] + g.image.double() @ cell - pos[g.edge_index[0]]
    torch.testing.assert_close(g.edge_vec.double(), vec, atol=1e-5, rtol=0)
    torch.testing.assert_close(g.edge_len, g.edge_vec.norm(dim=1), atol=1e-5, rtol=0)
    # every atom has at least k neighbours; the graph is undirected (reverse edge present)
    assert (torch.bincount(g.edge_index[0], minlength=len(atoms)) >= k).all()
    for s, d, a, b, c in ours:
        assert (d, s, -a, -b, -c) in ours
    return g


@pytest.mark.parametrize(
    "make",
    [_cu, _skewed_triclinic, _one_atom_skewed, _needle],
    ids=["fcc-Cu", "triclinic", "1-atom", "needle"],
)
@pytest.mark.parametrize("k", [4, 16])
def test_matches_brute_force_synthetic(make, k: int) -> None:
    _check_against_brute_force(make(), k)


@pytest.mark.parametrize("jid", REAL_IDS)
def test_matches_brute_force_real(mirror_dir, jid: str) -> None:
    _check_against_brute_force(_real(mirror_dir, jid), 16)


@pytest.mark.parametrize("jid", REAL_IDS[:2])
def test_k_nearest_distances_match_pymatgen(mirror_dir, jid: str) -> None:
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = _real(mirror_dir, jid)
    k = 16
    g = periodic_knn_graph(atoms, k=k)
    structure = AseAtomsAdaptor.get_structure(atoms)
    pmg = structure.get_all_neighbors(r=g.cutoff)
    # Symmetrization only adds bonds longer than an atom's own k-th distance, so each atom's k
    # shortest outgoing bonds are exactly its k nearest neighbours.
    for a, ours in enumerate(per_atom_distances(g.edge_index, g.edge_len, len(atoms))):
        theirs = np.sort([nb.nn_distance for nb in pmg[a]])
        np.testing.assert_allclose(ours[:k], theirs[:k], atol=1e-5)


def test_fcc_cu_keeps_the_whole_tied_shell() -> None:
    # 12 nearest neighbours at a/sqrt2, then 6 at a: k=16 cuts the second shell, which the
    # reference keeps whole (distances <= k-th distance) -> 18 bonds, all self-images.
    g = periodic_knn_graph(_cu(), k=16)
    assert g.num_edges == 18
    lengths = np.sort(g.edge_len.numpy())
    np.testing.assert_allclose(lengths[:12], 3.61 / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(lengths[12:], 3.61, rtol=1e-6)
    assert (g.edge_index == 0).all()
    assert not (g.image == 0).all(dim=1).any(), "no zero-length self bond"


def test_cutoff_grows_until_k_neighbours() -> None:
    ref = periodic_knn_graph(_cu(), k=16)
    g = periodic_knn_graph(_cu(), k=16, cutoff=1.0)
    assert g.cutoff > 1.0
    assert graph_edge_dict(g.edge_index, g.image, g.edge_len) == pytest.approx(
        graph_edge_dict(ref.edge_index, ref.image, ref.edge_len)
    )


def test_too_few_neighbours_raises_with_formula() -> None:
    with pytest.raises(ValueError, match="Cu"):
        periodic_knn_graph(_cu(), k=16, max_cutoff=3.0)
    molecule = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], pbc=False)
    with pytest.raises(ValueError, match="H2O"):
        periodic_knn_graph(molecule, k=4)


@pytest.mark.parametrize("jid", REAL_IDS[:2] + REAL_IDS[3:])
def test_invariant_under_atom_permutation(mirror_dir, jid: str) -> None:
    atoms = _real(mirror_dir, jid)
    perm = np.random.default_rng(0).permutation(len(atoms))
    g = periodic_knn_graph(atoms)
    gp = periodic_knn_graph(atoms[perm])
    # Same positions and cell: the edge set maps exactly, images included.
    mapped = {
        (int(perm[s]), int(perm[d]), a, b, c): v
        for (s, d, a, b, c), v in graph_edge_dict(gp.edge_index, gp.image, gp.edge_len).items()
    }
    assert mapped == pytest.approx(graph_edge_dict(g.edge_index, g.image, g.edge_len))


def _sorted_distances(g: CrystalGraph, n_atoms: int) -> list[np.ndarray]:
    return [np.round(d, 5) for d in per_atom_distances(g.edge_index, g.edge_len, n_atoms)]


@pytest.mark.parametrize("make", [_skewed_triclinic, _one_atom_skewed], ids=["triclinic", "1-atom"])
def test_invariant_under_equivalent_cell_and_supercell(make) -> None:
    atoms = make()
    ref = _sorted_distances(periodic_knn_graph(atoms), len(atoms))

    # Unimodular change of basis (det +1): the same lattice, a very different cell.
    m = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]])
    assert round(np.linalg.det(m)) == 1
    other = atoms.copy()
    other.set_cell(m @ atoms.cell.array, scale_atoms=False)
    other.wrap()
    for a, b in zip(ref, _sorted_distances(periodic_knn_graph(other), len(other)), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)

    # 2x1x1 supercell: ASE tiles the atoms, so supercell atom s is a copy of atom s % n.
    sup = atoms * (2, 1, 1)
    got = _sorted_distances(periodic_knn_graph(sup), len(sup))
    for s, d in enumerate(got):
        np.testing.assert_allclose(d, ref[s % len(atoms)], atol=2e-5)


def test_line_graph_diamond_si_angles() -> None:
    si = bulk("Si", "diamond", a=5.43)
    g = periodic_knn_graph(si, k=4)
    assert g.num_edges == 8
    lg, cos = line_graph(g)
    # every bond (a -> b) links to the 4 bonds leaving b, one of them its own reverse
    assert lg.shape == (2, 32)
    src, dst = g.edge_index
    e1, e2 = lg
    assert (dst[e1] == src[e2]).all()
    reverse = (dst[e2] == src[e1]) & (g.image[e2] == -g.image[e1]).all(dim=1)
    assert int(reverse.sum()) == 8
    torch.testing.assert_close(cos[reverse], torch.ones(8))
    # tetrahedral angle between two different bonds of the shared atom: cos = -1/3
    torch.testing.assert_close(cos[~reverse], torch.full((24,), -1.0 / 3.0), atol=1e-6, rtol=0)

    # With k=16 the nearest-neighbour pairs still give the tetrahedral angle.
    g16 = periodic_knn_graph(si, k=16)
    lg16, cos16 = line_graph(g16)
    short = g16.edge_len < 2.5
    s16, d16 = g16.edge_index
    a, b = lg16
    rev = (d16[b] == s16[a]) & (g16.image[b] == -g16.image[a]).all(dim=1)
    nn_pairs = short[a] & short[b] & ~rev
    assert int(nn_pairs.sum()) == 8 * 3
    torch.testing.assert_close(cos16[nn_pairs], torch.full((24,), -1.0 / 3.0), atol=1e-6, rtol=0)


def test_line_graph_matches_explicit_enumeration(mirror_dir) -> None:
    g = periodic_knn_graph(_real(mirror_dir, "JVASP-50332"), k=16)
    lg, cos = line_graph(g)
    assert float(cos.min()) >= -1.0 and float(cos.max()) <= 1.0
    src, dst = g.edge_index.tolist()
    vec = g.edge_vec.double().numpy()
    expected = {}
    for e1 in range(g.num_edges):
        for e2 in range(g.num_edges):
            # e2 == e1 only for self-image bonds (src == dst): the collinear triplet i, i+n, i+2n
            if dst[e1] == src[e2]:
                r1, r2 = -vec[e1], vec[e2]
                expected[(e1, e2)] = float(r1 @ r2 / np.linalg.norm(r1) / np.linalg.norm(r2))
    got = dict(zip(map(tuple, lg.T.tolist()), cos.tolist(), strict=True))
    assert set(got) == set(expected)
    for key, c in expected.items():
        assert got[key] == pytest.approx(c, abs=1e-6)

    assert any(a == b for a, b in got), "CuNa2O2 with k=16 has self-image bonds"
    # self_image_pairs=False reproduces DGL, which never links an edge to itself
    lg_dgl, _ = line_graph(g, self_image_pairs=False)
    assert set(map(tuple, lg_dgl.T.tolist())) == {(a, b) for a, b in expected if a != b}

    # backtracking=False drops every pair returning to the starting atom (DGL's node test)
    lg_nb, _ = line_graph(g, backtracking=False)
    kept = {(a, b) for a, b in expected if dst[b] != src[a]}
    assert set(map(tuple, lg_nb.T.tolist())) == kept


def test_line_graph_fcc_cu_self_image_bonds() -> None:
    g = periodic_knn_graph(_cu(), k=16)
    lg, cos = line_graph(g)
    # all 18 bonds start and end at atom 0, so every ordered pair is a triplet, (e, e) included
    assert lg.shape == (2, 18 * 18)
    same = lg[0] == lg[1]
    torch.testing.assert_close(cos[same], torch.full((18,), -1.0))  # i, i+n, i+2n collinear
    reverse = (g.image[lg[1]] == -g.image[lg[0]]).all(dim=1)
    torch.testing.assert_close(cos[reverse], torch.ones(18))  # i, i+n, i (backtracking)
    # the 2x1x1 supercell has the same multiset of angles per bond
    _, cos_sup = line_graph(periodic_knn_graph(_cu() * (2, 1, 1), k=16))
    np.testing.assert_allclose(
        np.sort(np.tile(cos.numpy(), 2)), np.sort(cos_sup.numpy()), atol=1e-6
    )


def _with_line_graph(g: CrystalGraph) -> CrystalGraph:
    lg_edge_index, cos_angle = line_graph(g)
    return CrystalGraph(**g.to_dict(), x=torch.randn(g.num_nodes, 5),
                        lg_edge_index=lg_edge_index, cos_angle=cos_angle)


def test_batched_line_graph_is_offset_union() -> None:
    # PyG batching offsets edge_index by the atoms and (CrystalGraph.__inc__) lg_edge_index by
    # the bonds of the earlier graphs: the batch's line graph is that of the disjoint union.
    graphs = [
        _with_line_graph(periodic_knn_graph(a, k=8))
        for a in (_cu(), _skewed_triclinic(), _one_atom_skewed())
    ]
    batch = Batch.from_data_list(graphs)
    lg_all, cos_all = line_graph_from_edges(batch.edge_index, batch.edge_vec, batch.num_nodes)
    torch.testing.assert_close(lg_all, batch.lg_edge_index)
    torch.testing.assert_close(cos_all, batch.cos_angle)
    assert batch.batch.tolist() == [0] + [1, 1] + [2]
    assert batch.num_graphs == 3
    # PyG's DataLoader gives the same batches, and a batch splits back into its graphs
    (loaded,) = list(DataLoader(graphs, batch_size=3))
    torch.testing.assert_close(loaded.lg_edge_index, batch.lg_edge_index)
    for g, back in zip(graphs, batch.to_data_list(), strict=True):
        torch.testing.assert_close(back.lg_edge_index, g.lg_edge_index)
        torch.testing.assert_close(back.edge_index, g.edge_index)


def test_to_dict_round_trip(tmp_path) -> None:
    g = periodic_knn_graph(_skewed_triclinic())
    path = tmp_path / "g.pt"
    torch.save(g.to_dict(), path)
    g2 = CrystalGraph.from_dict(torch.load(path, weights_only=True))
    for name in ("edge_index", "edge_vec", "edge_len", "image", "numbers"):
        torch.testing.assert_close(getattr(g2, name), getattr(g, name))
    assert g2.cutoff == g.cutoff and g2.num_nodes == g.num_nodes == 2
    assert g.edge_index.dtype == torch.int64 and g.edge_vec.dtype == torch.float32
