"""k-space of a 2D layer: reciprocal vectors, distances between k-points, and the Γ–K–M–Γ path.

Convention as `esrepro.kpath`: reciprocal vectors include 2π (b_i · a_j = 2π δ_ij), fractional
k-points are in their basis (GPAW's scaled k-points), distances are Cartesian in Å⁻¹.

A distance between two k-points is the shortest over the reciprocal lattice (minimum image) and
over the symmetry star of the first point. The star is taken under the point group of the 2D
Bravais lattice (its holohedry, time reversal k → −k included): the integer matrices that keep
the reciprocal metric. For every prototype of VAE-GW's set (2H, 1T, Janus, GaS- and FeSe-type)
the crystal's point group together with time reversal acts on in-plane k as that holohedry, so
states on one star are equivalent, as GPAW's irreducible k-points assume.
"""

from __future__ import annotations

import itertools

import numpy as np

#: Fractional coordinates equal within this are the same k-point.
K_TOLERANCE = 1e-6


def reciprocal_2d(cell: np.ndarray) -> np.ndarray:
    """Rows b1, b2 (Å⁻¹, 2π included) of the in-plane cell (first two vectors, in xy)."""
    a = np.asarray(cell, float)[:2, :2]
    return 2 * np.pi * np.linalg.inv(a).T


def lattice_point_group(cell: np.ndarray, tolerance: float = 1e-4) -> np.ndarray:
    """Integer matrices M (n_ops, 2, 2) acting on fractional k as k' = k @ M that keep the
    reciprocal metric: the 2D lattice's point group (12 for hexagonal, 8 square, 4 rectangular
    and centred rectangular, 2 oblique), identity first."""
    b = reciprocal_2d(cell)
    metric = b @ b.T
    scale = float(np.abs(metric).max())
    ops = []
    for entries in itertools.product(range(-2, 3), repeat=4):
        m = np.array(entries, float).reshape(2, 2)
        if abs(np.linalg.det(m)) != 1:
            continue
        if np.allclose(m @ metric @ m.T, metric, atol=tolerance * scale):
            ops.append(m)
    ops.sort(key=lambda m: (not np.array_equal(m, np.eye(2)), m.ravel().tolist()))
    return np.array(ops)


def k_distance(k: np.ndarray, k0: np.ndarray, cell: np.ndarray, symmetric: bool = True
               ) -> np.ndarray:
    """Cartesian distance (Å⁻¹) of each fractional k-point `k` ((n, 2+) or (2+,)) from `k0`:
    the shortest |k' − k0 + G| over reciprocal lattice vectors G and, if `symmetric`, over the
    star k' of k (`lattice_point_group`); otherwise k' = k only."""
    k = np.atleast_2d(np.asarray(k, float))[:, :2]
    k0 = np.asarray(k0, float).ravel()[:2]
    b = reciprocal_2d(cell)
    ops = lattice_point_group(cell) if symmetric else np.eye(2)[None]
    images = np.einsum("ni,oij->noj", k, ops)  # (n, ops, 2)
    diff = images - k0
    diff -= np.round(diff)  # nearest image in fractional coordinates, then its neighbours
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=2)), float)
    cart = (diff[:, :, None, :] + shifts[None, None]) @ b  # (n, ops, 9, 2)
    return np.linalg.norm(cart, axis=-1).min(axis=(1, 2))


