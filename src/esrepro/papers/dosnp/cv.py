"""k-fold cross-validation of DOSnp and its baselines (the `dosnp_cv` DVC stage).

One 80/20 split leaves ~20% of the materials for testing: a few hundred at paper scale, a few
dozen in a partial run, where a handful of large QSGW corrections decide which model "wins".
Cross-validation predicts *every* material once with models that never saw it, and the paired
comparison (same materials, difference of absolute errors) tells whether DOSnp and a baseline
differ by more than the noise. The folds are drawn from the material ids and a seed alone
(:func:`esrepro.splits.kfold_labels`); inside each fold DOSnp holds out its own validation
subset of the training folds for early stopping, exactly as the train stage does.

DOSnp's finished folds are kept in a scratch directory keyed by everything that determines them
(features file, DOSnp's parameters, code), so an interrupted stage resumes at the first missing
fold, and inside that fold at the last finished epoch of each ensemble member. The baselines
take seconds and are refitted on every run.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esrepro.errors import ConfigError
from esrepro.metrics import regression_metrics, write_csv, write_json
from esrepro.papers.dosnp.config import CVConfig
from esrepro.papers.dosnp.data import load_features
from esrepro.papers.dosnp.train import (
    MODELS,
    _as_list,
    aligned_formation_energies,
    dosnp_run_key,
    fit_baselines,
    gap_comparisons,
    predict_gaps,
    structures_of,
    train_dosnp,
)
from esrepro.splits import kfold_labels

log = logging.getLogger(__name__)

PREDICTION_COLUMNS: tuple[str, ...] = (
    "material_id", "formula", "fold", "lda_gap_table", "qsgw_gap",
    *(f"pred_{m}" for m in MODELS),
)


def _dosnp_fold(
    feats: Mapping[str, Any], train_mask: np.ndarray, held_out: np.ndarray, cfg: CVConfig,
    done: Path, label: str,
) -> np.ndarray:
    """DOSnp's predictions for the ``held_out`` rows of one fold, trained on ``train_mask``;
    kept in ``done`` (reused when there), the fold's checkpoints removed once it finished."""
    if done.is_file():
        log.info("fold %s: reused %s", label, done)
        return np.load(done)["dosnp"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="esrepro-cv-") as curves:
        model, fit = train_dosnp(
            feats, np.flatnonzero(train_mask), cfg.fit, Path(curves),
            resume_dir=done.with_name(f"{done.stem}-fits"),
        )
    pred = predict_gaps(model, feats, held_out, batch_size=cfg.fit.train.batch_size)
    tmp = done.with_name(done.stem + ".tmp.npz")
    np.savez(tmp, dosnp=pred)
    tmp.replace(done)
    # The predictions are what is kept.
    shutil.rmtree(done.with_name(f"{done.stem}-fits"), ignore_errors=True)
    qsgw = np.asarray(_as_list(feats["qsgw_gap"]), dtype=np.float64)[held_out]
    log.info(
        "fold %s: %d held out, DOSnp MAE %.3f eV (epochs %s, %.0f s)", label, held_out.size,
        np.mean(np.abs(pred - qsgw)), fit["epochs_run"], time.perf_counter() - t0,
    )
    return pred


def run_cross_validation(
    features_path: Path,
    structures: Mapping[str, Any],
    cfg: CVConfig,
    metrics_path: Path,
    predictions_path: Path,
    scratch_dir: Path,
    formation_energies: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Out-of-fold predictions of DOSnp and its baselines (``train.MODELS``) for every material.

    ``cfg.cv`` holds ``folds`` (k; 0 switches cross-validation off and writes ``{"folds": 0}``)
    and ``seed``; DOSnp is fitted as the train stage fits it (``cfg.fit``). Writes the
    out-of-fold predictions (CSV) and metrics: per model the pooled MAE/RMSE/R² over all
    materials and each fold's MAE, LRLIDG's descriptor cap chosen in each fold (inner CV on
    that fold's training rows), and ``comparisons``: DOSnp paired with each baseline over all
    materials (the records of the evaluate stage, on out-of-fold predictions).
    """
    folds, seed = cfg.cv.folds, cfg.cv.seed
    if folds == 0:
        log.info("dosnp.cv.folds is 0: cross-validation switched off")
        write_json(metrics_path, {"folds": 0})
        write_csv(predictions_path, pd.DataFrame(columns=list(PREDICTION_COLUMNS)))
        return {"folds": 0}

    feats = load_features(features_path)
    ids = [str(i) for i in feats["material_ids"]]
    if folds < 2 or folds > len(ids):
        raise ConfigError(
            f"params.yaml dosnp.cv.folds must be 0 (off) or in [2, {len(ids)}] for "
            f"{len(ids)} materials; got {folds}"
        )
    atoms = structures_of(ids, structures)
    lda = np.asarray(_as_list(feats["lda_gap_table"]), dtype=np.float64)
    qsgw = np.asarray(_as_list(feats["qsgw_gap"]), dtype=np.float64)
    fe = aligned_formation_energies(ids, formation_energies)
    fold_of = np.asarray(kfold_labels(ids, folds, seed))

    scratch = Path(scratch_dir) / dosnp_run_key(
        Path(features_path), cfg.fit, extra_sources=[Path(__file__)], folds=folds, cv_seed=seed,
    )
    scratch.mkdir(parents=True, exist_ok=True)
    pred = {m: np.full(len(ids), np.nan) for m in MODELS}
    caps = np.full(folds, np.nan)
    for k in range(folds):
        held_out = np.flatnonzero(fold_of == k)
        train_mask = fold_of != k
        pred["dosnp"][held_out] = _dosnp_fold(
            feats, train_mask, held_out, cfg, scratch / f"fold{k}.npz", f"{k + 1}/{folds}"
        )
        # The baselines take seconds (LRLIDG's inner CV included): refitted on every run, so
        # their params never invalidate the DOSnp folds.
        baselines = fit_baselines(atoms, lda, qsgw, train_mask, cfg.lrlidg, ids, fe)
        fold_pred = baselines.predict(
            [atoms[i] for i in held_out], lda[held_out], None if fe is None else fe[held_out]
        )
        for m, values in fold_pred.items():
            pred[m][held_out] = values
        caps[k] = baselines.lrlidg_cap.max_descriptors_per_sample

    table = pd.DataFrame(
        {
            "material_id": ids,
            "formula": [str(f) for f in feats["formulas"]],
            "fold": fold_of,
            "lda_gap_table": lda,
            "qsgw_gap": qsgw,
            **{f"pred_{m}": pred[m] for m in MODELS},
        },
        columns=list(PREDICTION_COLUMNS),
    )
    write_csv(predictions_path, table)

    metrics: dict[str, Any] = {"folds": folds, "seed": seed, "n_materials": len(ids)}
    for m in MODELS:
        fold_mae = [
            float(np.mean(np.abs(pred[m][fold_of == k] - qsgw[fold_of == k])))
            for k in range(folds)
        ]
        metrics[m] = {
            **regression_metrics(qsgw, pred[m]),
            "fold_mae": fold_mae,
            "fold_mae_std": float(np.std(fold_mae, ddof=1)),
        }
    metrics["lrlidg"]["fold_max_descriptors_per_sample"] = caps.tolist()
    metrics["comparisons"] = gap_comparisons(qsgw, pred)
    write_json(metrics_path, metrics)
    return metrics
