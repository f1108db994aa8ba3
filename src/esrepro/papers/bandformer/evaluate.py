"""Bandformer's evaluation (paper Table I, Figs. 2-3) over the arrays of ``predictions.npz``.

Per material, with bands ``E`` of shape (n_k, N) and centres ``c = mean_k E`` (N,):
band_center = mean over bands of |c_pred - c_true|; band_dispersion = mean over k and bands of
|(E_pred - c_pred) - (E_true - c_true)|; band_energy = mean |E_pred - E_true|; band_gap (DFT
non-metals only) = |gap of the predicted bands - gap of the unsmoothed DFT path|, the gap read
with `esrepro.bands.gap_difference` (clipped at 0; a material is predicted metallic iff its
predicted gap is 0). Table I's MAEs are the means of these over a split and class.
The mean baseline (issue 19) predicts, per band, the training set's mean centre with zero
dispersion. Pure numpy/pandas: the evaluate stage and the report notebook both use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esrepro.bands import gap_difference
from esrepro.metrics import paired_comparison, ratio_interval

#: Models of metrics.json and the predictions.npz array holding each one's bands.
MODEL_ARRAYS = {"bandformer": "bands_pred", "mean_baseline": "bands_mean"}
SPLITS = ("train", "val", "test")
CLASSES = ("total", "nonmetal", "metal")
#: Per-material errors every class reports (eV); band_gap is added for non-metals.
BAND_ERRORS = ("band_center", "band_dispersion", "band_energy")
#: Groups of Fig. 3 (the paper's quintiles Q1..Q5 of the band-energy error).
N_QUANTILE_GROUPS = 5
#: Arrays predictions.npz must hold (BANDFORMER.md).
REQUIRED_ARRAYS = (
    "material_id", "formula", "split", "arc", "bands_true", "bands_pred", "bands_mean",
    "is_metal", "gap_dft", "gap_resampled_error", "hob_column", "labels",
)  # fmt: skip


def load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a predictions.npz, checked by :func:`check_predictions`."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    check_predictions(arrays, what=str(path))
    return arrays


def check_predictions(arrays: Mapping[str, np.ndarray], what: str = "predictions") -> None:
    """ValueError naming ``what`` and the first missing array or mismatched shape."""
    missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"{what}: missing array(s) {', '.join(missing)}")
    shape = np.shape(arrays["bands_true"])
    if len(shape) != 3:
        raise ValueError(f"{what}: bands_true has shape {shape}, expected (n, n_k, N)")
    for name in ("bands_pred", "bands_mean"):
        if np.shape(arrays[name]) != shape:
            raise ValueError(f"{what}: {name} has shape {np.shape(arrays[name])}, not {shape}")
    if np.shape(arrays["arc"]) != shape[:2]:
        raise ValueError(f"{what}: arc has shape {np.shape(arrays['arc'])}, not {shape[:2]}")
    for name in ("material_id", "formula", "split", "is_metal", "gap_dft",
                 "gap_resampled_error", "labels"):  # fmt: skip
        if np.shape(arrays[name]) != shape[:1]:
            raise ValueError(f"{what}: {name} has {np.shape(arrays[name])} rows, not {shape[0]}")


def _bands(bands: np.ndarray, name: str) -> np.ndarray:
    b = np.asarray(bands, dtype=np.float64)
    if b.ndim != 3:
        raise ValueError(f"{name} must have shape (n, n_k, N), got {b.shape}")
    return b


def band_errors(bands_true: np.ndarray, bands_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-material band_center, band_dispersion and band_energy errors (eV), each (n,)."""
    t, p = _bands(bands_true, "bands_true"), _bands(bands_pred, "bands_pred")
    if t.shape != p.shape:
        raise ValueError(f"true and predicted bands differ in shape: {t.shape} vs {p.shape}")
    centre_t, centre_p = t.mean(axis=1, keepdims=True), p.mean(axis=1, keepdims=True)
    return {
        "band_center": np.abs(centre_p - centre_t).mean(axis=(1, 2)),
        "band_dispersion": np.abs((p - centre_p) - (t - centre_t)).mean(axis=(1, 2)),
        "band_energy": np.abs(p - t).mean(axis=(1, 2)),
    }


