"""VAE-GW's Fig. 3a-c: the GW error against the distance from the one k-point a network was
trained on, and states generated along a latent trajectory. Pure numpy/pandas; the
``k_distance`` and ``trajectory`` stages (:mod:`esrepro.papers.vae_gw.pipeline`) call it.

**Fig. 3c.** A GW network trained on the states of one k-point only (Γ, or one finite-momentum
point) of the trainable materials predicts every other state. A state's distance is that of
its k-point from the trained one (`esrepro.layer_kspace.k_distance`: Å⁻¹, minimum image, over
the k-point's symmetry star), in its material's own reciprocal lattice. Errors are pooled in
distance bins: the trainable materials' states at other k-points (the trained k-point's states
are the training set), and every state of the held-out TMDs (materials no network saw).
The zone map (`kpoint_map`) pools the same errors per k-point star over the hexagonal
materials and unfolds each irreducible k-point onto its star inside the Brillouin zone.

**Fig. 3a-b.** Path states are encoded to μ; between the trajectory's consecutive states μ is
interpolated linearly in the arc length along the path, and decoded at the k-points of the dense
K → M points, where DFT states exist to compare with (the code's R²). At a dense point that is
also a trajectory point (K and M at least) the generated state is the reconstruction of that
state; the others are genuine interpolations, and are also reported apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from esrepro.layer_kspace import (
    brillouin_zone,
    is_hexagonal,
    k_distance,
    kpoint_star,
    reciprocal_2d,
    same_kpoint,
    standard_cell,
    zone_images,
)

#: Two unfolded k-points (units of 2π/a) closer than this are the same point of the zone map.
MAP_TOLERANCE = 1e-4
#: The cell (|a1| = 1, a1 along x) whose frame the zone map draws every hexagonal material in.
HEXAGONAL_FRAME = np.array([[1.0, 0.0], [-0.5, 3**0.5 / 2]])


def state_distances(states: pd.DataFrame, cells: Mapping[str, np.ndarray], k0: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(distance in Å⁻¹ of each state's k-point from `k0` in its material's cell, whether it is
    on `k0`'s star); `states` has ``material_id``, ``kx``, ``ky`` (fractional)."""
    distance = np.full(len(states), np.nan)
    on = np.zeros(len(states), dtype=bool)
    for material_id, rows in states.groupby("material_id").indices.items():
        k = states[["kx", "ky"]].to_numpy(float)[rows]
        cell = cells[material_id]
        distance[rows] = k_distance(k, k0, cell)
        on[rows] = same_kpoint(k, k0, cell)
    return distance, on


def _error(abs_err: np.ndarray) -> dict[str, Any]:
    if not len(abs_err):
        return {"mae": math.nan, "rmse": math.nan, "n": 0}
    return {"mae": float(np.mean(abs_err)), "rmse": float(np.sqrt(np.mean(abs_err**2))),
            "n": int(len(abs_err))}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (NaN for fewer than 3 points or a constant side)."""
    if len(x) < 3:
        return math.nan
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def per_kpoint(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (material, k-point) of ``frame`` (columns material_id, heldout, k_index,
    distance, trained, abs_error): its MAE, distance and state count, by distance."""
    grouped = frame.groupby(["material_id", "k_index"], sort=True)
    out = grouped.agg(heldout=("heldout", "first"), trained=("trained", "first"),
                      distance=("distance", "first"), mae=("abs_error", "mean"),
                      n=("abs_error", "size")).reset_index()
    return out.sort_values(["distance", "material_id", "k_index"], kind="stable"
                           ).reset_index(drop=True)


