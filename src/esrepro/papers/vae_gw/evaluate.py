"""VAE-GW's evaluation: the GW metrics of every model under both splits and on the held-out
TMDs, the paired comparisons that resolve "beats the baseline", and the VAE's reconstruction
R². Pure numpy/pandas over the train stage's ``predictions.csv``; the evaluate stage and the
report notebook both use it.

Schema of the GW metrics (eV): ``<model> → state_split|material_split|heldout_tmds →
all|semiconductor|metal → train|test → {mae, rmse, n}``; ``heldout_tmds`` has only ``test``,
predicted by each model as trained on the state split (the paper's model). ``train`` is the
fitted part only (not the validation states that stopped the network early). Semiconductor and
metal follow the DFT gap on the k-grid (GPAW warns that its G0W0 lacks intraband screening in
metals, so they are reported apart).

Comparisons (`esrepro.metrics.paired_comparison`, the GW network as side a): on the material
split over test *materials*, each material's MAE of the two models (states of one material are
not independent samples; the material is the unit of that split); on the state split over test
states (the paper's unit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from esrepro.metrics import paired_comparison

#: Models of ``predictions.csv`` (columns ``<model>__<split>``) in the order metrics list them.
MODELS = ("gw_net", "mean", "linear_edft", "gbm")
SPLITS = ("state_split", "material_split")
CLASSES = ("all", "semiconductor", "metal")
PARTS = ("train", "test")
#: The network the comparisons put on side a.
OURS = "gw_net"
REQUIRED_COLUMNS = ("state_id", "material_id", "heldout", "is_metal", "delta_gw", *SPLITS,
                    *(f"{m}__{s}" for m in MODELS for s in SPLITS))


def check_predictions(frame: pd.DataFrame, what: str = "predictions") -> None:
    """ValueError naming ``what`` and the first missing column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")


def error_record(true: Any, pred: Any) -> dict[str, Any]:
    """``{mae, rmse, n}`` of ``pred`` against ``true`` (eV); NaN errors for no states."""
    t, p = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    n = int(t.size)
    if n == 0:
        return {"mae": math.nan, "rmse": math.nan, "n": 0}
    diff = p - t
    return {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff**2).mean())), "n": n}


