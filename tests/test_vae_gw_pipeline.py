"""VAE-GW's pipeline on synthetic products: the state table and its checks, the splits (held-out
TMDs never trained on, independent of row order), the metrics' schema and their invariance to
row order, and featurize -> vae -> train -> k_distance, trajectory -> evaluate end to end on a
small made-up set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esrepro.dft.path_wavefunctions import PathWavefunctionProduct
from esrepro.dft.wavefunction_product import WavefunctionProduct
from esrepro.papers.vae_gw import train
from esrepro.papers.vae_gw.config import (
    GWParams,
    GWTrain,
    KDistanceConfig,
    KDistanceParams,
    PathParams,
    SplitParams,
    TrainConfig,
    TrajectoryConfig,
    VAEConfig,
    VAEParams,
    VAESplit,
    VAETrain,
)
from esrepro.papers.vae_gw.data import (
    density_powers,
    gw_splits,
    reciprocal_numbers,
    state_table,
    vae_split,
)
from esrepro.papers.vae_gw.evaluate import (
    CLASSES,
    MODELS,
    comparisons,
    error_record,
    example_states,
    gw_metrics,
)
from helpers import synthetic_gw_product

N_Z, N_XY = 4, 8  # small grids: the plain VAE needs a multiple of 4 in-plane


def synthetic_waves(gw, per_side: int = 3, seed: int = 0) -> WavefunctionProduct:
    """Wavefunction grids for the states of `gw` and one more band on each side: energies on
    the same made-up bands (so they agree with the GW labels), Gaussian blobs whose width and
    height follow the band, each scaled to a maximum of 1."""
    rng = np.random.default_rng(seed)
    n_k = len(gw.kpoints)
    bands = np.arange(gw.n_ref - per_side, gw.n_ref + per_side)
    k_index, band_index = np.repeat(np.arange(n_k), len(bands)), np.tile(bands, n_k)
    offsets = band_index - gw.n_ref
    gap = gw.gap_dft
    energies = np.where(offsets < 0, offsets + 1.0, offsets + gap) + 0.1 * k_index
    xy = np.arange(N_XY) - N_XY / 2
    grids = []
    for k, offset in zip(k_index, offsets, strict=True):
        width = 1.0 + 0.3 * (offset + per_side) + 0.1 * k
        plane = np.exp(-(xy[:, None] ** 2 + xy[None] ** 2) / (2 * width**2))
        profile = np.exp(-((np.arange(N_Z) - (offset % N_Z)) ** 2))
        grid = profile[:, None, None] * plane[None] + 0.01 * rng.random((N_Z, N_XY, N_XY))
        grids.append(grid / grid.max())
    states = np.stack(grids)
    density = states.mean(axis=0)
    return WavefunctionProduct(
        numbers=gw.numbers, cell=gw.cell, positions=gw.positions, kpoints=gw.kpoints,
        k_weights=gw.k_weights, n_ref=gw.n_ref, k_index=k_index, band_index=band_index,
        energies=energies.astype(float), occupations=(offsets < 0).astype(float),
        states=states.astype(np.float16), state_maxima=np.ones(len(states)),
        density=density / density.max(), density_max=0.3,
        super_states=np.stack([density, density[::-1]]) / density.max(),
        super_maxima=np.ones(2), z_offsets=np.linspace(-4, 4, N_Z), energy_reference=gap / 2,
    )


def test_state_table_labels_the_window_and_leaves_the_rest_unlabelled() -> None:
    gw = synthetic_gw_product(gap=1.5, n_k=3, below=2, above=2)
    table = state_table("MoS2-2H", gw, synthetic_waves(gw, per_side=3), heldout=True)
    assert len(table) == 3 * 6
    # Equal numbers of valence and conduction states at every k-point.
    per_k = table.groupby("k_index")["band_offset"].agg(lambda o: (o < 0).sum() - (o >= 0).sum())
    assert (per_k == 0).all()
    window = table[table["in_gw_window"]]
    assert len(window) == 3 * 4 and table.loc[~table["in_gw_window"], "delta_gw"].isna().all()
    # synthetic_gw_product moves valence states by -0.3 eV and conduction states by +0.5 eV.
    expected = np.where(window["band_offset"] < 0, -0.3, 0.5)
    np.testing.assert_allclose(window["delta_gw"], expected)
    # Energies from the vacuum level (4.5 eV in the synthetic product).
    vbm = window[(window["k_index"] == 0) & (window["band_offset"] == -1)]["e_dft"].item()
    assert vbm == pytest.approx(0.0 - 4.5)
    assert set(window["band_from_gap"]) == {-2, -1, 1, 2}
    assert table["heldout"].all() and table["state_id"].is_unique


def test_state_table_refuses_products_of_different_ground_states() -> None:
    gw = synthetic_gw_product()
    waves = synthetic_waves(gw)
    shifted = dataclasses.replace(waves, energies=waves.energies + 0.2)
    with pytest.raises(ValueError, match="X: Kohn-Sham energies .* differ by up to 0.200 eV"):
        state_table("X", gw, shifted, heldout=False)
    other_k = dataclasses.replace(waves, kpoints=waves.kpoints + 0.01)
    with pytest.raises(ValueError, match="X: the wavefunction product's k-points differ"):
        state_table("X", gw, other_k, heldout=False)


def test_reciprocal_numbers_and_density_powers() -> None:
    a = 3.2
    hexagonal = np.array([[a, 0, 0], [-a / 2, a * 3**0.5 / 2, 0], [0, 0, 20.0]])
    b1, b2, cos_b = reciprocal_numbers(hexagonal)
    assert b1 == pytest.approx(4 * np.pi / (a * 3**0.5)) and b2 == pytest.approx(b1)
    assert cos_b == pytest.approx(0.5)  # reciprocal vectors of a 120-degree cell: 60 degrees
    assert reciprocal_numbers(np.diag([3.0, 3.0, 20.0]))[2] == pytest.approx(0.0)
    rho = np.array([[0.2, 0.5], [1.0, 0.0]])
    powers = density_powers(rho, 3)
    assert powers.shape == (3, 2, 2) and np.allclose(powers.max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(powers[2], rho**3)


def _states(n_materials: int = 6, per_material: int = 20) -> pd.DataFrame:
    rows = []
    for m in range(n_materials):
        for i in range(per_material):
            rows.append({"state_id": f"M{m}|k{i}|n0", "material_id": f"M{m}", "heldout": m < 2,
                         "is_metal": m % 3 == 0})
    return pd.DataFrame(rows)


def test_splits_never_train_on_the_held_out_tmds_and_ignore_row_order() -> None:
    states = _states()
    parts = gw_splits(states, 0.1, 0.34, 0.1, seed=0)
    for labels in parts.values():
        assert set(labels[states["heldout"]]) == {"heldout"}
        assert set(labels[~states["heldout"]]) <= {"train", "val", "test"}
    by_material = pd.Series(parts["material_split"]).groupby(states["material_id"]).agg(set)
    test_materials = [m for m, p in by_material.items() if "test" in p]
    assert test_materials and all(by_material[m] == {"test"} for m in test_materials)
    assert 0 < (parts["state_split"] == "test").sum() < (~states["heldout"]).sum()
    shuffled = states.sample(frac=1.0, random_state=3)
    again = gw_splits(shuffled, 0.1, 0.34, 0.1, seed=0)
    for name in parts:
        assert dict(zip(states["state_id"], parts[name], strict=True)) == dict(
            zip(shuffled["state_id"], again[name], strict=True))
    vae = vae_split(states, holdout_materials=1, val_fraction=0.1, test_fraction=0.1, seed=0)
    assert set(vae[states["heldout"]]) == {"heldout"}
    holdout = set(states.loc[vae == "holdout", "material_id"])
    assert len(holdout) == 1 and not holdout & {"M0", "M1"}


def _predictions(seed: int = 0) -> pd.DataFrame:
    states = _states()
    parts = gw_splits(states, 0.2, 0.34, 0.0, seed=0)
    rng = np.random.default_rng(seed)
    frame = states.assign(delta_gw=rng.normal(0.5, 0.4, len(states)), **parts)
    for i, model in enumerate(MODELS):
        for split in parts:
            frame[f"{model}__{split}"] = frame["delta_gw"] + rng.normal(0, 0.05 * (i + 1),
                                                                        len(frame))
    return frame


def test_metrics_follow_the_schema_and_ignore_row_order() -> None:
    frame = _predictions()
    metrics = gw_metrics(frame)
    for model in MODELS:
        assert set(metrics[model]) == {"state_split", "material_split", "heldout_tmds"}
        for split in ("state_split", "material_split"):
            assert set(metrics[model][split]) == set(CLASSES)
            block = metrics[model][split]
            assert set(block["all"]) == {"train", "test"}
            assert block["all"]["test"]["n"] == (frame[split] == "test").sum()
            assert (block["semiconductor"]["test"]["n"] + block["metal"]["test"]["n"]
                    == block["all"]["test"]["n"])
        assert set(metrics[model]["heldout_tmds"]["all"]) == {"test"}
        assert metrics[model]["heldout_tmds"]["all"]["test"]["n"] == frame["heldout"].sum()
    test = frame[frame["material_split"] == "test"]
    assert metrics["gw_net"]["material_split"]["all"]["test"]["mae"] == pytest.approx(
        (test["gw_net__material_split"] - test["delta_gw"]).abs().mean())
    shuffled = gw_metrics(frame.sample(frac=1.0, random_state=7))
    assert json.dumps(shuffled, sort_keys=True) == json.dumps(metrics, sort_keys=True)


def test_comparisons_pair_per_material_errors_on_the_material_split() -> None:
    frame = _predictions()
    record = comparisons(frame)["material_split"]["gw_net_vs_gbm"]
    n_test_materials = frame.loc[frame["material_split"] == "test", "material_id"].nunique()
    assert record["n"] == n_test_materials and record["a"] == "gw_net"
    assert record["winner"] is None  # fewer than 10 materials never resolve
    states = comparisons(frame)["state_split"]["gw_net_vs_mean"]
    assert states["n"] == (frame["state_split"] == "test").sum()


def test_error_record_and_a_missing_column() -> None:
    assert error_record([1.0, 2.0], [1.5, 1.0]) == {
        "mae": 0.75, "rmse": pytest.approx(np.sqrt((0.25 + 1.0) / 2)), "n": 2}
    assert error_record([], [])["n"] == 0
    with pytest.raises(ValueError, match="predictions: missing column.*gbm__material_split"):
        gw_metrics(_predictions().drop(columns=["gbm__material_split"]))


def test_example_states_pick_valence_and_conduction_states_of_the_material() -> None:
    gw = synthetic_gw_product(n_k=3)
    table = state_table("MoS2-2H", gw, synthetic_waves(gw), heldout=True)
    rows = example_states(table, "MoS2-2H")
    picked = table.loc[rows, ["k_index", "band_offset"]].to_numpy().tolist()
    assert picked == [[0, -1], [0, 0], [2, -1]]
    assert example_states(table, "WS2-2H") == []


# --------------------------------------------------------------------------- stages end to end


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> Path:
    """dft/ and wavefunctions/ of six synthetic materials (three held out), one of them with a
    failed G0W0."""
    from esrepro.dft.gw_product import GWProduct

    root = tmp_path_factory.mktemp("vae_gw")
    ids = ["MoS2-2H", "WS2-2H", "CrS2-2H", "A-2H", "B-1T", "C-GaS", "D-1T"]
    (root / "raw").mkdir()
    pd.DataFrame({"material_id": ids, "prototype": "MX2-2H", "formula": ids,
                  "n_atoms": 3, "heldout": [True] * 3 + [False] * 4}).to_csv(
        root / "raw/selected.csv", index=False)
    dft_rows, wf_rows = [], []
    for i, material_id in enumerate(ids):
        if material_id == "D-1T":
            dft_rows.append({"material_id": material_id, "status": "failed",
                             "reason": "SCF did not converge", "cache_key": "x"})
            continue
        gw = synthetic_gw_product(gap=1.0 + 0.3 * i, n_k=3, below=2, above=2)
        gw.e_gw = gw.e_gw + 0.05 * i * (gw.band_offsets >= 0)  # materials differ in ΔGW
        gw.save(root / "dft/products" / f"{material_id}.npz")
        assert GWProduct.load(root / "dft/products" / f"{material_id}.npz").gap_dft == gw.gap_dft
        synthetic_waves(gw, seed=i).save(root / "wavefunctions/products" / f"{material_id}.npz")
        dft_rows.append({"material_id": material_id, "status": "computed", "reason": "",
                         "cache_key": "x", "gw_core_s": 36.0})
        wf_rows.append({"material_id": material_id, "status": "computed", "reason": "",
                        "cache_key": "y"})
    pd.DataFrame(dft_rows).to_csv(root / "dft/summary.csv", index=False)
    pd.DataFrame(wf_rows).to_csv(root / "wavefunctions/summary.csv", index=False)
    for i, material_id in enumerate(("MoS2-2H", "WS2-2H")):
        synthetic_path(seed=i).save(root / "path/products" / f"{material_id}.npz")
    pd.DataFrame([
        {"material_id": "MoS2-2H", "status": "computed", "reason": "", "cache_key": "p"},
        {"material_id": "WS2-2H", "status": "computed", "reason": "", "cache_key": "q"},
        {"material_id": "CrS2-2H", "status": "failed", "reason": "SCF not converged",
         "cache_key": "r"},
    ]).to_csv(root / "path/summary.csv", index=False)
    return root


def synthetic_path(seed: int = 0) -> PathWavefunctionProduct:
    """A path product of 6 trajectory k-points (arc 0..5, K at 2, M at 3) and 4 more dense
    points between K and M (6 dense points with K and M): Gaussian blobs whose width follows
    the arc length."""
    rng = np.random.default_rng(seed)
    arc = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 2.2, 2.4, 2.6, 2.8])
    trajectory = np.arange(len(arc)) < 6
    dense = (arc >= 2.0) & (arc <= 3.0)
    xy = np.arange(N_XY) - N_XY / 2
    states = []
    for a in arc:
        width = 1.0 + 0.4 * a
        plane = np.exp(-(xy[:, None] ** 2 + xy[None] ** 2) / (2 * width**2))
        grid = np.exp(-((np.arange(N_Z) - 1.5) ** 2))[:, None, None] * plane[None]
        grid = grid + 0.01 * rng.random(grid.shape)
        states.append([grid / grid.max()])
    return PathWavefunctionProduct(
        numbers=np.array([42, 16, 16]), cell=np.diag([3.18, 3.18, 18.1]),
        positions=np.zeros((3, 3)), kpoints=np.zeros((len(arc), 3)), arc=arc,
        trajectory=trajectory, dense=dense, special_arc=np.array([0.0, 2.0, 3.0, 5.0]),
        n_ref=13, band_index=np.array([12]), energies=np.zeros((len(arc), 1)),
        states=np.array(states, dtype=np.float16), state_maxima=np.ones((len(arc), 1)),
        fermi_level=0.0, band_energies_start=11,
        # Bands 11..14 (offsets -2..+1): the valence band tops out at arc 2 (K), the
        # conduction band bottoms out at arc 3 (M), 1.5 eV apart.
        band_energies=np.column_stack([-3 - np.abs(arc - 2), -1 - np.abs(arc - 2),
                                       0.5 + np.abs(arc - 3), 2 + np.abs(arc - 3)]),
        vacuum_level=4.0,
    )


def test_training_params_of_the_config_are_those_the_fits_take() -> None:
    for ours, theirs in ((VAETrain, train.VAETrainParams), (GWTrain, train.GWTrainParams)):
        assert [(f.name, str(f.type)) for f in dataclasses.fields(ours)] == [
            (f.name, str(f.type)) for f in dataclasses.fields(theirs)]


def _vae_train(**kw) -> VAETrain:
    values = dict(max_epochs=3, patience=None, batch_size=16, lr=1e-2, beta=0.1,
                  start_at_mean=True, seed=0, accelerator="cpu", devices=1)
    return VAETrain(**{**values, **kw})


def _gw_train(**kw) -> GWTrain:
    values = dict(max_epochs=5, patience=None, batch_size=16, lr=1e-2, momentum=0.9,
                  start_at_mean=True, standardize_inputs=True, seed=0, accelerator="cpu",
                  devices=1)
    return GWTrain(**{**values, **kw})


def test_stages_from_products_to_metrics(products: Path) -> None:
    from esrepro.papers.vae_gw import pipeline

    root = products
    pipeline.stage_featurize(raw=root / "raw", dft=root / "dft",
                             wavefunctions=root / "wavefunctions", features=root / "features")
    excluded = pd.read_csv(root / "features/excluded.csv")
    assert excluded.to_dict("records") == [
        {"material_id": "D-1T", "reason": "G0W0 failed: SCF did not converge"}]
    vae_cfg = VAEConfig(vae=VAEParams(
        kind="plain", latent=3, aux_latent=2, aux_hidden=(4, 4),
        split=VAESplit(seed=0, holdout_materials=1, test_fraction=0.2, val_fraction=0.1),
        train=_vae_train()))
    pipeline.stage_vae(vae_cfg, features=root / "features", vae=root / "vae",
                       fits=root / "fits")
    with np.load(root / "vae/latents.npz") as z:
        assert z["state"].shape == (6 * 18, 6) and z["density"].shape == (6, 4, 4)
        assert z["super"].shape == (6, 2, 4) and set(z["vae_split"][:18]) == {"heldout"}
    train_cfg = TrainConfig(
        gw=GWParams(inputs="code", hidden=(8,), ablations=("state", "super"),
                    train=_gw_train()),
        split=SplitParams(seed=0, state_test_fraction=0.2, material_test_fraction=0.34,
                          val_fraction=0.1))
    pipeline.stage_train(train_cfg, features=root / "features", vae=root / "vae",
                         gw=root / "gw", fits=root / "fits")
    frame = pd.read_csv(root / "gw/predictions.csv")
    assert len(frame) == 6 * 12  # every window state passes the filter
    for split in ("state_split", "material_split"):
        assert set(frame.loc[frame["heldout"], split]) == {"heldout"}
    # Fig. 3c: square synthetic cells, k-points Γ, (1/3, 0), (1/3, 1/3): (1/3, 0) is a star of
    # its own, so each network fits one k-point of each of the 3 trainable materials.
    k_cfg = KDistanceConfig(
        k_distance=KDistanceParams(finite_k=(1 / 3, 0.0), finite_label="X", bin_width=0.25),
        gw=train_cfg.gw, split=train_cfg.split)
    pipeline.stage_k_distance(k_cfg, dft=root / "dft", features=root / "features",
                              vae=root / "vae", k_distance=root / "k_distance",
                              fits=root / "fits")
    pipeline.stage_trajectory(
        TrajectoryConfig(path=PathParams(materials=("MoS2-2H", "WS2-2H", "CrS2-2H"),
                                         n_kpoints=6, n_generated=6, band_offset=-1,
                                         eigenvalue_bands=(2, 2))),
        path=root / "path", vae=root / "vae", trajectory=root / "trajectory")
    pipeline.stage_evaluate(dft=root / "dft", features=root / "features", vae=root / "vae",
                            gw=root / "gw", k_distance=root / "k_distance",
                            trajectory=root / "trajectory", metrics=root / "metrics.json",
                            predictions=root / "predictions.npz")
    metrics = json.loads((root / "metrics.json").read_text())
    kd = metrics["k_distance_mae"]
    assert set(kd) == {"gamma", "X"}
    for label in kd:
        r = kd[label]
        assert r["n_fit"] + r["n_val"] == r["train"]["n"] == 3 * 4  # one k-point, 4 bands, 3
        assert r["trainable_other_k"]["n"] == 3 * 2 * 4 and r["heldout_tmds"]["n"] == 3 * 12
        assert r["n_trained_materials"] == 3
        assert sum(b["heldout_tmds"]["n"] for b in r["by_distance"]) == 3 * 12
        # The synthetic cells are square: no material on the hexagonal zone map.
        assert r["kpoint_map"]["left_out"] == ["A-2H", "B-1T", "C-GaS", "CrS2-2H", "MoS2-2H",
                                                "WS2-2H"]
        assert r["kpoint_map"]["kpoints"] == []
    k_states = pd.read_csv(root / "k_distance/states.csv")
    gamma = k_states[k_states["kx"].eq(0) & k_states["ky"].eq(0)]
    assert (gamma["distance__gamma"] == 0).all()
    assert (gamma["trained__gamma"] == ~gamma["heldout"]).all()
    gen = metrics["generated_path_states"]["materials"]
    assert gen["CrS2-2H"] == {"status": "failed", "reason": "SCF not converged"}
    assert gen["MoS2-2H"]["n_generated"] == 6 and gen["MoS2-2H"]["n_interpolated"] == 4
    assert len(gen["WS2-2H"]["r2_generated"]) == 6
    assert gen["MoS2-2H"]["gap_path_ev"] == pytest.approx(1.5)
    assert (gen["MoS2-2H"]["vbm_arc"], gen["MoS2-2H"]["cbm_arc"]) == (2.0, 3.0)
    assert metrics["n_materials"] == 7 and metrics["n_dft_failed"] == 1
    assert metrics["n_used"] == 6 and metrics["n_excluded"] == 1
    assert metrics["delta_gw_filter"]["n_dropped"] == 0
    assert metrics["dft_core_hours"]["gw"] == pytest.approx(6 * 36 / 3600)
    r2 = metrics["vae_reconstruction_r2"]
    assert r2["heldout"]["n"] == 3 * 18 and r2["holdout"]["n"] == 18
    assert len(r2["mos2_examples"]) == 3
    assert metrics["parameters"]["gw_net_paper"] == 13_801
    assert metrics["gw_net"]["heldout_tmds"]["all"]["test"]["n"] == 3 * 12
    assert set(metrics["ablations"]) == {"none", "state", "super"}
    assert metrics["ablations"]["none"] == metrics["gw_net"]["state_split"]["all"]["test"]
    for split in ("state_split", "material_split"):
        counts = metrics["gw_split_counts"][split]
        assert counts["heldout"] == 3 * 12 and sum(counts.values()) == 6 * 12
        assert counts["test"] == metrics["gw_net"][split]["all"]["test"]["n"]
    with np.load(root / "predictions.npz") as z:
        assert z["example_input"].shape == (3, N_Z, N_XY, N_XY)
        assert z["state_mu"].shape == (6 * 18, 3)
        assert z["kdist_distance_gamma"].shape == z["kdist_gw_net_X"].shape == (6 * 12,)
        assert list(z["traj_materials"]) == ["MoS2-2H", "WS2-2H"]
        assert z["traj_m0_generated_map"].shape == (6, N_XY, N_XY)
        assert z["traj_m1_mu"].shape == (10, 3)
        # Bands from the vacuum level (4 eV above GPAW's zero here), with their offsets.
        assert z["traj_m0_band_offsets"].tolist() == [-2, -1, 0, 1]
        assert int(z["traj_m0_encoded_offset"]) == -1
        np.testing.assert_allclose(z["traj_m0_bands"][:6, 1], -5 - np.abs(np.arange(6) - 2))
        # At K, M (trajectory points) the generated state is the VAE's reconstruction; between
        # them it is decoded from interpolated latents, so it differs.
        r2, recon = z["traj_m0_r2"], z["traj_m0_r2_recon"]
        np.testing.assert_allclose(r2[[0, -1]], recon[[0, -1]], rtol=1e-5)
        assert not np.allclose(r2[1:-1], recon[1:-1])


def test_a_split_that_leaves_nothing_to_train_is_one_clear_error(products: Path) -> None:
    from esrepro.errors import InputError
    from esrepro.papers.vae_gw import pipeline

    root = products
    pipeline.stage_featurize(raw=root / "raw", dft=root / "dft",
                             wavefunctions=root / "wavefunctions", features=root / "features2")
    cfg = VAEConfig(vae=VAEParams(
        kind="plain", latent=3, aux_latent=2, aux_hidden=(4, 4),
        split=VAESplit(seed=0, holdout_materials=3, test_fraction=0.2, val_fraction=0.1),
        train=_vae_train()))
    with pytest.raises(InputError, match=r"^params.yaml vae_gw.vae.split: no VAE training"):
        pipeline.stage_vae(cfg, features=root / "features2", vae=root / "vae2",
                           fits=root / "fits2")