def k_distance_record(frame: pd.DataFrame, bin_width: float) -> dict[str, Any]:
    """Metrics of one network trained at one k-point (``frame``: every used GW state with
    columns material_id, heldout, k_index, distance, trained, abs_error; ``trained``: the
    state's k-point is the trained one).

    ``train``: the trained k-point's states of the trainable materials (what was fitted and
    validated on); ``trainable_other_k``: their states at every other k-point; ``heldout_tmds``:
    every held-out state; ``by_distance``: both test groups in bins ``[lo, lo + bin_width)``
    (Å⁻¹); ``spearman_*``: rank correlation of per-(material, k-point) MAE with distance."""
    heldout = frame["heldout"].astype(bool).to_numpy()
    trained = frame["trained"].astype(bool).to_numpy()
    err = frame["abs_error"].to_numpy(float)
    distance = frame["distance"].to_numpy(float)
    groups = {"trainable_other_k": ~heldout & ~trained, "heldout_tmds": heldout}
    top = float(np.nanmax(distance)) if len(distance) else 0.0
    n_bins = max(1, int(math.floor(top / bin_width)) + 1)
    bins = []
    for i in range(n_bins):
        lo, hi = i * bin_width, (i + 1) * bin_width
        inside = (distance >= lo) & (distance < hi)
        bins.append({"distance_lo": lo, "distance_hi": hi,
                     **{name: _error(err[rows & inside]) for name, rows in groups.items()}})
    table = per_kpoint(frame)
    spearman = {}
    for name, rows in (("trainable_other_k", ~table["heldout"] & ~table["trained"]),
                       ("heldout_tmds", table["heldout"])):
        sub = table[rows.astype(bool)]
        spearman[f"spearman_{name}"] = _spearman(sub["distance"].to_numpy(),
                                                 sub["mae"].to_numpy())
    return {
        "train": _error(err[~heldout & trained]),
        **{name: _error(err[rows]) for name, rows in groups.items()},
        "by_distance": bins,
        **spearman,
        "n_trained_materials": int(frame.loc[~heldout & trained, "material_id"].nunique()),
    }


def star_points(k_cartesian: np.ndarray, cell: np.ndarray = HEXAGONAL_FRAME) -> np.ndarray:
    """Every point (m, 2) inside the first zone of the star of the k-point `k_cartesian`, both in
    units of 2π/a of `cell` (|a1| = 1, a `standard_cell`): a point on the zone's edge at each
    of its places, so K is drawn at all six corners and M at all six edge midpoints."""
    b = reciprocal_2d(cell) / (2 * np.pi)
    k = np.asarray(k_cartesian, float).ravel()[:2] @ np.linalg.inv(b)
    return np.vstack([zone_images(p, cell) for p in kpoint_star(k, cell)]) / (2 * np.pi)


def zone_corners(cell: np.ndarray = HEXAGONAL_FRAME) -> np.ndarray:
    """The first Brillouin zone's corners (n, 2) of `cell` (|a1| = 1) in units of 2π/a."""
    return brillouin_zone(cell) / (2 * np.pi)


def _wedge_point(points: np.ndarray) -> np.ndarray:
    # A star's point in the irreducible wedge Γ-K-M (0° to 30°, K along +x).
    angle = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
    inside = np.flatnonzero((angle > -1e-6) & (angle < 30 + 1e-6))
    return points[inside[0] if len(inside) else 0]