def _classes(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    metal = frame["is_metal"].astype(bool)
    return {"all": frame, "semiconductor": frame[~metal], "metal": frame[metal]}


def model_metrics(frame: pd.DataFrame, model: str) -> dict[str, Any]:
    """One model's block of the schema (module docstring)."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        column = f"{model}__{split}"
        out[split] = {
            cls: {part: error_record(rows.loc[rows[split] == part, "delta_gw"],
                                     rows.loc[rows[split] == part, column])
                  for part in PARTS}
            for cls, rows in _classes(frame).items()
        }
    heldout = frame[frame["heldout"].astype(bool)]
    column = f"{model}__state_split"
    out["heldout_tmds"] = {
        cls: {"test": error_record(rows["delta_gw"], rows[column])}
        for cls, rows in _classes(heldout).items()
    }
    return out


def per_material_mae(frame: pd.DataFrame, column: str) -> pd.Series:
    """Each material's MAE of ``column`` against ΔGW, indexed by material id (sorted)."""
    err = (frame[column] - frame["delta_gw"]).abs()
    return err.groupby(frame["material_id"]).mean().sort_index()


def comparisons(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{split: {"gw_net_vs_<baseline>": paired record}}`` on each split's test set
    (module docstring: materials for the material split, states for the state split)."""
    out: dict[str, dict[str, Any]] = {}
    test = frame[frame["material_split"] == "test"]
    for baseline in MODELS[1:]:
        ours = per_material_mae(test, f"{OURS}__material_split")
        theirs = per_material_mae(test, f"{baseline}__material_split")
        out.setdefault("material_split", {})[f"{OURS}_vs_{baseline}"] = paired_comparison(
            ours.to_numpy(), theirs.loc[ours.index].to_numpy(), names=(OURS, baseline))
    test = frame[frame["state_split"] == "test"].sort_values("state_id")
    for baseline in MODELS[1:]:
        ours = (test[f"{OURS}__state_split"] - test["delta_gw"]).abs()
        theirs = (test[f"{baseline}__state_split"] - test["delta_gw"]).abs()
        out.setdefault("state_split", {})[f"{OURS}_vs_{baseline}"] = paired_comparison(
            ours.to_numpy(), theirs.to_numpy(), names=(OURS, baseline))
    return out


#: Columns of the networks trained without one input group: ``gw_net_without_<group>__state_split``.
ABLATION_PREFIX = f"{OURS}_without_"


def ablation_metrics(frame: pd.DataFrame) -> dict[str, Any]:
    """Fig. 2f: ``{group: {mae, rmse, n}}`` on the state split's test states of each network
    trained without ``group``, and ``none`` (every input) for comparison."""
    test = frame[frame["state_split"] == "test"]
    out = {"none": error_record(test["delta_gw"], test[f"{OURS}__state_split"])}
    for column in sorted(c for c in frame.columns if c.startswith(ABLATION_PREFIX)):
        group = column[len(ABLATION_PREFIX):].removesuffix("__state_split")
        out[group] = error_record(test["delta_gw"], test[column])
    return out


def gw_metrics(frame: pd.DataFrame) -> dict[str, Any]:
    """Every model's block and the comparisons: what metrics.json reports of the GW step.
    Rows are put in state-id order first, so the numbers do not depend on the row order."""
    check_predictions(frame)
    frame = frame.sort_values("state_id", kind="stable").reset_index(drop=True)
    return {**{model: model_metrics(frame, model) for model in MODELS},
            "comparisons": comparisons(frame), "ablations": ablation_metrics(frame)}


def reconstruction_r2(images: np.ndarray, recon: np.ndarray, parts: np.ndarray,
                      r2: Any) -> dict[str, Any]:
    """The code's pooled R² (``r2``, `esrepro.papers.vae_gw.train.reconstruction_r2`) of each
    part of the VAE split (train, val, test, holdout: materials the VAE never saw, heldout: the
    held-out TMDs), with its state count; NaN for an empty part."""
    parts = np.asarray(parts).astype(str)
    out: dict[str, Any] = {}
    for part in ("train", "val", "test", "holdout", "heldout"):
        rows = parts == part
        out[part] = {"r2": float(r2(recon[rows], images[rows])) if rows.any() else math.nan,
                     "n": int(rows.sum())}
    return out


def example_states(states: pd.DataFrame, material_id: str) -> list[int]:
    """Rows of three states of ``material_id`` the report reconstructs (the paper's Fig. 2b
    shows three MoS2 states): the highest valence and lowest conduction state at the first
    irreducible k-point (Γ) and the highest valence state at the last one; those it lacks are
    left out."""
    rows = states.index[states["material_id"] == material_id]
    if not len(rows):
        return []
    sub = states.loc[rows]
    last = int(sub["k_index"].max())
    picks = []
    for k, offset in ((0, -1), (0, 0), (last, -1)):
        hit = sub.index[(sub["k_index"] == k) & (sub["band_offset"] == offset)]
        if len(hit):
            picks.append(int(hit[0]))
    return picks


def dft_core_hours(summary: pd.DataFrame) -> dict[str, float]:
    """Core-hours of the GW products in ``summary`` (the dft stage's, from each product's own
    timings: relaxation, ground state, G0W0 and their total), as measured where each product was
    computed (a product from the cache or a seed brings its original cost)."""
    steps = ("relax", "ground_state", "gw")
    out = {}
    for step in steps:
        column = f"{step}_core_s"
        seconds = pd.to_numeric(summary[column], errors="coerce") if column in summary else None
        out[step] = float(seconds.sum()) / 3600.0 if seconds is not None else 0.0
    out["total"] = sum(out[s] for s in steps)
    return out


def headline(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The few numbers a log line or a summary shows (eV)."""
    def get(model: str, split: str, part: str, key: str) -> float:
        return metrics[model][split]["all"][part][key]

    return {
        "state_split_test_rmse": get(OURS, "state_split", "test", "rmse"),
        "state_split_test_mae": get(OURS, "state_split", "test", "mae"),
        "material_split_test_mae": get(OURS, "material_split", "test", "mae"),
        "heldout_tmds_mae": metrics[OURS]["heldout_tmds"]["all"]["test"]["mae"],
    }