def band_gaps(bands: np.ndarray, hob_column: int) -> np.ndarray:
    """(n,) gap of every material's (n_k, N) bands: `esrepro.bands.gap_difference`, clipped at 0."""
    return np.array(
        [max(gap_difference(b, int(hob_column)), 0.0) for b in _bands(bands, "bands")],
        dtype=np.float64,
    )


def mean_baseline(train_bands: np.ndarray, n: int) -> np.ndarray:
    """The mean baseline's bands for ``n`` materials, shape (n, n_k, N).

    Every band is flat at the training set's mean centre of that band (zero dispersion).
    ``train_bands`` is (n_train, n_k, N); an empty training set is a ValueError.
    """
    train = _bands(train_bands, "train_bands")
    if train.shape[0] == 0:
        raise ValueError("the mean baseline needs at least one training material")
    centres = train.mean(axis=1).mean(axis=0)  # (N,): per band, the mean of the centres
    return np.broadcast_to(centres, (int(n), train.shape[1], train.shape[2])).copy()


def material_errors(arrays: Mapping[str, np.ndarray], model: str) -> pd.DataFrame:
    """One row per material of ``model``'s errors (eV) and gaps.

    Columns: material_id, formula, split, is_metal (DFT), band_center, band_dispersion,
    band_energy, gap_pred (from the predicted bands), gap_dft (unsmoothed path), gap_resampled
    (from the smoothed, resampled target bands), band_gap = |gap_pred - gap_dft| and
    band_gap_vs_resampled = |gap_pred - gap_resampled| (both NaN for DFT metals),
    predicted_metal (gap_pred is 0).
    """
    if model not in MODEL_ARRAYS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODEL_ARRAYS)}")
    hob = int(arrays["hob_column"])
    pred = arrays[MODEL_ARRAYS[model]]
    is_metal = np.asarray(arrays["is_metal"], dtype=bool)
    gap_pred = band_gaps(pred, hob)
    gap_dft = np.asarray(arrays["gap_dft"], dtype=np.float64)
    gap_resampled = band_gaps(arrays["bands_true"], hob)
    table = pd.DataFrame(
        {
            "material_id": np.asarray(arrays["material_id"]).astype(str),
            "formula": np.asarray(arrays["formula"]).astype(str),
            "split": np.asarray(arrays["split"]).astype(str),
            "is_metal": is_metal,
            **band_errors(arrays["bands_true"], pred),
            "gap_pred": gap_pred,
            "gap_dft": gap_dft,
            "gap_resampled": gap_resampled,
            "band_gap": np.where(is_metal, np.nan, np.abs(gap_pred - gap_dft)),
            "band_gap_vs_resampled": np.where(is_metal, np.nan, np.abs(gap_pred - gap_resampled)),
            "predicted_metal": ~(gap_pred > 0),
        }
    )
    return table


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan


def class_metrics(errors: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Table I of one model and split: MAEs (eV) and counts for total, nonmetal and metal.

    ``errors`` holds rows of :func:`material_errors`. Only ``nonmetal`` has ``band_gap``
    (and ``band_gap_vs_resampled``, the same error against the resampled target's gap).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, rows in (
        ("total", errors),
        ("nonmetal", errors[~errors["is_metal"]]),
        ("metal", errors[errors["is_metal"]]),
    ):
        record: dict[str, Any] = {col: _mean(rows[col]) for col in BAND_ERRORS}
        if name == "nonmetal":
            record["band_gap"] = _mean(rows["band_gap"])
            record["band_gap_vs_resampled"] = _mean(rows["band_gap_vs_resampled"])
        record["n"] = len(rows)
        out[name] = record
    return out


def classification(is_metal: Sequence[bool] | np.ndarray,
                   predicted_metal: Sequence[bool] | np.ndarray) -> dict[str, Any]:
    """Metal/non-metal accuracy and confusion counts (``<DFT class>_as_<predicted class>``)."""
    true = np.asarray(is_metal, dtype=bool)
    pred = np.asarray(predicted_metal, dtype=bool)
    if true.shape != pred.shape:
        raise ValueError(f"classes differ in length: {true.size} vs {pred.size}")
    counts = {
        "metal_as_metal": int(np.sum(true & pred)),
        "metal_as_nonmetal": int(np.sum(true & ~pred)),
        "nonmetal_as_metal": int(np.sum(~true & pred)),
        "nonmetal_as_nonmetal": int(np.sum(~true & ~pred)),
    }
    n = int(true.size)
    accuracy = (counts["metal_as_metal"] + counts["nonmetal_as_nonmetal"]) / n if n else math.nan
    return {"accuracy": accuracy, **counts, "n": n}


def quantile_examples(
    errors: Sequence[float] | np.ndarray, ids: Sequence[str] | np.ndarray,
    n_groups: int = N_QUANTILE_GROUPS,
) -> dict[str, str]:
    """Fig. 3's representatives: ``{"Q1": id, ...}``, Q1 the lowest errors.

    The materials, sorted by error, are split into ``n_groups`` groups of equal size (sizes
    differ by at most one; with fewer materials than groups the empty groups are left out);
    each group's representative is its median member (the upper one of an even group).
    """
    err = np.asarray(errors, dtype=np.float64)
    names = np.asarray(ids).astype(str)
    if err.shape != names.shape:
        raise ValueError(f"errors and ids differ in length: {err.size} vs {names.size}")
    order = np.argsort(err, kind="stable")
    picks = {}
    for q, members in enumerate(np.array_split(order, n_groups), start=1):
        if members.size:
            picks[f"Q{q}"] = str(names[members[members.size // 2]])
    return picks


def resampling_gap_summary(
    gap_resampled_error: Sequence[float] | np.ndarray, is_metal: Sequence[bool] | np.ndarray
) -> dict[str, Any]:
    """The gap error smoothing and resampling introduce by themselves (eV, resampled - DFT).

    Over DFT non-metals: signed ``mean``, ``mean_abs``, ``max_abs`` and ``n``;
    ``metals_opened`` counts DFT metals whose resampled bands show a gap.
    """
    err = np.asarray(gap_resampled_error, dtype=np.float64)
    metal = np.asarray(is_metal, dtype=bool)
    gapped = err[~metal]
    n = int(gapped.size)
    return {
        "mean": float(gapped.mean()) if n else math.nan,
        "mean_abs": float(np.abs(gapped).mean()) if n else math.nan,
        "max_abs": float(np.abs(gapped).max()) if n else math.nan,
        "n": n,
        "metals_opened": int(np.sum(err[metal] > 0)),
    }


def evaluation_metrics(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Everything metrics.json reports, from the arrays of predictions.npz.

    ``{model: {split: class_metrics}}`` for bandformer and mean_baseline on train, val and
    test; ``classification[model][split]``; on the test set ``comparisons`` (paired bootstrap
    of per-material band-energy errors, `esrepro.metrics.paired_comparison`), the ratio
    mean-baseline / Bandformer band-energy MAE with its 95% bootstrap interval, and
    ``fig3_examples`` (Bandformer's error quintiles); ``resampling_gap_error`` over all
    materials.
    """
    check_predictions(arrays)
    errors = {model: material_errors(arrays, model) for model in MODEL_ARRAYS}
    metrics: dict[str, Any] = {}
    for model, table in errors.items():
        metrics[model] = {s: class_metrics(table[table["split"] == s]) for s in SPLITS}
    metrics["classification"] = {
        model: {
            s: classification(table.loc[table["split"] == s, "is_metal"],
                              table.loc[table["split"] == s, "predicted_metal"])
            for s in SPLITS
        }
        for model, table in errors.items()
    }
    test = {model: table[table["split"] == "test"] for model, table in errors.items()}
    ours, base = test["bandformer"]["band_energy"], test["mean_baseline"]["band_energy"]
    metrics["comparisons"] = {
        "bandformer_vs_mean_baseline": paired_comparison(
            ours.to_numpy(), base.to_numpy(), names=("bandformer", "mean_baseline")
        )
    }
    ours_mae = _mean(ours)
    metrics["mean_baseline_over_bandformer_test_band_energy"] = (
        _mean(base) / ours_mae if ours_mae > 0 else math.nan
    )
    metrics["mean_baseline_over_bandformer_test_band_energy_ci95"] = ratio_interval(
        base.to_numpy(), ours.to_numpy()
    )
    metrics["fig3_examples"] = quantile_examples(
        ours.to_numpy(), test["bandformer"]["material_id"].to_numpy()
    )
    metrics["resampling_gap_error"] = resampling_gap_summary(
        arrays["gap_resampled_error"], arrays["is_metal"]
    )
    return metrics
