"""The DOSnp pipeline, one function per DVC stage (declared in ``esrepro.papers.dosnp.paper``).

    fetch -> dft -> featurize -> train -> evaluate -> report
    featurize -> cv (k-fold cross-validation of DOSnp and both baselines) -> report

Each function takes its stage's typed config (``esrepro.papers.dosnp.config``) and the paths
the registry entry declares, as keyword arguments. Imports a single stage needs stay inside
its function, so each stage's code dependencies (``dvc.yaml``) are what it actually runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esrepro.papers.dosnp.config import (
    CVConfig,
    DFTConfig,
    EvaluateConfig,
    FeaturizeConfig,
    FetchConfig,
    TrainConfig,
)

log = logging.getLogger(__name__)


def stage_fetch(cfg: FetchConfig, *, raw: Path) -> None:
    """Fetch the pinned gap table and the POSCAR of every selected material into ``raw``."""
    from esrepro.selection import fetch_selected_structures, fetch_table, select_materials

    table = fetch_table(cfg.table_commit, cfg.mirror, raw / "tab_nonmag_all.csv")
    selected = select_materials(table, cfg.selection)
    energies = fetch_selected_structures(
        list(selected["mp_id"]), cfg.structure_source, cfg.mirror, raw / "structures"
    )
    if energies is not None:
        # Formation energies are an LRLIDG descriptor in the paper (App. C); only MP has them.
        selected["formation_energy_per_atom"] = selected["mp_id"].map(energies)
    selected.to_csv(raw / "selected.csv", index=False)
    log.info("fetched table (%d rows) and %d structures", len(table), len(selected))


def load_selected(raw: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The selected rows and their structures (ase.Atoms keyed by "mp-<id>")."""
    from esrepro.structures import read_structure

    selected = pd.read_csv(raw / "selected.csv")
    structures = {m: read_structure(raw / "structures" / f"{m}.vasp") for m in selected["mp_id"]}
    return selected, structures


def stage_dft(cfg: DFTConfig, *, raw: Path, dft: Path) -> None:
    """GPAW LDA products for every selected material (cache first), with a per-material summary.

    Writes ``dft/summary.csv`` (one row per material, failures with their reason) and
    ``products/<mp-id>.npz`` copies of the cached products, so downstream stages depend on
    content.
    """
    from esrepro.dft.product import DFTProduct
    from esrepro.dft.stage import run_dft_stage

    selected, structures = load_selected(raw)
    records = run_dft_stage(structures, cfg.as_params(), dft)
    products = dft / "products"
    rows = []
    table = selected.set_index("mp_id")
    for record in records:
        row = table.loc[record.material_id]
        summary = {
            "material_id": record.material_id,
            "formula": row["formula"],
            "nsites": int(row["nsites"]),
            "status": record.status,
            "reason": record.reason,
            "lda_gap_table": float(row["LDA"]),
            "qsgw_gap": float(row["2shot"]),
            "gpaw_gap": np.nan,
            "fermi_level": np.nan,
            "vbm": np.nan,
            "cbm": np.nan,
            "wall_s": record.wall_s,
            "cache_key": record.cache_key,
        }
        if record.status != "failed":
            product = DFTProduct.load(products / f"{record.material_id}.npz")
            summary.update(
                gpaw_gap=product.gap, fermi_level=product.fermi_level, vbm=product.vbm,
                cbm=product.cbm, wall_s=product.meta.get("wall_s", record.wall_s),
            )
        rows.append(summary)
    pd.DataFrame(rows).to_csv(dft / "summary.csv", index=False)
    n_failed = sum(r["status"] == "failed" for r in rows)
    log.info(
        "DFT: %d materials, %d failed (reasons in %s)", len(rows), n_failed, dft / "summary.csv"
    )


def ecalj_pdos(material_id: str, cfg: FeaturizeConfig, grid: np.ndarray) -> np.ndarray:
    """PDOS from ecalj files a user holds: `<ecalj_pdos_dir>/<mp-id>/dos.isp*.site*.<ext>`."""
    from esrepro.config import resolve_path
    from esrepro.dft.ecalj import detect_extension, ecalj_pdos_tensor
    from esrepro.errors import InputError

    assert cfg.ecalj_pdos_dir  # FeaturizeConfig refuses pdos_source ecalj without it
    directory = resolve_path(cfg.ecalj_pdos_dir) / material_id
    if not directory.is_dir():
        raise InputError(f"no ecalj PDOS directory for {material_id}: {directory}")
    ext = cfg.ecalj_ext or detect_extension(directory)
    return ecalj_pdos_tensor(directory, ext, grid)


