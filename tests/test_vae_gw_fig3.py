"""VAE-GW's Fig. 3 pieces without GPAW: k-space distances on known lattices, the Γ–K–M–Γ path
and its dense K → M points, the path product's settings, key and file, the state scaling it
shares with the grid export, the k-distance metrics, the unfolding of irreducible k-points onto
the Brillouin zone (checked against GPAW's own reduction) and the latent interpolation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from esrepro.dft.kinds import kind_of
from esrepro.dft.path_wavefunctions import (
    PathSettings,
    PathWavefunctionProduct,
    path_cache_key,
    state_grids,
)
from esrepro.dft.wavefunction_grid import GridSampler, GridSpec
from esrepro.dft.wavefunction_product import WavefunctionSettings
from esrepro.layer_kspace import (
    brillouin_zone,
    hexagonal_points,
    k_distance,
    kpoint_star,
    lattice_point_group,
    path_kpoints,
    same_kpoint,
    standard_cell,
    zone_images,
)
from esrepro.papers.vae_gw.fig3 import (
    interpolate_latents,
    k_distance_record,
    kpoint_map,
    star_points,
    state_distances,
    zone_corners,
)

A = 3.18
HEX_120 = np.array([[A, 0, 0], [-A / 2, A * 3**0.5 / 2, 0], [0, 0, 20.0]])  # ASE's mx2 cell
HEX_60 = np.array([[A, 0, 0], [A / 2, A * 3**0.5 / 2, 0], [0, 0, 20.0]])
SQUARE = np.diag([A, A, 20.0])
GAMMA_K = 4 * np.pi / (3 * A)  # textbook |ΓK|, |ΓM| and |KM| of a hexagonal lattice
GAMMA_M = 2 * np.pi / (3**0.5 * A)
K_M = 2 * np.pi / (3 * A)


def test_lattice_point_groups_have_the_holohedry_orders() -> None:
    assert len(lattice_point_group(HEX_120)) == 12 and len(lattice_point_group(HEX_60)) == 12
    assert len(lattice_point_group(SQUARE)) == 8
    assert len(lattice_point_group(np.diag([A, 1.3 * A, 20.0]))) == 4
    np.testing.assert_array_equal(lattice_point_group(SQUARE)[0], np.eye(2))


@pytest.mark.parametrize("cell", [HEX_120, HEX_60], ids=["120deg", "60deg"])
def test_distances_between_special_points_of_a_hexagonal_layer(cell) -> None:
    points = hexagonal_points(cell)
    assert k_distance(points["K"], points["G"], cell)[0] == pytest.approx(GAMMA_K)
    assert k_distance(points["M"], points["G"], cell)[0] == pytest.approx(GAMMA_M)
    assert k_distance(points["K"], points["M"], cell)[0] == pytest.approx(K_M)
    # Without symmetry too: K and M are adjacent corners of one edge.
    assert k_distance(points["K"], points["M"], cell, symmetric=False)[0] == pytest.approx(K_M)


def test_minimum_image_and_symmetry_star() -> None:
    b = 4 * np.pi / (3**0.5 * A)  # |b1| = |b2|
    # (5/6, 0) is (-1/6, 0) one reciprocal vector away: |b| / 6 from Γ, not 5|b| / 6.
    assert k_distance([5 / 6, 0], [0, 0], HEX_120)[0] == pytest.approx(b / 6)
    # (1/2, 1/2) is an M of the 120° cell (GPAW's irreducible M of MoS2), equivalent to (1/2, 0)
    # by symmetry; without the star the two Ms are |ΓM| apart.
    assert k_distance([0.5, 0.5], [0.5, 0.0], HEX_120)[0] == pytest.approx(0.0, abs=1e-12)
    assert k_distance([0.5, 0.5], [0.5, 0.0], HEX_120, symmetric=False)[0] == pytest.approx(
        GAMMA_M)
    assert same_kpoint(np.array([[0.5, 0.5], [0.5, 0.0], [1 / 3, 1 / 3]]), [0.5, 0], HEX_120
                       ).tolist() == [True, True, False]
    # Square lattice: (1/3, 0) and (0, 1/3) are one star, (1/3, 1/3) is not on it.
    assert k_distance([0, 1 / 3], [1 / 3, 0], SQUARE)[0] == pytest.approx(0.0, abs=1e-12)
    assert k_distance([1 / 3, 1 / 3], [1 / 3, 0], SQUARE)[0] == pytest.approx(
        2 * np.pi / A / 3)


def test_hexagonal_points_refuse_other_lattices() -> None:
    with pytest.raises(ValueError, match="not a hexagonal layer"):
        hexagonal_points(SQUARE)


def test_path_kpoints_hold_every_special_point_and_spread_by_length() -> None:
    kpts, arc = path_kpoints(HEX_120, "GKMG", 10)
    assert kpts.shape == (10, 3) and np.all(np.diff(arc) > 0)
    assert arc[-1] == pytest.approx(GAMMA_K + K_M + GAMMA_M)
    special = [np.argmin(np.abs(arc - a)) for a in (0, GAMMA_K, GAMMA_K + K_M, arc[-1])]
    for i, label in zip(special, "GKMG", strict=True):
        np.testing.assert_allclose(kpts[i, :2], hexagonal_points(HEX_120)[label], atol=1e-12)
    assert special == [0, 4, 6, 9]  # 6 interior points: 3 on ΓK, 1 on KM, 2 on MΓ
    with pytest.raises(ValueError, match="cannot hold the 4 special points"):
        path_kpoints(HEX_120, "GKMG", 3)


def test_path_settings_put_dense_points_on_k_to_m() -> None:
    where = PathSettings(n_kpoints=10, n_dense=15).kpoints(HEX_120)
    kpts, arc, dense = where["kpoints"], where["arc"], where["dense"]
    assert where["trajectory"].sum() == 10 and dense.sum() == 15
    # K, M and the one trajectory point between them are dense points too (not repeated).
    assert len(kpts) == 10 + 15 - 3 and (where["trajectory"] & dense).sum() == 3
    np.testing.assert_allclose(where["special_arc"], [0, GAMMA_K, GAMMA_K + K_M, arc[9]])
    dense_arc = np.sort(arc[dense])
    np.testing.assert_allclose(dense_arc, np.linspace(GAMMA_K, GAMMA_K + K_M, 15))
    # Every k-point's arc is its distance along the path from Γ: check the dense ones against K.
    points = hexagonal_points(HEX_120)
    np.testing.assert_allclose(
        k_distance(kpts[dense], points["K"], HEX_120, symmetric=False), arc[dense] - GAMMA_K,
        atol=1e-12)
    with pytest.raises(ValueError, match="segment KG is not a leg"):
        PathSettings(dense_segment="KG").kpoints(HEX_120)


def test_path_settings_come_from_the_grid_export_and_key_every_setting() -> None:
    export = WavefunctionSettings(ecut_ev=300.0, bands_per_side=5, z_window=10.0)
    settings = PathSettings.from_wavefunctions(export, n_kpoints=12, n_dense=7)
    assert (settings.ecut_ev, settings.bands_per_side, settings.z_window) == (300.0, 5, 10.0)
    assert settings.ground_state().ecut_ev == 300.0
    assert PathSettings.from_dict(settings.to_dict()) == settings
    assert kind_of(settings).name == "gw-path-wavefunctions"
    from esrepro.papers.vae_gw.structures import all_materials

    atoms = next(m for m in all_materials() if m.id == "MoS2-2H").atoms(vacuum=7.5)
    versions = {"gpaw": "26.7.0", "gpaw-data": "1.2.1", "ase": "3.26"}
    key = path_cache_key(atoms, settings, versions)
    assert key == path_cache_key(atoms, settings, {**versions, "ase": "3.27"})
    for change in ({"n_kpoints": 13}, {"n_dense": 8}, {"band_offsets": (0,)},
                   {"ecut_ev": 350.0}, {"degenerate_tolerance_ev": 1e-2},
                   {"eigenvalue_bands": (3, 4)}):
        assert path_cache_key(atoms, dataclasses.replace(settings, **change), versions) != key
    assert path_cache_key(atoms, settings, {**versions, "gpaw": "26.8.0"}) != key


def _product(n_k: int = 4, n_z: int = 4, n_xy: int = 8) -> PathWavefunctionProduct:
    rng = np.random.default_rng(0)
    return PathWavefunctionProduct(
        numbers=np.array([42, 16, 16]), cell=HEX_120, positions=np.zeros((3, 3)),
        kpoints=rng.random((n_k, 3)), arc=np.arange(n_k, dtype=float),
        trajectory=np.arange(n_k) < 3, dense=np.arange(n_k) >= 1,
        special_arc=np.array([0.0, 1.0, 3.0]), n_ref=13, band_index=np.array([12]),
        energies=rng.random((n_k, 1)),
        states=rng.random((n_k, 1, n_z, n_xy, n_xy)).astype(np.float16),
        state_maxima=rng.random((n_k, 1)), fermi_level=-4.2, band_energies_start=9,
        band_energies=rng.random((n_k, 8)), vacuum_level=3.5, meta={"a": 1},
    )


def test_path_product_round_trips_and_refuses_damaged_files(tmp_path) -> None:
    product = _product()
    product.save(tmp_path / "p.npz")
    again = PathWavefunctionProduct.load(tmp_path / "p.npz")
    for name in ("kpoints", "arc", "trajectory", "dense", "special_arc", "band_index",
                 "energies", "states", "state_maxima", "band_energies"):
        np.testing.assert_array_equal(getattr(again, name), getattr(product, name), name)
    assert again.fermi_level == -4.2 and again.meta == {"a": 1}
    assert again.vacuum_level == 3.5 and again.band_energies_start == 9
    assert again.band_offsets.tolist() == [-1]
    # n_ref 13: bands 9..16 are the 4 valence and 4 conduction bands around the gap.
    assert again.band_energy_offsets.tolist() == [-4, -3, -2, -1, 0, 1, 2, 3]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="damaged path wavefunction product file"):
        PathWavefunctionProduct.load(tmp_path / "bad.npz")


def test_state_grids_average_degenerate_states_and_scale_like_the_grid_export() -> None:
    shape = (6, 6, 10)
    cell = np.diag([3.0, 3.0, 10.0])
    sampler = GridSampler(shape, cell, np.array([[0, 0, 5.0]]), GridSpec(n_z=4, n_xy=6,
                                                                         z_window=4.0))
    rng = np.random.default_rng(1)
    u = {n: rng.normal(size=shape) + 1j * rng.normal(size=shape) for n in range(10, 14)}
    energies = np.array([-2.0, -1.0, -1.0005, 1.0])  # bands 11 and 12 degenerate
    calls = []

    def periodic_part(n):
        calls.append(n)
        return u[n]

    grids = state_grids(periodic_part, energies, 10, [12], sampler, tolerance=1e-3)
    assert sorted(calls) == [11, 12]  # only the wanted band's degenerate set is evaluated
    grid, peak = grids[12]
    mean = (sampler.modulus_squared(u[11]) + sampler.modulus_squared(u[12])) / 2
    assert grid.dtype == np.float16 and grid.shape == (4, 6, 6)
    assert peak == pytest.approx(mean.max())
    np.testing.assert_allclose(grid, mean / mean.max(), atol=1e-3)
    alone = state_grids(lambda n: u[n], energies, 10, [13], sampler, tolerance=1e-3)[13]
    np.testing.assert_allclose(alone[0], sampler.modulus_squared(u[13]) / alone[1], atol=1e-3)


def test_state_distances_use_each_materials_own_cell() -> None:
    states = pd.DataFrame({"material_id": ["a", "a", "b", "b"], "kx": [0, 0.5, 0, 0.5],
                           "ky": [0, 0.5, 0, 0.0]})
    other = HEX_120 * 2  # twice the lattice constant: half the distances
    distance, on = state_distances(states, {"a": HEX_120, "b": other}, np.zeros(2))
    np.testing.assert_allclose(distance, [0, GAMMA_M, 0, GAMMA_M / 2])
    assert on.tolist() == [True, False, True, False]


def test_k_distance_record_separates_training_states_and_bins_the_rest() -> None:
    frame = pd.DataFrame({
        "material_id": ["t1", "t1", "t1", "t2", "t2", "h", "h"],
        "heldout": [False, False, False, False, False, True, True],
        "k_index": [0, 1, 2, 0, 1, 0, 1],
        "distance": [0.0, 0.3, 1.1, 0.0, 0.3, 0.0, 1.1],
        "trained": [True, False, False, True, False, False, False],
        "abs_error": [0.01, 0.2, 0.5, 0.03, 0.4, 0.1, 0.7],
    })
    record = k_distance_record(frame, bin_width=0.5)
    assert record["train"]["n"] == 2 and record["train"]["mae"] == pytest.approx(0.02)
    assert record["trainable_other_k"]["n"] == 3
    assert record["trainable_other_k"]["mae"] == pytest.approx((0.2 + 0.5 + 0.4) / 3)
    assert record["heldout_tmds"]["mae"] == pytest.approx(0.4)
    bins = record["by_distance"]
    assert [b["distance_lo"] for b in bins] == [0.0, 0.5, 1.0]
    assert bins[0]["trainable_other_k"]["mae"] == pytest.approx(0.3)  # 0.2 and 0.4 at 0.3
    assert bins[0]["heldout_tmds"]["mae"] == pytest.approx(0.1)  # held-out states at 0 count
    assert bins[1]["trainable_other_k"]["n"] == 0
    assert bins[2]["trainable_other_k"]["mae"] == pytest.approx(0.5)
    # Ranks of (distance, MAE): (1.5, 1), (1.5, 2), (3, 3): correlation 1.5 / sqrt(1.5 * 2).
    assert record["spearman_trainable_other_k"] == pytest.approx(3**0.5 / 2)
    assert record["n_trained_materials"] == 2


def test_latent_interpolation_is_linear_in_arc_length_and_exact_at_the_nodes() -> None:
    arc = np.array([0.0, 1.0, 3.0])
    mu = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 2.0]])
    out = interpolate_latents(arc, mu, np.array([0.0, 0.5, 1.0, 2.0, 3.0]))
    np.testing.assert_allclose(out, [[0, 0], [0.5, 1], [1, 2], [2, 2], [3, 2]])
    with pytest.raises(ValueError, match="outside the trajectory"):
        interpolate_latents(arc, mu, np.array([3.5]))
    with pytest.raises(ValueError, match="must increase"):
        interpolate_latents(arc[::-1], mu, np.array([1.0]))


# GPAW's irreducible k-points and weights of the Γ-centred 6×6×1 grid of MoS2-2H (120° cell, 12
# symmetry operations with time reversal), as `gpaw.new.brillouin` reduces them (and as the GW
# products list them): the live reduction is test_gpaw_reduction_is_what_the_stars_unfold.
IBZ_6X6 = np.array([[0, 0], [1 / 6, 0], [1 / 3, -1 / 6], [1 / 3, 0], [1 / 3, 1 / 3],
                    [1 / 2, 1 / 3], [1 / 2, 1 / 2]])
WEIGHTS_6X6 = np.array([1, 6, 6, 6, 2, 12, 3]) / 36
TO_60 = np.array([[1, 1], [0, 1]])  # fractional k of the 120° cell -> of the 60° cell


def _unfolds_to_the_grid(ibz: np.ndarray, weights: np.ndarray, cell: np.ndarray, n: int) -> None:
    stars = [kpoint_star(k, cell) for k in ibz]
    np.testing.assert_array_equal([len(s) for s in stars], np.round(weights * n * n))
    points = np.vstack(stars)
    on_grid = np.round(points * n)
    np.testing.assert_allclose(points * n, on_grid, atol=1e-9)
    # Every point of the n×n grid exactly once.
    assert sorted(map(tuple, (on_grid % n).astype(int).tolist())) == [
        (i, j) for i in range(n) for j in range(n)]


def test_irreducible_kpoints_unfold_to_the_whole_grid_with_gpaws_weights() -> None:
    _unfolds_to_the_grid(IBZ_6X6, WEIGHTS_6X6, HEX_120, 6)
    # The same k-points in the 60° cell (a2' = a1 + a2): k' = (k1, k1 + k2).
    _unfolds_to_the_grid(IBZ_6X6 @ TO_60, WEIGHTS_6X6, HEX_60, 6)


@pytest.mark.gpaw
def test_gpaw_reduction_is_what_the_stars_unfold() -> None:
    """GPAW's own reduction of the Γ-centred 6×6×1 grid, for a 2H, a 1T and a square layer."""
    from gpaw.new.brillouin import MonkhorstPackKPoints
    from gpaw.new.symmetry import create_symmetries_object

    from esrepro.papers.vae_gw.structures import all_materials

    for material_id in ("MoS2-2H", "TiS2-1T", "Fe2S2-FeSe"):
        atoms = next(m for m in all_materials() if m.id == material_id).atoms(vacuum=7.5)
        ibz = MonkhorstPackKPoints((6, 6, 1), shift=(1 / 12, 1 / 12, 0)).reduce(
            create_symmetries_object(atoms))
        assert ibz.weight_k.sum() == pytest.approx(1.0)
        _unfolds_to_the_grid(ibz.kpt_kc[:, :2], ibz.weight_k, np.array(atoms.cell), 6)
        if material_id == "MoS2-2H":
            np.testing.assert_allclose(ibz.kpt_kc[:, :2], IBZ_6X6, atol=1e-12)
            np.testing.assert_allclose(ibz.weight_k, WEIGHTS_6X6, atol=1e-12)


