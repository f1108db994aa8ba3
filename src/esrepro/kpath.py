"""Continuous high-symmetry k-paths: unique segments, arc length, smoothing and resampling.

The Latimer–Munro path (pymatgen ``HighSymmKpath(path_type="latimer_munro")``) is made
continuous by pymatgen's ``get_continuous_path``, which walks an Eulerian circuit of the
graph whose nodes are the labelled points and whose edges are the path's segments, adding
edges between odd-degree nodes. The circuit traverses some segments more than once and some
backwards, so a :class:`ContinuousKPath` keeps the *unique* segments (each computed once by
DFT) and the order in which the circuit walks them (`steps`); `assemble` builds a quantity
along the whole circuit from its values on the unique segments.

Convention: reciprocal vectors include 2π (b_i · a_j = 2π δ_ij, pymatgen's
``Lattice.reciprocal_lattice``), so arc lengths and smoothing widths are in Å⁻¹ of that
convention; fractional k-points are in the basis of those vectors, as GPAW's scaled k-points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: pymatgen's name of the Latimer–Munro convention; the only path type this module builds.
LATIMER_MUNRO = "latimer_munro"


@dataclass(frozen=True)
class ContinuousKPath:
    """A continuous k-path as unique segments and the walk over them.

    `points` maps each high-symmetry label to its fractional coordinates; `segments` lists the
    unique segments as (start label, end label); `steps` lists the walk as (segment index,
    reversed), each step starting where the previous one ended.
    """

    rec_lattice: np.ndarray  # (3, 3) rows b_1, b_2, b_3 in Å⁻¹ (2π included)
    points: dict[str, np.ndarray]
    segments: tuple[tuple[str, str], ...]
    steps: tuple[tuple[int, bool], ...]
    #: Segments not in the Latimer–Munro path, added to connect its disconnected parts
    #: (see `continuous_kpath`); indices into `segments`.
    bridges: tuple[int, ...] = ()

    def segment_length(self, index: int) -> float:
        """Length of unique segment `index` in Å⁻¹."""
        start, end = self.segments[index]
        return float(np.linalg.norm((self.points[end] - self.points[start]) @ self.rec_lattice))

    def segment_kpoints(self, density: float) -> list[np.ndarray]:
        """Fractional k-points of each unique segment, both ends included, evenly spaced with at
        least `density` points per Å⁻¹ (and at least 2 per segment)."""
        if density <= 0:
            raise ValueError(f"k-point density along the path must be > 0, got {density!r}")
        kpoints = []
        for index, (start, end) in enumerate(self.segments):
            n = max(2, int(np.ceil(self.segment_length(index) * density)) + 1)
            t = np.linspace(0.0, 1.0, n)[:, None]
            kpoints.append(self.points[start] + t * (self.points[end] - self.points[start]))
        return kpoints

    def step_labels(self) -> list[tuple[str, str]]:
        """(from, to) labels of each step of the walk."""
        return [
            (self.segments[i][::-1] if rev else self.segments[i]) for i, rev in self.steps
        ]

    def is_closed(self) -> bool:
        """Whether the walk ends where it starts (an Eulerian circuit does)."""
        labels = self.step_labels()
        return labels[0][0] == labels[-1][1]

    def assemble(self, per_segment: Sequence[np.ndarray]) -> np.ndarray:
        """Values along the walk from values on the unique segments (first axis = k-points).

        Segments traversed backwards are reversed; the first point of every step after the first
        is the previous step's last point (the same k-point) and is dropped.
        """
        if len(per_segment) != len(self.segments):
            raise ValueError(
                f"expected values on {len(self.segments)} unique segments, got {len(per_segment)}"
            )
        parts = []
        for n, (index, rev) in enumerate(self.steps):
            values = np.asarray(per_segment[index])
            values = values[::-1] if rev else values
            parts.append(values if n == 0 else values[1:])
        return np.concatenate(parts, axis=0)

    def label_positions(self) -> list[tuple[str, float]]:
        """(label, arc position in Å⁻¹) of every high-symmetry point along the walk."""
        arc = 0.0
        labels = self.step_labels()
        out = [(labels[0][0], 0.0)]
        for (index, _), (_, end) in zip(self.steps, labels, strict=True):
            arc += self.segment_length(index)
            out.append((end, arc))
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-able record (stored in band products' meta) that `from_json` reads back."""
        return {
            "rec_lattice": self.rec_lattice.tolist(),
            "points": {label: [float(x) for x in k] for label, k in self.points.items()},
            "segments": [list(s) for s in self.segments],
            "steps": [[int(i), bool(rev)] for i, rev in self.steps],
            "bridges": [int(i) for i in self.bridges],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContinuousKPath:
        return cls(
            rec_lattice=np.asarray(data["rec_lattice"], dtype=float),
            points={label: np.asarray(k, dtype=float) for label, k in data["points"].items()},
            segments=tuple((str(a), str(b)) for a, b in data["segments"]),
            steps=tuple((int(i), bool(rev)) for i, rev in data["steps"]),
            bridges=tuple(int(i) for i in data.get("bridges", [])),
        )


def arc_length(kpoints_frac: np.ndarray, rec_lattice: np.ndarray) -> np.ndarray:
    """Cumulative Cartesian distance (Å⁻¹, 2π convention) along consecutive k-points."""
    cart = np.asarray(kpoints_frac, dtype=float) @ np.asarray(rec_lattice, dtype=float)
    steps = np.linalg.norm(np.diff(cart, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def continuous_kpath(structure, symprec: float = 0.01) -> ContinuousKPath:
    """The Latimer–Munro path of a pymatgen Structure (or ASE Atoms) made continuous.

    The walk is pymatgen's `get_continuous_path` applied to a probe line-mode band structure
    with three k-points per segment whose "energies" are their own indices, so the probe's
    reordered energies say which segment each step walks and in which direction.

    An Eulerian walk needs a connected graph of labelled points, which the Latimer–Munro path
    of some structures is not (2 of 60 DOSnp structures: Se6 mp-147, TlInS2 mp-22566); its
    parts are then joined by the shortest straight segments between them (`bridges`).
    """
    from pymatgen.electronic_structure.bandstructure import BandStructureSymmLine
    from pymatgen.electronic_structure.core import Spin
    from pymatgen.symmetry.bandstructure import HighSymmKpath

    structure = _as_structure(structure)
    kpath = HighSymmKpath(structure, symprec=symprec, path_type=LATIMER_MUNRO)
    points = {label: np.asarray(k, dtype=float) for label, k in kpath.kpath["kpoints"].items()}
    segments: list[tuple[str, str]] = []
    probe: list[np.ndarray] = []
    for branch in kpath.kpath["path"]:
        for start, end in zip(branch[:-1], branch[1:], strict=True):
            segments.append((start, end))
            # An inner point at 1/3, not 1/2: a segment's midpoint may be a labelled point.
            probe += [points[start], points[start] + (points[end] - points[start]) / 3,
                      points[end]]
    if not segments:
        raise ValueError(
            f"no Latimer–Munro path segments for {structure.composition.reduced_formula}"
        )
    rec = np.asarray(kpath.rec_lattice.matrix, dtype=float)
    bridges = _bridges(segments, points, rec)
    for start, end in bridges:
        probe += [points[start], points[start] + (points[end] - points[start]) / 3, points[end]]
    n_lm = len(segments)
    segments += bridges
    line = BandStructureSymmLine(
        probe, {Spin.up: np.arange(len(probe), dtype=float)[None, :]}, kpath.rec_lattice, 0.0,
        points,
    )
    walked = np.rint(HighSymmKpath.get_continuous_path(line).bands[Spin.up][0]).astype(int)
    if len(walked) % 3:
        raise ValueError("unexpected continuous path from pymatgen (not whole segments)")
    steps = []
    for triple in walked.reshape(-1, 3):
        index = int(triple[1]) // 3
        steps.append((index, bool(triple[0] > triple[2])))
    path = ContinuousKPath(
        rec_lattice=rec,
        points=points,
        segments=tuple(segments),
        steps=tuple(steps),
        bridges=tuple(range(n_lm, len(segments))),
    )
    _check_continuous(path)
    return path


def _bridges(
    segments: list[tuple[str, str]], points: dict[str, np.ndarray], rec: np.ndarray
) -> list[tuple[str, str]]:
    """Shortest segments (Cartesian) joining the connected parts of the segments' graph."""
    import networkx as nx

    graph = nx.Graph(segments)
    added: list[tuple[str, str]] = []
    while not nx.is_connected(graph):
        first, *others = sorted(nx.connected_components(graph), key=lambda c: sorted(c))
        rest = set().union(*others)
        _, start, end = min(
            (float(np.linalg.norm((points[b] - points[a]) @ rec)), a, b)
            for a in sorted(first) for b in sorted(rest)
        )
        graph.add_edge(start, end)
        added.append((start, end))
    return added


def _check_continuous(path: ContinuousKPath) -> None:
    labels = path.step_labels()
    for (_, end), (start, _) in zip(labels[:-1], labels[1:], strict=True):
        if end != start:
            raise ValueError(f"k-path is not continuous: a step ends at {end}, the next starts "
                             f"at {start}")
    unused = set(range(len(path.segments))) - {i for i, _ in path.steps}
    if unused:
        raise ValueError(f"continuous k-path misses segments {sorted(unused)}")


def _as_structure(structure):
    from pymatgen.core import Structure

    if isinstance(structure, Structure):
        return structure
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(structure)


def smooth_resample(
    arc: np.ndarray,
    values: np.ndarray,
    n_points: int,
    width: float,
    *,
    periodic: bool = False,
    oversample: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smooth `values` along the arc and resample them at `n_points` even arc positions.

    `values` has the k-points on its first axis. The data are first interpolated linearly onto
    an even arc grid `oversample` times finer than the output (DFT k-points need not be evenly
    spaced), smoothed there with a Gaussian of standard deviation `width` Å⁻¹ (scipy's
    ``gaussian_filter1d``; `width` 0 = no smoothing), and read off at ``linspace(0, L, n)``.
    `periodic` (a closed path) wraps the filter around the ends instead of repeating the end
    values. Returns (arc positions, resampled values).
    """
    from scipy.ndimage import gaussian_filter1d

    arc = np.asarray(arc, dtype=float)
    values = np.asarray(values, dtype=float)
    if n_points < 2:
        raise ValueError(f"need at least 2 resampled k-points, got {n_points}")
    if width < 0:
        raise ValueError(f"smoothing width must be >= 0 Å⁻¹, got {width!r}")
    if len(arc) != len(values) or np.any(np.diff(arc) < 0):
        raise ValueError("arc must be non-decreasing and match the values' first axis")
    total = float(arc[-1])
    # Every output position is a point of the fine grid: no second interpolation error.
    fine = np.linspace(0.0, total, oversample * (n_points - 1) + 1)
    flat = values.reshape(len(values), -1)
    dense = np.stack([np.interp(fine, arc, column) for column in flat.T], axis=1)
    if width > 0:
        if periodic:
            # The fine grid's last point repeats its first on a closed path: wrap without it.
            body = gaussian_filter1d(dense[:-1], width / (fine[1] - fine[0]), axis=0, mode="wrap")
            dense = np.concatenate([body, body[:1]], axis=0)
        else:
            dense = gaussian_filter1d(dense, width / (fine[1] - fine[0]), axis=0, mode="nearest")
    out_arc = np.linspace(0.0, total, n_points)
    out = dense[::oversample]
    return out_arc, out.reshape((n_points,) + values.shape[1:])