def kpoint_map(frame: pd.DataFrame, cells: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Fig. 3c's Brillouin-zone map of one network: the MAE per k-point star, pooled over the
    states of the hexagonal materials.

    ``frame``: every used GW state with columns material_id, heldout, kx, ky (fractional, the
    irreducible k-point), at_trained_k (its k-point is on the trained one's star), abs_error.
    Each material's k-points are taken to its `standard_cell` (Cartesian, units of 2π/a, a1
    along x), where the same star of every hexagonal material falls on the same points.
    Returns ``kpoints``: per group (``trainable``: every state of the trainable materials, the
    trained k-point's included; ``heldout_tmds``) and star: ``k_cartesian`` (its point in the
    wedge Γ–K–M; `star_points` unfolds it onto the zone), ``multiplicity`` (its distinct points
    modulo the reciprocal lattice: GPAW's k-point weight × the grid's point count), ``mae``,
    ``rmse``, ``n`` states, ``n_materials``, ``at_trained_k``; and ``left_out``, the materials
    that are not hexagonal (their zone is another shape)."""
    stars: list[dict[str, Any]] = []  # points (m, 2) and multiplicity of each star met
    star_of = np.full(len(frame), -1)
    left_out = []
    k_frac = frame[["kx", "ky"]].to_numpy(float)
    for material_id, rows in frame.groupby("material_id", sort=True).indices.items():
        cell = cells[material_id]
        if not is_hexagonal(cell):
            left_out.append(str(material_id))
            continue
        std = standard_cell(cell)
        b = reciprocal_2d(std) / (2 * np.pi)
        _, first = np.unique(np.round(k_frac[rows], 6), axis=0, return_index=True)
        for k in k_frac[rows][np.sort(first)]:
            points = star_points(k @ b, std)
            multiplicity = len(kpoint_star(k, std))
            match = [i for i, s in enumerate(stars)
                     if np.min(np.linalg.norm(s["points"] - points[0], axis=1)) < MAP_TOLERANCE]
            if match:
                index = match[0]
                if stars[index]["multiplicity"] != multiplicity:
                    raise ValueError(f"{material_id}: the star of {k.tolist()} has "
                                     f"{multiplicity} points, another material's "
                                     f"{stars[index]['multiplicity']}")
            else:
                index = len(stars)
                stars.append({"points": points, "multiplicity": multiplicity})
            star_of[rows[np.all(np.abs(k_frac[rows] - k) < 1e-6, axis=1)]] = index
    err = frame["abs_error"].to_numpy(float)
    heldout = frame["heldout"].astype(bool).to_numpy()
    at_trained = frame["at_trained_k"].astype(bool).to_numpy()
    material = frame["material_id"].astype(str).to_numpy()
    wedge = [_wedge_point(s["points"]) for s in stars]
    order = sorted(range(len(stars)), key=lambda i: (round(float(np.hypot(*wedge[i])), 6),
                                                     round(float(np.arctan2(*wedge[i][::-1])),
                                                           6)))
    entries = []
    for group, rows in (("trainable", ~heldout), ("heldout_tmds", heldout)):
        for index in order:
            inside = rows & (star_of == index)
            if inside.any():
                entries.append({
                    "group": group,
                    "k_cartesian": (np.round(wedge[index], 9) + 0.0).tolist(),  # no -0.0
                    "multiplicity": stars[index]["multiplicity"], **_error(err[inside]),
                    "n_materials": int(len(set(material[inside]))),
                    "at_trained_k": bool(at_trained[inside].any()),
                })
    return {"frame": "Cartesian k in units of 2π/a, a1 along x", "kpoints": entries,
            "left_out": sorted(left_out)}


def interpolate_latents(arc: np.ndarray, mu: np.ndarray, at: np.ndarray) -> np.ndarray:
    """μ at arc lengths `at`, linear between consecutive points (`arc` increasing, (n,); `mu`
    (n, latent)); ValueError outside [arc[0], arc[-1]]."""
    arc, at = np.asarray(arc, float), np.asarray(at, float)
    if np.any(np.diff(arc) <= 0):
        raise ValueError("trajectory arc lengths must increase")
    span = 1e-9 * max(1.0, float(arc[-1] - arc[0]))
    if at.min() < arc[0] - span or at.max() > arc[-1] + span:
        raise ValueError(f"points at arc {at.min():.4f}..{at.max():.4f} lie outside the "
                         f"trajectory {arc[0]:.4f}..{arc[-1]:.4f}")
    at = np.clip(at, arc[0], arc[-1])
    right = np.clip(np.searchsorted(arc, at, side="right"), 1, len(arc) - 1)
    left = right - 1
    t = (at - arc[left]) / (arc[right] - arc[left])
    return (1 - t)[:, None] * mu[left] + t[:, None] * mu[right]
