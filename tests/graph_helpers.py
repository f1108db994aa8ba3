"""Independent references and symmetry helpers for the crystal-graph and ALIGNN tests.

``brute_force_knn_edges`` re-implements the k-nearest-neighbour graph by explicit enumeration of
lattice images (no ASE neighbour list), so it can serve as an oracle for
:func:`esrepro.graphs.periodic_knn_graph`. ``seeded_state_dict`` draws model weights key by key
from a seed, for golden-output tests.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from ase import Atoms
from torch import Tensor

Edge = tuple[int, int, int, int, int]


def _interplanar_spacings(cell: np.ndarray) -> np.ndarray:
    # h_a = distance between lattice planes spanned by the other two vectors = 1 / |a*|,
    # with a* the columns of inv(cell) (rows of the reciprocal basis without 2 pi).
    return 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)


def brute_force_neighbors(atoms: Atoms, k: int, tie_tol: float) -> list[list[tuple[float, Edge]]]:
    """For every atom, all ``(distance, (i, j, n1, n2, n3))`` up to its k-th distance + tol.

    Enumerates images ``n`` in a growing cube ``[-m, m]^3`` until the cube provably contains
    every neighbour within the k-th distance: with wrapped fractional coordinates, an image with
    ``|n_a| > m`` is at least ``m * h_a`` away (``h_a`` the interplanar spacing).
    """
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    frac = np.linalg.solve(cell.T, np.asarray(atoms.positions, dtype=np.float64).T).T
    # original = wrapped + wrap, so r_j,w + n - r_i,w = r_j + (n - w_j + w_i) - r_i
    wrap = np.floor(frac)
    fw = frac - wrap
    h = _interplanar_spacings(cell)
    n_atoms = len(atoms)
    m = 1
    while True:
        rng = range(-m, m + 1)
        images = np.array(list(itertools.product(rng, rng, rng)), dtype=np.int64)
        result: list[list[tuple[float, Edge]]] = []
        worst = 0.0
        for i in range(n_atoms):
            # dist[a, j]: atom i to atom j displaced by images[a]
            diff = (fw[None, :, :] + images[:, None, :] - fw[i]) @ cell
            dist = np.linalg.norm(diff, axis=2)
            is_self = (~images.any(axis=1))[:, None] & (np.arange(n_atoms) == i)[None, :]
            dist[is_self] = np.inf  # the atom itself is not its own neighbour
            kth = np.sort(dist, axis=None)[k - 1]
            worst = max(worst, kth + tie_tol)
            found: list[tuple[float, Edge]] = []
            for a, j in zip(*np.nonzero(dist <= kth + tie_tol), strict=True):
                # image label relative to the *unwrapped* positions of the Atoms object
                n_orig = images[a] - wrap[j].astype(np.int64) + wrap[i].astype(np.int64)
                found.append((float(dist[a, j]), (i, int(j), *map(int, n_orig))))
            result.append(sorted(found))
        if m * h.min() > worst:
            return result
        m += 1


def brute_force_knn_edges(atoms: Atoms, k: int, tie_tol: float = 1e-5) -> dict[Edge, float]:
    """Symmetrized k-NN edge set ``{(src, dst, n1, n2, n3): length}`` by brute force."""
    edges: dict[Edge, float] = {}
    for per_atom in brute_force_neighbors(atoms, k, tie_tol):
        for d, (i, j, a, b, c) in per_atom:
            edges[(i, j, a, b, c)] = d
            edges[(j, i, -a, -b, -c)] = d
    return edges


def graph_edge_dict(edge_index: Tensor, image: Tensor, edge_len: Tensor) -> dict[Edge, float]:
    """``{(src, dst, n1, n2, n3): length}`` of a graph (asserting no duplicate edges)."""
    rows = torch.cat([edge_index.T, image], dim=1).tolist()
    keys = [tuple(int(v) for v in r) for r in rows]
    assert len(set(keys)) == len(keys), "graph has duplicate (src, dst, image) edges"
    return dict(zip(keys, edge_len.double().tolist(), strict=True))


def per_atom_distances(edge_index: Tensor, edge_len: Tensor, n_atoms: int) -> list[np.ndarray]:
    """Sorted outgoing bond lengths of every atom."""
    src = edge_index[0].numpy()
    lengths = edge_len.double().numpy()
    return [np.sort(lengths[src == a]) for a in range(n_atoms)]


def seeded_state_dict(model: torch.nn.Module, seed: int) -> dict[str, Tensor]:
    """Weights for ``model`` drawn from ``seed`` key by key, independent of module init order.

    Linear weights ``U(+-1/sqrt(fan_in))``, biases ``U(+-0.1)``, BatchNorm scales ``U(0.5, 1.5)``
    and non-trivial running statistics; other buffers (RBF centres, counters) are kept. A golden
    test can then store outputs only, not the (large) weights.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in sorted(model.state_dict().items()):
        shape, dtype = value.shape, value.dtype
        if key.endswith("running_mean") or key.endswith(".bias"):
            lo, hi = (-0.5, 0.5) if key.endswith("running_mean") else (-0.1, 0.1)
        elif key.endswith("running_var"):
            lo, hi = 0.5, 2.0
        elif key.endswith(".weight") and value.dim() == 2:
            bound = 1.0 / float(np.sqrt(shape[1]))
            lo, hi = -bound, bound
        elif key.endswith(".weight") and value.dim() == 1:  # BatchNorm scale
            lo, hi = 0.5, 1.5
        else:
            out[key] = value.clone()
            continue
        out[key] = torch.empty(shape, dtype=torch.float64).uniform_(lo, hi, generator=gen).to(dtype)
    return out