def test_brillouin_zone_and_zone_images_of_known_lattices() -> None:
    zone = brillouin_zone(HEX_120)
    assert len(zone) == 6
    np.testing.assert_allclose(np.linalg.norm(zone, axis=1), GAMMA_K, rtol=1e-12)
    area = 0.5 * abs(np.sum(zone[:, 0] * np.roll(zone[:, 1], -1)
                            - np.roll(zone[:, 0], -1) * zone[:, 1]))
    assert area == pytest.approx((2 * np.pi) ** 2 / (A * A * 3**0.5 / 2))
    square = brillouin_zone(SQUARE)
    np.testing.assert_allclose(np.abs(square), np.pi / A, rtol=1e-12)
    # K is a corner shared by three zones, M an edge shared by two; Γ and a general point lie
    # inside once.
    points = hexagonal_points(HEX_120)
    assert len(zone_images(points["K"], HEX_120)) == 3
    assert len(zone_images(points["M"], HEX_120)) == 2
    assert len(zone_images(np.array([1 / 6, 0.0]), HEX_120)) == 1
    np.testing.assert_allclose(np.linalg.norm(zone_images(points["M"], HEX_120), axis=1),
                               GAMMA_M)
    # The standard frame: a1 along x with |a1| = 1, whatever the input's orientation.
    turn = np.array([[np.cos(0.3), np.sin(0.3), 0], [-np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    np.testing.assert_allclose(standard_cell(HEX_120 @ turn), HEX_120[:2, :2] / A, atol=1e-12)


def test_zone_map_pools_one_star_over_materials_of_any_size_and_cell_setting() -> None:
    """Two hexagonal materials (different a, 120° and 60° cells) fall on the same 36 points in
    units of 2π/a; a square one is left out; each star's MAE pools its states."""
    other = HEX_60 * np.array([[1.1], [1.1], [1.0]])
    rows = []
    for material_id, ibz, heldout, error in (("a", IBZ_6X6, False, 0.1),
                                             ("b", IBZ_6X6 @ TO_60, False, 0.3),
                                             ("c", IBZ_6X6, True, 1.0),
                                             ("sq", np.array([[0, 0], [0.5, 0]]), False, 9.0)):
        for i, k in enumerate(ibz):
            for band in range(2):  # two states per k-point
                rows.append({"material_id": material_id, "heldout": heldout, "kx": k[0],
                             "ky": k[1], "at_trained_k": i == 0,
                             "abs_error": error * (i + 1) + 0.01 * band})
    frame = pd.DataFrame(rows)
    result = kpoint_map(frame, {"a": HEX_120, "b": other, "c": HEX_120, "sq": SQUARE})
    assert result["left_out"] == ["sq"]
    np.testing.assert_allclose(np.abs(zone_corners()).max(axis=0), [2 / 3, 1 / 3**0.5])
    trainable = [e for e in result["kpoints"] if e["group"] == "trainable"]
    heldout = [e for e in result["kpoints"] if e["group"] == "heldout_tmds"]
    assert len(trainable) == len(heldout) == 7
    assert sum(e["multiplicity"] for e in trainable) == 36
    # Drawn points, all inside the hexagon: Γ once, M at its 6 edge midpoints, K at the 6
    # corners, the rest 6 or 12.
    drawn = [star_points(e["k_cartesian"]) for e in trainable]
    assert sorted(map(len, drawn)) == [1, 6, 6, 6, 6, 6, 12]
    zone = zone_corners()
    assert max(np.linalg.norm(p, axis=1).max() for p in drawn) <= 2 / 3 + 1e-9
    edges = (zone + np.roll(zone, -1, axis=0)) / 2  # the six M points
    inside = [np.all(p @ edges.T <= (edges**2).sum(axis=1) + 1e-9) for p in drawn]
    assert all(inside)
    gamma = trainable[0]
    assert gamma["k_cartesian"] == [0.0, 0.0] and gamma["at_trained_k"]
    assert gamma["n"] == 4 and gamma["n_materials"] == 2
    assert gamma["mae"] == pytest.approx((0.1 + 0.11 + 0.3 + 0.31) / 4)
    assert not any(e["at_trained_k"] for e in trainable[1:])
    k_point = next(e for e in trainable if e["multiplicity"] == 2)
    np.testing.assert_allclose(k_point["k_cartesian"], [2 / 3, 0.0], atol=1e-12)
    # K is the fifth irreducible point of both cells' lists.
    assert k_point["mae"] == pytest.approx((0.5 + 0.51 + 1.5 + 1.51) / 4)
    assert heldout[0]["mae"] == pytest.approx(1.005) and heldout[0]["n_materials"] == 1
