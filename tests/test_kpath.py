"""Continuous Latimer–Munro k-paths: unique segments, reassembly, arc length, resampling."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.electronic_structure.bandstructure import BandStructureSymmLine
from pymatgen.electronic_structure.core import Spin
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.bandstructure import HighSymmKpath

from esrepro.kpath import ContinuousKPath, arc_length, continuous_kpath, smooth_resample

DENSITY = 15.0  # k-points per Å⁻¹


def _band(k: np.ndarray) -> np.ndarray:
    """A periodic, low-symmetry function of fractional k: equal values at equal k-points."""
    k = np.atleast_2d(k)
    return (np.cos(2 * np.pi * k[:, 0]) + 0.5 * np.cos(2 * np.pi * (k[:, 1] - k[:, 2]))
            + 0.3 * np.sin(2 * np.pi * (k[:, 0] + 2 * k[:, 1] + 3 * k[:, 2])))


@pytest.fixture(scope="module", params=["Si", "Mg", "TiO2"])
def structure(request):
    if request.param == "Si":
        return bulk("Si", "diamond", a=5.43)
    if request.param == "Mg":
        return bulk("Mg", "hcp", a=3.21, c=5.21)
    # Rutile: tetragonal, a path with more segments and repeated ones.
    a, c, u = 4.594, 2.959, 0.305
    from ase import Atoms

    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0],
            [0.5 + u, 0.5 - u, 0.5], [0.5 - u, 0.5 + u, 0.5]]
    return Atoms("Ti2O4", scaled_positions=frac, cell=[a, a, c], pbc=True)


@pytest.fixture(scope="module")
def path(structure) -> ContinuousKPath:
    return continuous_kpath(structure)


def test_walk_is_continuous_and_uses_every_segment(path) -> None:
    labels = path.step_labels()
    assert all(a[1] == b[0] for a, b in zip(labels[:-1], labels[1:], strict=True))
    assert {i for i, _ in path.steps} == set(range(len(path.segments)))
    kpoints = path.assemble(path.segment_kpoints(DENSITY))
    # No jump anywhere: consecutive k-points are at most one sampling step apart.
    steps = np.diff(arc_length(kpoints, path.rec_lattice))
    assert steps.max() <= 1.0 / DENSITY + 1e-9
    assert steps.min() > 0  # junction duplicates dropped
    assert path.is_closed()  # an Eulerian circuit
    assert len(path.steps) >= len(path.segments)


def test_unique_segments_reassemble_to_pymatgens_continuous_path(structure, path) -> None:
    """Values computed once per unique segment and assembled equal pymatgen's own continuous
    path built from every segment of the Latimer–Munro path, repeats and reversals included."""
    kpath = HighSymmKpath(AseAtomsAdaptor.get_structure(structure), path_type="latimer_munro")
    segments = path.segment_kpoints(DENSITY)
    # The line-mode band structure pymatgen would get from a DFT code, one branch per segment.
    kpoints = np.concatenate(segments)
    line = BandStructureSymmLine(
        kpoints, {Spin.up: _band(kpoints)[None, :]}, kpath.rec_lattice, 0.0,
        kpath.kpath["kpoints"],
    )
    direct = HighSymmKpath.get_continuous_path(line)
    direct_k = np.array([k.frac_coords for k in direct.kpoints])
    direct_e = direct.bands[Spin.up][0]
    # pymatgen repeats the shared end point of consecutive branches; ours keeps it once.
    keep = np.concatenate([[True], np.linalg.norm(np.diff(direct_k, axis=0), axis=1) > 1e-9])
    ours_k = path.assemble(segments)
    ours_e = path.assemble([_band(s) for s in segments])
    np.testing.assert_allclose(ours_k, direct_k[keep], atol=1e-12)
    np.testing.assert_allclose(ours_e, direct_e[keep], atol=1e-12)


def test_labels_sit_at_their_points_along_the_arc(path) -> None:
    kpoints = path.assemble(path.segment_kpoints(DENSITY))
    arc = arc_length(kpoints, path.rec_lattice)
    labels = path.label_positions()
    assert labels[0][1] == 0.0
    assert labels[-1][1] == pytest.approx(arc[-1])
    assert len(labels) == len(path.steps) + 1
    for label, position in labels:
        i = int(np.argmin(abs(arc - position)))
        assert arc[i] == pytest.approx(position, abs=1e-9)
        np.testing.assert_allclose(kpoints[i], path.points[label], atol=1e-12)


def test_json_round_trip(path) -> None:
    back = ContinuousKPath.from_json(path.to_json())
    assert back.segments == path.segments and back.steps == path.steps
    np.testing.assert_array_equal(back.rec_lattice, path.rec_lattice)
    assert back.points.keys() == path.points.keys()


def test_arc_length_uses_the_2pi_reciprocal_lattice() -> None:
    # Simple cubic a = 2 Å: Γ -> X (1/2, 0, 0) is π/a Å⁻¹ with b = 2π/a.
    rec = 2 * np.pi * np.eye(3) / 2.0
    arc = arc_length(np.array([[0, 0, 0], [0.25, 0, 0], [0.5, 0, 0]]), rec)
    np.testing.assert_allclose(arc, [0, np.pi / 4, np.pi / 2])


# --- smoothing and resampling ----------------------------------------------------------------


def _uneven_arc(length: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.5, 1.5, n - 1)
    return np.concatenate([[0.0], np.cumsum(steps)]) * length / steps.sum()


@pytest.mark.parametrize("periods", [1, 3])
def test_resampling_without_smoothing_follows_a_cosine_band(periods) -> None:
    length = 7.0
    arc = _uneven_arc(length, 400)
    band = np.cos(2 * np.pi * periods * arc / length)
    out_arc, out = smooth_resample(arc, band, 256, width=0.0)
    np.testing.assert_allclose(out_arc, np.linspace(0, length, 256))
    # Linear interpolation of steps <= 1.5 L/399: error <= (k h)^2 / 8.
    h = 1.5 * length / 399
    bound = (2 * np.pi * periods / length * h) ** 2 / 8
    np.testing.assert_allclose(out, np.cos(2 * np.pi * periods * out_arc / length), atol=bound)


@pytest.mark.parametrize("width", [0.05, 0.2])
def test_gaussian_smoothing_damps_a_periodic_band_as_theory_says(width) -> None:
    """On a closed path a Gaussian of width σ multiplies cos(q s) by exp(-(q σ)^2 / 2)."""
    length, periods = 7.0, 3
    q = 2 * np.pi * periods / length
    arc = _uneven_arc(length, 600, seed=1)
    bands = np.stack([np.cos(q * arc), 2.0 + 0.5 * np.sin(q * arc)], axis=1)
    out_arc, out = smooth_resample(arc, bands, 256, width=width, periodic=True)
    damp = np.exp(-((q * width) ** 2) / 2)
    np.testing.assert_allclose(out[:, 0], damp * np.cos(q * out_arc), atol=2e-3)
    np.testing.assert_allclose(out[:, 1], 2.0 + 0.5 * damp * np.sin(q * out_arc), atol=2e-3)


def test_open_path_smoothing_keeps_a_constant_band_and_resample_checks_input() -> None:
    arc = _uneven_arc(3.0, 50)
    _, out = smooth_resample(arc, np.full((50, 2), 1.25), 64, width=0.3)
    np.testing.assert_allclose(out, 1.25)
    with pytest.raises(ValueError, match="width"):
        smooth_resample(arc, np.zeros(50), 64, width=-1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        smooth_resample(arc[::-1], np.zeros(50), 64, width=0.1)


def test_a_disconnected_latimer_munro_path_is_bridged(mirror_dir, tmp_path) -> None:
    """TlInS2 (mp-22566): its Latimer–Munro path falls into parts, on which pymatgen's
    `get_continuous_path` fails ("G is not connected"); the shortest segment joins them."""
    from esrepro.selection import fetch_structures

    [atoms] = fetch_structures(["mp-22566"], mirror_dir, tmp_path).values()
    lm = HighSymmKpath(AseAtomsAdaptor.get_structure(atoms), path_type="latimer_munro")
    lm_segments = {
        (a, b) for branch in lm.kpath["path"] for a, b in zip(branch[:-1], branch[1:], strict=True)
    }
    path = continuous_kpath(atoms)
    assert len(path.bridges) == 1
    bridge = path.segments[path.bridges[0]]
    assert bridge not in lm_segments and bridge[::-1] not in lm_segments
    assert set(path.segments) - {bridge} == lm_segments
    labels = path.step_labels()
    assert all(a[1] == b[0] for a, b in zip(labels[:-1], labels[1:], strict=True))
    assert {i for i, _ in path.steps} == set(range(len(path.segments)))
    assert ContinuousKPath.from_json(path.to_json()).bridges == path.bridges
