"""Train and evaluate DOSnp and its baselines (entry points of the DOSnp DVC stages).

Every function takes the typed configs of ``esrepro.papers.dosnp.config`` (parsed from the
``dosnp`` params group when the stage starts), never raw params.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from esrepro.metrics import paired_comparison, regression_metrics, write_csv, write_json
from esrepro.papers.dosnp.baselines import (
    LRLIDG,
    CapChoice,
    LinearGapModel,
    choose_descriptor_cap,
    fit_linear,
)
from esrepro.papers.dosnp.config import EvaluateConfig, LRLIDGParams, TrainConfig
from esrepro.papers.dosnp.data import PDOSGraphDataset, collate_pdos, load_features
from esrepro.papers.dosnp.model import DOSnp, DOSnpEnsemble, DOSnpLightning, load_dosnp
from esrepro.plain_json import plain_json
from esrepro.splits import random_split_labels
from esrepro.training import fit_module, run_key, save_model

log = logging.getLogger(__name__)

MODEL_FILENAME = "dosnp.pt"
PREDICTION_COLUMNS: tuple[str, ...] = (
    "material_id",
    "formula",
    "split",
    "n_atoms",
    "lda_gap_table",
    "gpaw_gap",
    "qsgw_gap",
    "pred_dosnp",
    "pred_lrlidg",
    "pred_linear",
    "pred_mean_baseline",
)
#: The models every DOSnp metrics file scores; ``mean_baseline`` predicts the training-set mean
#: QSGW gap for every material (the floor any model must beat).
MODELS: tuple[str, ...] = ("dosnp", "lrlidg", "linear", "mean_baseline")
#: ``comparisons.<key>``: DOSnp against each baseline, paired over the same materials.
COMPARISONS: dict[str, str] = {
    "dosnp_vs_lrlidg": "lrlidg", "dosnp_vs_linear": "linear", "dosnp_vs_mean": "mean_baseline",
}


def _as_list(x: Any) -> list[Any]:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def _split_labels(feats: Mapping[str, Any]) -> list[str]:
    """The split the featurize stage stored (``validate_features`` requires it)."""
    return [str(s) for s in feats["split"]]


def dosnp_run_key(
    features_path: Path, cfg: TrainConfig, extra_sources: Sequence[Path] = (), **extra: Any
) -> str:
    """Key of a DOSnp training run: the features file (which holds the split), every parameter
    that shapes the fit, ``extra`` values (e.g. the folds) and the code, DOSnp's own plus
    ``extra_sources`` (:func:`esrepro.training.run_key`)."""
    from esrepro import pooling, splits, training
    from esrepro.papers.dosnp import baselines, data, model

    parts = {"fit": plain_json(cfg), **extra}
    sources = (pooling, splits, training, baselines, data, model, Path(__file__), *extra_sources)
    return run_key(parts, files=[features_path], sources=sources)


def train_dosnp(
    feats: Mapping[str, Any],
    train_rows: Sequence[int],
    cfg: TrainConfig,
    dvclive_dir: Path,
    resume_dir: Path | None = None,
) -> tuple[DOSnpEnsemble, dict[str, Any]]:
    """Train DOSnp on the material rows ``train_rows`` of ``feats``; return it (CPU) and a summary.

    ``train.ensemble`` networks are trained, member ``k`` with seed ``train.seed + k`` (initial
    weights and batch order); the model returned predicts their mean (:class:`DOSnpEnsemble`).
    A validation subset (``val_fraction`` of ``train_rows``, drawn with ``train.seed``, the same
    for every member) is held out for early stopping and checkpoint selection on
    ``train.monitor`` (``val_mae``, the reported metric, or ``val_loss``); each member keeps the
    weights of its best validation epoch. With ``val_fraction == 0`` every row is fitted and
    ``train_loss`` is monitored. Learning curves go to ``dvclive_dir`` (member 0) and
    ``dvclive_dir/members/<k>``. Shared by the train stage and cross-validation.

    ``resume_dir`` (keyed by the caller on everything that determines these rows and
    parameters, e.g. :func:`dosnp_run_key`) makes the fits resumable: member ``k`` keeps its
    checkpoints in ``resume_dir/member<k>``, so a killed run continues at its last epoch and
    finished members are not trained again.
    """
    train_rows = [int(r) for r in train_rows]
    if not train_rows:
        raise ValueError("no materials to train DOSnp on")
    mcfg, tcfg = cfg.model, cfg.train
    seed = tcfg.seed
    n_members = tcfg.ensemble

    ids = [feats["material_ids"][i] for i in train_rows]
    if tcfg.val_fraction > 0 and len(train_rows) >= 2:
        val_labels = random_split_labels(ids, tcfg.val_fraction, seed)
    else:
        val_labels = ["train"] * len(train_rows)
    fit_rows = [r for r, v in zip(train_rows, val_labels, strict=True) if v == "train"]
    val_rows = [r for r, v in zip(train_rows, val_labels, strict=True) if v == "test"]
    monitor = tcfg.monitor if val_rows else "train_loss"

    batch_size = tcfg.batch_size
    val_loader = (
        DataLoader(
            PDOSGraphDataset(feats, val_rows),
            batch_size=batch_size,
            shuffle=False,
            collate_fn=collate_pdos,
        )
        if val_rows
        else None
    )
    initial_residual = float(
        (feats["qsgw_gap"][fit_rows] - feats["lda_gap_table"][fit_rows]).mean()
    )
    train_set = PDOSGraphDataset(feats, fit_rows)
    members, fits = [], []
    for k in range(n_members):
        member_seed = seed + k
        train_loader = DataLoader(
            train_set,
            batch_size=batch_size,
            shuffle=True,
            collate_fn=collate_pdos,
            # An explicit generator makes the shuffling order depend on the seed alone.
            generator=torch.Generator().manual_seed(member_seed),
            # In-process loading: the PDOS tensor is already in memory and workers would copy it.
            num_workers=0,
        )
        module, fit = fit_module(
            lambda: DOSnpLightning(
                pooling=cfg.pooling,
                dropout=mcfg.dropout,
                hidden=mcfg.hidden,
                input_scale=mcfg.input_scale,
                lr=tcfg.lr,
                weight_decay=tcfg.weight_decay,
                loss=tcfg.loss,
                initial_residual=initial_residual,
            ),
            train_loader,
            val_loader,
            max_epochs=tcfg.max_epochs,
            accelerator=tcfg.accelerator,
            devices=tcfg.devices,
            seed=member_seed,
            dvclive_dir=Path(dvclive_dir) if k == 0 else Path(dvclive_dir) / "members" / str(k),
            patience=tcfg.patience,
            monitor=monitor,
            resume_dir=None if resume_dir is None else Path(resume_dir) / f"member{k}",
        )
        members.append(module.model.cpu())
        fits.append(fit)
        if n_members > 1:
            log.info("DOSnp member %d/%d: %s %s after %d epochs", k + 1, n_members, monitor,
                     fit.best_score, fit.epochs_run)
    summary = {
        "monitor": monitor,
        "ensemble": n_members,
        "seeds": [seed + k for k in range(n_members)],
        "best_score": [None if f.best_score is None else float(f.best_score) for f in fits],
        "epochs_run": [f.epochs_run for f in fits],
        "device": fits[0].device,
        "fit_rows": fit_rows,
        "val_rows": val_rows,
    }
    return DOSnpEnsemble.of(members).eval(), summary


def run_train(
    features_path: Path,
    cfg: TrainConfig,
    out_dir: Path,
    dvclive_dir: Path,
    resume_root: Path | None = None,
) -> Path:
    """Train DOSnp on the "train" split (see :func:`train_dosnp`); write ``out_dir/dosnp.pt``.

    With ``resume_root`` the fits keep their checkpoints under ``resume_root/<run key>`` and an
    interrupted stage resumes there.
    """
    feats = load_features(features_path)
    labels = _split_labels(feats)
    train_rows = [i for i, s in enumerate(labels) if s == "train"]
    if not train_rows:
        raise ValueError(f"{features_path}: no materials in the 'train' split")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_dir = (
        None if resume_root is None
        else Path(resume_root) / dosnp_run_key(Path(features_path), cfg)
    )
    model, fit = train_dosnp(feats, train_rows, cfg, Path(dvclive_dir), resume_dir)
    fit_rows, val_rows = fit["fit_rows"], fit["val_rows"]
    metadata = {
        "paper": "dosnp",
        "target": "E_g^QSGW - E_g^LDA (eV); prediction = lda_gap_table + output",
        "training": {
            **plain_json(cfg.train),
            **{
                k: fit[k]
                for k in ("monitor", "ensemble", "seeds", "best_score", "epochs_run", "device")
            },
        },
        "data": {
            "features_file": Path(features_path).name,
            "n_materials": len(labels),
            "n_train": len(fit_rows),
            "n_val": len(val_rows),
            "val_material_ids": [feats["material_ids"][r] for r in val_rows],
            "features_meta": plain_json(feats.get("meta", {})),
        },
    }
    path = save_model(out_dir / MODEL_FILENAME, model, metadata)
    log.info(
        "saved %s (%d train / %d val materials, %s %s, epochs %s)",
        path, len(fit_rows), len(val_rows), fit["monitor"], fit["best_score"], fit["epochs_run"],
    )
    return path


@torch.no_grad()
def predict_gaps(
    model: DOSnp | DOSnpEnsemble, feats: Mapping[str, Any], rows: Sequence[int] | None, *,
    batch_size: int,
) -> np.ndarray:
    """Predicted QSGW gaps (eV) of the given material rows: table LDA gap + DOSnp residual."""
    model.eval()
    loader = DataLoader(
        PDOSGraphDataset(feats, rows), batch_size=batch_size, shuffle=False, collate_fn=collate_pdos
    )
    out = []
    for batch in loader:
        residual = model(batch["pdos"], batch["atom_index"], batch["n_graphs"])[:, 0]
        out.append((batch["lda_gap"] + residual).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def structures_of(ids: Sequence[str], structures: Mapping[str, Any]) -> list[Any]:
    """The structures of ``ids`` in order (LRLIDG's input); a KeyError names any missing id."""
    missing = [i for i in ids if i not in structures]
    if missing:
        raise KeyError(f"no structure for {len(missing)} material(s), e.g. {missing[:5]}")
    return [structures[i] for i in ids]


def aligned_formation_energies(
    ids: Sequence[str], formation_energies: Mapping[str, float] | None
) -> np.ndarray | None:
    """Formation energies aligned with ``ids``, or None unless known for every material.

    LRLIDG uses them as a descriptor (paper App. C) only with the MP structure source.
    """
    if formation_energies is None or not all(
        formation_energies.get(i) is not None and np.isfinite(formation_energies[i]) for i in ids
    ):
        return None
    return np.array([formation_energies[i] for i in ids], dtype=np.float64)


@dataclass(frozen=True)
class Baselines:
    """DOSnp's baselines fitted on one training set: the linear LDA->QSGW map, LRLIDG with the
    descriptor cap inner CV chose, and the mean predictor (the training-set mean QSGW gap)."""

    linear: LinearGapModel
    lrlidg: LRLIDG
    lrlidg_cap: CapChoice
    mean_gap: float

    def predict(
        self, atoms: Sequence[Any], lda: np.ndarray, formation_energies: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Predicted QSGW gaps (eV) of each baseline, keyed as in :data:`MODELS`."""
        return {
            "lrlidg": self.lrlidg.predict(atoms, lda, formation_energies=formation_energies),
            "linear": self.linear.predict(lda),
            "mean_baseline": np.full(len(lda), self.mean_gap),
        }


def fit_baselines(
    atoms: Sequence[Any],
    lda: np.ndarray,
    qsgw: np.ndarray,
    train: np.ndarray,
    lrlidg_cfg: LRLIDGParams,
    ids: Sequence[str],
    formation_energies: np.ndarray | None = None,
) -> Baselines:
    """Fit every baseline on the rows where the boolean mask ``train`` holds.

    ``atoms``, ``lda``, ``qsgw`` (eV), material ``ids`` and ``formation_energies`` are aligned,
    one per material. LRLIDG's descriptor cap is chosen by inner CV on the training rows only.
    """
    train = np.asarray(train, dtype=bool)
    rows = np.flatnonzero(train)
    train_atoms = [atoms[i] for i in rows]
    train_fe = None if formation_energies is None else formation_energies[train]
    cap = choose_descriptor_cap(
        train_atoms, lda[train], qsgw[train], [ids[i] for i in rows],
        lrlidg_cfg.max_descriptors_per_sample, folds=lrlidg_cfg.inner_folds,
        seed=lrlidg_cfg.inner_seed, rank_tol=lrlidg_cfg.rank_tol, formation_energies=train_fe,
    )
    lrlidg = LRLIDG(
        rank_tol=lrlidg_cfg.rank_tol, max_descriptors_per_sample=cap.max_descriptors_per_sample
    ).fit(train_atoms, lda[train], qsgw[train], formation_energies=train_fe)
    return Baselines(
        linear=fit_linear(lda[train], qsgw[train]),
        lrlidg=lrlidg,
        lrlidg_cap=cap,
        mean_gap=float(np.mean(qsgw[train])),
    )


def lrlidg_summary(baselines: Baselines) -> dict[str, Any]:
    """What the LRLIDG fit kept: descriptors, the chosen cap and every candidate's inner-CV MAE."""
    return {
        "n_descriptors": baselines.lrlidg.n_descriptors,
        "max_descriptors_per_sample": baselines.lrlidg_cap.max_descriptors_per_sample,
        "inner_cv_mae": {f"{k:g}": v for k, v in baselines.lrlidg_cap.inner_cv_mae.items()},
    }


def gap_comparisons(qsgw: np.ndarray, preds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """:data:`COMPARISONS`: paired bootstrap records of DOSnp's absolute gap error against each
    baseline's, over the materials given (``esrepro.metrics.paired_comparison``)."""
    err = {m: np.abs(np.asarray(preds[m], dtype=np.float64) - qsgw) for m in MODELS}
    return {
        key: paired_comparison(err["dosnp"], err[other], names=("dosnp", other))
        for key, other in COMPARISONS.items()
    }


def run_evaluate(
    features_path: Path,
    model_path: Path,
    structures: Mapping[str, Any],
    cfg: EvaluateConfig,
    metrics_path: Path,
    predictions_path: Path,
    extra: Mapping[str, Any],
    formation_energies: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Predict every material with DOSnp, LRLIDG and the linear map; write CSV and metrics.

    The baselines are fitted here on the "train" split (seconds, LRLIDG's inner CV included).
    Metrics are on band gaps in eV; ``comparisons`` pairs DOSnp with each baseline over the test
    materials. ``n_materials`` counts the materials used (featurized: the DFT succeeded).
    ``structures`` maps material id -> ``ase.Atoms`` (for LRLIDG); ``extra`` supplies
    ``n_selected``, ``n_dft_failed`` and ``gpaw_vs_ecalj_lda_gap_mae`` (and any other top-level
    keys the stage wants in the metrics file). Returns the metrics dict.
    """
    feats = load_features(features_path)
    ids = [str(i) for i in feats["material_ids"]]
    labels = _split_labels(feats)
    train = np.array([s == "train" for s in labels])
    lda = np.asarray(_as_list(feats["lda_gap_table"]), dtype=np.float64)
    qsgw = np.asarray(_as_list(feats["qsgw_gap"]), dtype=np.float64)

    model, _ = load_dosnp(model_path)
    pred_dosnp = predict_gaps(model, feats, None, batch_size=cfg.batch_size)

    atoms = structures_of(ids, structures)
    fe = aligned_formation_energies(ids, formation_energies)
    baselines = fit_baselines(atoms, lda, qsgw, train, cfg.lrlidg, ids, fe)
    preds = {"dosnp": pred_dosnp, **baselines.predict(atoms, lda, fe)}

    table = pd.DataFrame(
        {
            "material_id": ids,
            "formula": [str(f) for f in feats["formulas"]],
            "split": labels,
            "n_atoms": np.asarray(_as_list(feats["n_atoms"]), dtype=np.int64),
            "lda_gap_table": lda,
            "gpaw_gap": np.asarray(_as_list(feats["gpaw_gap"]), dtype=np.float64),
            "qsgw_gap": qsgw,
            **{f"pred_{m}": preds[m] for m in MODELS},
        },
        columns=list(PREDICTION_COLUMNS),
    )
    write_csv(predictions_path, table)

    def per_split(pred: np.ndarray) -> dict[str, Any]:
        return {
            name: regression_metrics(qsgw[mask], pred[mask])
            for name, mask in (("train", train), ("test", ~train))
        }

    metrics: dict[str, Any] = {
        "n_selected": None,
        "n_dft_failed": None,
        "gpaw_vs_ecalj_lda_gap_mae": None,
        **extra,
        "n_materials": len(ids),
        **{m: per_split(preds[m]) for m in MODELS},
        "comparisons": gap_comparisons(qsgw[~train], {m: p[~train] for m, p in preds.items()}),
    }
    # Paper Sec. III, Fig. 4(b)/(B): LRLIDG predicts negative gaps for some test materials,
    # DOSnp none.
    metrics["negative_test_predictions"] = {m: int(np.sum(preds[m][~train] < 0)) for m in MODELS}
    metrics["lrlidg"].update(lrlidg_summary(baselines))
    metrics["linear"].update(a=baselines.linear.a, b=baselines.linear.b)
    write_json(metrics_path, metrics)
    return metrics
