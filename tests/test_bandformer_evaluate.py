"""Bandformer's evaluation on hand-computable band structures, and its report notebook rendering
from a small synthetic predictions.npz and the metrics the evaluation computes from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from esrepro.metrics import write_json
from esrepro.papers.bandformer.evaluate import (
    band_errors,
    band_gaps,
    check_predictions,
    classification,
    evaluation_metrics,
    material_errors,
    mean_baseline,
    quantile_examples,
    resampling_gap_summary,
)
from esrepro.reports import notebook_path, page_problems, render_notebook


def flat_bands(centres: list[list[float]], n_k: int = 4) -> np.ndarray:
    """(n, n_k, N) bands, each flat at its centre."""
    return np.repeat(np.asarray(centres, dtype=np.float64)[:, None, :], n_k, axis=1)


def wavy_bands(n: int, n_k: int = 16, seed: int = 0) -> np.ndarray:
    """(n, n_k, 6) dispersive bands: three valence below -0.5 eV, three conduction above 0.5."""
    rng = np.random.default_rng(seed)
    k = np.linspace(0, 2 * np.pi, n_k)
    centres = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]) + rng.normal(0, 0.1, (n, 1, 6))
    width = rng.uniform(0.1, 0.4, (n, 1, 6))
    return centres + width * np.cos(k[None, :, None] + rng.uniform(0, 6, (n, 1, 6)))


def test_perfect_prediction_has_zero_errors() -> None:
    true = wavy_bands(3)
    errors = band_errors(true, true.copy())
    for name in ("band_center", "band_dispersion", "band_energy"):
        assert errors[name] == pytest.approx(np.zeros(3), abs=1e-12), name


def test_constant_shift_is_a_centre_error_only() -> None:
    true = wavy_bands(4)
    errors = band_errors(true, true + 0.25)
    assert errors["band_center"] == pytest.approx(np.full(4, 0.25))
    assert errors["band_dispersion"] == pytest.approx(np.zeros(4), abs=1e-12)
    assert errors["band_energy"] == pytest.approx(np.full(4, 0.25))
    # A shift of each band by its own amount: centre error is the mean over bands of |shift|.
    shift = np.array([0.1, -0.3, 0.2, 0.0, -0.2, 0.6])
    errors = band_errors(true, true + shift)
    assert errors["band_center"] == pytest.approx(np.full(4, 1.4 / 6))
    assert errors["band_dispersion"] == pytest.approx(np.zeros(4), abs=1e-12)


def test_zero_mean_wiggle_is_a_dispersion_error_only() -> None:
    true = flat_bands([[-1.0, 1.0]], n_k=4)
    wiggle = np.array([0.2, -0.2, 0.2, -0.2])[None, :, None]
    errors = band_errors(true, true + wiggle)
    assert errors["band_center"] == pytest.approx([0.0], abs=1e-12)
    assert errors["band_dispersion"] == pytest.approx([0.2])
    assert errors["band_energy"] == pytest.approx([0.2])


def test_band_crossing_that_closes_the_gap_is_a_predicted_metal() -> None:
    # Bands HOB (column 0) and HOB+1: a 1 eV gap in DFT; the prediction dips the conduction
    # band below the valence maximum at one k-point, so no gap is left.
    true = np.array([[[-0.5, 0.5], [-1.0, 1.0], [-0.7, 0.8]]])
    pred = true.copy()
    pred[0, 1, 1] = -0.6
    assert band_gaps(true, 0) == pytest.approx([1.0])
    assert band_gaps(pred, 0) == pytest.approx([0.0])
    arrays = {
        "hob_column": np.array(0), "bands_true": true, "bands_pred": pred, "bands_mean": true,
        "is_metal": np.array([False]), "gap_dft": np.array([1.0]),
        "material_id": np.array(["mp-1"]), "formula": np.array(["Si"]),
        "split": np.array(["test"]),
    }  # fmt: skip
    table = material_errors(arrays, "bandformer")
    assert bool(table.loc[0, "predicted_metal"]) is True
    assert table.loc[0, "band_gap"] == pytest.approx(1.0)
    record = classification(table["is_metal"], table["predicted_metal"])
    assert record["nonmetal_as_metal"] == 1 and record["accuracy"] == 0.0


def test_classification_counts() -> None:
    record = classification([True, True, False, False, False], [True, False, False, True, False])
    assert record == {
        "accuracy": pytest.approx(0.6), "metal_as_metal": 1, "metal_as_nonmetal": 1,
        "nonmetal_as_metal": 1, "nonmetal_as_nonmetal": 2, "n": 5,
    }  # fmt: skip


def test_mean_baseline_is_the_training_mean_centre_of_each_band() -> None:
    train = np.array(
        [
            [[-2.0, 1.0], [0.0, 3.0]],  # centres -1, 2
            [[-4.0, 0.0], [-4.0, 2.0]],  # centres -4, 1
        ]
    )
    pred = mean_baseline(train, 3)
    assert pred.shape == (3, 2, 2)
    assert pred[:, :, 0] == pytest.approx(np.full((3, 2), -2.5))
    assert pred[:, :, 1] == pytest.approx(np.full((3, 2), 1.5))
    with pytest.raises(ValueError, match="at least one training material"):
        mean_baseline(train[:0], 3)


def test_quantile_examples_pick_each_group_median() -> None:
    rng = np.random.default_rng(1)
    errors = rng.permutation(np.arange(10.0))
    ids = np.array([f"m{int(e)}" for e in errors])
    # Sorted 0..9 in groups of two; the median of a pair is its upper member.
    assert quantile_examples(errors, ids) == {"Q1": "m1", "Q2": "m3", "Q3": "m5", "Q4": "m7",
                                              "Q5": "m9"}
    # 7 materials: groups of 2, 2, 1, 1, 1.
    assert quantile_examples(np.arange(7.0), [f"m{i}" for i in range(7)]) == {
        "Q1": "m1", "Q2": "m3", "Q3": "m4", "Q4": "m5", "Q5": "m6"
    }
    # Fewer materials than groups: the empty groups are left out.
    assert quantile_examples([0.3, 0.1], ["a", "b"]) == {"Q1": "b", "Q2": "a"}


def test_resampling_gap_summary_over_nonmetals() -> None:
    summary = resampling_gap_summary([0.1, -0.3, 0.5, 0.0], [False, False, True, True])
    assert summary == {
        "mean": pytest.approx(-0.1), "mean_abs": pytest.approx(0.2),
        "max_abs": pytest.approx(0.3), "n": 2, "metals_opened": 1,
    }  # fmt: skip


def toy_predictions() -> dict[str, np.ndarray]:
    """Two bands (HOB in column 0), flat; train/val/test with hand-computable errors."""
    centres = [
        [-1.0, 1.0], [-3.0, 3.0],  # train: the mean baseline is flat at (-2, 2)
        [-2.0, 2.0],  # val
        [-1.0, 1.0], [-2.5, 2.5],  # test non-metals, gaps 2 and 5
    ]  # fmt: skip
    true = flat_bands(centres)
    metal = true[0].copy()
    # Test metal: min(HOB+1) = -0.5 lies below max(HOB) = 0.
    metal[:, 0] = [-1.0, 0.0, -1.0, -1.0]
    metal[:, 1] = [-0.5, 0.5, 0.5, -0.5]
    true = np.concatenate([true, metal[None]])
    n = true.shape[0]
    split = np.array(["train", "train", "val", "test", "test", "test"])
    return {
        "material_id": np.array([f"mp-{i}" for i in range(n)]),
        "formula": np.array(["Si", "C", "GaAs", "MgO", "LiF", "Cu"]),
        "split": split,
        "arc": np.tile(np.linspace(0.0, 1.0, 4), (n, 1)),
        "bands_true": true,
        "bands_pred": true + 0.1,
        "bands_mean": mean_baseline(true[split == "train"], n),
        "is_metal": np.array([False] * 5 + [True]),
        "gap_dft": np.array([2.0, 6.0, 4.0, 2.0, 5.0, 0.0]),
        "gap_resampled_error": np.zeros(n),
        "hob_column": np.array(0),
        "labels": np.array([json.dumps([["Γ", 0.0], ["X", 1.0]])] * n),
    }


def test_evaluation_metrics_on_a_toy_set() -> None:
    metrics = evaluation_metrics(toy_predictions())
    test = metrics["bandformer"]["test"]
    assert test["total"]["band_energy"] == pytest.approx(0.1)
    assert test["total"]["band_center"] == pytest.approx(0.1)
    assert test["total"]["band_dispersion"] == pytest.approx(0.0, abs=1e-12)
    assert (test["total"]["n"], test["nonmetal"]["n"], test["metal"]["n"]) == (3, 2, 1)
    assert test["nonmetal"]["band_gap"] == pytest.approx(0.0, abs=1e-12)  # shift keeps gaps
    assert "band_gap" not in test["metal"] and "band_gap" not in test["total"]
    base = metrics["mean_baseline"]["test"]
    # Non-metals: |(-2, 2) - (-1, 1)| = 1 and |(-2, 2) - (-2.5, 2.5)| = 0.5 per band.
    assert base["nonmetal"]["band_energy"] == pytest.approx(0.75)
    assert base["nonmetal"]["band_gap"] == pytest.approx((2.0 + 1.0) / 2)  # gap 4 vs 2 and 5
    assert metrics["mean_baseline"]["val"]["total"]["band_energy"] == pytest.approx(0.0)
    assert metrics["bandformer"]["train"]["total"]["n"] == 2
    # The metal stays a metal under a rigid shift; the flat baseline calls it a non-metal.
    assert metrics["classification"]["bandformer"]["test"]["accuracy"] == pytest.approx(1.0)
    assert metrics["classification"]["mean_baseline"]["test"]["metal_as_nonmetal"] == 1
    ratio = metrics["mean_baseline_over_bandformer_test_band_energy"]
    assert ratio == pytest.approx(base["total"]["band_energy"] / 0.1)
    lo, hi = metrics["mean_baseline_over_bandformer_test_band_energy_ci95"]
    assert lo <= ratio <= hi
    record = metrics["comparisons"]["bandformer_vs_mean_baseline"]
    assert record["n"] == 3 and record["winner"] is None  # too few samples to resolve
    assert set(metrics["fig3_examples"]) == {"Q1", "Q2", "Q3"}


def test_missing_array_is_named() -> None:
    arrays = toy_predictions()
    del arrays["gap_dft"]
    with pytest.raises(ValueError, match="missing array.*gap_dft"):
        check_predictions(arrays, what="predictions.npz")


FIGURES = ("table1.png", "fig2_parity_violin.png", "fig3_quintiles.png")


def synthetic_inputs(root: Path) -> dict[str, Path]:
    """A plausible predictions.npz (40 materials, some metals) and the metrics computed on it."""
    rng = np.random.default_rng(0)
    n, n_k = 40, 64
    true = wavy_bands(n, n_k, seed=1)
    is_metal = rng.random(n) < 0.35
    k = np.linspace(0, 2 * np.pi, n_k)
    # Metals: HOB+1 dips below the Fermi level, HOB rises above it.
    true[is_metal, :, 3] = -0.3 + 1.5 * np.cos(k)[None, :] ** 2
    true[is_metal, :, 2] = 0.3 - 1.5 * np.sin(k)[None, :] ** 2
    split = rng.choice(["train", "val", "test"], n, p=[0.6, 0.1, 0.3])
    split[:12] = "test"
    gaps = np.array([max(true[i, :, 3].min() - true[i, :, 2].max(), 0.0) for i in range(n)])
    labels = json.dumps([["Γ", 0.0], ["X", 1.0], ["W", 1.5], ["K|U", 2.0], ["Γ", 3.0]])
    arrays = {
        "material_id": np.array([f"mp-{1000 + i}" for i in range(n)]),
        "formula": rng.choice(["Si", "GaAs", "Cu3N", "MgO", "Al2O3", "NaCl"], n),
        "split": split,
        "arc": np.tile(np.linspace(0.0, 3.0, n_k), (n, 1)),
        "bands_true": true,
        "bands_pred": true + rng.normal(0, 0.08, (n, 1, 6)) + rng.normal(0, 0.05, true.shape),
        "bands_mean": mean_baseline(true[split == "train"], n),
        "is_metal": is_metal,
        "gap_dft": np.where(is_metal, 0.0, gaps - rng.uniform(0, 0.02, n)),
        "gap_resampled_error": np.where(is_metal, 0.0, rng.uniform(0, 0.02, n)),
        "hob_column": np.array(2),
        "labels": np.array([labels] * n),
    }
    root.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / "predictions.npz", **arrays)
    metrics = {"n_materials": n + 2, "n_used": n, "n_dft_failed": 2,
               **evaluation_metrics(arrays)}  # fmt: skip
    write_json(root / "metrics.json", metrics)
    return {
        "predictions_npz": root / "predictions.npz",
        "metrics_json": root / "metrics.json",
        "figures_dir": root / "figures",
    }


def test_bandformer_notebook_renders(tmp_path: Path, repo_root: Path) -> None:
    params = synthetic_inputs(tmp_path / "inputs")
    out = tmp_path / "report"
    html = render_notebook(
        notebook_path("bandformer"), out, params, html_name="bandformer.html", cwd=repo_root
    )
    for name in FIGURES:
        png = params["figures_dir"] / name
        assert png.is_file(), f"missing figure {name}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert png.stat().st_size > 5000, f"{name} is suspiciously small"
    text = html.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64") >= len(FIGURES)
    assert "Paper vs ours" in text and "Table I" in text
    assert "def show(fig, name)" not in text  # code is hidden
    assert page_problems(text) == []
    # The ratio the metrics hold is the one the page states.
    ratio = json.loads(params["metrics_json"].read_text())[
        "mean_baseline_over_bandformer_test_band_energy"
    ]
    assert f"{ratio:.2f}" in text
    assert not math.isnan(ratio)