def stage_featurize(cfg: FeaturizeConfig, *, dft: Path, features: Path) -> None:
    """PDOS tensors (16 channels x 1,000 points per atom) for every material with a product."""
    import torch

    from esrepro.dft.product import DFTProduct
    from esrepro.spectra import complete_band_range, dosnp_grid, projected_dos
    from esrepro.splits import random_split_labels

    feat = cfg.features
    grid = dosnp_grid(feat.emin_ry, feat.emax_ry, feat.n_points)
    summary = pd.read_csv(dft / "summary.csv")
    ok = summary[summary["status"] != "failed"].reset_index(drop=True)
    blocks, n_atoms, short = [], [], []
    for material_id in ok["material_id"]:
        if cfg.pdos_source == "gpaw":
            product = DFTProduct.load(dft / "products" / f"{material_id}.npz")
            # States above the product's last complete band are missing from the PDOS there.
            top = complete_band_range(product, product.reference_energy)[1]
            if top < grid[-1] + 3 * feat.sigma_ev:
                short.append(f"{material_id} (E_F{top:+.1f} eV)")
            pdos = projected_dos(product, grid, feat.sigma_ev)
        else:
            pdos = ecalj_pdos(material_id, cfg, grid)
        blocks.append(torch.from_numpy(pdos.astype(np.float32)).to(torch.float16))
        n_atoms.append(pdos.shape[0])
    if short:
        log.warning(
            "%d of %d materials have no bands to the top of the PDOS window (E_F%+.1f eV): %s",
            len(short), len(ok), grid[-1], ", ".join(short),
        )
    ids = list(ok["material_id"])
    dataset = {
        "material_ids": ids,
        "formulas": list(ok["formula"]),
        "pdos": (
            torch.cat(blocks) if blocks else torch.zeros((0, 16, len(grid)), dtype=torch.float16)
        ),
        "atom_ptr": torch.tensor(np.concatenate([[0], np.cumsum(n_atoms)]), dtype=torch.long),
        "n_atoms": torch.tensor(n_atoms, dtype=torch.long),
        "lda_gap_table": torch.tensor(ok["lda_gap_table"].to_numpy(), dtype=torch.float32),
        "qsgw_gap": torch.tensor(ok["qsgw_gap"].to_numpy(), dtype=torch.float32),
        "gpaw_gap": torch.tensor(ok["gpaw_gap"].to_numpy(), dtype=torch.float32),
        "energy_grid": torch.tensor(grid, dtype=torch.float32),
        "split": random_split_labels(ids, cfg.split.test_fraction, cfg.split.seed),
        "meta": {
            "pdos_source": cfg.pdos_source,
            "sigma_ev": feat.sigma_ev,
            "units": "states/eV per atom and channel, spin-summed",
            "energy_reference": "VBM for gapped systems, else E_F",
            "bands_short_of_window": short,
        },
    }
    features.mkdir(parents=True, exist_ok=True)
    torch.save(dataset, features / "dataset.pt")
    log.info("featurized %d materials (%d atoms)", len(ids), int(sum(n_atoms)))


def stage_train(
    cfg: TrainConfig, *, features: Path, model: Path, training: Path, fits: Path
) -> None:
    """DOSnp on the "train" split: ``model/dosnp.pt`` and its learning curves in ``training``;
    ``fits`` keeps the checkpoints of an interrupted run (resumed on the next run)."""
    from esrepro.papers.dosnp.train import run_train

    run_train(features / "dataset.pt", cfg, model, training, resume_root=fits)


def _formation_energies(selected: pd.DataFrame) -> dict[str, float] | None:
    """Formation energies per material when the structures came from MP (an LRLIDG descriptor)."""
    if "formation_energy_per_atom" not in selected:
        return None
    return dict(zip(selected["mp_id"], selected["formation_energy_per_atom"], strict=True))


def stage_evaluate(
    cfg: EvaluateConfig, *, raw: Path, dft_summary: Path, features: Path, model: Path,
    metrics: Path, predictions: Path,
) -> None:
    """Metrics of DOSnp and both baselines, plus the GPAW-vs-ecalj LDA gap validation."""
    from esrepro.papers.dosnp.train import MODEL_FILENAME, run_evaluate

    selected, structures = load_selected(raw)
    summary = pd.read_csv(dft_summary)
    ok = summary[summary["status"] != "failed"]
    # n_materials (written by run_evaluate) counts the materials used: n_selected - n_dft_failed.
    extra = {
        "n_selected": int(len(summary)),
        "n_dft_failed": int((summary["status"] == "failed").sum()),
        "gpaw_vs_ecalj_lda_gap_mae": float(np.mean(np.abs(ok["gpaw_gap"] - ok["lda_gap_table"]))),
    }
    run_evaluate(
        features / "dataset.pt", model / MODEL_FILENAME, structures, cfg, metrics, predictions,
        extra, formation_energies=_formation_energies(selected),
    )


def stage_cv(
    cfg: CVConfig, *, raw: Path, features: Path, metrics: Path, predictions: Path, folds: Path
) -> None:
    """k-fold cross-validation of DOSnp and both baselines (params ``dosnp.cv``); ``folds``
    keeps finished folds of an interrupted run."""
    from esrepro.papers.dosnp.cv import run_cross_validation

    selected, structures = load_selected(raw)
    run_cross_validation(
        features / "dataset.pt", structures, cfg, metrics, predictions, folds,
        formation_energies=_formation_energies(selected),
    )


def stage_report(
    *, notebook: Path, table: Path, dft_summary: Path, predictions: Path, metrics: Path,
    cv_metrics: Path, cv_predictions: Path, training: Path, html: Path, executed: Path,
    figures: Path,
) -> None:
    """The paper's figures and tables: ``notebook`` executed into ``executed`` and ``html``."""
    from esrepro.reports import render_report

    render_report(
        notebook, html, executed,
        {
            "table_csv": table,
            "dft_summary_csv": dft_summary,
            "predictions_csv": predictions,
            "metrics_json": metrics,
            "cv_metrics_json": cv_metrics,
            "cv_predictions_csv": cv_predictions,
            "figures_dir": figures,
            "dvclive_dir": training,
        },
    )
