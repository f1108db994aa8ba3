"""LDOS pipeline pieces: per-sample L/sigma, the electron count in the window, the DFT-settings
override, and learn -> evaluate on real SOAP descriptors with synthetic, structure-dependent
LDOS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esrepro.dos_properties import normalized_loss
from esrepro.errors import ConfigError
from esrepro.papers.ldos.config import LearnConfig, LearnParams, PropertiesParams, SoapParams
from esrepro.papers.ldos.generators import generated_sets
from esrepro.papers.ldos.krr import LDOSKernelRidge, SplitDOSKernelRidge
from esrepro.papers.ldos.learn import (
    PROPERTIES,
    MeanSpectrumPredictor,
    electrons_in_window,
    evaluate_sets,
    learn_set,
    per_atom_dos_losses,
    per_sample_losses,
    species_losses,
)
from esrepro.spectra import energy_grid
from esrepro.splits import random_split_labels
from params_helpers import repo_params, stage_config

GRID = energy_grid(-10.0, 5.0, 151)


def test_per_sample_losses_average_to_the_paper_loss() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, (6, GRID.size))
    pred = ref + rng.normal(0, 0.1, ref.shape)
    per = per_sample_losses(pred, ref, GRID)
    # eq. 15 over the whole set is the RMS of the per-sample losses (same sigma).
    assert math.sqrt(np.mean(per**2)) == pytest.approx(normalized_loss(pred, ref, GRID), rel=1e-9)
    assert per_sample_losses(ref, ref, GRID) == pytest.approx(np.zeros(6))


def test_electrons_in_window_counts_states_below_the_fermi_level() -> None:
    # Two boxes of 1 state/eV: [-8, -4] holds 4 states below E_F = 0, [2, 4] is empty.
    dos = (
        np.where((GRID > -8) & (GRID < -4), 1.0, 0.0) + np.where((GRID > 2) & (GRID < 4), 1.0, 0.0)
    )
    assert electrons_in_window(dos, GRID, 0.025) == pytest.approx(4.0, abs=0.15)  # grid edges
    # Per-structure Fermi levels: at E_F = 3 eV the upper box's first eV is filled too. On the
    # 0.1 eV grid each box edge (and the Fermi step) loses up to half a step to the trapezoid rule.
    both = electrons_in_window(np.stack([dos, dos]), GRID, 0.025, np.array([0.0, 3.0]))
    assert both == pytest.approx([4.0, 5.0], abs=0.2)
    assert both[1] - both[0] == pytest.approx(1.0, abs=0.1)


def test_ldos_dft_settings_override_the_shared_ones() -> None:
    params = repo_params()
    merged = stage_config("ldos", "dft").as_params()
    assert merged["settings"]["mode"] == "lcao" and params["dft"]["settings"]["mode"] == "pw"
    assert merged["settings"]["ecut_ev"] == params["dft"]["settings"]["ecut_ev"]
    assert merged["cache"] == params["dft"]["cache"]  # one cache for every paper


def _features(n_structures: int = 10) -> dict:
    """SOAP features of real generated SiC cells; each atom's LDOS a Gaussian whose centre
    follows its coordination environment (a function of the descriptor), as physics would."""
    from esrepro.papers.ldos.descriptors import soap_descriptors

    atoms = generated_sets({"sic": {"n": n_structures, "polytypes": ["3C", "2H"]}}, seed=0)["sic"]
    species = ["C", "Si"]
    d = soap_descriptors(atoms, species, r_cut=4.0, n_max=4, l_max=3)
    ldos, sharp = [], []
    for desc, a in zip(d, atoms, strict=True):
        centre = (
            np.where(np.asarray(a.get_chemical_symbols()) == "C", -6.0, -2.0)
            + 0.5 * np.tanh(desc[:, 0] / desc[:, 0].std() if len(desc) > 1 else 0)
        )
        ldos.append(np.exp(-0.5 * ((GRID[None, :] - centre[:, None]) / 0.7) ** 2))
        sharp.append(np.exp(-0.5 * ((GRID[None, :] - centre[:, None]) / 0.2) ** 2))
    ids = [f"sic-{i:04d}" for i in range(n_structures)]
    return {"structure_ids": ids, "atoms": atoms, "species": species, "sigma_ev": 0.7,
            "ldos_by_sigma": {0.2: sharp},
            "atom_species": [a.get_chemical_symbols() for a in atoms], "ldos": ldos,
            "descriptors": d,
            "fermi_levels": np.full(n_structures, -1.0), "energies": GRID,
            "split": random_split_labels(ids, 0.3, 0), "n_failed": 0}


CFG = LearnConfig(
    soap=SoapParams(r_cut=4.0, n_max=4, l_max=3, sigma=0.5),
    r_cut_scan=(3.0, 4.0),
    learn=LearnParams(
        folds=3, lam=(1e-4, 1e-2), zeta=(1, 2), n_sparse=0, seed=0, curve_fractions=(0.5, 1.0)
    ),
)
PROPERTIES_300K = PropertiesParams(kT_ev=0.025852, T_k=300.0, sets=("si",))


def test_learn_and_evaluate_a_set(tmp_path) -> None:
    feats = _features()
    result = learn_set(feats, CFG)
    assert set(result["models"]) == {"ldos", "dos"}
    curves = result["curves"]
    assert [row["r_cut"] for row in curves["r_cut_scan"]] == [3.0, 4.0]
    assert [row["n_train"] for row in curves["learning_curve"]] == [4, 7]
    for row in curves["r_cut_scan"] + curves["learning_curve"]:
        assert set(row["ldos"]["ldos"]) == {"C", "Si"}
    metrics = evaluate_sets({"si": (feats, result["models"])}, PROPERTIES_300K,
                            tmp_path / "m.json", tmp_path / "p.npz",
                            compare_sigma={"si": result["compare_sigma"]})
    entry = metrics["sets"]["si"]
    # Smearing comparison: the main width's losses are the set's; the sharper spectra are
    # refitted and scored on the same held-out structures, and their ratio is reported.
    smearing = metrics["smearing"]["si"]
    assert set(smearing) == {"0.7", "0.2", "ratio"}
    assert smearing["0.7"]["ldos"] == {s: entry["ldos"][s]["mean"] for s in ("C", "Si")}
    ratio = smearing["ratio"]["0.2/0.7"]
    assert ratio["Si"] == pytest.approx(
        smearing["0.2"]["ldos"]["Si"] / smearing["0.7"]["ldos"]["Si"]
    )
    # Same centre errors on narrower peaks cost more of the spectrum: the loss grows (paper: x2).
    assert ratio["C"] > 1.0 and ratio["Si"] > 1.0 and ratio["dos"] > 1.0
    assert entry["n_structures"] == 10 and entry["n_test_structures"] == 3
    assert entry["n_environments"] == sum(len(a) for a in feats["atoms"])
    # The learnable synthetic LDOS is predicted well by the LDOS-trained model.
    assert entry["ldos"]["C"]["mean"] < 0.3 and entry["ldos"]["Si"]["mean"] < 0.3
    derived = metrics["derived"]["si"]
    assert set(derived) == {"band_energy", "fermi_energy", "dos_at_fermi",
                            "heat_capacity", "susceptibility", "absorption"}
    assert all(set(v) == {"ldos_trained", "dos_trained"} for v in derived.values())
    assert metrics["derived_worst"]["si"]["ldos_trained"] == max(
        v["ldos_trained"] for v in derived.values()
    )
    predictions = np.load(tmp_path / "p.npz")
    # Absorption is compared as the spectrum A(ω) (eq. 15 over the ħω grid), not its integral.
    omega = predictions["si__hbar_omega"]
    spectra = {s: predictions[f"si__derived_absorption_{s}"] for s in ("ref", "ldos", "dos")}
    assert spectra["ref"].shape == (3, omega.size) and omega.size > 100
    assert derived["absorption"]["ldos_trained"] == pytest.approx(
        normalized_loss(spectra["ldos"], spectra["ref"], omega), rel=1e-5
    )
    # Every LDOS-vs-DOS comparison is a paired record over the held-out structures.
    comparisons = metrics["comparisons"]["si"]
    assert set(comparisons) == {
        "ldos", "dos", "ldos_trained_vs_mean", "dos_trained_vs_mean", *PROPERTIES
    }
    assert set(comparisons["ldos"]) == {"C", "Si"}
    for record in [*comparisons["ldos"].values(),
                   *(comparisons[k] for k in ("dos", *PROPERTIES))]:
        assert record["a"] == "ldos_trained" and record["b"] == "dos_trained"
        assert record["n"] == 3
        assert record["ci95"][0] <= record["diff"] <= record["ci95"][1]
        assert record["winner"] is None  # 3 held-out structures resolve no winner
    assert comparisons["dos"]["mean_a"] == pytest.approx(entry["dos"]["mean"], rel=1e-5)
    assert comparisons["absorption"]["mean_b"] == pytest.approx(np.mean(
        per_sample_losses(spectra["dos"], spectra["ref"], omega)
    ), rel=1e-5)
    # The mean predictor: the training atoms' species-mean LDOS, scored with the same own σ.
    test = [i for i, s in enumerate(feats["split"]) if s == "test"]
    train = [i for i, s in enumerate(feats["split"]) if s == "train"]
    flat_species = np.concatenate([feats["atom_species"][i] for i in test])
    ref_atoms = np.concatenate([feats["ldos"][i] for i in test])
    for s in ("C", "Si"):
        mean_s = np.mean(np.concatenate([
            np.asarray(feats["ldos"][i])[np.asarray(feats["atom_species"][i]) == s] for i in train
        ]), axis=0)
        mask = flat_species == s
        expected = per_sample_losses(
            np.broadcast_to(mean_s, ref_atoms[mask].shape), ref_atoms[mask], GRID
        ).mean()
        assert entry["mean_predictor"]["ldos"][s]["mean"] == pytest.approx(expected, rel=1e-9)
    for label in ("ldos_trained", "dos_trained"):
        vs_mean = comparisons[f"{label}_vs_mean"]
        for record in [*vs_mean["ldos"].values(), vs_mean["dos"]]:
            assert (record["a"], record["b"], record["n"]) == (label, "mean_predictor", 3)
        assert vs_mean["dos"]["mean_b"] == pytest.approx(
            entry["mean_predictor"]["dos"]["mean"], rel=1e-9
        )
    band = {s: predictions[f"si__derived_band_energy_{s}"] for s in ("ref", "ldos")}
    assert comparisons["band_energy"]["mean_a"] == pytest.approx(
        np.mean(np.abs(band["ldos"] - band["ref"])) / np.std(band["ref"]), rel=1e-5
    )
    np.testing.assert_allclose(
        predictions["si__pred_dos_ldos_trained"],
        _sum_by_structure(predictions["si__pred_ldos_ldos_trained"], feats, "test"),
        rtol=1e-5, atol=1e-6)


def test_derived_properties_are_per_atom(tmp_path) -> None:
    """A doubled copy of a held-out cell (twice the atoms, each with the same environment and
    LDOS) has the same derived properties as the cell: they are computed per atom, so cells of
    different sizes in one set compare."""
    feats = _features()
    result = learn_set(feats, CFG)
    test = [i for i, s in enumerate(feats["split"]) if s == "test"]
    t = test[0]
    doubled = {
        "structure_ids": "sic-double", "atoms": feats["atoms"][t].repeat((2, 1, 1)),
        "atom_species": feats["atom_species"][t] * 2,
        "ldos": np.concatenate([feats["ldos"][t]] * 2),
        "descriptors": np.concatenate([feats["descriptors"][t]] * 2),
    }
    grown = {
        **feats, "split": [*feats["split"], "test"],
        "fermi_levels": np.append(feats["fermi_levels"], feats["fermi_levels"][t]),
    }
    for key, value in doubled.items():
        grown[key] = [*feats[key], value]
    evaluate_sets(
        {"si": (grown, result["models"])}, PROPERTIES_300K, tmp_path / "m.json", tmp_path / "p.npz"
    )
    predictions = np.load(tmp_path / "p.npz")
    ids = list(predictions["si__structure_ids"])
    a, b = ids.index(feats["structure_ids"][t]), ids.index("sic-double")
    for prop in PROPERTIES:
        for source in ("ref", "ldos", "dos"):
            values = predictions[f"si__derived_{prop}_{source}"]
            assert values[b] == pytest.approx(values[a], rel=1e-6, abs=1e-9), (prop, source)
    assert predictions["si__ref_dos"][b] == pytest.approx(
        2 * predictions["si__ref_dos"][a], rel=1e-5
    )


def test_mean_predictor_is_the_training_mean() -> None:
    # Two training structures on a 2-point grid: [Si, C] and [Si, Si, Si].
    ldos = [np.array([[1.0, 0.0], [6.0, 2.0]]), np.array([[3.0, 1.0], [5.0, 3.0], [7.0, 4.0]])]
    mean = MeanSpectrumPredictor.fit(ldos, [["Si", "C"], ["Si", "Si", "Si"]])
    # Si: (1 + 3 + 5 + 7) / 4 = 4 and (0 + 1 + 3 + 4) / 4 = 2; C: its only atom.
    np.testing.assert_allclose(mean.species_ldos["Si"], [4.0, 2.0])
    np.testing.assert_allclose(mean.species_ldos["C"], [6.0, 2.0])
    # Per-atom DOS: [7, 2] / 2 = [3.5, 1] and [15, 8] / 3 = [5, 8/3]; their mean [4.25, 11/6]
    # (each structure weighted equally, not each atom).
    np.testing.assert_allclose(mean.dos_per_atom, [4.25, 11.0 / 6.0])
    np.testing.assert_allclose(mean.predict_structures([2, 4]), [[8.5, 11 / 3], [17.0, 22 / 3]])
    atoms = mean.predict_atoms([["C", "Si", "Si"]])
    np.testing.assert_allclose(atoms[0], [[6.0, 2.0], [4.0, 2.0], [4.0, 2.0]])
    with pytest.raises(ValueError, match=r"no training atom of species \['Sn'\]"):
        mean.predict_atoms([["Sn"]])


def test_kernel_ridge_beats_the_mean_predictor_on_a_learnable_signal() -> None:
    # Each atom's LDOS peak moves by up to ±1 eV with its SOAP environment (a standardized
    # descriptor component, over all atoms of the set), so a model that learned anything beats
    # the species-mean LDOS and the mean per-atom DOS of the training cells.
    feats = _features()
    first = np.concatenate([d[:, 0] for d in feats["descriptors"]])
    feats["ldos"] = [
        np.exp(-0.5 * ((GRID[None, :] - centre[:, None]) / 0.7) ** 2)
        for centre in (
            np.where(np.asarray(sp) == "C", -6.0, -2.0)
            + np.tanh((d[:, 0] - first.mean()) / first.std())
            for d, sp in zip(feats["descriptors"], feats["atom_species"], strict=True)
        )
    ]
    train = [i for i, s in enumerate(feats["split"]) if s == "train"]
    test = [i for i, s in enumerate(feats["split"]) if s == "test"]

    def take(key: str, rows: list[int]) -> list:
        return [feats[key][i] for i in rows]

    d_train, sp_train, d_test, sp_test = (
        take("descriptors", train), take("atom_species", train),
        take("descriptors", test), take("atom_species", test),
    )
    ref = take("ldos", test)
    flat_ref, n_atoms = np.concatenate(ref), np.array([len(g) for g in ref])
    labels = np.concatenate([np.asarray(s) for s in sp_test])
    ref_dos = np.stack([g.sum(axis=0) for g in ref])
    mean = MeanSpectrumPredictor.fit(take("ldos", train), sp_train)
    ldos_model = LDOSKernelRidge(lam=1e-3, zeta=2).fit(d_train, take("ldos", train), sp_train)
    dos_model = SplitDOSKernelRidge(lam=1e-3, zeta=2).fit(
        d_train, np.stack([g.sum(axis=0) for g in take("ldos", train)]), sp_train
    )

    def ldos_loss(pred: list[np.ndarray]) -> dict[str, float]:
        losses = species_losses(np.concatenate(pred), flat_ref, labels, ["C", "Si"], GRID)
        return {s: float(v.mean()) for s, v in losses.items()}

    def dos_loss(pred_dos: np.ndarray) -> float:
        return float(per_atom_dos_losses(pred_dos, ref_dos, n_atoms, GRID).mean())

    floor = ldos_loss(mean.predict_atoms(sp_test))
    ours = ldos_loss(ldos_model.predict_atoms(d_test, sp_test))
    assert all(ours[s] < 0.5 * floor[s] for s in ("C", "Si")), (ours, floor)
    floor_dos = dos_loss(mean.predict_structures(n_atoms))
    for model in (ldos_model, dos_model):
        assert dos_loss(model.predict_structures(d_test, sp_test)) < 0.5 * floor_dos


def test_species_loss_uses_that_species_own_sigma() -> None:
    # S spectra vary little, Sn spectra a lot: a sigma pooled over both would be set by the Sn
    # spread and make the same S errors look small. Each species' L/σ must not see the others.
    rng = np.random.default_rng(1)
    ref_s = 1.0 + 0.1 * rng.normal(size=(5, GRID.size))
    ref_sn = 10.0 * rng.normal(size=(4, GRID.size))
    pred_s, pred_sn = ref_s + 0.05, ref_sn + 0.5
    alone = species_losses(pred_s, ref_s, np.array(["S"] * 5), ["S"], GRID)["S"]
    both = species_losses(
        np.concatenate([pred_s, pred_sn]), np.concatenate([ref_s, ref_sn]),
        np.array(["S"] * 5 + ["Sn"] * 4), ["S", "Se", "Sn"], GRID,
    )
    np.testing.assert_allclose(both["S"], alone)
    np.testing.assert_allclose(both["Sn"], per_sample_losses(pred_sn, ref_sn, GRID))
    assert both["Se"].size == 0
    pooled = per_sample_losses(
        np.concatenate([pred_s, pred_sn]), np.concatenate([ref_s, ref_sn]), GRID
    )[:5]
    assert np.all(pooled < 0.2 * alone)  # what the pooled σ used to report


def test_structural_dos_loss_is_per_atom() -> None:
    # The same per-atom spectra and errors in cells of 1 and 8 atoms: per atom they are the same
    # set of spectra, whatever the cell sizes (per cell the 8-atom cells would set σ).
    rng = np.random.default_rng(2)
    ref = 1.0 + 0.3 * rng.normal(size=(4, GRID.size))
    pred = ref + 0.1 * rng.normal(size=ref.shape)
    sizes = np.array([1, 8, 1, 8])
    np.testing.assert_allclose(
        per_atom_dos_losses(pred * sizes[:, None], ref * sizes[:, None], sizes, GRID),
        per_sample_losses(pred, ref, GRID),
    )


def test_merge_sets_keeps_each_members_split_and_targets() -> None:
    from esrepro.papers.ldos.pipeline import merge_sets

    feats = _features(6)
    si_like = {**feats, "species": ["Si"], "structure_ids": [f"si-{i}" for i in range(6)]}
    c_like = {**feats, "species": ["C"], "structure_ids": [f"c-{i}" for i in range(6)],
              "split": ["train"] * 5 + ["test"], "n_failed": 2}
    descriptors = [np.ones((len(a), 3)) for a in feats["atoms"] * 2]
    merged = merge_sets([si_like, c_like], descriptors)
    assert merged["structure_ids"] == si_like["structure_ids"] + c_like["structure_ids"]
    assert merged["split"] == si_like["split"] + c_like["split"]
    assert merged["species"] == ["C", "Si"] and merged["n_failed"] == 2
    assert len(merged["ldos"]) == len(merged["ldos_by_sigma"][0.2]) == 12
    assert merged["ldos"][6] is c_like["ldos"][0]
    np.testing.assert_array_equal(merged["fermi_levels"], np.full(12, -1.0))
    with pytest.raises(ValueError, match="share the energy grid"):
        merge_sets([si_like, {**c_like, "energies": GRID[1:]}], descriptors)


def _sum_by_structure(flat: np.ndarray, feats: dict, split: str) -> np.ndarray:
    rows = [i for i, s in enumerate(feats["split"]) if s == split]
    sizes = [len(feats["atoms"][i]) for i in rows]
    return np.stack([block.sum(axis=0) for block in np.split(flat, np.cumsum(sizes)[:-1])])


def test_split_keeps_every_test_species_in_training() -> None:
    from esrepro.papers.ldos.learn import species_covering_split

    ids = [f"s{i}" for i in range(10)]
    # One structure holds the only S: it can never be a test structure.
    species = [["Sn", "Se"]] * 9 + [["Sn", "S", "Se"]]
    for seed in range(20):
        labels = species_covering_split(ids, species, 0.2, seed)
        train = {x for s, lab in zip(species, labels, strict=True) if lab == "train" for x in s}
        assert all(set(s) <= train for s, lab in zip(species, labels, strict=True) if lab == "test")
        assert labels[9] == "train" and labels.count("test") == 2


def test_unknown_grid_reference_is_an_error_not_fermi() -> None:
    # "absolut" used to fall through to E_F-relative grids.
    with pytest.raises(
        ConfigError,
        match=r"ldos.grid.reference: expected one of \['absolute', 'fermi'\], got 'absolut'",
    ):
        stage_config("ldos", "featurize", ldos__grid__reference="absolut")