def same_kpoint(k: np.ndarray, k0: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Which of the fractional `k` lie on the star of `k0` (modulo the reciprocal lattice)."""
    b = np.linalg.norm(reciprocal_2d(cell), axis=1).max()
    return k_distance(k, k0, cell) < K_TOLERANCE * b


def hexagonal_points(cell: np.ndarray, tolerance: float = 1e-3) -> dict[str, np.ndarray]:
    """Fractional Γ, K and M of a hexagonal layer (|a1| = |a2|, 60° or 120°), K and M
    adjacent corners of one edge of the zone; ValueError for any other lattice."""
    a = np.asarray(cell, float)[:2, :2]
    n1, n2 = np.linalg.norm(a, axis=1)
    cos = float(a[0] @ a[1]) / (n1 * n2)
    if abs(n1 - n2) > tolerance * n1 or abs(abs(cos) - 0.5) > tolerance:
        raise ValueError(f"not a hexagonal layer (|a1| {n1:.4f} Å, |a2| {n2:.4f} Å, cos γ "
                         f"{cos:.4f}): Γ–K–M–Γ needs a hexagonal lattice")
    gamma = np.zeros(2)
    corners = [np.array(c) for c in ((1 / 3, 1 / 3), (1 / 3, -1 / 3))]
    k_point = max(corners, key=lambda c: float(k_distance(c, gamma, cell, symmetric=False)[0]))
    edges = [np.array(c) for c in ((0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, -0.5))]
    m_point = min(edges, key=lambda c: float(k_distance(c, k_point, cell, symmetric=False)[0]))
    return {"G": gamma, "K": k_point, "M": m_point}


def path_kpoints(cell: np.ndarray, labels: str, n_kpoints: int) -> tuple[np.ndarray, np.ndarray]:
    """`n_kpoints` fractional k-points (n, 3; kz = 0) along the straight segments between the
    special points `labels` of `hexagonal_points` (e.g. "GKMG"), every special point included
    and the rest spread by segment length; and their arc length along the path (Å⁻¹)."""
    points = hexagonal_points(cell)
    corners = [points[c] for c in labels]
    if len(corners) < 2:
        raise ValueError(f"a path needs two special points, got {labels!r}")
    b = reciprocal_2d(cell)
    legs = list(zip(corners, corners[1:], strict=False))
    lengths = np.array([np.linalg.norm((e - s) @ b) for s, e in legs])
    n_segments = len(lengths)
    if n_kpoints < n_segments + 1:
        raise ValueError(f"{n_kpoints} k-points cannot hold the {n_segments + 1} special "
                         f"points of {labels}")
    # Interior points per segment in proportion to its length (largest remainders first).
    interior = n_kpoints - (n_segments + 1)
    share = interior * lengths / lengths.sum()
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: interior - counts.sum()]:
        counts[i] += 1
    kpts, arc, start_arc = [], [], 0.0
    for i, (s, e) in enumerate(legs):
        t = np.linspace(0.0, 1.0, counts[i] + 2)[:-1]
        kpts.extend(s + t[:, None] * (e - s))
        arc.extend(start_arc + t * lengths[i])
        start_arc += lengths[i]
    kpts.append(corners[-1])
    arc.append(start_arc)
    kpts = np.array(kpts)
    return np.column_stack([kpts, np.zeros(len(kpts))]), np.array(arc)


def is_hexagonal(cell: np.ndarray) -> bool:
    """Whether the in-plane lattice is hexagonal (`hexagonal_points`' test)."""
    try:
        hexagonal_points(cell)
    except ValueError:
        return False
    return True


def kpoint_star(k: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The distinct fractional k-points (m, 2) of the star of `k` under `lattice_point_group`,
    modulo the reciprocal lattice, each in [0, 1): the full-zone points an irreducible k-point
    stands for; m is its multiplicity (GPAW's k-point weight × the grid's point count)."""
    k = np.asarray(k, float).ravel()[:2]
    images = k @ lattice_point_group(cell)  # (ops, 2)
    images -= np.floor(images + K_TOLERANCE)  # into [0, 1), a coordinate of ~1 counted as 0
    out: list[np.ndarray] = []
    for p in images:
        if not any(np.all(np.abs(p - q) < K_TOLERANCE) for q in out):
            out.append(p)
    return np.array(out)


def zone_images(k: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Cartesian points (Å⁻¹, (m, 2)) of the fractional `k` inside the first Brillouin zone:
    the shortest of k + G, all of them where k lies on the zone boundary (a K corner or an M
    edge point is drawn at every equivalent place)."""
    k = np.asarray(k, float).ravel()[:2]
    b = reciprocal_2d(cell)
    shifts = np.array(list(itertools.product(range(-2, 3), repeat=2)), float)
    cart = (k - np.round(k) + shifts) @ b
    length = np.linalg.norm(cart, axis=1)
    scale = float(np.linalg.norm(b, axis=1).max())
    return cart[length < length.min() + K_TOLERANCE * scale]


def brillouin_zone(cell: np.ndarray) -> np.ndarray:
    """Corners (Å⁻¹, (n, 2), counter-clockwise) of the 2D lattice's first Brillouin zone, the
    Wigner–Seitz cell of the reciprocal lattice: a hexagon for a hexagonal lattice."""
    from scipy.spatial import Voronoi

    b = reciprocal_2d(cell)
    shifts = np.array(list(itertools.product(range(-2, 3), repeat=2)), float)
    voronoi = Voronoi(shifts @ b)
    origin = int(np.flatnonzero(np.all(shifts == 0, axis=1))[0])
    corners = voronoi.vertices[voronoi.regions[voronoi.point_region[origin]]]
    angle = np.arctan2(corners[:, 1], corners[:, 0])
    return corners[np.argsort(angle)]


def standard_cell(cell: np.ndarray) -> np.ndarray:
    """The in-plane cell (2, 2) rotated so that a1 lies along +x and scaled to |a1| = 1: its
    reciprocal vectors / 2π are Cartesian k in units of 2π/a, the same frame for every
    material of one lattice type whatever its lattice constant or orientation."""
    a = np.asarray(cell, float)[:2, :2]
    n = float(np.linalg.norm(a[0]))
    c, s = a[0] / n
    return a @ np.array([[c, -s], [s, c]]) / n
