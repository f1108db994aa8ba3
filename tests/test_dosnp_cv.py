"""k-fold cross-validation of DOSnp and its baselines (the `dosnp_cv` stage) on a synthetic file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import esrepro.papers.dosnp.cv as cv
from esrepro.papers.dosnp.baselines import fit_linear
from test_training import _cfg, _params, _structures, write_synthetic_features

FOLDS = 3


def _cv_params(folds: int = FOLDS, **train_overrides: object) -> dict:
    params = _params(**({"max_epochs": 2} | train_overrides))
    params["dosnp"]["cv"] = {"folds": folds, "seed": 0}
    return params


def _run(tmp_path: Path, params: dict) -> dict:
    return cv.run_cross_validation(
        tmp_path / "features.pt", _structures(), _cfg(params, "cv"), tmp_path / "cv_metrics.json",
        tmp_path / "cv_predictions.csv", tmp_path / "scratch",
    )


def test_every_material_is_predicted_once_by_models_that_never_saw_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feats = write_synthetic_features(tmp_path / "features.pt")
    trained_on: list[set[int]] = []
    real_train = cv.train_dosnp

    def spy(feats, rows, cfg, curves, resume_dir=None):
        trained_on.append({int(r) for r in rows})
        return real_train(feats, rows, cfg, curves, resume_dir=resume_dir)

    monkeypatch.setattr(cv, "train_dosnp", spy)
    metrics = _run(tmp_path, _cv_params())

    table = pd.read_csv(tmp_path / "cv_predictions.csv")
    assert table["material_id"].tolist() == feats["material_ids"]
    assert not table.filter(like="pred_").isna().any().any()
    folds = table["fold"].to_numpy()
    assert np.bincount(folds).tolist() == [4, 4, 4]
    assert len(trained_on) == FOLDS
    for k, rows in enumerate(trained_on):
        held_out = set(np.flatnonzero(folds == k).tolist())
        assert rows.isdisjoint(held_out) and len(rows | held_out) == len(folds)

    lda, qsgw = table["lda_gap_table"].to_numpy(), table["qsgw_gap"].to_numpy()
    for k in range(FOLDS):
        # The baselines are refitted on the other folds only.
        linear = fit_linear(lda[folds != k], qsgw[folds != k])
        np.testing.assert_allclose(
            table["pred_linear"].to_numpy()[folds == k], linear.predict(lda[folds == k]), rtol=1e-5
        )
    for model in cv.MODELS:
        err = np.abs(table[f"pred_{model}"].to_numpy() - qsgw)
        # (CSV values carry 6 significant digits; the linear fit of this target is exact.)
        assert metrics[model]["mae"] == pytest.approx(err.mean(), rel=1e-4, abs=1e-5)
        assert metrics[model]["fold_mae"] == pytest.approx(
            [err[folds == k].mean() for k in range(FOLDS)], rel=1e-4, abs=1e-5
        )
    # The mean predictor of each fold is the mean QSGW gap of the other folds.
    for k in range(FOLDS):
        np.testing.assert_allclose(
            table["pred_mean_baseline"].to_numpy()[folds == k], qsgw[folds != k].mean(), rtol=1e-5
        )
    d = np.abs(table["pred_dosnp"] - qsgw) - np.abs(table["pred_lrlidg"] - qsgw)
    paired = metrics["comparisons"]["dosnp_vs_lrlidg"]
    assert paired["diff"] == pytest.approx(d.mean(), rel=1e-4, abs=1e-6) and paired["n"] == 12
    assert (paired["a"], paired["b"]) == ("dosnp", "lrlidg")
    assert set(metrics["comparisons"]) == {"dosnp_vs_lrlidg", "dosnp_vs_linear", "dosnp_vs_mean"}
    assert len(metrics["lrlidg"]["fold_max_descriptors_per_sample"]) == FOLDS
    on_disk = json.loads((tmp_path / "cv_metrics.json").read_text())
    assert on_disk["folds"] == FOLDS and on_disk["n_materials"] == 12


def test_an_interrupted_run_resumes_from_its_finished_folds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic_features(tmp_path / "features.pt")
    params = _cv_params()
    _run(tmp_path, params)
    first = (tmp_path / "cv_metrics.json").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(cv, "train_dosnp", no_training)
    _run(tmp_path, params)  # every fold is on disk: nothing is trained
    assert (tmp_path / "cv_metrics.json").read_text() == first

    # A finished fold keeps its predictions only, not its networks' checkpoints.
    assert not list((tmp_path / "scratch").glob("*/fold*-fits"))
    (fold_file,) = (tmp_path / "scratch").glob("*/fold1.npz")
    fold_file.unlink()  # as if the run had stopped during fold 1
    with pytest.raises(AssertionError, match="trained again"):
        _run(tmp_path, params)
    # Other settings are other folds: nothing finished under the old ones is reused.
    (fold_file.parent / "fold1.npz").write_bytes(b"")
    with pytest.raises(AssertionError, match="trained again"):
        _run(tmp_path, _cv_params(lr=2e-3))


def test_baseline_params_refit_the_baselines_without_retraining_dosnp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic_features(tmp_path / "features.pt")
    params = _cv_params()
    first = _run(tmp_path, params)

    def no_training(*args, **kwargs):
        raise AssertionError("DOSnp was trained again")

    monkeypatch.setattr(cv, "train_dosnp", no_training)
    params["dosnp"]["lrlidg"]["max_descriptors_per_sample"] = [1.0]
    second = _run(tmp_path, params)  # DOSnp's folds reused, LRLIDG refitted with the new cap
    assert second["dosnp"] == first["dosnp"]
    assert second["lrlidg"]["fold_max_descriptors_per_sample"] == [1.0] * FOLDS


def test_folds_zero_switches_it_off_and_bad_folds_are_named(tmp_path: Path) -> None:
    write_synthetic_features(tmp_path / "features.pt")
    assert _run(tmp_path, _cv_params(folds=0)) == {"folds": 0}
    assert json.loads((tmp_path / "cv_metrics.json").read_text()) == {"folds": 0}
    with pytest.raises(ValueError, match=r"dosnp\.cv\.folds.*\[2, 12\].*got 13"):
        _run(tmp_path, _cv_params(folds=13))
